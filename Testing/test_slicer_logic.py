"""The module logic on a real MRML scene (slicer-core) with the fake ``meddifffm`` command:
scene -> temporary .nrrd -> process -> new nodes, and everything that must not happen."""

import json
import os
import sys
import time
import types

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from slicer_helpers import paths  # noqa: E402
from slicer_helpers.scene import (  # noqa: E402,F401  (mrmlScene is a fixture)
    addCtVolume, addSegmentOnGrid, ijkToRas, mrmlScene, slicer, volumeMatrix)

from MedDiffFMModuleLib.Logic import (  # noqa: E402
    Logic, MedDiffFMModuleError, RunCancelled, TaskRequest, requestFromParameters)
from MedDiffFMModuleLib.Tasks import Device, InputRegion, Region, Task, TaskOptions  # noqa: E402


@pytest.fixture
def record(tmp_path):
    return tmp_path / "argv.jsonl"


@pytest.fixture
def logic(mrmlScene, tmp_path, record):
    tempRoot = tmp_path / "temp"
    tempRoot.mkdir()
    return Logic(command=paths.FAKE_COMMAND, applicationLogic=mrmlScene.appLogic, tempRoot=str(tempRoot),
                 env={"FAKE_MEDDIFFFM_RECORD": str(record)})


def recordedArgs(record):
    return [json.loads(line)["argv"] for line in record.read_text().splitlines()]


def tempLeftovers(logic):
    return os.listdir(logic.tempRoot)


def assertSameGeometry(node, reference):
    assert node.GetImageData().GetDimensions() == reference.GetImageData().GetDimensions()
    assert np.allclose(node.GetSpacing(), reference.GetSpacing(), rtol=0, atol=1e-12)
    assert np.allclose(node.GetOrigin(), reference.GetOrigin(), rtol=0, atol=1e-12)
    assert np.allclose(volumeMatrix(node), volumeMatrix(reference), rtol=0, atol=1e-9)


def studyFolder(scene, volume):
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Patient 1")
    study = sh.CreateStudyItem(patient, "CT study")
    if sh.GetItemByDataNode(volume):
        sh.SetItemParent(sh.GetItemByDataNode(volume), study)
    else:  # slicer-core has no Qt plugin logic that adds items for new nodes
        sh.CreateItem(study, volume)
    return sh, study


def compositeNodes(scene):
    nodes = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    return [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]


# ------------------------------------------------------------------------------------------------
# Round trips


def test_denoise_keeps_oblique_anisotropic_geometry_name_folder_and_display(mrmlScene, logic, record):
    scene = mrmlScene.scene
    volume, array = addCtVolume(shape=(7, 10, 12))
    assert not np.allclose(volumeMatrix(volume)[:3, :3], np.diag(np.diag(volumeMatrix(volume)[:3, :3])))  # oblique
    sh, study = studyFolder(scene, volume)
    inputMTime = volume.GetMTime()

    output = logic.denoise(volume, strength=0.3, steps=4, seed=1, device="cpu", model="tiny")

    assert output.GetName() == "CT denoised"
    assert output.GetScene() is scene and output is not volume
    assertSameGeometry(output, volume)
    assert np.array_equal(slicer.util.arrayFromVolume(output), array)  # voxel order kept (fake copies)
    assert np.array_equal(slicer.util.arrayFromVolume(volume), array) and volume.GetMTime() == inputMTime
    assert sh.GetItemParent(sh.GetItemByDataNode(output)) == study
    display = output.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (400, 40)
    assert all(c.GetBackgroundVolumeID() == output.GetID() for c in compositeNodes(scene))
    argv = recordedArgs(record)[-1]
    assert argv[0] == "denoise" and argv[1].endswith("input.nrrd") and argv[2].endswith("output.nrrd")
    assert argv[3:] == ["--strength", "0.3", "--model", "tiny", "--device", "cpu", "--steps", "4", "--seed", "1",
                        "--progress", "json"]
    assert tempLeftovers(logic) == []  # temporary files deleted
    assert logic.lastResult.outputVolume is output and logic.lastResult.seconds > 0


