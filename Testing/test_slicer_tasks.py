"""Slicer module pieces that need neither Slicer nor Qt: the task table (which options each task
shows), command-line arguments, progress parsing, model info, time estimate, dependency check."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from slicer_helpers import paths  # noqa: E402,F401  (sys.path for MedDiffFMModuleLib)

from MedDiffFMModuleLib import Tasks  # noqa: E402
from MedDiffFMModuleLib.Dependencies import DependencyChecker, DependencyError  # noqa: E402
from MedDiffFMModuleLib.Models import ModelInfo, estimateSeconds, formatDuration, parseInfoOutput  # noqa: E402
from MedDiffFMModuleLib.Progress import ProgressParser, parseProgressLine  # noqa: E402
from MedDiffFMModuleLib.Tasks import Device, InputRegion, Region, Task, TaskOptions, TaskPaths  # noqa: E402

EXPECTED_VISIBLE = {
    Task.DENOISE: {"strength", "inputRegion", "steps", "seed"},
    Task.ANOMALY: {"inputRegion", "steps", "seed", "threshold"},
    Task.SYNTHESIZE: {"region", "steps", "seed"},
    Task.SUPERRES: {"factorZ", "inputRegion", "steps", "seed"},
    Task.INPAINT: {"mask", "inputRegion", "steps", "seed"},
    Task.LESION: {"mask", "inputRegion", "steps", "seed"},
}


@pytest.mark.parametrize("task", list(Task))
def test_only_the_tasks_options_are_visible(task):
    visible = {option for option, shown in Tasks.visibleOptions(task).items() if shown}
    assert visible == EXPECTED_VISIBLE[task]
    assert set(Tasks.visibleOptions(task)) == set(Tasks.ALL_OPTIONS)


def test_anatomy_input_only_for_a_model_with_anatomy_channels(parse):
    """The anatomy label map row is shown for synthesis only when the chosen model was trained with
    anatomy channels (``info --json``: config ``anatomy_channels``), and its file is sent as
    ``--anatomy`` (which also sets the grid, so no ``--like`` beside it)."""
    assert not Tasks.visibleOptions(Task.SYNTHESIZE)[Tasks.ANATOMY]
    assert not Tasks.visibleOptions(Task.SYNTHESIZE, anatomyChannels=0)[Tasks.ANATOMY]
    assert Tasks.visibleOptions(Task.SYNTHESIZE, anatomyChannels=4)[Tasks.ANATOMY]
    assert not any(Tasks.visibleOptions(task, anatomyChannels=4)[Tasks.ANATOMY] for task in Task
                   if task is not Task.SYNTHESIZE)
    withAnatomy = TaskPaths(output="o.nrrd", reference="r.nrrd", anatomy="labels.nrrd")
    args = Tasks.buildTaskArguments(Task.SYNTHESIZE, withAnatomy, TaskOptions(), platform="linux")
    assert "--anatomy" in args and "--like" not in args
    assert str(parse(args).anatomy) == "labels.nrrd"
    shipped = ModelInfo.fromJson({"name": "meddifffm-default", "kind": "unet", "sha256_ok": True,
                                  "config": {"anatomy_channels": 0, "regions": ["chest"]}})
    conditioned = ModelInfo.fromJson({"name": "m", "kind": "unet", "config": {"anatomy_channels": 4}})
    assert shipped.anatomyChannels == 0 and "body region only" in shipped.summaryText()
    assert conditioned.anatomyChannels == 4 and "anatomy label map (labels 1-4)" in conditioned.summaryText()


def test_task_labels_and_cli_names():
    assert [t.label() for t in Task] == [
        "Denoise", "Anomaly map", "Synthesize", "Super-resolve", "Inpaint", "Generate lesion"]
    assert [t.value for t in Task] == ["denoise", "anomaly", "synthesize", "superres", "inpaint", "lesion"]
    assert [r.value for r in Region] == ["chest", "abdomen", "head_neck"]


@pytest.mark.parametrize("task, name", [
    (Task.DENOISE, "CT denoised"), (Task.ANOMALY, "CT anomaly map"), (Task.SYNTHESIZE, "CT synthesized"),
    (Task.SUPERRES, "CT super-resolved"), (Task.INPAINT, "CT with generated tissue"), (Task.LESION, "CT with generated lesion")])
def test_output_names(task, name):
    assert Tasks.outputName(task, "CT") == name


def test_synthesis_without_reference_is_synthetic_ct():
    assert Tasks.outputName(Task.SYNTHESIZE, None) == "synthetic CT"


def test_device_values():
    assert Device.AUTO.cliValue("linux") == "auto"
    assert Device.CPU.cliValue("linux") == "cpu"
    assert Device.GPU.cliValue("linux") == "cuda"
    assert Device.GPU.cliValue("darwin") == "mps"


@pytest.fixture(scope="module")
def parse():
    """The library's real ``meddifffm`` parser (global options hoisted as ``main`` does)."""
    from MedDiffFMLib.cli import _hoist_global_options, build_parser

    parser = build_parser()
    return lambda argv: parser.parse_args(_hoist_global_options(list(argv)))


