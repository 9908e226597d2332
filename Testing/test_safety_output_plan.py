"""One output plan before any work: every refused output path gives exit 2, one paragraph, no
traceback, nothing written and every input byte-identical; batch never takes its own outputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import SimpleITK as sitk

from helpers.models import tiny_models  # noqa: F401  (fixture)
from helpers.safety import assert_refused, digests, listing, run_cli
from helpers.task_tools import box_mask, task_ct
from MedDiffFMLib.errors import InputError
from MedDiffFMLib.io import output_plan
from MedDiffFMLib.io.output_plan import PICTURE, VOLUME, plan_outputs

FAST = ["--steps", "1", "--progress", "none", "--device", "cpu"]


@pytest.fixture()
def case(tmp_path, tiny_models):  # noqa: F811
    """A CT, a mask and a tiny model in one folder (the folder watched for new files)."""
    ct = tmp_path / "ct.nrrd"
    sitk.WriteImage(task_ct(), str(ct))
    mask = sitk.GetImageFromArray(box_mask(task_ct()))
    mask.CopyInformation(task_ct())
    mask_path = tmp_path / "mask.nii.gz"
    sitk.WriteImage(mask, str(mask_path))
    return tmp_path, ct, mask_path, tiny_models.base


def _refusals(folder: Path, ct: Path, mask: Path, model: Path):
    """(argv, words the message must hold) for each refused output plan."""
    out = folder / "out.nii.gz"
    m = ["--model", model]
    return [
        (["denoise", ct, out, "--preview", ct, *m], ["--preview", "input"]),
        (["inpaint", ct, mask, out, "--preview", mask, *m], ["--preview", "input"]),
        (["denoise", ct, out, "--preview", folder / "missing" / "p.png", *m], ["does not exist"]),
        (["denoise", ct, ct, *m], ["is the input"]),
        (["denoise", ct, folder / "out.png", *m], ["unknown extension"]),
        (["denoise", ct, out, "--preview", folder / "p.jpg", *m], [".png"]),
        (["anomaly", ct, out, "--threshold", "50", "--mask-out", out, *m], ["same file"]),
        (["anomaly", ct, out, "--healthy-out", ct, *m], ["--healthy-out", "input"]),
        (["denoise", ct, model / "x.nii.gz", *m], ["inside the input folder"]),
        (["denoise", ct, ct.parent / "ct.nrrd" / "x.nii.gz", *m], ["does not exist"]),
    ]


def test_every_refused_output_plan_writes_nothing(case, capsys):
    folder, ct, mask, model = case
    inputs = [ct, mask, model]
    for argv, words in _refusals(folder, ct, mask, model):
        message = assert_refused([*argv, *FAST], capsys, folder, inputs)
        for word in words:
            assert word in message, (argv, message)


def test_preview_into_a_missing_folder_is_refused_before_the_main_output(case, capsys):
    folder, ct, _, model = case
    out = folder / "out.nii.gz"
    message = assert_refused(["denoise", ct, out, "--preview", folder / "no" / "p.png", "--model", model, *FAST],
                             capsys, folder, [ct, model])
    assert "--preview" in message and not out.exists()


def test_an_unwritable_output_folder_is_refused_up_front(case, capsys, monkeypatch):
    folder, ct, _, model = case
    real_open = os.open

    def refusing_open(path, flags, *args):  # as a read-only disk answers (root included)
        if ".meddifffm-write-test-" in str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(output_plan.os, "open", refusing_open)
    message = assert_refused(["denoise", ct, folder / "o.nii.gz", "--model", model, *FAST], capsys, folder, [ct, model])
    assert "not writable" in message and "Permission denied" in message


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(case, capsys):
    folder, ct, _, model = case
    locked = folder / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert_refused(["denoise", ct, locked / "o.nii.gz", "--model", model, *FAST], capsys, folder, [ct, model])
    finally:
        locked.chmod(0o755)


def test_plan_outputs_cases(tmp_path):
    ct = tmp_path / "a.mhd"
    sitk.WriteImage(task_ct(), str(ct))
    raw = next(p for p in tmp_path.iterdir() if p.suffix == ".raw")
    cases = [
        ([("output", raw.with_suffix(".nii.gz"), VOLUME), ("--preview", raw.with_suffix(".nii.gz"), PICTURE)], "same file"),
        ([("output", tmp_path / "a.mhd", VOLUME)], "is the input"),
        ([("output", tmp_path / "x.nii.gz", VOLUME), ("--preview", raw, PICTURE)], "input"),
        ([("output", tmp_path / "x.nii.gz", VOLUME), ("--preview", tmp_path / "x.nii.gz", PICTURE)], "same file"),
    ]
    before = digests([tmp_path])
    for outputs, words in cases:
        with pytest.raises(InputError, match=words):
            plan_outputs(outputs, [ct])
    assert digests([tmp_path]) == before
    assert [o.label for o in plan_outputs([("output", tmp_path / "ok.nii.gz", VOLUME)], [ct])] == ["output"]


def test_batch_never_takes_its_own_outputs(case, capsys):
    folder, _, _, model = case
    cts = folder / "cts"
    cts.mkdir()
    for k in range(2):
        sitk.WriteImage(task_ct(seed=k), str(cts / f"case{k}.nii.gz"))
    originals = digests([cts])
    argv = ["batch", "denoise", "--inputs", cts, "--out", cts, "--model", model, "--noise-hu", "20", *FAST]
    code, err = run_cli(argv, capsys)
    assert code == 0, err
    first = listing(cts)
    assert first == {"case0.nii.gz", "case1.nii.gz", "case0_denoise.nii.gz", "case1_denoise.nii.gz"}
    code, err = run_cli(argv + ["--overwrite"], capsys)
    assert code == 0, err
    assert listing(cts) == first  # no case0_denoise_denoise
    assert "are outputs of this batch" in err
    assert {k: v for k, v in digests([cts]).items() if "_denoise" not in k} == originals


def test_batch_whose_output_would_be_its_input_is_refused(case, capsys):
    folder, _, mask, model = case
    cts = folder / "cts"
    cts.mkdir()
    sitk.WriteImage(task_ct(), str(cts / "a.nii.gz"))
    message = assert_refused(["batch", "denoise", "--inputs", cts, "--out", cts, "--suffix", "", "--model", model, *FAST],
                             capsys, folder, [cts, model])
    assert "is the input" in message
    masks = folder / "masks"
    masks.mkdir()
    message = assert_refused(["batch", "inpaint", "--inputs", cts, "--masks", masks, "--out", masks, "--model", model,
                              *FAST], capsys, folder, [cts, model])
    assert "input folder" in message
    message = assert_refused(["batch", "denoise", "--inputs", cts / "a.nii.gz", "--out", cts / "a.nii.gz", "--model",
                              model, *FAST], capsys, folder, [cts, model])
    assert "folder" in message