def test_volume_under_a_transform_keeps_it(mrmlScene, logic):
    scene = mrmlScene.scene
    volume, _array = addCtVolume()
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = np.eye(4)
    matrix[:3, 3] = (5, -3, 12)
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(matrix))
    volume.SetAndObserveTransformNodeID(transform.GetID())
    output = logic.denoise(volume)
    assert output.GetTransformNodeID() == transform.GetID()
    assertSameGeometry(output, volume)


def test_existing_output_volume_is_overwritten_without_new_node(mrmlScene, logic):
    scene = mrmlScene.scene
    volume, array = addCtVolume()
    target, _ = addCtVolume(name="previous result", shape=(3, 3, 3), matrix=np.eye(4))
    count = scene.GetNumberOfNodes()
    output = logic.denoise(volume, outputVolume=target)
    assert output is target and scene.GetNumberOfNodes() == count
    assert target.GetName() == "previous result"
    assertSameGeometry(target, volume)
    assert np.array_equal(slicer.util.arrayFromVolume(target), array)


def test_random_seed_is_explicit_and_reported(mrmlScene, logic, record):
    volume, _ = addCtVolume()
    logic.denoise(volume)  # seed=None: a new random seed, passed on the command line
    first = recordedArgs(record)[-1]
    seed = int(first[first.index("--seed") + 1])
    assert logic.lastResult.seed == seed
    logic.denoise(volume, seed=None)
    second = recordedArgs(record)[-1]
    assert int(second[second.index("--seed") + 1]) == logic.lastResult.seed
    logic.denoise(volume, seed=7)
    assert recordedArgs(record)[-1][recordedArgs(record)[-1].index("--seed") + 1] == "7"


def test_names_are_made_unique(mrmlScene, logic):
    volume, _ = addCtVolume()
    first = logic.denoise(volume)
    second = logic.denoise(volume)
    assert first.GetName() == "CT denoised" and second.GetName() != first.GetName()
    assert second.GetName().startswith("CT denoised")


def test_segment_drawn_on_another_grid_becomes_the_mask_on_the_volume_grid(mrmlScene, logic, record):
    scene = mrmlScene.scene
    volume, array = addCtVolume(shape=(8, 12, 14))
    # A segment painted on a finer, axis-aligned grid (as on another volume in Segment Editor).
    matrix = np.diag([0.4, 0.45, 1.1, 1.0])
    centre = volumeMatrix(volume) @ np.array([6.5, 5.5, 3.5, 1.0])
    matrix[:3, 3] = centre[:3] - np.array([0.4 * 10, 0.45 * 9, 1.1 * 5])
    mask = np.zeros((10, 20, 22), np.uint8)
    mask[3:8, 5:15, 6:16] = 1
    segmentation, segmentId = addSegmentOnGrid(scene, mask, matrix)
    expected = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume) > 0  # Slicer's own export
    assert expected.any() and expected.shape == array.shape
    count = scene.GetNumberOfNodes()

    output = logic.inpaint(volume, segmentation, segmentId, seed=3)

    assert scene.GetNumberOfNodes() == count + 2  # the volume and its display node, nothing else
    assert output.GetName() == "CT with generated tissue"
    assertSameGeometry(output, volume)
    result = slicer.util.arrayFromVolume(output)
    assert np.array_equal(result == -1000, expected | (array == -1000))  # the fake fills the mask with -1000
    assert np.array_equal(result[~expected], array[~expected])
    argv = recordedArgs(record)[-1]
    assert argv[0] == "inpaint" and argv[2].endswith("mask.nrrd")


