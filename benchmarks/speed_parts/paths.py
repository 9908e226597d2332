"""The code paths :mod:`benchmarks.speed` times, each a row of :data:`PATHS`.

- naive: MONAI's ``SlidingWindowInferer`` wrapped around the same network once per sampler step, fp32,
  one patch at a time, overlap 0.5, Gaussian blending, the whole volume's position embedding computed
  once and cut with each patch; the same task code, steps and seed (only ``Engine.predictor`` is swapped);
- fast: the library as shipped (its Engine defaults: bf16 on a CPU with native bf16);
- fp32: the library as shipped but with fp32 arithmetic (``--precision float32``): the CPU path of issue
  40 before its bf16 step;
- tuned: the library with the changes section 1 recommends, applied from outside the library;
- legacy: the library's CPU path before issue 40, in its own process: patch batch 2, PyTorch's thread
  count and glibc's allocator left as they come (no :func:`MedDiffFMLib.device.configure_cpu_runtime`),
  MONAI's own windows at overlap 0.25 over the whole volume (no body box, no body-only patch skip), fp32.

A new path is one :class:`PathVariant` entry: how to build its engine from the loaded one, what its
fresh process sets up first, and its network seconds per evaluation and patch batch for the estimate of
section 4. Every table (end to end, memory, the large volume, targets) then gets its rows.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch

if TYPE_CHECKING:
    from benchmarks.speed_parts.network import NetworkFigures
    from benchmarks.speed_parts.runs import E2E

LEGACY_CPU_BATCH = 2
LEGACY_OVERLAP = 0.25
NAIVE_OVERLAP = 0.5


class NaivePredictor:
    """Noise of a whole volume with MONAI's SlidingWindowInferer around the network: fp32, one patch
    at a time, overlap 0.5; the input is the volume with its whole-image position embedding (and
    condition channels) concatenated once."""

    def __init__(self, fast) -> None:
        from monai.inferers import SlidingWindowInferer

        self.model = fast.model
        self.config = fast.config
        self.device = fast.device
        self.conditions = fast.conditions
        self.coordinate_shape = fast.coordinate_shape
        self.coordinate_offset = fast.coordinate_offset
        self.volume_device = fast.volume_device
        self.inferer = SlidingWindowInferer(roi_size=fast.patch_size, sw_batch_size=1, overlap=NAIVE_OVERLAP,
                                            mode="gaussian", sw_device=self.device, device=self.volume_device)
        self.evaluations = 0
        self._static: Optional[torch.Tensor] = None

    def set_conditions(self, conditions) -> None:
        self.conditions = conditions
        self._static = None

    def _static_channels(self, shape) -> torch.Tensor:
        """Position embedding of the whole (padded) volume + anatomy (zeros when absent) + control."""
        from MedDiffFMLib.models.position import grid_coordinates, sinusoidal_embedding

        if self._static is not None and tuple(self._static.shape[2:]) == tuple(shape):
            return self._static
        parts = []
        full = self.coordinate_shape or tuple(shape)
        if self.config.position_channels:
            starts = [-o for o in self.coordinate_offset]
            stops = [n - 1 - o for n, o in zip(shape, self.coordinate_offset)]
            coords = grid_coordinates(starts, stops, shape, full, device=self.volume_device)
            parts.append(sinusoidal_embedding(coords[None], self.config.position_frequencies))
        if self.config.anatomy_channels:
            anatomy = self.conditions.anatomy
            parts.append(anatomy.float()[None] if anatomy is not None
                         else torch.zeros((1, self.config.anatomy_channels, *shape)))
        if self.conditions.control is not None:
            parts.append(self.conditions.control.float()[None])
        self._static = torch.cat([p.to(self.volume_device) for p in parts], 1) if parts else torch.zeros((1, 0, *shape))
        return self._static

    def __call__(self, x: torch.Tensor, timestep: int, cancel=None) -> torch.Tensor:
        static = self._static_channels(tuple(x.shape[2:]))
        unet_channels = self.config.input_channels
        inputs = torch.cat([x.to(self.volume_device, torch.float32), static], 1)

        def network(patch: torch.Tensor) -> torch.Tensor:
            batch = patch.shape[0]
            control = patch[:, unet_channels:] if patch.shape[1] > unet_channels else None
            t = torch.full((batch,), int(timestep), device=self.device, dtype=torch.long)
            region = torch.full((batch,), int(self.conditions.region), device=self.device, dtype=torch.long)
            self.evaluations += batch
            return self.model(patch[:, :unet_channels], t, region, control)

        with torch.no_grad():
            return self.inferer(inputs, network)


def engine_variant(engine, adapt: Optional[Callable[[Any], Any]] = None, model: Optional[torch.nn.Module] = None,
                   **option_changes):
    """A copy of ``engine`` sharing its loaded weights that records the predictors it makes (for their
    evaluation counts). ``adapt`` changes or replaces each predictor (kept from ``engine`` when it is a
    variant already), ``model`` replaces the network and ``option_changes`` its EngineOptions."""
    from MedDiffFMLib.engine import Engine

    class Recording(Engine):
        def predictor(self, space, conditions=None, *args, **kwargs):
            made = Engine.predictor(self, space, conditions, *args, **kwargs)
            if self.adapt is not None:
                made = self.adapt(made)
            self.made.append(made)
            return made

    new = Recording.__new__(Recording)
    new.__dict__.update(engine.__dict__)
    new.adapt = adapt if adapt is not None else engine.__dict__.get("adapt")
    new.made = []
    if option_changes:
        new.options = dataclasses.replace(engine.options, **option_changes)
    if model is not None:
        new.loaded = dataclasses.replace(engine.loaded, model=model)
    return new


def every_patch(predictor):
    """The predictor without the body-only patch skip: before issue 40 the network ran on every patch."""
    if predictor.conditions.body is not None:
        predictor.set_conditions(dataclasses.replace(predictor.conditions, body=None, outside=None))
    return predictor


def legacy_windows(predictor):
    """The predictor as before issue 40: every patch of MONAI's own windows over the whole volume."""
    predictor.fitted_windows = False
    return every_patch(predictor)


