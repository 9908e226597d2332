"""``torchrun --nproc_per_node 2 -m MedDiffFMLib.cli batch ...`` on CPU with gloo: each rank runs its
share of the cases, a failed case fails only that case, and rank 0 reports and writes the summary
of the whole batch; the outputs equal a one-process batch's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from helpers.models import single_torch_thread, tiny_models  # noqa: F401  (fixtures)
from helpers.task_tools import task_ct
from MedDiffFMLib.cli import main

REPO = Path(__file__).resolve().parent.parent


def test_torchrun_batch_two_gloo_processes(tmp_path, tiny_models, capsys):
    cases = tmp_path / "cases"
    cases.mkdir()
    for seed in range(4):
        sitk.WriteImage(task_ct(seed=seed), str(cases / f"case{seed}.nii.gz"))
    broken = cases / "case4.nii"
    sitk.WriteImage(task_ct(seed=4), str(broken))
    broken.write_bytes(broken.read_bytes()[:-300])  # cut short: this case alone must fail
    batch = ["batch", "denoise", "--inputs", str(cases), "--model", str(tiny_models.base), "--device", "cpu",
             "--steps", "2", "--region", "chest", "--progress", "none"]
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "MedDiffFMLib.cli", *batch, "--out", str(tmp_path / "ddp")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0  # rank 0 exits with 2: one case failed
    assert "1 of 5 cases failed: case4" in " ".join(done.stderr.split())
    assert "batch denoise: 5 cases on 2 ranks, 4 files written, 0 skipped (output exists), 1 failed." in done.stderr
    summary = json.loads((tmp_path / "ddp" / "batch_summary.json").read_text())
    assert summary["ranks"] == 2 and summary["cases"] == 5
    assert summary["cases_by_rank"] == [["case0", "case2", "case4"], ["case1", "case3"]]
    assert list(summary["failed"]) == ["case4"] and str(broken) in summary["failed"]["case4"]
    assert len(summary["written"]) == 4
    # the same outputs as one process
    assert main([*batch, "--out", str(tmp_path / "one")]) == 2
    capsys.readouterr()
    written = sorted(p.name for p in (tmp_path / "ddp").glob("*.nii.gz"))
    assert written == sorted(p.name for p in (tmp_path / "one").glob("*.nii.gz")) == [
        f"case{i}_denoise.nii.gz" for i in range(4)]
    for name in written:
        a, b = (sitk.ReadImage(str(tmp_path / run / name)) for run in ("ddp", "one"))
        assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    assert not (tmp_path / "one" / "batch_summary.json").exists()  # one process: the summary is the command's