def test_segment_under_a_transform_is_mapped_to_the_volume(mrmlScene, logic):
    scene = mrmlScene.scene
    volume, array = addCtVolume(shape=(8, 12, 14))
    mask = np.zeros((8, 12, 14), np.uint8)
    mask[2:5, 3:8, 4:9] = 1
    segmentation, segmentId = addSegmentOnGrid(scene, mask, volumeMatrix(volume))
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = np.eye(4)
    shift[:3, 3] = volumeMatrix(volume)[:3, 0] * 2  # two voxels along i
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(shift))
    segmentation.SetAndObserveTransformNodeID(transform.GetID())
    output = logic.generateLesion(volume, segmentation, segmentId)
    expected = np.zeros_like(mask, bool)
    expected[2:5, 3:8, 6:11] = True
    result = slicer.util.arrayFromVolume(output)
    assert output.GetName() == "CT with generated lesion"
    assert np.array_equal(result == 100, expected | (array == 100))


def test_anomaly_map_is_a_colour_overlay_with_a_segmentation(mrmlScene, logic, record):
    scene = mrmlScene.scene
    volume, array = addCtVolume()
    sh, study = studyFolder(scene, volume)
    threshold = 900.0

    amap = logic.anomalyMap(volume, threshold=threshold, keepHealthy=True)

    assert amap.GetName() == "CT anomaly map"
    assertSameGeometry(amap, volume)
    display = amap.GetDisplayNode()
    assert display.GetColorNode().GetName() == "ColdToHotRainbow"
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(threshold)  # only anomalies tint
    assert display.GetWindowLevelMin() == pytest.approx(threshold)
    # Slicer's colour legend, in units of the healthy residual, over the views that show the map
    legend = mrmlScene.logics["colors"].GetColorLegendDisplayNode(amap)
    assert legend is not None and legend.GetVisibility()
    assert legend.GetTitleText() == "Anomaly (x healthy)" and legend.GetLabelFormat() == "%.1f"
    for composite in compositeNodes(scene):
        assert composite.GetBackgroundVolumeID() == volume.GetID()
        assert composite.GetForegroundVolumeID() == amap.GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.5)
    result = logic.lastResult
    segmentation = result.segmentationNode
    assert segmentation.GetName() == "CT anomalies"
    segment = segmentation.GetSegmentation().GetNthSegment(0)
    assert segment.GetName() == "Anomaly"
    segmentId = segmentation.GetSegmentation().GetNthSegmentID(0)
    expected = np.abs(array.astype(np.float32) - array.astype(np.float32).mean()) > threshold
    assert np.array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume) > 0, expected)
    assert result.healthyVolume.GetName() == "CT pseudo-healthy"
    for node in (amap, segmentation, result.healthyVolume):
        assert sh.GetItemParent(sh.GetItemByDataNode(node)) == study
    argv = recordedArgs(record)[-1]
    assert "--threshold" in argv and "--mask-out" in argv and "--healthy-out" in argv


def test_anomaly_map_without_threshold_adds_no_segmentation(mrmlScene, logic):
    volume, _ = addCtVolume()
    logic.anomalyMap(volume)
    assert logic.lastResult.segmentationNode is None
    assert mrmlScene.scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0


def test_anomaly_map_uses_the_models_calibrated_threshold(mrmlScene, logic, record):
    volume, array = addCtVolume()
    logic.listModels()  # the library's model list, with the tiny model's calibrated threshold (900)
    assert logic.calibratedAnomalyThreshold(None) == 900.0
    amap = logic.anomalyMap(volume)
    argv = recordedArgs(record)[-1]
    assert "--mask-out" in argv and "--threshold" not in argv  # the library applies its own default
    display = amap.GetDisplayNode()
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(900.0)
    segmentation = logic.lastResult.segmentationNode
    segmentId = segmentation.GetSegmentation().GetNthSegmentID(0)
    expected = np.abs(array.astype(np.float32) - array.astype(np.float32).mean()) > 900.0
    assert np.array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume) > 0, expected)


