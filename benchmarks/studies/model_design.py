"""Design figures of candidate GPU models, each beside the former ``default`` (now ``default_2mm``) from the same run.

For each candidate (a :class:`ModelConfig` at about 1 mm) it prints:

* parameters and the compact training state (raw + EMA weights in bf16, 2 bytes each) in MiB;
* FLOPs of one training sample (forward + backward, ``torch.utils.flop_counter.FlopCounterMode``,
  the same counter for every row) and the activation bytes the forward pass writes (a proxy for
  the memory traffic that bounds small-channel convolutions on a GPU);
* an ESTIMATE of the H100/H200 training rate: the rate measured there for ``default_2mm`` (the former
  default: 7.2 M, 64^3 at 2 mm, batch 8, bf16: 66 samples/s in ``meddifffm train``, 83.6 in ``scripts/train_throughput.py``) times
  the ratio of FLOPs per sample, and the more cautious rate from the ratio of activation bytes
  (thin layers are bandwidth-bound, so FLOP scaling flatters them); the lower of the two is kept;
* CPU inference: seconds per patch of one network evaluation (batch 2 as the CPU engine runs it,
  timed interleaved with the baseline), the number of sliding-window patches per step on a
  256x256x128 volume at the model spacing (MONAI's windows at overlap 0.25, the engine's tiling when
  the study ran) and the projected
  time of a 5-step denoise (network only; the end-to-end CLI run confirms the chosen one).

Timings on a shared CPU are noisy: the baseline row, timed in the same rounds, is the reference.

Usage: python -m benchmarks.studies.model_design [--rounds 2] [--candidates NAME,...] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from monai.inferers.utils import _get_scan_interval
from monai.data.utils import dense_patch_slices
from torch.utils.flop_counter import FlopCounterMode

from MedDiffFMLib.models.config import ModelConfig, named_config
from MedDiffFMLib.training.objective import DiffusionObjective

# samples/s, `meddifffm train configs/gpu_default.json` (then default_2mm) on an H200, bf16, batch 8
GPU_DEFAULT_TRAIN = 66.0
GPU_DEFAULT_SCRIPT = 83.6      # samples/s, scripts/train_throughput.py, same model and GPU
VOLUME = (128, 256, 256)       # z, y, x voxels of the CPU inference target
DENOISE_STEPS = 5
OVERLAP = 0.25
CPU_BATCH = 2


def _candidate(name: str, **changes) -> ModelConfig:
    data = named_config("default_2mm").to_dict()
    data.update(spacing_mm=(1.0, 1.0, 1.0), name=name)
    data.update(changes)
    return ModelConfig.from_dict(data)


CANDIDATES: dict[str, ModelConfig] = {
    "default@1mm": _candidate("default@1mm"),
    "c16-32-64-128_p64": _candidate("c16-32-64-128_p64", channels=(16, 32, 64, 128),
                                     attention_levels=(False, False, False, True), norm_num_groups=8),
    "c16-32-64-128_p80": _candidate("c16-32-64-128_p80", channels=(16, 32, 64, 128),
                                     attention_levels=(False, False, False, True), norm_num_groups=8,
                                     patch_size=(80, 80, 80)),
    "c16-32-64-128_p96": _candidate("c16-32-64-128_p96", channels=(16, 32, 64, 128),
                                     attention_levels=(False, False, False, True), norm_num_groups=8,
                                     patch_size=(96, 96, 96)),
    "c16-32-64_p64": _candidate("c16-32-64_p64", channels=(16, 32, 64), attention_levels=(False, False, True),
                                 norm_num_groups=8),
    "c24-48-96-192_p64": _candidate("c24-48-96-192_p64", channels=(24, 48, 96, 192),
                                     attention_levels=(False, False, False, True), norm_num_groups=8),
    "c16-32-64-128_p64_r2": _candidate("c16-32-64-128_p64_r2", channels=(16, 32, 64, 128),
                                        attention_levels=(False, False, False, True), norm_num_groups=8,
                                        num_res_blocks=2),
}


def _inputs(config: ModelConfig, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((batch, config.input_channels, *config.patch_size), generator=gen)
    t = torch.randint(0, config.num_train_timesteps, (batch,), generator=gen)
    return x, t, torch.zeros(batch, dtype=torch.long)


def training_flops(model: torch.nn.Module, config: ModelConfig) -> int:
    """FLOPs of forward + backward of one sample."""
    x, t, region = _inputs(config, 1)
    with FlopCounterMode(display=False) as counter:
        model(x, t, region).abs().mean().backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def activation_bytes(model: torch.nn.Module, config: ModelConfig) -> int:
    """Bytes of every leaf module's forward output for one sample (fp32): the activations written."""
    total = 0

    def hook(_module, _inputs, output):
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    x, t, region = _inputs(config, 1)
    with torch.no_grad():
        model(x, t, region)
    for handle in handles:
        handle.remove()
    return total


