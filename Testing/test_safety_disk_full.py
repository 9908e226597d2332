"""A full disk never yields a cut-short output reported as success.

The disk is made "full" without a mount: a child process gets a file-size limit (RLIMIT_FSIZE, with
SIGXFSZ ignored, so a write past it fails with EFBIG the way a full disk fails with ENOSPC). ITK's
NIfTI writer ignores such a failure (it prints "NWAD: wrote only ..." and returns), which is why
every output is read back before it takes its name. A free-space figure that is measurably short is
refused before any work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.models import tiny_models  # noqa: F401  (fixture)
from helpers.safety import assert_refused, digests, listing
from helpers.task_tools import task_ct
from MedDiffFMLib.errors import WriteError
from MedDiffFMLib.io import durable
from MedDiffFMLib.io.write import minimum_output_bytes

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, signal, sys
import numpy as np, SimpleITK as sitk
from MedDiffFMLib.errors import WriteError
from MedDiffFMLib.io import write_volume
from MedDiffFMLib.preview import write_preview

target, limit = sys.argv[1], int(sys.argv[2])
array = np.random.default_rng(0).integers(-1000, 1500, (24, 64, 64)).astype(np.int16)
image = sitk.GetImageFromArray(array)
image.SetSpacing((0.8, 0.8, 2.0))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    if target.endswith(".png"):
        write_preview(image, image, target)
    else:
        write_volume(image, target)
except WriteError as error:
    print(json.dumps({"refused": str(error)}))
else:
    print(json.dumps({"written": True}))
"""


def _write_with_limit(target: Path, limit: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", _CHILD, str(target), str(limit)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["out.nii", "out.nii.gz", "out.nrrd", "out.mha", "out.mhd", "dicom/", "out.png"])
def test_a_write_cut_short_by_the_disk_is_refused_and_leaves_nothing(tmp_path, name):
    target = tmp_path / name
    # The limit is per file: 20 kB holds headers and the first slices, never the whole volume (196 KiB
    # raw); a DICOM slice file (8 KiB of pixels) is cut at 4 kB.
    result = _write_with_limit(target, 4_000 if name == "dicom/" else 20_000)
    assert "refused" in result, result
    message = result["refused"]
    assert "Nothing was left under the output's name" in message and "\n" not in message
    assert listing(tmp_path) == set(), listing(tmp_path)  # no output, no companion, no temporary


def test_the_same_writes_succeed_with_room(tmp_path):
    for name in ("out.nii.gz", "out.png"):
        assert _write_with_limit(tmp_path / name, 50_000_000) == {"written": True}
    assert sitk.ReadImage(str(tmp_path / "out.nii.gz")).GetSize() == (64, 64, 24)


def test_nifti_short_write_names_the_writer_and_the_disk(tmp_path):
    message = _write_with_limit(tmp_path / "out.nii.gz", 20_000)["refused"]
    assert "read back is cut short" in message and "NWAD" in message


def test_an_existing_output_survives_a_failed_write(tmp_path):
    target = tmp_path / "out.nii.gz"
    target.write_bytes(b"previous result")
    assert "refused" in _write_with_limit(target, 20_000)
    assert target.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]


def test_the_command_line_refuses_a_measurably_full_disk_before_any_work(tmp_path, tiny_models, capsys,  # noqa: F811
                                                                       monkeypatch):
    ct = tmp_path / "ct.nrrd"
    sitk.WriteImage(task_ct(), str(ct))
    monkeypatch.setattr(durable, "free_bytes", lambda folder: 1000)
    argv = ["denoise", ct, tmp_path / "out.nii", "--model", tiny_models.base, "--device", "cpu",
            "--noise-hu", "20", "--progress", "json"]
    message = assert_refused(argv, capsys, tmp_path, [ct])
    assert "Not enough free space" in message and "out.nii" in message
    assert '"stage": "sampling"' not in capsys.readouterr().out  # refused before the model ran