def test_synthesize_with_and_without_reference(mrmlScene, logic, record):
    synthetic = logic.synthesize(region="abdomen", seed=5)
    assert synthetic.GetName() == "synthetic CT"
    assert synthetic.GetImageData().GetDimensions() == (16, 16, 8)
    assert np.allclose(synthetic.GetSpacing(), (1, 1, 2))
    assert recordedArgs(record)[-1][:4] == ["synthesize", recordedArgs(record)[-1][1], "--region", "abdomen"]
    reference, _ = addCtVolume()
    onGrid = logic.synthesize(region=Region.HEAD_NECK, referenceVolume=reference)
    assert onGrid.GetName() == "CT synthesized"
    assertSameGeometry(onGrid, reference)
    assert "--like" in recordedArgs(record)[-1]


def test_console_region_is_the_input_cts_outside_synthesis(mrmlScene, logic, record):
    volume, _ = addCtVolume()

    def region():
        argv = recordedArgs(record)[-1]
        return argv[argv.index("--region") + 1] if "--region" in argv else None

    logic.denoise(volume)
    assert region() is None  # left to the library's guess
    logic.denoise(volume, region="Unknown")
    assert region() == "unknown"
    logic.anomalyMap(volume, region="head-neck")
    assert region() == "head_neck"
    logic.superResolve(volume, factorZ=2, region=InputRegion.ABDOMEN)
    assert region() == "abdomen"
    before = mrmlScene.nodeIds()
    calls = len(recordedArgs(record))
    with pytest.raises(MedDiffFMModuleError, match="Unknown body region 'thigh'. Choose one of: auto, chest, abdomen, "
                                                   "head_neck, unknown"):
        logic.denoise(volume, region="thigh")
    with pytest.raises(MedDiffFMModuleError, match="Unknown body region 'unknown'. Choose one of: chest, abdomen, "
                                                   "head_neck"):
        logic.synthesize(region="unknown")
    assert mrmlScene.nodeIds() == before and len(recordedArgs(record)) == calls


def test_super_resolution_divides_z_spacing(mrmlScene, logic):
    volume, array = addCtVolume(shape=(5, 8, 9))
    output = logic.superResolve(volume, factorZ=2)
    assert output.GetName() == "CT super-resolved"
    assert output.GetImageData().GetDimensions() == (9, 8, 10)
    sx, sy, sz = volume.GetSpacing()
    assert np.allclose(output.GetSpacing(), (sx, sy, sz / 2), atol=1e-9)
    assert np.allclose(output.GetOrigin(), volume.GetOrigin(), atol=1e-9)
    directions = lambda node: volumeMatrix(node)[:3, :3] / np.array(node.GetSpacing())  # noqa: E731
    assert np.allclose(directions(output), directions(volume), atol=1e-9)


# ------------------------------------------------------------------------------------------------
# Cancel, failure, bad selections: the scene stays exactly as it was


def test_cancelled_run_changes_nothing(mrmlScene, logic):
    scene = mrmlScene.scene
    volume, _ = addCtVolume()
    segmentation, segmentId = addSegmentOnGrid(scene, np.ones((3, 3, 3), np.uint8), volumeMatrix(volume))
    before = mrmlScene.nodeIds()
    logic.extraEnv.update({"FAKE_MEDDIFFFM_DELAY": "1", "FAKE_MEDDIFFFM_STEPS": "30"})
    updates = []
    job = logic.inpaint(volume, segmentation, segmentId, wait=False)
    job.onProgress = updates.append
    deadline = time.monotonic() + 20
    while not any(u.stage == "sampling" for u in updates):
        assert time.monotonic() < deadline, "no progress from the fake CLI"
        job.poll()
        time.sleep(0.02)
    assert not job.isFinished()
    job.cancel()
    with pytest.raises(RunCancelled):
        logic.finishTask(job)
    assert mrmlScene.nodeIds() == before
    assert tempLeftovers(logic) == []