EVERY_OPTION = TaskOptions(strength=0.3, steps=20, seed=7, region=Region.HEAD_NECK, inputRegion=InputRegion.UNKNOWN,
                           threshold=150.0, factorZ=3, model="tiny", device=Device.GPU)
EVERY_PATH = TaskPaths(input="i.nrrd", output="o.nrrd", mask="m.nrrd", reference="r.nrrd", anomalyMask="a.nrrd",
                       healthy="h.nrrd")


def _check_task_options(args, task):
    shown = Tasks.taskSpec(task).options
    assert args.steps == 20 and args.seed == 7 and args.model == "tiny" and args.device == "cuda"
    assert args.progress == "json"
    if Tasks.STRENGTH in shown:
        assert args.strength == 0.3
    if Tasks.REGION in shown:
        assert args.region == "head_neck"
    if Tasks.INPUT_REGION in shown:
        assert args.region == "unknown"
    assert not (Tasks.REGION in shown and Tasks.INPUT_REGION in shown)  # one --region per task
    if Tasks.FACTOR_Z in shown:
        assert args.factor_z == 3
    if Tasks.THRESHOLD in shown:
        assert args.threshold == 150.0


@pytest.mark.parametrize("task", list(Task))
def test_every_task_command_is_accepted_by_the_real_parser(task, parse):
    args = parse(Tasks.buildTaskArguments(task, EVERY_PATH, EVERY_OPTION, platform="linux"))
    assert args.command == task.value
    for name in Tasks.taskSpec(task).paths:
        assert str(getattr(args, name)) == getattr(EVERY_PATH, name)
    _check_task_options(args, task)
    if task is Task.ANOMALY:
        assert str(args.mask_out) == "a.nrrd" and str(args.healthy_out) == "h.nrrd"
    if task is Task.SYNTHESIZE:
        assert str(args.like) == "r.nrrd"


@pytest.mark.parametrize("task", list(Task))
def test_every_batch_command_is_accepted_by_the_real_parser(task, parse):
    argv = Tasks.buildBatchArguments(task, "in", "out", EVERY_OPTION, platform="linux", masksDir="m")
    args = parse(argv)
    assert args.command == "batch" and args.batch_task == task.value
    assert args.inputs == "in" and str(args.out) == "out"
    assert (str(args.masks) == "m") if Tasks.needsMask(task) else "--masks" not in argv
    _check_task_options(args, task)


def test_options_left_to_the_library_take_its_defaults(parse):
    from MedDiffFMLib.tasks.registry import TASKS

    # steps 0 = the task's default, seed -1 = random, factorZ 0 = automatic, empty model = default
    argv = Tasks.buildTaskArguments(Task.SUPERRES, TaskPaths(input="i", output="o"),
                                    TaskOptions(steps=0, seed=-1, factorZ=0.0, model=""), platform="linux")
    assert not {"--steps", "--seed", "--factor-z", "--model"} & set(argv)
    args = parse(argv)
    assert args.steps == TASKS["superres"].default_steps and args.factor_z is None and args.model is None
    for task in (Task.DENOISE, Task.ANOMALY):
        args = parse(Tasks.buildTaskArguments(task, TaskPaths(input="i", output="o"), TaskOptions(), platform="linux"))
        defaults = TASKS[task.value].defaults
        assert args.steps == defaults["steps"]
        assert getattr(args, "strength", defaults.get("strength")) == defaults.get("strength")
        assert getattr(args, "threshold", None) is None and getattr(args, "mask_out", None) is None