def patches_per_step(config: ModelConfig) -> int:
    """Sliding-window patches (overlap 0.25) that cover the 256x256x128 mm target volume (1 mm voxels)."""
    roi = config.patch_size
    # The volume's 1 mm voxels on the model grid (padded up to one patch, as the engine does).
    grid = tuple(max(p, round(v / s)) for v, s, p in zip(VOLUME, config.spacing_mm, roi))
    interval = _get_scan_interval(grid, roi, 3, (OVERLAP,) * 3)
    return len(dense_patch_slices(grid, roi, interval))


def time_patch(model: torch.nn.Module, config: ModelConfig) -> float:
    """Seconds per patch of one no-grad forward at batch 2."""
    x, t, region = _inputs(config, CPU_BATCH)
    with torch.no_grad():
        start = time.perf_counter()
        model(x, t, region)
        return (time.perf_counter() - start) / CPU_BATCH


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated names")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved CPU timing rounds (best is kept)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU timing")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    baseline = named_config("default_2mm")
    configs = [baseline] + [CANDIDATES[name] for name in args.candidates.split(",") if name]
    models = {}
    rows = []
    for config in configs:
        model = DiffusionObjective(config).build_model().unet
        params = sum(p.numel() for p in model.parameters())
        rows.append(dict(config=config, params=params, flops=training_flops(model, config),
                         act=activation_bytes(model, config), patches=patches_per_step(config), times=[]))
        models[config.name] = model.eval()
    if not args.no_cpu:
        for _ in range(max(1, args.rounds)):  # interleaved, so load changes hit every row alike
            for row in rows:
                row["times"].append(time_patch(models[row["config"].name], row["config"]))
    ref = rows[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; baseline: default_2mm "
          f"({list(baseline.channels)}, {baseline.patch_size[0]}^3 at {baseline.spacing_mm[0]:g} mm)")
    print(f"CPU target: {VOLUME[2]}x{VOLUME[1]}x{VOLUME[0]} voxels at the model spacing, {DENOISE_STEPS} "
          f"denoise steps, overlap {OVERLAP}, batch {CPU_BATCH}\n")
    print("| config | channels | res blocks | patch | spacing mm | params M | state MiB (bf16 raw+EMA) | "
          "train GFLOP/sample | act MiB/sample | est. GPU samples/s (train CLI; script) | CPU s/patch | "
          "patches/step | CPU denoise s (5 steps, network) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        config = row["config"]
        scale = min(ref["flops"] / row["flops"], ref["act"] / row["act"])
        est = f"{GPU_DEFAULT_TRAIN * scale:.0f}; {GPU_DEFAULT_SCRIPT * scale:.0f}"
        if row is ref:
            est = f"{GPU_DEFAULT_TRAIN:.0f}; {GPU_DEFAULT_SCRIPT:.1f} (measured)"
        cpu = min(row["times"]) if row["times"] else float("nan")
        print(f"| {config.name} | {list(config.channels)} | {config.num_res_blocks} | {config.patch_size[0]}^3 | "
              f"{config.spacing_mm[0]:g} | {row['params'] / 1e6:.2f} | {row['params'] * 4 / 2**20:.1f} | "
              f"{row['flops'] / 1e9:.0f} | {row['act'] / 2**20:.0f} | {est} | {cpu:.2f} | {row['patches']} | "
              f"{cpu * row['patches'] * DENOISE_STEPS:.0f} |", flush=True)
    print("\nEst. GPU rate = measured default rate x min(FLOP ratio, activation-bytes ratio): an ESTIMATE, "
          "not a GPU measurement. CPU figures: best of the interleaved rounds on a shared machine.")


if __name__ == "__main__":
    main()