def test_library_error_is_shown_and_changes_nothing(mrmlScene, logic):
    volume, _ = addCtVolume()
    before = mrmlScene.nodeIds()
    logic.extraEnv["FAKE_MEDDIFFFM_FAIL"] = "user"
    with pytest.raises(MedDiffFMModuleError, match="The input is not a CT volume"):
        logic.denoise(volume)
    assert mrmlScene.nodeIds() == before
    assert tempLeftovers(logic) == []


def test_missing_command_gives_a_clear_message(mrmlScene, tmp_path):
    volume, _ = addCtVolume()
    logic = Logic(command=[str(tmp_path / "no-such-meddifffm")], tempRoot=str(tmp_path))
    with pytest.raises(MedDiffFMModuleError, match="Could not start MedDiff-FM"):
        logic.denoise(volume)
    assert [p for p in os.listdir(tmp_path) if p.startswith("MedDiffFM-")] == []


def _badSelections(scene):
    volume, _ = addCtVolume()
    labelmap = slicer.util.addVolumeFromArray(np.zeros((4, 4, 4), np.uint8), nodeClassName="vtkMRMLLabelMapVolumeNode")
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Segmentation")
    segmentation.CreateDefaultDisplayNodes()
    emptyId = segmentation.GetSegmentation().AddEmptySegment("", "nothing drawn")
    farMatrix = ijkToRas(origin=(900.0, 900.0, 900.0))
    _seg, outsideId = addSegmentOnGrid(scene, np.ones((3, 3, 3), np.uint8), farMatrix, name="far away",
                                       segmentationNode=segmentation)
    return [
        (TaskRequest(Task.DENOISE), "Select an input volume."),
        (TaskRequest(Task.DENOISE, inputVolume=labelmap), "is not a CT volume"),
        (TaskRequest(Task.DENOISE, inputVolume=empty), "has no voxel data"),
        (TaskRequest(Task.DENOISE, inputVolume=volume, outputVolume=volume), "input is never overwritten"),
        (TaskRequest(Task.DENOISE, inputVolume=volume, options=TaskOptions(strength=2)), "strength must be between"),
        (TaskRequest(Task.INPAINT, inputVolume=volume), "Select a segmentation and a segment"),
        (TaskRequest(Task.INPAINT, inputVolume=volume, segmentationNode=segmentation), "Select a segment of 'Segmentation'"),
        (TaskRequest(Task.LESION, inputVolume=volume, segmentationNode=segmentation, segmentId="nope"),
         "Select a segment of"),
        (TaskRequest(Task.INPAINT, inputVolume=volume, segmentationNode=segmentation, segmentId=emptyId),
         "The segment 'nothing drawn' is empty"),
        (TaskRequest(Task.LESION, inputVolume=volume, segmentationNode=segmentation, segmentId=outsideId),
         "The segment 'far away' lies outside the volume 'CT'"),
    ]


def test_bad_selections_give_clear_messages_and_start_nothing(mrmlScene, logic, record):
    cases = _badSelections(mrmlScene.scene)
    before = mrmlScene.nodeIds()
    for request, message in cases:
        with pytest.raises(MedDiffFMModuleError) as error:
            logic.runTask(request)
        assert message in str(error.value), (request.task, str(error.value))
    assert mrmlScene.nodeIds() == before
    assert not record.exists()  # no process was started
    assert tempLeftovers(logic) == []


# ------------------------------------------------------------------------------------------------
# Console API extras


def test_non_blocking_run_reports_progress(mrmlScene, logic):
    volume, _ = addCtVolume()
    logic.extraEnv["FAKE_MEDDIFFFM_STEPS"] = "5"
    updates = []
    job = logic.runTask(TaskRequest(Task.DENOISE, inputVolume=volume), wait=False, onProgress=updates.append)
    job.wait()
    result = logic.finishTask(job)
    assert [u.step for u in updates if u.stage == "sampling"] == [1, 2, 3, 4, 5]
    assert updates[-1].stage == "done" and result.outputVolume.GetName() == "CT denoised"


