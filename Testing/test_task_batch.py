"""Batch processing: case discovery, output names, masks, skipping, failures, splitting across ranks."""

from __future__ import annotations

from pathlib import Path

import pytest
import SimpleITK as sitk

from helpers.models import single_torch_thread, tiny_engines, tiny_models  # noqa: F401  (fixtures)
from helpers.phantoms import assert_same_grid
from helpers.task_tools import Recorder, box_mask, task_ct
from MedDiffFMLib.errors import CancelledError, InputError
from MedDiffFMLib.tasks.anomaly import AnomalyOptions
from MedDiffFMLib.tasks.batch import (
    Case,
    distributed_rank,
    find_cases,
    find_mask,
    output_path,
    run_batch,
    cases_for_rank,
)
from MedDiffFMLib.tasks.inpaint import InpaintOptions


def _write_cases(folder: Path, count: int = 3) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"case{i}.nii.gz"
        sitk.WriteImage(task_ct(seed=i), str(path))
        paths.append(path)
    return paths


def test_find_cases_folder_glob_list_and_errors(tmp_path):
    paths = _write_cases(tmp_path / "in")
    (tmp_path / "in" / "notes.txt").write_text("not a volume")
    (tmp_path / "in" / "dicom_case").mkdir()  # a sub-folder is a DICOM series case
    cases = find_cases(tmp_path / "in")
    assert [c.stem for c in cases] == ["case0", "case1", "case2", "dicom_case"]
    assert [c.stem for c in find_cases(str(tmp_path / "in" / "case*.nii.gz"))] == ["case0", "case1", "case2"]
    listing = tmp_path / "list.txt"
    listing.write_text("# my cases\nin/case2.nii.gz\n\nin/case0.nii.gz\n")
    assert [c.path for c in find_cases(listing)] == [paths[2], paths[0]]
    assert [c.stem for c in find_cases([paths[1]])] == ["case1"]
    with pytest.raises(InputError, match="No input volumes"):
        find_cases(str(tmp_path / "nothing*.nii.gz"))
    other = tmp_path / "other"
    _write_cases(other, 1)
    with pytest.raises(InputError, match="same name"):
        find_cases([paths[0], other / "case0.nii.gz"])
    out = tmp_path / "in" / "out"
    out.mkdir()
    assert "out" not in [c.stem for c in find_cases(tmp_path / "in", exclude=[out])]


def test_output_names_masks_and_rank_split(tmp_path):
    assert output_path(tmp_path, "abc", "denoise").name == "abc_denoise.nii.gz"
    assert output_path(tmp_path, "abc", "lesion", suffix="_fake", fmt="nrrd").name == "abc_fake.nrrd"
    assert output_path(tmp_path, "abc", "anomaly", extra="mask").name == "abc_anomaly_mask.nii.gz"
    with pytest.raises(InputError, match="format"):
        output_path(tmp_path, "abc", "denoise", fmt="png")
    masks = tmp_path / "masks"
    masks.mkdir()
    for name in ("a.nii.gz", "b_tumour.nrrd", "c_1.nii.gz", "c_2.nii.gz"):
        (masks / name).write_bytes(b"")
    assert find_mask(masks, "a").name == "a.nii.gz"
    assert find_mask(masks, "b").name == "b_tumour.nrrd"
    with pytest.raises(InputError, match="Several masks"):
        find_mask(masks, "c")
    with pytest.raises(InputError, match="No mask"):
        find_mask(masks, "d")
    cases = [Case(str(i), Path(str(i))) for i in range(7)]
    assert [c.stem for c in cases_for_rank(cases, 1, 3)] == ["1", "4"]
    assert sorted(c.stem for r in range(3) for c in cases_for_rank(cases, r, 3)) == sorted(c.stem for c in cases)


def test_distributed_rank_from_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed_rank() == (0, 1, 0)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed_rank() == (3, 4, 1)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(InputError):
        distributed_rank()


