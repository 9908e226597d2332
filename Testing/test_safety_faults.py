"""The last faults a hostile run found: `prepare` is all or nothing, a 0-byte file, an absurd or a
vanishing physical size, a duplicated DICOM slice, and a Ctrl-C acted on within seconds even in the
middle of a patch batch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import SimpleITK as sitk

from helpers.models import tiny_models  # noqa: F401  (fixture)
from helpers.safety import assert_refused, digests
from helpers.task_tools import task_ct
from MedDiffFMLib.errors import InputError
from MedDiffFMLib.io import read_volume, write_volume

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------- prepare


def _manifest(tmp_path: Path, bad_second: bool) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for name in ("c0", "c1"):
        image = task_ct((12, 24, 20), seed=int(name[1]))
        image.SetSpacing((4.0, 4.0, 4.0))
        sitk.WriteImage(image, str(data / f"{name}.nii.gz"), useCompression=True)
    if bad_second:
        whole = (data / "c1.nii.gz").read_bytes()
        (data / "c1.nii.gz").write_bytes(whole[: len(whole) // 2])
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"data_root": "data", "cases": [
        {"id": "c0", "image": "c0.nii.gz", "region": "chest"},
        {"id": "c1", "image": "c1.nii.gz", "region": "chest"}]}))
    return manifest


def test_prepare_with_a_bad_second_case_leaves_no_cache(tmp_path, capsys):
    manifest = _manifest(tmp_path, bad_second=True)
    cache = tmp_path / "cache"
    message = assert_refused(["prepare", manifest, cache, "--config", "tiny", "--progress", "none"], capsys,
                             tmp_path, [manifest, tmp_path / "data"])
    assert "c1" in message and "incomplete" in message
    assert not cache.exists()


def test_prepare_with_a_bad_case_keeps_the_previous_cache_as_it_was(tmp_path, capsys):
    manifest = _manifest(tmp_path, bad_second=False)
    cache = tmp_path / "cache"
    from MedDiffFMLib.cli import main

    assert main(["prepare", str(manifest), str(cache), "--config", "tiny", "--progress", "none"]) == 0
    before = digests([cache])
    # c0 changes (so it would be rewritten), c1 is cut short: the run fails and nothing changes.
    image = task_ct((12, 24, 20), seed=7)
    image.SetSpacing((4.0, 4.0, 4.0))
    sitk.WriteImage(image, str(tmp_path / "data" / "c0.nii.gz"), useCompression=True)
    os.utime(tmp_path / "data" / "c0.nii.gz", (1, 1))
    whole = (tmp_path / "data" / "c1.nii.gz").read_bytes()
    (tmp_path / "data" / "c1.nii.gz").write_bytes(whole[: len(whole) // 2])
    message = assert_refused(["prepare", manifest, cache, "--config", "tiny", "--progress", "none"], capsys, cache,
                             [manifest])
    assert "c1" in message
    assert digests([cache]) == before


# ------------------------------------------------------------------------------ bad inputs


def test_a_zero_byte_input_is_refused_clearly(tmp_path, tiny_models, capsys):  # noqa: F811
    for name in ("empty.nii.gz", "empty.nii", "empty.nrrd", "empty.mha"):
        empty = tmp_path / name
        empty.write_bytes(b"")
        message = assert_refused(["denoise", empty, tmp_path / "out.nii.gz", "--model", tiny_models.base],
                                 capsys, tmp_path, [empty])
        assert "empty file (0 bytes)" in message
        empty.unlink()


def test_a_nifti_with_a_few_bytes_is_refused_clearly(tmp_path):
    stub = tmp_path / "stub.nii"
    stub.write_bytes(b"\x5c\x01")
    with pytest.raises(InputError, match="header is missing or cut short"):
        read_volume(stub)


def test_an_absurd_spacing_is_refused_with_the_physical_size(tmp_path, tiny_models, capsys):  # noqa: F811
    image = task_ct((24, 96, 96))
    image.SetSpacing((1000.0, 1000.0, 1000.0))
    ct = tmp_path / "huge.nrrd"
    sitk.WriteImage(image, str(ct))
    message = assert_refused(["denoise", ct, tmp_path / "out.nii.gz", "--model", tiny_models.base, "--noise-hu", "20"],
                             capsys, tmp_path, [ct])
    assert "96.00 x 96.00 x 24.00 m" in message and "voxels" in message and "spacing" in message


def test_a_volume_smaller_than_the_model_grid_is_refused(tmp_path, tiny_models, capsys):  # noqa: F811
    image = task_ct((12, 24, 20))
    image.SetSpacing((0.1, 0.1, 0.1))  # 2.0 x 2.4 x 1.2 mm: less than one 4 mm model voxel
    ct = tmp_path / "speck.nrrd"
    sitk.WriteImage(image, str(ct))
    message = assert_refused(["denoise", ct, tmp_path / "out.nii.gz", "--model", tiny_models.base, "--noise-hu", "20"],
                             capsys, tmp_path, [ct])
    assert "less than two voxels" in message and "4.00 x 4.00 x 4.00 mm" in message


def test_a_duplicated_dicom_slice_is_named(tmp_path, tiny_models):  # noqa: F811
    series = tmp_path / "series"
    write_volume(task_ct(), series)
    files = sorted(series.iterdir())
    shutil.copy(files[5], series / "zz_copy.dcm")
    with pytest.raises(InputError) as refused:
        read_volume(series)
    message = str(refused.value)
    assert "same position" in message and files[5].name in message and "zz_copy.dcm" in message
    # The command line, as a shell runs it: that one paragraph is all of stderr (ITK and GDCM write
    # their warnings to the process's own stderr, which only a real process shows).
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "MedDiffFMLib.cli", "denoise", str(series), str(tmp_path / "o.nii.gz"),
                           "--model", str(tiny_models.base), "--progress", "none"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("meddifffm: error: The DICOM series") and "zz_copy.dcm" in done.stderr
    assert "WARNING" not in done.stderr and done.stderr.count("meddifffm: error:") == 1
    assert not (tmp_path / "o.nii.gz").exists()


def test_nothing_to_denoise_is_said_plainly(tmp_path, tiny_models, capsys):  # noqa: F811
    ct = tmp_path / "ct.nrrd"
    sitk.WriteImage(task_ct(), str(ct))
    from MedDiffFMLib.cli import main

    assert main(["denoise", str(ct), str(tmp_path / "out.nrrd"), "--model", str(tiny_models.base),
                 "--strength", "0"]) == 0
    err = capsys.readouterr().err
    assert "Nothing to denoise" in err and "unchanged copy" in err and "0 steps" not in err


# ---------------------------------------------------------------------------------- cancel


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory) -> Path:
    """A base model with the tiny config's layout but wider layers and 32-voxel patches: one patch
    batch takes seconds on a CPU, one sampling step many of them."""
    import torch

    from MedDiffFMLib.models.config import named_config
    from MedDiffFMLib.models.network import MedDiffFMUNet
    from MedDiffFMLib.models.weights import save_model

    config = named_config("tiny")
    config.name, config.channels, config.patch_size = "slow", (32, 64), (32, 32, 32)
    config.norm_num_groups, config.num_head_channels = 8, 16
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("slow") / "slow"
    save_model(MedDiffFMUNet(config), folder, name="slow", card="# slow\n\nRandom weights, for tests only.\n")
    return folder


def _one_batch_seconds(folder: Path) -> float:
    """Seconds of one network call on 2 patches (the CPU batch), measured here."""
    import torch

    from MedDiffFMLib.models.loading import load_pipeline_model

    model = load_pipeline_model(folder, "base", "cpu").model
    x = torch.randn(2, model.config.input_channels, 32, 32, 32)
    with torch.no_grad():
        started = time.monotonic()
        model(x, torch.tensor([500, 500]), torch.tensor([1, 1]), None)
        return time.monotonic() - started


def test_ctrl_c_in_the_middle_of_a_patch_batch_exits_within_5_s(tmp_path, slow_model):
    image = task_ct((64, 64, 64))
    image.SetSpacing((4.0, 4.0, 4.0))  # 64^3 on the model grid: 27 patches of 32^3, 14 batches a step
    ct = tmp_path / "ct.nrrd"
    sitk.WriteImage(image, str(ct))
    inputs = digests([ct])
    step_estimate = 14 * _one_batch_seconds(slow_model)
    assert step_estimate > 5.0, f"the model is too fast for this test ({step_estimate:.1f} s a step)"

    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen([sys.executable, "-m", "MedDiffFMLib.cli", "denoise", str(ct),
                                str(tmp_path / "out.nii.gz"), "--model", str(slow_model), "--device", "cpu",
                                "--noise-hu", "60", "--steps", "3", "--progress", "json"],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    events = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        assert line, process.stderr.read().decode()[-1500:]
        events.append(json.loads(line))
        if events[-1].get("stage") == "denoising":
            break
    time.sleep(1.5)  # inside the first patch batch of the first step
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    waited = time.monotonic() - sent
    text = err.decode()
    assert process.returncode == 130, (process.returncode, text[-1500:])
    assert waited < 5.0, f"the cancel took {waited:.1f} s (a step takes about {step_estimate:.0f} s)"
    assert "Traceback" not in text and text.count("meddifffm: error:") == 1, text
    done_steps = [e for e in events + [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
                  if e.get("stage") == "denoising" and e.get("step", 0) > 0]
    assert done_steps == []  # it stopped inside the first step, not after it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nrrd"]
    assert digests([ct]) == inputs


def test_a_cancel_inside_the_network_raises_between_layers(tiny_models):  # noqa: F811
    import torch

    from MedDiffFMLib.errors import CancelledError
    from MedDiffFMLib.models.loading import load_pipeline_model
    from MedDiffFMLib.sampling.predictor import VolumeNoisePredictor

    model = load_pipeline_model(tiny_models.base, "base", "cpu").model
    predictor = VolumeNoisePredictor(model, device=torch.device("cpu"), patch_size=(16, 16, 16), batch_size=1)
    calls = []

    def cancel() -> bool:  # asks to stop once the network is well inside its first patch
        calls.append(1)
        return len(calls) > 20

    with pytest.raises(CancelledError):
        predictor(torch.zeros(1, 1, 32, 32, 32), 500, cancel=cancel)
    assert predictor.evaluations == 0  # the very first patch batch was left half-way
    assert all(not m._forward_pre_hooks for m in model.modules())  # the checks are removed again
    out = predictor(torch.zeros(1, 1, 16, 16, 16), 500)  # and the predictor works as before
    assert out.shape == (1, 1, 16, 16, 16) and bool(torch.isfinite(out).all())