def test_process_batch_from_folder_and_file_list(mrmlScene, logic, tmp_path, record):
    import SimpleITK as sitk

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("a.nrrd", "b.nii.gz"):
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4, 5), np.int16)), str(inputs / name))
    outputs = logic.processBatch(str(inputs), str(tmp_path / "out1"), "denoise", strength=0.2, device="cpu")
    assert sorted(os.path.basename(p) for p in outputs) == ["a.nrrd", "b.nii.gz"]
    assert all(os.path.exists(p) for p in outputs)
    argv = recordedArgs(record)[-1]
    assert argv[:6] == ["batch", "denoise", "--inputs", str(inputs), "--out", str(tmp_path / "out1")]
    assert argv[argv.index("--strength") + 1] == "0.2"
    outputs = logic.processBatch([str(inputs / "a.nrrd")], str(tmp_path / "out2"), Task.SUPERRES, factorZ=2)
    assert [os.path.basename(p) for p in outputs] == ["a.nrrd"]
    assert tempLeftovers(logic) == []
    with pytest.raises(MedDiffFMModuleError, match="Input not found"):
        logic.processBatch([str(tmp_path / "missing.nrrd")], str(tmp_path / "out3"), "denoise")
    with pytest.raises(MedDiffFMModuleError, match="needs a folder of masks"):
        logic.processBatch(str(inputs), str(tmp_path / "out4"), "inpaint")
    logic.processBatch(str(inputs), str(tmp_path / "out5"), "lesion", masks=str(inputs), region="unknown")
    argv = recordedArgs(record)[-1]
    assert argv[6:8] == ["--masks", str(inputs)] and argv[argv.index("--region") + 1] == "unknown"


def test_models_and_weights(mrmlScene, logic, tmp_path):
    info = logic.listModels()
    assert [m.name for m in info.models][:2] == ["meddifffm-tiny", "meddifffm-paper"]
    assert info.model("meddifffm-paper").sha256Ok is False
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"0")
    assert "Imported weights" in logic.importWeights(str(weights))
    with pytest.raises(MedDiffFMModuleError, match="Weights not found"):
        logic.importWeights(str(tmp_path / "missing"))


def test_default_command_checks_dependencies_first(mrmlScene, tmp_path):
    from MedDiffFMModuleLib.Dependencies import DependencyChecker

    volume, _ = addCtVolume()
    checker = DependencyChecker(packages={"torch": "torch"}, hasModule=lambda name: False,
                                installTorch=lambda: None, pipInstall=lambda reqs: None)
    logic = Logic(dependencyChecker=checker, confirm=lambda text: False, tempRoot=str(tmp_path))
    assert logic.command[1:] == ["-m", "MedDiffFMLib.cli"]
    before = mrmlScene.nodeIds()
    with pytest.raises(MedDiffFMModuleError, match="cannot run without torch"):
        logic.denoise(volume)
    assert mrmlScene.nodeIds() == before


def test_request_from_panel_parameters(mrmlScene):
    volume, _ = addCtVolume()
    segmentation = mrmlScene.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    parameters = types.SimpleNamespace(
        task=Task.ANOMALY, inputVolume=volume, strength=0.5, steps=0, seed=-1, region=Region.CHEST,
        useThreshold=True, threshold=120.0, factorZ=0.0, segmentationNode=segmentation, segmentId="s1",
        outputVolume=None, model="", device=Device.GPU, inputRegion=InputRegion.UNKNOWN)
    request = requestFromParameters(parameters)
    assert request.options.inputRegion is InputRegion.UNKNOWN
    assert request.options.threshold == 120.0 and request.options.device is Device.GPU
    assert request.segmentationNode is None  # not a mask task
    parameters.useThreshold = False
    assert requestFromParameters(parameters).options.threshold is None
    parameters.task = Task.INPAINT
    request = requestFromParameters(parameters)
    assert request.segmentationNode is segmentation and request.segmentId == "s1" and request.options.threshold is None