def test_batch_skips_existing_and_survives_corrupt_case(tmp_path, tiny_engines):
    paths = _write_cases(tmp_path / "in", 3)
    (tmp_path / "in" / "broken.nii.gz").write_bytes(b"this is not a NIfTI file")
    out = tmp_path / "out"
    out.mkdir()
    existing = out / "case1_anomaly.nii.gz"
    existing.write_bytes(b"old")
    recorder = Recorder()
    result = run_batch("anomaly", find_cases(tmp_path / "in"), out, tiny_engines["base"],
                       AnomalyOptions(steps=2, region="chest", threshold=30.0), progress=recorder,
                       case_progress=lambda case: recorder)
    assert [c.stem for c in result.skipped] == ["case1"]
    assert existing.read_bytes() == b"old"
    assert [c.stem for c, _ in result.failed] == ["broken"]
    assert "broken" in result.failure_message() and "damaged" in result.failed[0][1]
    for stem, path in (("case0", paths[0]), ("case2", paths[2])):
        written = sitk.ReadImage(str(out / f"{stem}_anomaly.nii.gz"))
        assert_same_grid(written, sitk.ReadImage(str(path)), tol=1e-4)
        assert (out / f"{stem}_anomaly_mask.nii.gz").exists()
        assert not (out / f"{stem}_anomaly_healthy.nii.gz").exists()  # not asked for
    recorder.assert_complete("batch")
    assert any("skipped" in note for note in recorder.notes)
    # Running again redoes nothing; --overwrite redoes the skipped case.
    again = run_batch("anomaly", find_cases(tmp_path / "in"), out, tiny_engines["base"],
                      AnomalyOptions(steps=2, region="chest"))
    assert len(again.skipped) == 3 and len(again.failed) == 1
    redo = run_batch("anomaly", [Case("case1", paths[1])], out, tiny_engines["base"],
                     AnomalyOptions(steps=2, region="chest"), overwrite=True)
    assert redo.written == [out / "case1_anomaly.nii.gz"] and existing.read_bytes() != b"old"


def test_batch_inpaint_with_masks_on_other_grid(tmp_path, tiny_engines):
    paths = _write_cases(tmp_path / "in", 2)
    masks = tmp_path / "masks"
    masks.mkdir()
    image = sitk.ReadImage(str(paths[0]))
    mask = sitk.GetImageFromArray(box_mask(image))
    mask.CopyInformation(image)
    sitk.WriteImage(mask, str(masks / "case0_lesion.nii.gz"))
    coarse = sitk.Resample(mask, [10, 12, 6], sitk.Transform(), sitk.sitkNearestNeighbor, image.GetOrigin(),
                           [s * 2 for s in image.GetSpacing()], image.GetDirection(), 0, sitk.sitkUInt8)
    sitk.WriteImage(coarse, str(masks / "case1.nrrd"))
    out = tmp_path / "out"
    out.mkdir()
    notes = []

    class Notes(Recorder):
        def note(self, message):
            notes.append(message)

    result = run_batch("inpaint", find_cases(tmp_path / "in"), out, tiny_engines["base"],
                       InpaintOptions(steps=2, region="chest"), masks=masks, case_progress=lambda c: Notes())
    assert not result.failed and len(result.written) == 2
    assert any("resampled" in n for n in notes)
    for i, path in enumerate(paths):
        before = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        after = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"case{i}_inpaint.nii.gz")))
        assert after.dtype == before.dtype
    with pytest.raises(InputError, match="--masks"):
        run_batch("inpaint", find_cases(tmp_path / "in"), out, tiny_engines["base"])


def test_batch_missing_mask_is_a_case_failure_and_cancel_stops(tmp_path, tiny_engines):
    _write_cases(tmp_path / "in", 2)
    (tmp_path / "masks").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    result = run_batch("lesion", find_cases(tmp_path / "in"), out, tiny_engines["lesion"], masks=tmp_path / "masks")
    assert len(result.failed) == 2 and "No mask" in result.failed[0][1]
    recorder = Recorder(cancel_at=("reconstruction", 1))
    with pytest.raises(CancelledError):
        run_batch("anomaly", find_cases(tmp_path / "in"), out, tiny_engines["base"], AnomalyOptions(steps=3),
                  case_progress=lambda case: recorder, cancel=recorder.cancel)
    assert not list(out.iterdir())
    with pytest.raises(InputError, match="Unknown task"):
        run_batch("segment", [], out, tiny_engines["base"])
