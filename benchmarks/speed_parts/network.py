"""Section 1 of :mod:`benchmarks.speed`: one network evaluation on one patch of the real CT on the model
grid, for the naive baseline, the library as shipped and the variants the tuned path chooses from
(patch batch, attention implementation, channels-last weights, ``inference_mode``, ``torch.compile``):
seconds per patch (interleaved rounds, best and median), Mvox/s, TFLOP/s (``FlopCounterMode``), the
fraction of the bf16 peak on a GPU and the largest difference from the naive output."""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable, Optional

import numpy as np
import SimpleITK as sitk
import torch

from benchmarks.common import reporting, timing
from benchmarks.speed_parts.paths import naive_model, tuned_model, uses_channels_last, uses_sdpa

# Dense bf16 tensor-core peaks (TFLOP/s, vendor datasheets, without sparsity). First match wins.
GPU_BF16_PEAK_TFLOPS: list[tuple[str, float]] = [
    ("GH200", 989.0), ("H200", 989.0), ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H100", 989.0),
    ("H800", 989.0), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0),
    ("A6000", 155.0), ("A10G", 70.0), ("A10", 125.0), ("L4", 121.0), ("RTX 4090", 165.0), ("RTX 3090", 71.0),
    ("V100", 0.0),  # no bf16 tensor cores
]
TIMESTEP = 20  # the noise level every variant is timed at
TIE = 1.03  # variants within 3 % of the fastest count as equally fast


def gpu_peak_tflops(name: str) -> Optional[float]:
    for key, peak in GPU_BF16_PEAK_TFLOPS:
        if key.lower() in name.lower():
            return peak or None
    return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclasses.dataclass
class Variant:
    name: str
    batch: int
    fn: Callable[[], torch.Tensor]
    note: str = ""
    times: list = dataclasses.field(default_factory=list)
    output: Optional[torch.Tensor] = None
    sdpa: bool = False
    channels_last: bool = False
    library: bool = False


@dataclasses.dataclass
class NetworkFigures:
    """What the later sections take from section 1."""

    flops: float
    patch_vox: int
    naive_best: float
    library_best: float
    embed_s: float
    activation_bytes: float
    region: Any
    library_batch: int
    chosen: Variant
    variants: list[Variant]

    @property
    def tuned(self) -> dict:
        """The tuned path's settings (:data:`benchmarks.speed_parts.paths.PATHS`)."""
        return {"sdpa": self.chosen.sdpa, "channels_last": self.chosen.channels_last, "batch": self.chosen.batch}


