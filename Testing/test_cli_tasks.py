"""The task subcommands end to end: outputs and geometry, JSON progress, notes, cancel, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.models import single_torch_thread, tiny_anatomy_model, tiny_models  # noqa: F401  (fixtures)
from helpers.phantoms import assert_same_grid
from helpers.task_tools import box_mask, task_ct, write_ct_and_mask
from MedDiffFMLib.cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def files(tmp_path):
    return write_ct_and_mask(tmp_path, "mask.nii.gz")


def _json_lines(text: str) -> list:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _run(capsys, *argv):
    code = main(["--progress", "json", *[str(a) for a in argv]])
    captured = capsys.readouterr()
    return code, _json_lines(captured.out), captured.err


def _assert_done(lines, outputs):
    assert lines[-1]["stage"] == "done"
    assert [Path(p).name for p in lines[-1]["outputs"]] == [Path(p).name for p in outputs]
    sampling = [l for l in lines if l["stage"] not in ("preprocessing", "postprocessing", "done", "note")]
    assert sampling and sampling[-1]["step"] == sampling[-1]["total"]


def test_anomaly_cli(files, tiny_models, capsys):
    tmp, ct, _ = files
    out, mask_out, healthy = tmp / "map.nii.gz", tmp / "map_mask.nrrd", tmp / "healthy.mha"
    code, lines, err = _run(capsys, "anomaly", ct, out, "--mask-out", mask_out, "--threshold", 20, "--healthy-out",
                            healthy, "--samples", 2, "--body-only", "--steps", 2, "--region", "chest", "--model",
                            tiny_models.base, "--device", "cpu", "--preview", tmp / "p.png")
    assert code == 0, err
    _assert_done(lines, [out, mask_out, healthy, tmp / "p.png"])
    for path in (out, mask_out, healthy):
        assert_same_grid(sitk.ReadImage(str(path)), sitk.ReadImage(str(ct)), tol=1e-4)
    assert sitk.ReadImage(str(out)).GetPixelID() == sitk.sitkFloat32
    assert "HU" in subprocess_free_help("anomaly")


def subprocess_free_help(command: str) -> str:
    from MedDiffFMLib.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices[command].format_help()


def test_synthesize_cli(files, tiny_models, capsys):
    tmp, ct, _ = files
    out = tmp / "synthetic.nii.gz"
    code, lines, err = _run(capsys, "synthesize", out, "--region", "abdomen", "--like", ct, "--steps", 2,
                            "--model", tiny_models.base, "--device", "cpu")
    assert code == 0, err
    _assert_done(lines, [out])
    result = sitk.ReadImage(str(out))
    assert_same_grid(result, sitk.ReadImage(str(ct)), tol=1e-4)
    assert result.GetPixelID() == sitk.sitkInt16
    code, lines, err = _run(capsys, "synthesize", tmp / "s2.nrrd", "--region", "chest", "--size", 8, 9, 10,
                            "--spacing", 3, "--steps", 1, "--model", tiny_models.base, "--device", "cpu")
    assert code == 0, err
    assert sitk.ReadImage(str(tmp / "s2.nrrd")).GetSize() == (8, 9, 10)


def test_synthesize_anatomy_needs_anatomy_channels(files, tiny_models, tiny_anatomy_model, capsys):
    """--anatomy with a model trained without anatomy channels exits 2 naming the model and what it
    lacks, before any input is read (an unreadable label map is not even opened) and with nothing
    written; batch synthesis (whose inputs are label maps) is refused the same way before any case.
    A model with anatomy channels takes the same label map."""
    tmp, ct, mask = files
    unreadable = tmp / "labels.nii.gz"
    unreadable.write_bytes(b"not a NIfTI file")
    out = tmp / "s.nii.gz"
    code, lines, err = _run(capsys, "synthesize", out, "--region", "chest", "--anatomy", unreadable,
                            "--model", tiny_models.base, "--device", "cpu")
    assert code == 2 and "Traceback" not in err
    message = lines[-1]["message"]
    assert lines[-1]["stage"] == "error" and "takes no anatomy label map" in message
    assert f"Model '{Path(tiny_models.base).name}'" in message
    assert "anatomy channels" in message and not out.exists()
    (tmp / "in").mkdir()
    sitk.WriteImage(sitk.ReadImage(str(mask)), str(tmp / "in" / "case0.nii.gz"))
    code, lines, err = _run(capsys, "batch", "synthesize", "--inputs", tmp / "in", "--out", tmp / "out",
                            "--region", "chest", "--model", tiny_models.base, "--device", "cpu")
    assert code == 2 and "takes no anatomy label map" in lines[-1]["message"] and "Batch synthesis" in lines[-1]["message"]
    assert not (tmp / "out").exists()
    code, lines, err = _run(capsys, "synthesize", out, "--region", "chest", "--anatomy", mask, "--steps", 1,
                            "--model", tiny_anatomy_model, "--device", "cpu")
    assert code == 0, err
    assert_same_grid(sitk.ReadImage(str(out)), sitk.ReadImage(str(mask)), tol=1e-4)
    assert "anatomy channels" in " ".join(subprocess_free_help("synthesize").split())


def test_superres_cli(files, tiny_models, capsys):
    tmp, ct, _ = files
    out = tmp / "thin.nii.gz"
    code, lines, err = _run(capsys, "superres", ct, out, "--factor-z", 2, "--steps", 2, "--region", "chest",
                            "--model", tiny_models.superres, "--device", "cpu")
    assert code == 0, err
    _assert_done(lines, [out])
    thick, thin = sitk.ReadImage(str(ct)), sitk.ReadImage(str(out))
    assert thin.GetSize() == (20, 24, 24)
    assert thin.GetSpacing()[:2] == thick.GetSpacing()[:2]
    np.testing.assert_allclose(thin.GetSpacing()[2], thick.GetSpacing()[2] / 2)
    means = sitk.GetArrayFromImage(thin).astype(np.float64).reshape(12, 2, 24, 20).mean(axis=1)
    np.testing.assert_allclose(means, sitk.GetArrayFromImage(thick), atol=1e-2)
    code, lines, err = _run(capsys, "superres", ct, tmp / "x.nii.gz", "--steps", 1, "--model", tiny_models.base,
                            "--device", "cpu")
    assert code == 2 and "superres" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["inpaint", "lesion"])
def test_masked_cli_keeps_outside(files, tiny_models, capsys, command):
    tmp, ct, mask = files
    out = tmp / f"{command}.nii.gz"
    model = tiny_models.base if command == "inpaint" else tiny_models.lesion
    code, lines, err = _run(capsys, command, ct, mask, out, "--steps", 2, "--resample", 2, "--region", "chest",
                            "--model", model, "--device", "cpu")
    assert code == 0, err
    _assert_done(lines, [out])
    before, after = sitk.ReadImage(str(ct)), sitk.ReadImage(str(out))
    assert_same_grid(after, before, tol=1e-4)
    inside = box_mask(before) > 0
    a, b = sitk.GetArrayFromImage(after), sitk.GetArrayFromImage(before)
    assert a.dtype == b.dtype and np.array_equal(a[~inside], b[~inside])


def test_mask_on_another_grid_gives_a_note(files, tiny_models, capsys):
    tmp, ct, mask = files
    coarse = sitk.Resample(sitk.ReadImage(str(mask)), [10, 12, 6], sitk.Transform(), sitk.sitkNearestNeighbor,
                           sitk.ReadImage(str(ct)).GetOrigin(), [1.6, 1.4, 5.0],
                           sitk.ReadImage(str(ct)).GetDirection(), 0, sitk.sitkUInt8)
    sitk.WriteImage(coarse, str(tmp / "coarse.nrrd"))
    code, lines, err = _run(capsys, "inpaint", ct, tmp / "coarse.nrrd", tmp / "o.nii.gz", "--steps", 1,
                            "--region", "chest", "--model", tiny_models.base, "--device", "cpu")
    assert code == 0, err
    notes = [l for l in lines if l["stage"] == "note"]
    assert notes and "resampled" in notes[0]["message"]


def test_bad_inputs_exit_2_with_a_message(files, tiny_models, capsys):
    tmp, ct, mask = files
    base = ["--steps", "1", "--model", str(tiny_models.base), "--device", "cpu"]
    empty = sitk.ReadImage(str(mask)) * 0
    sitk.WriteImage(empty, str(tmp / "empty.nii.gz"))
    far = sitk.ReadImage(str(mask))
    far.SetOrigin((9000.0, 0.0, 0.0))
    sitk.WriteImage(far, str(tmp / "far.nii.gz"))
    cases = [
        (["inpaint", ct, tmp / "empty.nii.gz", tmp / "o.nii.gz"], "empty"),
        (["inpaint", ct, tmp / "far.nii.gz", tmp / "o.nii.gz"], "does not overlap"),
        (["inpaint", ct, mask, ct], "input"),
        (["anomaly", ct, tmp / "missing" / "map.nii.gz"], "does not exist"),
        (["anomaly", ct, tmp / "map.nii.gz", "--mask-out", tmp / "m.nii.gz"], "--threshold"),
        (["anomaly", tmp / "nope.nii.gz", tmp / "map.nii.gz"], "does not exist"),
        (["synthesize", tmp / "s.nii.gz", "--region", "chest", "--like", ct, "--size", "4", "4", "4"], "--size"),
        (["superres", ct, tmp / "t.nii.gz", "--spacing", "1.0", "--model", tiny_models.superres], "multiple"),
    ]
    for argv, expected in cases:
        code, lines, err = _run(capsys, argv[0], *base, *argv[1:])  # argparse keeps the last --model
        assert code == 2, (argv, err)
        assert err.startswith("meddifffm: error:") and "Traceback" not in err, (argv, err)
        assert lines[-1]["stage"] == "error" and expected in lines[-1]["message"], (argv, lines[-1])
        assert not (tmp / "o.nii.gz").exists()
    # An unknown region name is refused by the argument parser (exit 2, names the choices).
    with pytest.raises(SystemExit) as exit_info:
        main(["synthesize", str(tmp / "s.nii.gz"), "--region", "lung"])
    assert exit_info.value.code == 2
    assert "chest" in capsys.readouterr().err


def _cancelling_flag(after_calls: int):
    class Flag:
        def __init__(self):
            self.calls = 0

        def __call__(self):
            self.calls += 1
            return self.calls > after_calls

    return Flag


@pytest.mark.parametrize("command", ["anomaly", "synthesize", "superres", "inpaint", "lesion"])
def test_cancel_writes_nothing(files, tiny_models, capsys, monkeypatch, command):
    import MedDiffFMLib.cli.common as common

    monkeypatch.setattr(common, "CancelFlag", _cancelling_flag(3))
    tmp, ct, mask = files
    out = tmp / "out.nii.gz"
    argv = {
        "anomaly": ["anomaly", ct, out, "--healthy-out", tmp / "h.nii.gz", "--model", tiny_models.base],
        "synthesize": ["synthesize", out, "--region", "chest", "--model", tiny_models.base],
        "superres": ["superres", ct, out, "--model", tiny_models.superres],
        "inpaint": ["inpaint", ct, mask, out, "--model", tiny_models.base],
        "lesion": ["lesion", ct, mask, out, "--model", tiny_models.lesion],
    }[command]
    code, lines, err = _run(capsys, *argv, "--steps", 5, "--region" if command != "synthesize" else "--seed",
                            "chest" if command != "synthesize" else "0", "--device", "cpu")
    assert code == 130, err
    assert lines[-1]["stage"] == "error" and "Cancelled" in lines[-1]["message"]
    steps = [l["step"] for l in lines if l["stage"] not in ("preprocessing", "postprocessing", "error")]
    assert max(steps) <= 2
    assert sorted(p.name for p in tmp.iterdir()) == sorted(["ct.nii.gz", "mask.nii.gz"])


def test_batch_cli_skip_corrupt_and_case_field(files, tiny_models, capsys):
    tmp, ct, mask = files
    inputs = tmp / "in"
    inputs.mkdir()
    for name in ("a", "b", "c"):
        sitk.WriteImage(task_ct(seed=ord(name)), str(inputs / f"{name}.nii.gz"))
    (inputs / "broken.nrrd").write_text("NRRD0004\nnot really\n")
    out = tmp / "out"
    out.mkdir()
    (out / "b_denoise.nii.gz").write_bytes(b"keep")
    code, lines, err = _run(capsys, "batch", "denoise", "--inputs", inputs, "--out", out, "--steps", 2,
                            "--region", "chest", "--noise-hu", 20, "--model", tiny_models.base, "--device", "cpu")
    assert code == 2
    assert "broken" in err and "1 of 4 cases failed" in err and "Traceback" not in err
    assert (out / "a_denoise.nii.gz").exists() and (out / "c_denoise.nii.gz").exists()
    assert (out / "b_denoise.nii.gz").read_bytes() == b"keep"
    assert_same_grid(sitk.ReadImage(str(out / "a_denoise.nii.gz")), sitk.ReadImage(str(inputs / "a.nii.gz")), 1e-4)
    case_lines = [l for l in lines if "case" in l]
    assert {l["case"] for l in case_lines} >= {"a", "b", "c", "broken"}
    overall = [l for l in lines if l["stage"] == "batch"]
    assert overall[-1] == {"stage": "batch", "step": 4, "total": 4}
    assert lines[-1]["stage"] == "error"


def test_batch_cli_lesion_with_masks_and_shard(files, tiny_models, capsys, monkeypatch):
    tmp, ct, mask = files
    inputs, masks, out = tmp / "in", tmp / "masks", tmp / "out"
    for folder in (inputs, masks):
        folder.mkdir()
    for name in ("p", "q", "r"):
        sitk.WriteImage(sitk.ReadImage(str(ct)), str(inputs / f"{name}.nii.gz"))
        sitk.WriteImage(sitk.ReadImage(str(mask)), str(masks / f"{name}_lesion.nii.gz"))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    code, lines, err = _run(capsys, "batch", "lesion", "--inputs", str(inputs / "*.nii.gz"), "--out", out, "--masks",
                            masks, "--steps", 1, "--region", "chest", "--model", tiny_models.lesion, "--device", "cpu",
                            "--suffix", "_fake", "--format", "nrrd")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["q_fake.nrrd"]  # case 1 of 3 goes to rank 1 of 2
    assert lines[-1]["stage"] == "done"


def test_subprocess_bad_input_no_traceback(files, tiny_models):
    """The installed entry point as a real process: exit code 2 and a one-paragraph message."""
    tmp, ct, mask = files
    empty = sitk.ReadImage(str(mask)) * 0
    sitk.WriteImage(empty, str(tmp / "empty.nii.gz"))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "MedDiffFMLib.cli", "lesion", str(ct), str(tmp / "empty.nii.gz"),
                           str(tmp / "o.nii.gz"), "--model", str(tiny_models.lesion), "--device", "cpu",
                           "--progress", "json"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "empty" in proc.stderr and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["stage"] == "error"
    assert not (tmp / "o.nii.gz").exists()
