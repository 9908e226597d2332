"""Many processes: ``torchrun --nproc_per_node 2`` with gloo runs the trainer, and its gradients match
a single process on the same global batch.

Run as a script (by torchrun) this file is the worker: it writes rank 0's all-reduced gradients of
the first step, then trains two steps as ``meddifffm train`` would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _config(cache: str, run_dir: str, batch_size: int):
    from MedDiffFMLib.training import TrainConfig

    return TrainConfig.from_dict({
        "model": "tiny", "cache": cache, "run_dir": run_dir, "max_steps": 2, "batch_size": batch_size,
        "warmup_steps": 1, "val_every": 0, "log_every": 1, "device": "cpu", "tensorboard": False,
        "grad_clip": 0.0, "export": {"storage_dtype": "float32"},
    })


def _first_step_gradients(trainer) -> dict:
    import torch

    trainer.setup()
    batches = [trainer.dataset[k] for k in range(trainer.config.grad_accum)]
    loss = trainer.forward_backward(batches)
    grads = {n: p.grad.detach().clone() for n, p in trainer.trainable.named_parameters() if p.grad is not None}
    trainer.optimizer.zero_grad(set_to_none=True)
    return {"grads": grads, "loss": torch.tensor(loss)}


def worker(cache: str, run_dir: str, out: str) -> None:
    import torch

    from MedDiffFMLib.training import Trainer

    torch.set_num_threads(1)
    trainer = Trainer(_config(cache, run_dir, batch_size=1), progress="none", export=False)
    state = _first_step_gradients(trainer)
    if trainer.dist.rank == 0:
        torch.save(state, out)
    result = trainer.run()
    if trainer.dist.rank == 0:
        Path(out + ".json").write_text(json.dumps({"step": result.step, "world": trainer.dist.world_size}))


def test_torchrun_two_processes_match_one_process(tmp_path):
    import torch

    from test_training_data import make_cache

    from MedDiffFMLib.training import Trainer

    cache = make_cache(tmp_path / "data", n_train=3, n_val=0)
    out = tmp_path / "ddp_grads.pt"
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'Testing'}", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).resolve()), str(cache), str(tmp_path / "ddp_run"), str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(Path(str(out) + ".json").read_text())
    assert summary == {"step": 2, "world": 2}
    checkpoints = sorted((tmp_path / "ddp_run" / "checkpoints").glob("step-*.pt"))
    assert [c.name for c in checkpoints] == ["step-00000002.pt"]
    assert torch.load(checkpoints[0], weights_only=False)["world_size"] == 2
    # one process, two samples per step: the same global batch
    single = _first_step_gradients(Trainer(_config(str(cache), str(tmp_path / "single"), batch_size=2),
                                           progress="none", export=False))
    ddp = torch.load(out, weights_only=False)
    assert ddp["grads"].keys() == single["grads"].keys()
    for name, grad in single["grads"].items():
        torch.testing.assert_close(ddp["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # rank 0 reports its own micro-batch's loss; the two ranks' mean is the single process's loss
    assert abs(float(ddp["loss"]) - float(single["loss"])) < 0.5


if __name__ == "__main__":
    sys.path[:0] = [str(REPO), str(REPO / "Testing")]
    worker(*sys.argv[1:4])