@pytest.mark.parametrize("task", [t for t in Task if t is not Task.SYNTHESIZE])
def test_input_region_automatic_leaves_the_guess_to_the_library(task, parse):
    from MedDiffFMLib.tasks.registry import TASKS

    paths = TaskPaths(input="i", output="o", mask="m")
    argv = Tasks.buildTaskArguments(task, paths, TaskOptions(), platform="linux")
    assert "--region" not in argv and parse(argv).region == TASKS[task.value].defaults["region"]
    for region in InputRegion:
        argv = Tasks.buildTaskArguments(task, paths, TaskOptions(inputRegion=region), platform="linux")
        expected = None if region is InputRegion.AUTO else region.value
        assert parse(argv).region == (expected or TASKS[task.value].defaults["region"])
    # the library takes every region the panel offers, and the panel offers every one it takes
    choices = next(a.choices for a in TASKS[task.value].arguments if a.flag == "--region")
    assert {r.value for r in InputRegion} - {"auto"} == set(choices)


def test_input_region_labels():
    assert [r.label() for r in InputRegion] == [
        "Automatic (guessed from the image)", "Chest", "Abdomen", "Head and neck",
        "None (limbs, or a crop the guess misreads)"]


def test_console_options_route_region_and_device():
    assert Tasks.consoleOptions(Task.SYNTHESIZE, region="Head-Neck").region is Region.HEAD_NECK
    options = Tasks.consoleOptions(Task.DENOISE, region="unknown", device="cuda:1", steps=None)
    assert options.inputRegion is InputRegion.UNKNOWN and options.region is Region.CHEST  # synthesis' untouched
    assert options.device is Device.GPU and options.steps is None
    assert Tasks.consoleOptions(Task.ANOMALY, device="mps").device is Device.GPU
    assert Tasks.consoleOptions(Task.ANOMALY, device="").device is Device.AUTO
    assert Tasks.consoleOptions(Task.LESION).inputRegion is InputRegion.AUTO
    with pytest.raises(ValueError, match="Unknown device 'tpu'. Choose one of: auto, gpu"):
        Tasks.consoleOptions(Task.DENOISE, device="tpu")
    with pytest.raises(ValueError, match="Unknown body region 'leg'. Choose one of: auto, chest"):
        Tasks.consoleOptions(Task.SUPERRES, region="leg")


def test_missing_paths_and_masks_are_refused():
    with pytest.raises(ValueError):
        Tasks.buildTaskArguments(Task.INPAINT, TaskPaths(input="i", output="o"), TaskOptions())
    with pytest.raises(ValueError, match="masks"):
        Tasks.buildBatchArguments(Task.INPAINT, "in", "out", TaskOptions())


def test_option_validation_messages():
    with pytest.raises(ValueError, match="strength must be between 0 and 1"):
        TaskOptions(strength=1.5).validate(Task.DENOISE)
    with pytest.raises(ValueError, match="z factor must be a whole number of at least 2"):
        TaskOptions(factorZ=1).validate(Task.SUPERRES)
    with pytest.raises(ValueError, match="z factor must be a whole number"):
        TaskOptions(factorZ=2.5).validate(Task.SUPERRES)
    TaskOptions(factorZ=0).validate(Task.SUPERRES)  # automatic
    TaskOptions(factorZ=4.0).validate(Task.SUPERRES)
    TaskOptions(strength=1.5).validate(Task.INPAINT)  # strength is not an option of inpainting


def test_progress_lines():
    assert parseProgressLine('{"stage": "sampling", "step": 3, "total": 20}').percent == 15
    assert parseProgressLine("Loading weights...") is None
    assert parseProgressLine('{"not": "progress"}') is None
    assert parseProgressLine("{broken json") is None
    update = parseProgressLine('{"stage": "sampling", "step": 3, "total": 20}')
    assert update.text() == "Sampling: step 3 of 20"


def test_progress_parser_keeps_noise_for_the_log_and_reads_outputs():
    parser = ProgressParser()
    assert parser.feed("some library print") is None
    assert parser.feed('{"stage": "sampling", "step": 1, "total": 2}', "stderr") is None  # only stdout is protocol
    assert parser.feed('{"stage": "sampling", "step": 2, "total": 2}').step == 2
    done = parser.feed('{"stage": "done", "step": 1, "total": 1, "outputs": ["/o/a.nrrd", "/o/b.nrrd"]}')
    assert done.percent == 100 and parser.done and parser.outputs == ["/o/a.nrrd", "/o/b.nrrd"]
    assert "some library print" in parser.logLines
    assert any("[stderr]" in line for line in parser.logLines)