def test_the_command_line_reports_a_full_disk_as_exit_2_with_nothing_written(tmp_path, tiny_models):  # noqa: F811
    ct = tmp_path / "ct.nrrd"
    sitk.WriteImage(task_ct((24, 64, 64)), str(ct))
    before = digests([ct])
    out = tmp_path / "out" / "denoised.nii.gz"
    out.parent.mkdir()
    # The input is read before the limit applies; the output cannot fit under 2 KiB.
    code = ("import resource, signal, sys; from MedDiffFMLib.cli import entry_point; "
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048)); "
            "sys.argv = ['meddifffm'] + sys.argv[1:]; entry_point()")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code, "denoise", str(ct), str(out), "--model", str(tiny_models.base),
                           "--device", "cpu", "--noise-hu", "30", "--steps", "1", "--progress", "none"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and done.stderr.count("meddifffm: error:") == 1, done.stderr
    assert "NWAD" not in done.stderr.split("meddifffm: error:")[0]  # no stray native lines before the paragraph
    assert "Denoised" not in done.stderr
    assert list(out.parent.iterdir()) == []
    assert digests([ct]) == before


def test_minimum_output_bytes_follow_the_format():
    voxels = 1000
    assert minimum_output_bytes("a.nii", voxels, 2) == 2000
    assert minimum_output_bytes("a.mhd", voxels, 4) == 4000
    assert 0 < minimum_output_bytes("a.nii.gz", voxels, 2) < 2000
    assert minimum_output_bytes("series/", voxels, 4) == 2000  # DICOM: int16 slices


def test_check_free_space_names_both_sizes(tmp_path, monkeypatch):
    monkeypatch.setattr(durable, "free_bytes", lambda folder: 3 * 2**20)
    with pytest.raises(WriteError, match=r"at least 10\.0 MiB .* 3\.0 MiB free"):
        durable.check_free_space(tmp_path, 10 * 2**20, "the output 'x.nii'")
    durable.check_free_space(tmp_path, 2**20, "the output 'x.nii'")


def test_atomic_text_and_bytes_are_verified_and_leave_no_temporary(tmp_path):
    durable.atomic_write_text(tmp_path / "a" / "index.json", json.dumps({"k": 1}))
    assert json.loads((tmp_path / "a" / "index.json").read_text()) == {"k": 1}

    def bad_check(path: Path) -> None:
        raise OSError("the file read back differs")

    with pytest.raises(WriteError, match="read back differs"):
        durable.atomic_write_bytes(tmp_path / "a" / "b.bin", lambda p: p.write_bytes(b"x"), bad_check)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["index.json"]


def test_a_staged_folder_is_published_whole_or_not_at_all(tmp_path):
    with durable.staged_folder(tmp_path / "model") as tmp:
        (tmp / "w.bin").write_bytes(b"1")
    assert (tmp_path / "model" / "w.bin").read_bytes() == b"1"
    with pytest.raises(RuntimeError):
        with durable.staged_folder(tmp_path / "model", replace=True) as tmp:
            (tmp / "w.bin").write_bytes(b"2")
            raise RuntimeError("failed half-way")
    assert (tmp_path / "model" / "w.bin").read_bytes() == b"1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_checkpoint_cut_short_leaves_the_previous_one(tmp_path, monkeypatch):
    import torch

    from MedDiffFMLib.training import checkpoint

    first = checkpoint.save_checkpoint(tmp_path, 1, {"w": torch.zeros(3)})

    def full_disk(obj, path):
        Path(path).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(WriteError, match="the disk is full"):
        checkpoint.save_checkpoint(tmp_path, 2, {"w": torch.ones(3)})
    assert [p for _, p in checkpoint.list_checkpoints(tmp_path)] == [first]
    assert sorted(p.name for p in first.parent.iterdir()) == [first.name]
    assert np.array_equal(checkpoint.load_checkpoint(first)["w"].numpy(), np.zeros(3))


@pytest.mark.parametrize("command", ["denoise", "anomaly"])
def test_a_failure_on_the_last_output_leaves_none_of_them(tmp_path, tiny_models, capsys, monkeypatch,  # noqa: F811
                                                           command):
    from MedDiffFMLib import preview

    ct = tmp_path / "ct.nrrd"
    sitk.WriteImage(task_ct(), str(ct))

    def disk_full(path: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(preview, "_verify_png", disk_full)  # the picture, written last, fails
    extra = (["--noise-hu", "20"] if command == "denoise" else
             ["--steps", "1", "--samples", "1", "--healthy-out", tmp_path / "healthy.nii.gz"])
    argv = [command, ct, tmp_path / "out.nii.gz", "--model", tiny_models.base, "--device", "cpu",
            "--preview", tmp_path / "p.png", "--progress", "none", *extra]
    message = assert_refused(argv, capsys, tmp_path, [ct])
    assert "p.png" in message and "the disk is full" in message
