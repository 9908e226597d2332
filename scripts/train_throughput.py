#!/usr/bin/env python
"""Measure training throughput (samples/s) of model configs on this machine.

Times full optimiser steps (forward, L1 loss, backward, AdamW, EMA) on random patches at each
config's patch size, with the same model input the trainer builds; prints a Markdown table.

    python scripts/train_throughput.py --configs tiny cpu_starter default paper --batch 1 --steps 3
    OMP_NUM_THREADS=1 python scripts/train_throughput.py --threads 1 --configs cpu_starter
    python scripts/train_throughput.py --candidates   # the cpu_starter design sweep
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from MedDiffFMLib.device import resolve_device  # noqa: E402
from MedDiffFMLib.models.config import ModelConfig, named_config  # noqa: E402
from MedDiffFMLib.training.ema import EMA  # noqa: E402
from MedDiffFMLib.training.objective import DiffusionObjective  # noqa: E402

CANDIDATES = {
    "c16-32-64_p32": dict(channels=(16, 32, 64), attention_levels=(False, False, True), num_head_channels=32,
                          norm_num_groups=8, patch_size=(32, 32, 32)),
    "c16-32-64_p48": dict(channels=(16, 32, 64), attention_levels=(False, False, True), num_head_channels=32,
                          norm_num_groups=8, patch_size=(48, 48, 48)),
    "c16-32-64_p64": dict(channels=(16, 32, 64), attention_levels=(False, False, True), num_head_channels=32,
                          norm_num_groups=8, patch_size=(64, 64, 64)),
    "c32-64-128_p32": dict(channels=(32, 64, 128), attention_levels=(False, False, True), num_head_channels=32,
                           norm_num_groups=16, patch_size=(32, 32, 32)),
}


def measure(config: ModelConfig, batch: int, steps: int, device: torch.device, warmup: bool = True
            ) -> tuple[float, float, int]:
    objective = DiffusionObjective(config)
    model = objective.build_model().to(device)
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    ema = EMA(model.unet, 0.999)
    shape = (batch, 1, *config.patch_size)
    gen = torch.Generator().manual_seed(0)
    batch_data = {
        "image": torch.rand(shape, generator=gen) * 2 - 1,
        "noise": torch.randn(shape, generator=gen),
        "timestep": torch.randint(0, config.num_train_timesteps, (batch,), generator=gen),
        "coords": torch.rand((batch, 3, *config.patch_size), generator=gen) * 2 - 1,
        "anatomy": torch.zeros((batch, *config.patch_size), dtype=torch.uint8),
        "region": torch.zeros(batch, dtype=torch.long),
    }
    autocast = torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else None

    def one_step():
        import contextlib

        loss = objective.per_sample_loss(model, batch_data, device,
                                         (lambda: autocast) if autocast else contextlib.nullcontext).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(model.unet)

    if warmup:
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    n_params = sum(p.numel() for p in params)
    return batch / seconds, seconds, n_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="*", default=["tiny", "cpu_starter", "default", "paper"])
    parser.add_argument("--candidates", action="store_true", help="measure the cpu_starter design candidates")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-warmup", action="store_true", help="time the first step too (slow configs)")
    parser.add_argument("--patch", type=int, default=None,
                        help="override every config's patch size (e.g. 64 to estimate 'paper' on a CPU)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    rows = []
    configs = []
    if args.candidates:
        base = named_config("cpu_starter") if "cpu_starter" in __import__(
            "MedDiffFMLib.models.config", fromlist=["NAMED_CONFIGS"]).NAMED_CONFIGS else named_config("default")
        for name, overrides in CANDIDATES.items():
            data = base.to_dict()
            data.update(overrides, name=name)
            configs.append(ModelConfig.from_dict(data))
    else:
        configs = [named_config(name) for name in args.configs]
    if args.patch:
        resized = []
        for config in configs:
            data = config.to_dict()
            data.update(patch_size=(args.patch,) * 3, name=f"{config.name}@{args.patch}")
            resized.append(ModelConfig.from_dict(data))
        configs = resized
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, batch {args.batch}, {args.steps} timed steps")
    print()
    print("| config | channels | patch | spacing mm | parameters | s / step | samples / s |")
    print("|---|---|---|---|---|---|---|")
    for config in configs:
        try:
            speed, seconds, n_params = measure(config, args.batch, args.steps, device, not args.no_warmup)
            row = (f"| {config.name} | {list(config.channels)} | {config.patch_size[0]}^3 | {config.spacing_mm[0]:g} | "
                   f"{n_params / 1e6:.2f} M | {seconds:.2f} | {speed:.3f} |")
        except RuntimeError as error:  # out of memory
            row = f"| {config.name} | {list(config.channels)} | {config.patch_size[0]}^3 | - | - | - | failed: {str(error)[:60]} |"
        print(row, flush=True)
        rows.append(row)


if __name__ == "__main__":
    main()