def with_sdpa(model: torch.nn.Module, on: bool = True) -> torch.nn.Module:
    """Route MONAI's attention blocks through torch's scaled_dot_product_attention (same weights)."""
    for module in model.modules():
        if hasattr(module, "use_flash_attention"):
            module.use_flash_attention = on
    return model


def uses_sdpa(model: torch.nn.Module) -> bool:
    """Whether the network's attention blocks already use scaled_dot_product_attention."""
    return any(bool(getattr(m, "use_flash_attention", False)) for m in model.modules())


def uses_channels_last(model: torch.nn.Module) -> bool:
    """Whether the network's 3D convolution weights are stored channels-last."""
    weights = [p for p in model.parameters() if p.dim() == 5]
    # 1x1x1 kernels are both layouts at once, so look for one weight that is only channels-last.
    return (all(w.is_contiguous(memory_format=torch.channels_last_3d) for w in weights)
            and any(not w.is_contiguous() for w in weights))


def tuned_model(model: torch.nn.Module, sdpa: bool, channels_last: bool) -> torch.nn.Module:
    """A copy of ``model`` with the given attention implementation and weight layout."""
    new = copy.deepcopy(model)
    with_sdpa(new, sdpa)
    new = new.to(memory_format=torch.channels_last_3d if channels_last else torch.contiguous_format)
    return new.eval()


def naive_model(model: torch.nn.Module) -> torch.nn.Module:
    """The naive baseline's network: the same weights and attention, in PyTorch's default layout."""
    return tuned_model(model, uses_sdpa(model), False) if uses_channels_last(model) else model


class StubNet(torch.nn.Module):
    """Stands in for the network (zeros) to time everything around it."""

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.anchor = torch.nn.Parameter(torch.zeros(()), requires_grad=False)

    def forward(self, inputs, timesteps, region, condition=None):
        return torch.zeros((inputs.shape[0], 1, *inputs.shape[2:]), device=inputs.device, dtype=inputs.dtype)