def test_failure_message_prefers_the_librarys_message():
    parser = ProgressParser()
    parser.feed("Traceback (most recent call last):", "stderr")
    parser.feed('{"stage": "error", "message": "The input is not a CT volume."}')
    assert parser.failureMessage(2) == "The input is not a CT volume."
    crash = ProgressParser()
    for line in ["Traceback (most recent call last):", '  File "x.py", line 1', "    boom()", "RuntimeError: boom"]:
        crash.feed(line, "stderr")
    assert crash.failureMessage(1) == "RuntimeError: boom"
    assert "exit code 9" in ProgressParser().failureMessage(9)


def test_info_parsing_and_model_card():
    stdout = "loading...\n" + json.dumps({
        "version": "0.1.0", "torch": "2.13.0", "devices": ["cpu", "cuda:0"],
        "models": [{"name": "paper", "path": "/m/paper", "kind": "unet", "sha256_ok": True,
                    "card_summary": "Trained on 3D CT.", "config": {"default_steps": 100}},
                   {"name": "broken", "path": "/m/broken", "kind": "unet", "sha256_ok": False}]})
    info = parseInfoOutput(stdout)
    assert info.hasGpu and [m.name for m in info.models] == ["paper", "broken"]
    assert "checksum verified" in info.model("paper").summaryText()
    assert "Trained on 3D CT." in info.model("paper").summaryText()
    assert "MISMATCH" in info.model("/m/broken").summaryText()
    assert info.model(None).name == "paper" and info.model("nope") is None
    with pytest.raises(ValueError):
        parseInfoOutput("no json here")
    pretty = "warning: something\n" + json.dumps({"version": "1", "devices": ["cpu"], "models": []}, indent=2) + "\n"
    assert parseInfoOutput(pretty).models == [] and not parseInfoOutput(pretty).hasGpu


def test_time_estimate_counts_the_network_evaluations_of_the_model():
    starter = ModelInfo(name="starter", config={"channels": [16, 32, 64], "patch_size": [32, 32, 32],
                                               "spacing_mm": [3.0, 3.0, 3.0]},
                        taskSteps={"denoise": 5, "synthesize": 50})
    default = ModelInfo(name="default", config={"channels": [32, 64, 128], "patch_size": [64, 64, 64],
                                               "spacing_mm": [2.0, 2.0, 2.0]})
    dims, spacing = (256, 256, 128), (1.0, 1.0, 1.0)
    small = estimateSeconds(dims, spacing, 5, "cpu", starter)
    # The benchmark measured 2.8 s per step for this case with this model on the 2-core CPU, with MONAI's
    # 32 windows per step; the library's fitted tiling places 18 (about 1.6 s).
    assert 5 * 0.8 < small < 5 * 6
    assert estimateSeconds((512, 512, 256), spacing, 5, "cpu", starter) > 4 * (small - 2)
    assert estimateSeconds(dims, spacing, 10, "cpu", starter) > small
    assert estimateSeconds(dims, spacing, 5, "cuda", starter) < small
    assert estimateSeconds(dims, spacing, 5, "cpu", default) > 5 * small
    # No steps given: the task's default (the library's export fills taskSteps).
    assert estimateSeconds(dims, spacing, None, "cpu", starter, task="denoise") == small
    assert estimateSeconds(dims, spacing, None, "cpu", starter, task="synthesize") > 9 * (small - 2)
    # Synthesis without a reference volume samples one patch.
    assert estimateSeconds(None, None, 50, "cpu", starter) < estimateSeconds(dims, spacing, 50, "cpu", starter)
    assert formatDuration(30) == "about 30 s" and formatDuration(600) == "about 10 min"
    # On a CPU with native bf16 (the library's --precision auto) the network runs faster.
    bf16 = estimateSeconds(dims, spacing, 5, "cpu", starter, cpuPrecision="bfloat16")
    assert 2 < bf16 < small
    assert estimateSeconds(dims, spacing, 5, "cuda", starter, cpuPrecision="bfloat16") == \
        estimateSeconds(dims, spacing, 5, "cuda", starter)


