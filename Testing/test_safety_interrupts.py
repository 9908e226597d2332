"""Interrupts at any moment: Ctrl-C (SIGINT) or SIGTERM during the start-up imports or the sampling
ends with exit 130, one line and no traceback, nothing written; SIGKILL at any moment leaves no
half-written output under its final name. Real subprocesses, as a user's shell runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import SimpleITK as sitk

from helpers.models import tiny_models  # noqa: F401  (fixture)
from helpers.safety import digests
from helpers.task_tools import task_ct
from MedDiffFMLib.io import read_volume

REPO = Path(__file__).resolve().parents[1]


def _start(argv) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "MedDiffFMLib.cli", *map(str, argv)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_stage(process: subprocess.Popen, stage: str, timeout: float = 300.0) -> None:
    """Read the JSON progress lines until one of ``stage`` arrives."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"the run ended before stage {stage}: {process.stderr.read().decode()[-800:]}")
        if json.loads(line).get("stage") == stage:
            return
    raise AssertionError(f"no {stage} progress within {timeout} s")


@pytest.fixture()
def run_case(tmp_path, tiny_models):  # noqa: F811
    ct = tmp_path / "ct.nrrd"
    sitk.WriteImage(task_ct(), str(ct))
    out = tmp_path / "out.nii.gz"
    argv = ["anomaly", ct, out, "--model", tiny_models.base, "--steps", "10", "--samples", "2", "--device", "cpu",
            "--progress", "json", "--preview", tmp_path / "p.png"]
    return tmp_path, ct, out, argv


def _assert_interrupted(process: subprocess.Popen, folder: Path, inputs: dict, ct: Path) -> None:
    _, err = process.communicate(timeout=180)
    text = err.decode()
    assert process.returncode == 130, (process.returncode, text[-1500:])
    assert "Traceback" not in text and text.count("meddifffm: error:") == 1, text[-1500:]
    assert sorted(p.name for p in folder.iterdir()) == ["ct.nrrd"]  # nothing written, no temporary left
    assert digests([ct]) == inputs


@pytest.mark.parametrize("delay", [0.3, 1.0, 2.5])
def test_ctrl_c_during_start_up_exits_130_without_traceback(run_case, delay):
    folder, ct, _, argv = run_case
    inputs = digests([ct])
    # A run far longer than the latest delay (the tiny run's whole 3 s is mostly start-up, so on a
    # quick machine it could end before the signal); the signal ends it early, so no test time is lost.
    process = _start([*argv, "--samples", "1000"])  # (the last --samples counts)
    time.sleep(delay)
    assert process.poll() is None, "the run ended before the signal was sent"
    process.send_signal(signal.SIGINT)
    _assert_interrupted(process, folder, inputs, ct)


@pytest.mark.parametrize("sig,stage", [(signal.SIGINT, "preprocessing"), (signal.SIGTERM, "reconstruction")])
def test_an_interrupt_while_working_exits_130_and_writes_nothing(run_case, sig, stage):
    folder, ct, _, argv = run_case
    inputs = digests([ct])
    process = _start(argv)
    _wait_for_stage(process, stage)
    process.send_signal(sig)
    _assert_interrupted(process, folder, inputs, ct)


@pytest.mark.parametrize("when", [0.5, "reconstruction", "postprocessing"])
def test_sigkill_leaves_no_half_written_output(run_case, when):
    folder, ct, out, argv = run_case
    inputs = digests([ct])
    process = _start(argv)
    if isinstance(when, float):
        time.sleep(when)
    else:
        _wait_for_stage(process, when)
    process.kill()
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    if out.exists():  # renamed into place only once complete
        read_volume(out)
    finals = [p for p in folder.iterdir() if not p.name.startswith(".")]
    assert {p.name for p in finals} <= {"ct.nrrd", "out.nii.gz", "p.png"}
    assert digests([ct]) == inputs