# ---------------------------------------------------------------------------------------------
# The table of paths.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PathVariant:
    """One code path of the speed benchmark.

    ``build(engine, tuned)`` returns its engine from the loaded one (``tuned``: section 1's choice,
    ``{"sdpa", "channels_last", "batch"}``); ``prepare_process()`` runs first in the path's fresh
    process, before any engine is made (process-wide settings); ``network_seconds(net, e2e)`` is its
    network time per evaluation for the estimate of section 4 (``net``: section 1's figures, ``e2e``:
    its denoise run of section 2 or None) and ``activation_batch(net)`` the patches one evaluation holds
    in memory there. Paths with ``default=False`` run only when ``--paths`` names them.
    """

    name: str
    description: str
    build: Callable[[Any, dict], Any]
    network_seconds: Callable[["NetworkFigures", Optional["E2E"]], float]
    activation_batch: Callable[["NetworkFigures"], int]
    prepare_process: Optional[Callable[[], None]] = None
    default: bool = True


def _naive(engine, tuned: dict):
    return engine_variant(engine, NaivePredictor, model=naive_model(engine.loaded.model))


def _tuned(engine, tuned: dict):
    model = tuned_model(engine.loaded.model, tuned["sdpa"], tuned["channels_last"])
    return engine_variant(engine, model=model, batch_size=tuned["batch"])


def _legacy(engine, tuned: dict):
    batch = engine.options.batch_size or (LEGACY_CPU_BATCH if engine.device.type == "cpu" else None)
    made = engine_variant(engine, legacy_windows, batch_size=batch, precision="float32", overlap=LEGACY_OVERLAP)
    made.autocast_dtype = None if engine.device.type == "cpu" else engine.autocast_dtype  # (GPUs had bf16 before)
    return made


def _fp32(engine, tuned: dict):
    made = engine_variant(engine, precision="float32")
    made.autocast_dtype = None
    return made


def _runtime_as_it_comes() -> None:
    """PyTorch's thread count and glibc's allocator as they come (the CPU path before issue 40)."""
    import MedDiffFMLib.engine as engine_module

    engine_module.configure_cpu_runtime = lambda threads=None: torch.get_num_threads()


def _own_seconds_per_evaluation(net: "NetworkFigures", e2e: Optional["E2E"]) -> float:
    """Its own end-to-end seconds per evaluation (its allocator and threads differ from section 1's process);
    without one, section 1's fp32 time per patch (these paths compute in fp32)."""
    return e2e.sampling / max(e2e.evaluations, 1) if e2e is not None else net.naive_best


PATHS: dict[str, PathVariant] = {p.name: p for p in [
    PathVariant("naive", "MONAI's SlidingWindowInferer around the network: fp32, one patch, overlap 0.5", _naive,
                network_seconds=lambda net, e2e: net.naive_best, activation_batch=lambda net: 1),
    PathVariant("fast", "the library as shipped", lambda engine, tuned: engine_variant(engine),
                network_seconds=lambda net, e2e: net.library_best, activation_batch=lambda net: net.library_batch),
    PathVariant("tuned", "the library with section 1's fastest variant whose output matches the naive one", _tuned,
                network_seconds=lambda net, e2e: min(net.chosen.times), activation_batch=lambda net: net.chosen.batch),
    PathVariant("fp32", "the library as shipped with --precision float32 (issue 40 before its bf16 step)", _fp32,
                network_seconds=_own_seconds_per_evaluation, activation_batch=lambda net: net.library_batch,
                default=False),
    PathVariant("legacy", "the CPU path before issue 40 (batch 2, threads and allocator as they come, MONAI's "
                "windows at overlap 0.25, every patch, fp32)",
                _legacy, network_seconds=_own_seconds_per_evaluation,
                activation_batch=lambda net: LEGACY_CPU_BATCH, prepare_process=_runtime_as_it_comes, default=False),
]}


def path_engine(engine, path: str, tuned: dict, stub: bool = False):
    """The engine of ``path`` (a key of :data:`PATHS`); ``stub`` swaps the network for :class:`StubNet`."""
    made = PATHS[path].build(engine, tuned)
    if stub:
        made = engine_variant(made, model=StubNet(engine.config))
    return made