def test_time_estimate_places_the_patches_as_the_library_does():
    """The panel's estimate tiles with the overlap ``info --json`` exports and counts the windows as the
    library does (its tiling imports torch, which the Slicer process does not load)."""
    import json

    from MedDiffFMLib.cli.info import collect
    from MedDiffFMLib.sampling.tiling import DEFAULT_OVERLAP, axis_windows
    from MedDiffFMModuleLib import Models

    info = parseInfoOutput(json.dumps(collect()))
    assert info.overlap == DEFAULT_OVERLAP
    assert parseInfoOutput(json.dumps({"models": []})).overlap == Models.OLD_LIBRARY_OVERLAP  # an older library
    for patch in (32, 80):
        for size in range(1, 6 * patch):
            assert Models._patchesPerAxis(size, patch, info.overlap) == axis_windows(size, patch, DEFAULT_OVERLAP)[0]


def test_library_info_says_what_the_cpu_computes_in():
    import json

    payload = {"models": [], "devices": ["cpu"], "cpu_precision": "bfloat16"}
    assert parseInfoOutput(json.dumps(payload)).cpuPrecision == "bfloat16"
    payload.pop("cpu_precision")  # an older library: fp32
    assert parseInfoOutput(json.dumps(payload)).cpuPrecision == "float32"


def test_dependencies_present_means_no_question():
    asked = []
    checker = DependencyChecker(hasModule=lambda name: True, installTorch=lambda: asked.append("torch"),
                                pipInstall=lambda reqs: asked.append(reqs))
    assert checker.ensure(confirm=lambda text: asked.append(text) or True)
    assert asked == []


def test_dependencies_are_installed_only_after_consent_torch_first():
    installed = set()
    calls = []
    checker = DependencyChecker(
        packages={"torch": "torch", "monai": "monai>=1.5"},
        hasModule=lambda name: name in installed,
        installTorch=lambda: (calls.append("torch"), installed.add("torch")),
        pipInstall=lambda reqs: (calls.append(tuple(reqs)), installed.update({"monai"})))
    questions = []
    assert checker.ensure(confirm=lambda text: questions.append(text) or True)
    assert len(questions) == 1 and "torch, monai" in questions[0]
    assert calls == ["torch", ("monai>=1.5",)]


def test_declined_installation_raises_a_clear_error_and_installs_nothing():
    calls = []
    checker = DependencyChecker(packages={"torch": "torch", "monai": "monai"}, hasModule=lambda name: False,
                                installTorch=lambda: calls.append("torch"), pipInstall=calls.append)
    with pytest.raises(DependencyError, match="cannot run without torch, monai"):
        checker.ensure(confirm=lambda text: False)
    assert calls == []


def test_failed_installation_is_reported():
    def broken():
        raise RuntimeError("no network")

    checker = DependencyChecker(packages={"torch": "torch"}, hasModule=lambda name: False,
                                installTorch=broken, pipInstall=lambda reqs: None)
    with pytest.raises(DependencyError, match="no network"):
        checker.ensure(confirm=lambda text: True)


def test_time_estimate_uses_the_library_default_steps_from_its_export():
    from MedDiffFMLib.tasks.registry import TASKS, export_tasks

    starter = {"channels": [16, 32, 64], "patch_size": [32, 32, 32], "spacing_mm": [3.0, 3.0, 3.0]}
    info = parseInfoOutput(json.dumps({"version": "x", "devices": ["cpu"], "tasks": export_tasks(),
                                       "models": [{"name": "starter", "config": starter}]}))
    model = info.model("starter")
    dims, spacing = (128, 128, 64), (1.0, 1.0, 1.0)
    for task, entry in TASKS.items():
        assert info.defaultSteps(task) == entry.default_steps
        assert estimateSeconds(dims, spacing, None, "cpu", model, task) == \
            estimateSeconds(dims, spacing, entry.default_steps, "cpu", model, task)
    assert info.tasks["inpaint"]["needs_mask"] and info.tasks["superres"]["role"] == "superres"


def test_the_shipped_task_export_is_the_librarys():
    """Until ``info --json`` has run, the module reads the library's task export shipped beside it
    (Resources/library-tasks.json); it must be the library's own, and every labelled task in it.
    Regenerate it with ``python -m tools.export_tasks``."""
    from MedDiffFMLib.tasks.registry import export_tasks

    shipped = Tasks.shippedTasks()
    assert shipped == json.loads(json.dumps(export_tasks()))
    assert set(Tasks.TASK_LABELS) <= set(shipped)