class PatchBench:
    """One patch at the centre of the real CT on the model grid, and callables that evaluate the network
    on ``batch`` copies of it: directly (any model, dtype, grad context) or through the library's predictor."""

    def __init__(self, engine, image: sitk.Image) -> None:
        from MedDiffFMLib.preprocessing import guess_region
        from MedDiffFMLib.sampling import Conditions

        self.engine = engine
        self.device = engine.device
        self.config = engine.config
        self.patch = tuple(self.config.patch_size)
        self.region = guess_region(image)
        self.region_index = engine.region_index(self.region)
        space = engine.model_space(image, self.region)
        self.predictor = engine.predictor(space, Conditions(region=self.region_index))
        self.volume = torch.as_tensor(space.model_array)[None, None]
        starts = [max(0, (n - p) // 2) for n, p in zip(self.volume.shape[2:], self.patch)]
        self.window = (slice(None), slice(None)) + tuple(slice(s, s + p) for s, p in zip(starts, self.patch))
        self.full_shape = self.predictor.coordinate_shape or tuple(self.volume.shape[2:])

    def patches(self, batch: int) -> torch.Tensor:
        return self.volume[self.window].repeat(batch, 1, 1, 1, 1).to(self.device)

    def full_input(self, batch: int) -> torch.Tensor:
        """The U-Net input of ``batch`` copies of the patch, by the network-input contract (as sampling builds it)."""
        from MedDiffFMLib.models.inputs import network_input

        axes = (self.predictor.patch_axes([self.window] * batch, self.full_shape)
                if self.config.position_channels else None)
        return network_input(self.patches(batch), None, None, self.config, axes=axes)

    def direct(self, model, batch: int, dtype=None, ctx=torch.no_grad) -> Callable[[], torch.Tensor]:
        from MedDiffFMLib.device import autocast

        inputs = self.full_input(batch)
        t = torch.full((batch,), TIMESTEP, device=self.device, dtype=torch.long)
        r = torch.full((batch,), self.region_index, device=self.device, dtype=torch.long)

        def run():
            with ctx(), autocast(self.device, dtype):
                return model(inputs, t, r).float()
        return run

    def library(self, batch: int) -> Callable[[], torch.Tensor]:
        x = self.patches(batch)

        def run():
            return self.predictor._predict_patches(x, [self.window] * batch, TIMESTEP, self.full_shape)
        return run


def build_variants(bench: PatchBench, args) -> list[Variant]:
    """The naive evaluation first, the library as shipped second, then every candidate of the tuned path."""
    engine = bench.engine
    base_model = engine.loaded.model
    gpu = bench.device.type == "cuda"
    lib_batch = bench.predictor.batch_size
    lib_sdpa, lib_cl = uses_sdpa(base_model), uses_channels_last(base_model)
    plain_model = naive_model(base_model)
    dtype = engine.autocast_dtype
    attention = {True: "sdpa", False: "einsum"}
    variants = [Variant(f"naive: fp32, 1 patch, no_grad ({attention[lib_sdpa]} attention as built, default layout)",
                        1, bench.direct(plain_model, 1), sdpa=lib_sdpa)]
    lib_note = f"autocast {dtype}" if dtype else "fp32"
    variants.append(Variant(f"library as shipped (batch {lib_batch}, {lib_note}, incl. position embedding)",
                            lib_batch, bench.library(lib_batch), library=True, sdpa=lib_sdpa, channels_last=lib_cl))
    batches = sorted({1, 2, lib_batch} | ({4} if not args.quick else set()) | ({8, 16} if gpu else set()))
    for b in batches:
        if b != 1 or dtype is not None:
            variants.append(Variant(f"library network, batch {b}", b, bench.direct(base_model, b, dtype),
                                    sdpa=lib_sdpa, channels_last=lib_cl))
    # Attention implementation (both ways, whatever the library ships) x channels-last weights.
    models = {(sdpa, cl): tuned_model(base_model, sdpa, cl) for sdpa in (True, False) for cl in (False, True)
              if (sdpa, cl) != (lib_sdpa, lib_cl)}
    for b in sorted({1, lib_batch}):
        for (sdpa, cl), model in models.items():
            name = f"{attention[sdpa]} attention, {'channels_last_3d' if cl else 'default layout'} weights, batch {b}"
            variants.append(Variant(name, b, bench.direct(model, b, dtype), sdpa=sdpa, channels_last=cl))
    variants.append(Variant("naive + inference_mode", 1, bench.direct(plain_model, 1, None, torch.inference_mode),
                            sdpa=lib_sdpa))
    if args.compile:
        compiled = torch.compile(tuned_model(base_model, True, True))
        variants.append(Variant(f"torch.compile (sdpa + channels_last_3d), batch {lib_batch}", lib_batch,
                                bench.direct(compiled, lib_batch, dtype), sdpa=True, channels_last=True))
    return variants


def count_flops(bench: PatchBench) -> float:
    """FLOPs of one patch (batch 1), on the einsum attention: FlopCounterMode does not count every CPU SDPA kernel."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        bench.direct(tuned_model(bench.engine.loaded.model, False, False), 1)()
    return float(counter.get_total_flops())


def naive_activation_bytes(naive: Variant, device: torch.device) -> float:
    """Run the naive variant once (keeping its output for the comparison) and return the activation memory
    of that evaluation in bytes; measured first, before the other variants fill the allocator."""
    gpu = device.type == "cuda"
    with timing.PeakMemory(cuda=gpu) as memory:
        naive.output = naive.fn()[:1].detach().cpu()
        sync(device)
    return memory.cuda_peak if gpu else memory.peak_rss - memory.start_rss


def warm_up(variants: list[Variant], device: torch.device) -> None:
    """Run each variant once, keeping its first output for the comparison with the naive one."""
    for v in variants:
        v.output = v.fn()[:1].detach().cpu()
        sync(device)


def time_variants(variants: list[Variant], device: torch.device, rounds: int) -> None:
    """Seconds per patch of every variant, in ``rounds`` interleaved rounds."""
    for r in range(rounds):
        for v in variants:
            sync(device)
            start = time.perf_counter()
            v.fn()
            sync(device)
            v.times.append((time.perf_counter() - start) / v.batch)
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{min(v.times):.2f}" for v in variants), flush=True)


def best_of(fn: Callable[[], Any], device: torch.device, n: int = 5) -> float:
    best = float("inf")
    for _ in range(n):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def choose_tuned(variants: list[Variant]) -> Variant:
    """The fastest measured variant that keeps the naive output (1e-3 relative); ties (within 3 %) go to
    the simplest change, the fewest deviations from the library as shipped (``variants[1]``)."""
    naive, library = variants[0], variants[1]
    scale = float(naive.output.abs().max()) or 1.0
    candidates = [v for v in variants if not v.name.startswith(("naive", "torch.compile", "library as"))
                  and float((v.output - naive.output).abs().max()) <= 1e-3 * scale]
    if not candidates:
        return library
    fastest = min(min(v.times) for v in candidates)
    close = [v for v in candidates if min(v.times) <= TIE * fastest]
    return min(close, key=lambda v: ((v.sdpa != library.sdpa) + (v.channels_last != library.channels_last)
                                     + (v.batch != library.batch), min(v.times)))


def network_section(engine, image: sitk.Image, args, rounds: int) -> tuple[reporting.Table, NetworkFigures]:
    """Section 1: the table and the figures the other sections use."""
    from MedDiffFMLib.device import kept_cpu_memory

    bench = PatchBench(engine, image)
    device, config, patch = bench.device, bench.config, bench.patch
    gpu = device.type == "cuda"
    variants = build_variants(bench, args)
    flops = count_flops(bench)
    patch_vox = int(np.prod(patch))

    print(f"Per-evaluation variants on one {patch} patch ({rounds} interleaved rounds, best and median):", flush=True)
    activation_bytes = naive_activation_bytes(variants[0], device)
    # Every variant runs with the allocator setting of the library's patch loop (a no-op off the CPU engine).
    with kept_cpu_memory():
        warm_up(variants[1:], device)
        trivial = float(variants[0].output.abs().max()) == 0.0
        if trivial:
            print("WARNING: the model predicts exactly 0 (a fresh MONAI initialisation, e.g. from `init-model`): "
                  "every output-equality check below is trivially perfect. Use --config to get a random model with "
                  "non-zero outputs.")
        time_variants(variants, device, rounds)

    # Position embedding and importance map (per patch).
    from monai.data.utils import compute_importance_map

    from MedDiffFMLib.models.inputs import network_input

    # The network input as the library builds it per patch (the embedding made axis by axis).
    embed_s = best_of(lambda: network_input(bench.patches(1), None, None, config,
                                            axes=bench.predictor.patch_axes([bench.window], bench.full_shape)),
                      device) if config.position_channels else 0.0
    importance_s = best_of(lambda: compute_importance_map(patch, mode="gaussian", sigma_scale=0.125, device=device),
                           device)

    naive_best = min(variants[0].times)
    peak = gpu_peak_tflops(torch.cuda.get_device_name(device)) if gpu else None
    table = reporting.Table(
        f"1. Per network evaluation: one {'x'.join(map(str, patch))} patch ({patch_vox / 1e6:.3f} Mvox) of "
        f"{getattr(args, 'e2e_name', args.e2e_case)} on the model grid, {config.input_channels} input channels",
        [("variant", "variant"), ("batch", "batch"), ("best", "s/patch (best)", "{:.3f}"),
         ("median", "s/patch (median)", "{:.3f}"), ("mvox", "Mvox/s", "{:.3f}"), ("speedup", "× naive", "{:.2f}"),
         ("tflops", "TFLOP/s", "{:.3f}"), ("peak", "% bf16 peak", "{:.1f}"), ("diff", "max |Δ| vs naive", "{:.1e}")],
        note=(f"FLOPs per patch {flops / 1e9:.1f} GFLOP = {flops / patch_vox / 1e6:.2f} MFLOP per patch voxel "
              f"(FlopCounterMode, batch 1, attention counted as matrix products). Activation memory of one naive "
              f"evaluation: {activation_bytes / 2**30:.2f} GiB. Network input (position embedding) of one patch: {embed_s * 1e3:.1f} ms "
              f"({100 * embed_s / naive_best:.1f} % of a naive evaluation); Gaussian importance map: "
              f"{importance_s * 1e3:.1f} ms. "
              + ("The model predicts exactly 0: the equality checks are trivial. " if trivial else "")
              + ("% bf16 peak: against " + (f"{peak:.0f} TFLOP/s" if peak else "an unknown peak") if gpu
                 else "No GPU: no bf16 peak fraction.")))
    for v in variants:
        best = min(v.times)
        tflops = flops / best / 1e12
        diff = float((v.output - variants[0].output).abs().max())
        table.add(variant=v.name, batch=v.batch, best=best, median=statistics.median(v.times),
                  mvox=patch_vox / 1e6 / best, speedup=naive_best / best, tflops=tflops,
                  peak=(100 * tflops / peak if peak else None), diff=diff)
    figures = NetworkFigures(flops=flops, patch_vox=patch_vox, naive_best=naive_best,
                             library_best=min(variants[1].times), embed_s=embed_s, activation_bytes=activation_bytes,
                             region=bench.region, library_batch=bench.predictor.batch_size,
                             chosen=choose_tuned(variants), variants=variants)
    return table, figures
