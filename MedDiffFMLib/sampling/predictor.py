"""Whole-volume noise prediction from overlapping patches.

MONAI's ``sliding_window_inference`` does the tiling, batching and Gaussian blending; this class adds
what it cannot know: the position embedding of each patch's whole-image coordinates, the region
label, the cropped condition channels and mixed precision, and it retries a CUDA out-of-memory
error with smaller patch batches.

The windows are the fewest the overlap allows, spread evenly (:mod:`.tiling`). With a body mask
(:attr:`Conditions.body`) the network runs only where its answer is used: outside the body (air, couch)
the noise estimate is the known answer, the one that makes the predicted clean image equal
:attr:`Conditions.outside` (the input there); the windows tile only the body's bounding box, and a
window with no body voxel is never evaluated. The skip is exact: every window that touches a body voxel
is evaluated, and the voxels a skipped window would have blended into are all outside, where the known
answer replaces the blend whether or not the window ran (Testing/test_predictor_skip.py compares both).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from ..device import autocast, kept_cpu_memory
from ..errors import ResourceError
from ..progress import CancelCheck, check_cancel
from ..models.inputs import network_input
from ..models.network import ConditionedModel
from ..models.position import grid_axes
from .schedule import NoiseSchedule
from .tiling import DEFAULT_OVERLAP, body_box, fitted_overlaps

LOG = logging.getLogger(__name__)


@contextmanager
def cancel_points(model: torch.nn.Module, cancel: Optional[CancelCheck]) -> Iterator[None]:
    """Check ``cancel`` before every submodule's forward while the block runs.

    A sampling step on a CPU can take minutes and one patch batch tens of seconds; PyTorch cannot stop
    an operation half-way, but a forward pre-hook runs between layers, so CancelledError is raised
    there (the cost: one Python call per layer, nothing beside a 3D convolution).
    """
    if cancel is None:
        yield
        return

    def check(_module, _inputs) -> None:
        check_cancel(cancel)

    check_cancel(cancel)
    handles = [module.register_forward_pre_hook(check) for module in model.modules()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class Conditions:
    """Per-volume conditions on the model grid (channels first, no batch axis).

    ``anatomy`` feeds the U-Net input; ``control`` feeds the ControlNet. ``body`` (bool, z, y, x)
    marks where the network's answer is used; outside it the predicted clean image is held at
    ``outside`` (model units, (z, y, x), e.g. the measured image), so no network runs there.
    """

    region: int = 0
    anatomy: Optional[torch.Tensor] = None
    control: Optional[torch.Tensor] = None
    body: Optional[torch.Tensor] = None
    outside: Optional[torch.Tensor] = None

    def held_outside(self, body: Optional[np.ndarray], outside: torch.Tensor) -> "Conditions":
        """These conditions with the network's answer used only inside ``body`` (bool, z, y, x) and the
        clean image held at ``outside`` elsewhere; unchanged when ``body`` is None (no body was found, so
        the network runs everywhere)."""
        if body is None:
            return self
        return replace(self, body=torch.as_tensor(body), outside=outside)


class VolumeNoisePredictor:
    """Predicts the noise of a whole (1, 1, z, y, x) volume at one time step; each patch's network
    input is built by :func:`~MedDiffFMLib.models.inputs.network_input`, as in training.

    Args:
        model: the network (base U-Net, optionally with ControlNet).
        device: where the network runs; the volume itself stays on ``volume_device``.
        patch_size: (z, y, x) patch; the volume must be at least this large.
        overlap: the least overlap of neighbouring patches, as a fraction of the patch
            (:func:`~.tiling.axis_windows`).
        batch_size: patches per network call (memory is bounded by it).
        autocast_dtype: bf16 on GPUs and CPUs with native bf16, None for full precision.
        coordinate_shape: the shape the whole-image coordinates span (the unpadded image).
        coordinate_offset: index of the unpadded image's first voxel in the padded volume.
    """

    def __init__(
        self,
        model: ConditionedModel,
        *,
        device: torch.device,
        patch_size: Sequence[int],
        overlap: float = DEFAULT_OVERLAP,
        batch_size: int = 4,
        autocast_dtype: Optional[torch.dtype] = None,
        coordinate_shape: Optional[Sequence[int]] = None,
        coordinate_offset: Sequence[int] = (0, 0, 0),
        volume_device: torch.device | str = "cpu",
    ) -> None:
        self.model = model
        self.config = model.config
        self.device = torch.device(device)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.overlap = float(overlap)
        self.batch_size = max(1, int(batch_size))
        self.autocast_dtype = autocast_dtype
        self.coordinate_shape = tuple(coordinate_shape) if coordinate_shape is not None else None
        self.coordinate_offset = tuple(int(o) for o in coordinate_offset)
        self.volume_device = torch.device(volume_device)
        self.conditions = Conditions()
        self._body_box: Optional[tuple[slice, ...]] = None
        self.evaluations = 0  # patches the network evaluated, over all passes
        self.skipped = 0      # windows left out for holding no body voxel
        self.passes = 0       # whole-volume noise estimates made (one per sampler step)
        # False evaluates every patch (the body mask still holds the outside): the reference the skip matches.
        self.skip_outside_body = True
        # False: MONAI's own windows (stride int(patch * (1 - overlap)), over the whole volume), as
        # before issue 40; benchmarks/speed.py's legacy path times it.
        self.fitted_windows = True
        # A v-predicting model's output becomes noise here, the one place: callers only see epsilon.
        self._schedule = NoiseSchedule.from_config(self.config)

    def set_conditions(self, conditions: Conditions) -> None:
        if (conditions.body is None) != (conditions.outside is None):
            raise ValueError("Conditions.body and Conditions.outside go together: give both or neither.")
        self.conditions = conditions
        self._body_box = body_box(conditions.body, self.patch_size)

    def _extra_channels(self) -> Optional[torch.Tensor]:
        parts = [c for c in (self.conditions.anatomy, self.conditions.control) if c is not None]
        if not parts:
            return None
        return torch.cat([p.to(self.volume_device, torch.float32) for p in parts])[None]

    @staticmethod
    def _shifted(windows: list, origin: Sequence[int]) -> list:
        """``windows`` of a crop starting at ``origin`` (z, y, x) as windows of the whole volume."""
        if not any(origin):
            return windows
        return [tuple(window[:2]) + tuple(slice(s.start + o, s.stop + o) for s, o in zip(window[2:], origin))
                for window in windows]

    def patch_axes(self, windows: list, full_shape: Sequence[int]) -> list[list[torch.Tensor]]:
        """Each patch's whole-image coordinates as its three axes (:func:`~MedDiffFMLib.models.position.grid_axes`),
        for ``windows`` (slices of the sampled volume, ``(batch, channel, z, y, x)``) in a volume of ``full_shape``:
        what :func:`~MedDiffFMLib.models.inputs.network_input` embeds; public so benchmarks build the same input."""
        axes = []
        for window in windows:
            spatial = window[2:]
            starts = [s.start - o for s, o in zip(spatial, self.coordinate_offset)]
            stops = [s.stop - 1 - o for s, o in zip(spatial, self.coordinate_offset)]
            shape = [s.stop - s.start for s in spatial]
            axes.append(grid_axes(starts, stops, shape, full_shape, device=self.device))
        return axes

    def _needed(self, windows: list) -> list[bool]:
        """Whether each window (slices of the (1, 1, z, y, x) volume) holds a body voxel."""
        body = self.conditions.body
        if body is None or not self.skip_outside_body:
            return [True] * len(windows)
        return [bool(body[tuple(window[2:])].any()) for window in windows]

    def _predict_patches(
        self, patches: torch.Tensor, windows: list, timestep: int, full_shape: Sequence[int], condition=None,
        origin: Sequence[int] = (0, 0, 0),
    ) -> torch.Tensor:
        """The noise of one batch of patches: MONAI's sliding window calls this once per patch batch,
        with ``windows`` in the tiled box, which starts at ``origin`` of the whole volume."""
        windows = self._shifted(windows, origin)
        needed = self._needed(windows)
        if not all(needed):
            # Patches outside the body get zeros: only voxels outside the body receive them, and there
            # the known answer replaces the blend (__call__).
            out = torch.zeros_like(patches, dtype=torch.float32)
            self.skipped += needed.count(False)
            keep = [i for i, n in enumerate(needed) if n]
            if keep:
                index = torch.tensor(keep, device=patches.device)
                out[index] = self._network(patches[index], [windows[i] for i in keep], timestep, full_shape,
                                           condition[index] if condition is not None else None)
            return out
        return self._network(patches, windows, timestep, full_shape, condition)

    def _network(
        self, patches: torch.Tensor, windows: list, timestep: int, full_shape: Sequence[int], condition=None
    ) -> torch.Tensor:
        batch = patches.shape[0]
        axes = self.patch_axes(windows, full_shape) if self.config.position_channels else None
        anatomy_channels = self.config.anatomy_channels
        anatomy = control = None
        if condition is not None:
            anatomy = condition[:, :anatomy_channels] if anatomy_channels else None
            control = condition[:, anatomy_channels:] if condition.shape[1] > anatomy_channels else None
        model_input = network_input(patches, None, anatomy, self.config, axes=axes)
        t = torch.full((batch,), int(timestep), device=self.device, dtype=torch.long)
        region = torch.full((batch,), int(self.conditions.region), device=self.device, dtype=torch.long)
        with torch.no_grad(), autocast(self.device, self.autocast_dtype):
            output = self.model(model_input, t, region, control.float() if control is not None else None)
        self.evaluations += batch
        if self.config.prediction_type == "epsilon":
            return output.float()
        return self._schedule.noise_from_output(output.float(), patches.float(), int(timestep))

    def _hold_outside(self, eps: torch.Tensor, x: torch.Tensor, timestep: int, slab: int = 16) -> torch.Tensor:
        """``eps`` with the known answer outside the body, in place: the noise for which
        x0 = ``Conditions.outside``. Slab by slab along z, so a whole CT needs no volume-sized temporaries."""
        body = self.conditions.body
        outside = self.conditions.outside
        assert body is not None and outside is not None
        for start in range(0, eps.shape[2], slab):
            part = slice(start, start + slab)
            known = self._schedule.noise_for_x0(x[0, 0, part], outside[part].to(x.device, x.dtype), int(timestep))
            target = eps[0, 0, part]
            torch.where(body[part].to(eps.device), target, known.to(eps.device, eps.dtype), out=target)
        return eps

    def __call__(self, x: torch.Tensor, timestep: int, cancel: Optional[CancelCheck] = None) -> torch.Tensor:
        """Noise estimate for ``x`` (1, 1, z, y, x) at ``timestep``, blended with Gaussian weights.

        ``cancel`` is checked before every layer of every patch batch, so a cancel is acted on within
        one layer's time (well under a second), not at the end of the step; it raises CancelledError.
        """
        if any(s < p for s, p in zip(x.shape[2:], self.patch_size)):
            raise ValueError(f"Volume {tuple(x.shape[2:])} is smaller than the patch {self.patch_size}; pad it first.")
        full_shape = self.coordinate_shape or tuple(x.shape[2:])
        body = self.conditions.body
        if body is not None and tuple(body.shape) != tuple(x.shape[2:]):
            raise ValueError(f"The body mask {tuple(body.shape)} does not match the volume {tuple(x.shape[2:])}.")
        extra = self._extra_channels()
        self.passes += 1
        box = (self._body_box if self.fitted_windows else None) or tuple(slice(0, n) for n in x.shape[2:])
        origin = tuple(b.start for b in box)
        tiled = x[(slice(None), slice(None), *box)]
        overlap = (fitted_overlaps(tiled.shape[2:], self.patch_size, self.overlap) if self.fitted_windows
                   else self.overlap)
        while True:
            try:
                # The CPU allocator keeps the activations' memory for the patch loop (a no-op elsewhere).
                with torch.no_grad(), kept_cpu_memory(), cancel_points(self.model, cancel):
                    eps = sliding_window_inference(
                        tiled,
                        roi_size=self.patch_size,
                        sw_batch_size=self.batch_size,
                        predictor=self._predict_patches,
                        overlap=overlap,
                        mode="gaussian",
                        sw_device=self.device,
                        device=self.volume_device,
                        with_coord=True,
                        condition=extra[(slice(None), slice(None), *box)] if extra is not None else None,
                        timestep=timestep,
                        full_shape=full_shape,
                        origin=origin,
                    )
                if body is not None:
                    if tuple(eps.shape) != tuple(x.shape):  # the box only: the rest is outside the body
                        whole = torch.zeros(x.shape, dtype=eps.dtype, device=eps.device)
                        whole[(slice(None), slice(None), *box)] = eps
                        eps = whole
                    eps = self._hold_outside(eps, x, timestep)
                return eps
            except torch.cuda.OutOfMemoryError as error:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if self.batch_size == 1:
                    raise ResourceError(
                        "The GPU ran out of memory even with one patch at a time. Close other programs using "
                        "the GPU, use a model with a smaller patch size, or run with --device cpu."
                    ) from error
                self.batch_size = max(1, self.batch_size // 2)
                LOG.warning("GPU out of memory; retrying with %d patches per batch.", self.batch_size)
