"""ModelSpace: an input CT on the model's grid and intensity range, and the way back.

Forward: clip the HU to the window, resample to the model spacing (same origin and direction,
same physical extent), pad with air up to a minimum size, scale to [-1, 1].

Back: the model's *change* (output - input, in HU) is resampled to the input grid and added to
the input HU. Detail finer than the model grid is therefore kept, a zero change returns the input
bit-for-bit, and voxels the window clipped (bone, air, outside-FOV padding) are restored exactly,
so the result keeps the full HU range and the input's exact grid.

Restoration (denoising) takes the other way back, :meth:`ModelSpace.to_input_grid_replacing`: the
model output replaces the input inside the window, since adding the change would keep every bit of
noise finer than the model grid (see preprocessing/noise_bands.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

from ..io import Geometry, geometry_of, image_from_array, validate_volume
from .resample import Spacing, grid_for_spacing, resample_like
from .window import HUWindow

Padding = Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]


def _padding(shape: Sequence[int], min_size: Optional[Sequence[int]]) -> Padding:
    if min_size is None:
        return ((0, 0), (0, 0), (0, 0))
    if len(min_size) != 3:
        raise ValueError(f"min_size must be (z, y, x); got {min_size!r}")
    # Centred, so the content sits in the middle of the network's field of view.
    extra = [max(0, int(m) - n) for n, m in zip(shape, min_size)]
    return tuple((e // 2, e - e // 2) for e in extra)  # type: ignore[return-value]


def _on_grid(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    return image_from_array(array, geometry.spacing, geometry.origin, geometry.direction)


@dataclass(frozen=True, eq=False)
class ModelSpace:
    """An input (or an empty reference grid) mapped onto the model grid; see the module doc.

    Attributes: ``window``; ``input_geometry`` (the grid results come back on);
    ``model_geometry`` (the model grid before padding); ``padding`` (``((z0, z1), (y0, y1),
    (x0, x1))`` voxels added before/after); ``model_hu`` (float32 ``(z, y, x)``, the clipped HU on
    the padded model grid); ``model_array`` (the same scaled to [-1, 1], what the model sees).
    """

    window: HUWindow
    input_geometry: Geometry
    model_geometry: Geometry
    padding: Padding
    model_hu: np.ndarray = field(repr=False)
    model_array: np.ndarray = field(repr=False)
    _input: Optional[sitk.Image] = field(default=None, repr=False)

    @classmethod
    def from_image(
        cls,
        image: sitk.Image,
        spacing_mm: Spacing,
        window: HUWindow,
        min_size: Optional[Sequence[int]] = None,
        interpolator: str = "linear",
    ) -> "ModelSpace":
        """Map a CT in HU onto a grid of ``spacing_mm`` (one number or ``(x, y, z)``), clipped to
        ``window``, padded with the window's low value (air) up to ``min_size`` ``(z, y, x)``."""
        validate_volume(image, "input")
        clipped = sitk.Clamp(
            sitk.Cast(image, sitk.sitkFloat32), sitk.sitkFloat32, window.low, window.high
        )
        model_geometry = grid_for_spacing(image, spacing_mm)
        resampled = resample_like(clipped, model_geometry, interpolator, window.low, extrapolate=True)
        hu = np.clip(sitk.GetArrayFromImage(resampled), window.low, window.high)
        padding = _padding(hu.shape, min_size)
        hu = np.pad(hu, padding, constant_values=window.low).astype(np.float32, copy=False)
        model_array = window.hu_to_model(hu)
        return cls(window, geometry_of(image), model_geometry, padding, hu, model_array, image)

    @classmethod
    def for_grid(
        cls,
        reference: Union[sitk.Image, Geometry],
        spacing_mm: Spacing,
        window: HUWindow,
        min_size: Optional[Sequence[int]] = None,
    ) -> "ModelSpace":
        """A model grid for synthesis on ``reference``'s grid: no input intensities
        (``model_array`` is all air, -1); :meth:`to_input_grid` returns the model output in HU."""
        reference_geometry = geometry_of(reference)
        model_geometry = grid_for_spacing(reference_geometry, spacing_mm)
        padding = _padding(model_geometry.shape, min_size)
        shape = tuple(n + a + b for n, (a, b) in zip(model_geometry.shape, padding))
        hu = np.full(shape, window.low, dtype=np.float32)
        return cls(window, reference_geometry, model_geometry, padding, hu, window.hu_to_model(hu))

    @property
    def _crop(self) -> Tuple[slice, ...]:
        return tuple(slice(a, a + n) for (a, _), n in zip(self.padding, self.model_geometry.shape))

    @property
    def padded_geometry(self) -> Geometry:
        """The grid of ``model_array`` including the padding (origin moved by the padding)."""
        g = self.model_geometry
        before_xyz = np.array([p[0] for p in reversed(self.padding)], dtype=float)
        origin = np.asarray(g.origin) - g.direction_matrix @ (before_xyz * np.asarray(g.spacing))
        size = tuple(reversed(self.model_array.shape))
        return Geometry(size, g.spacing, tuple(float(o) for o in origin), g.direction)

    def footprint(self) -> np.ndarray:
        """Bool, shaped like ``model_array``: True where the input has data, False in the padding."""
        return np.pad(np.ones(self.model_geometry.shape, dtype=bool), self.padding, constant_values=False)

    def model_grid_image(self, array: np.ndarray) -> sitk.Image:
        """Wrap an array shaped like ``model_array`` as an image on :attr:`padded_geometry`."""
        self._check_shape(array)
        return _on_grid(np.asarray(array), self.padded_geometry)

    def _check_shape(self, array: np.ndarray) -> None:
        if np.shape(array) != self.model_array.shape:
            raise ValueError(
                f"model output shape {np.shape(array)} differs from model_array {self.model_array.shape}"
            )

    def _to_input(self, array_on_model_grid: np.ndarray, interpolator: str = "linear") -> np.ndarray:
        image = _on_grid(array_on_model_grid.astype(np.float32, copy=False), self.model_geometry)
        # The model grid covers the input's extent; edge voxels take the nearest model voxel.
        back = resample_like(image, self.input_geometry, interpolator, 0.0, extrapolate=True)
        return sitk.GetArrayFromImage(back)

    def to_input_grid(
        self, model_output: np.ndarray, replace_mask: Optional[np.ndarray] = None
    ) -> sitk.Image:
        """Bring ``model_output`` (shaped like ``model_array``, in [-1, 1]) back to HU on the
        input's exact grid, as a float32 image.

        With an input: input HU + resampled (output - model input) in HU; voxels outside the
        window keep the input value. ``replace_mask`` (bool ``(z, y, x)`` on the input grid,
        e.g. for inpainting) marks voxels that take the model output in HU instead. Without an
        input (:meth:`for_grid`): the model output in HU resampled to the reference grid.
        """
        self._check_shape(model_output)
        out = np.clip(np.asarray(model_output, dtype=np.float32), -1.0, 1.0)[self._crop]
        if self._input is None:
            result = self._to_input(self.window.model_to_hu(out))
        else:
            # Difference in model units first: exactly 0 where unchanged, then scale to HU.
            delta = (out - self.model_array[self._crop]) * np.float32(self.window.width / 2.0)
            source = self.input_array()
            result = source + self._to_input(delta)
            clipped = (source < self.window.low) | (source > self.window.high)
            result[clipped] = source[clipped]
            if replace_mask is not None:
                mask = np.asarray(replace_mask, dtype=bool)
                if mask.shape != source.shape:
                    raise ValueError(f"replace_mask shape {mask.shape} != input shape {source.shape}")
                result[mask] = self._to_input(self.window.model_to_hu(out))[mask]
        g = self.input_geometry
        return image_from_array(result.astype(np.float32, copy=False), g.spacing, g.origin, g.direction)

    def input_array(self) -> np.ndarray:
        """The input's HU as a float32 ``(z, y, x)`` copy on the input grid (not clipped)."""
        if self._input is None:
            raise ValueError("This model space has no input image (ModelSpace.for_grid).")
        return sitk.GetArrayFromImage(sitk.Cast(self._input, sitk.sitkFloat32))

    def to_input_grid_replacing(self, model_output: np.ndarray, fine_noise_hu: float,
                                source: Optional[np.ndarray] = None) -> np.ndarray:
        """Restoration's way back, float32 HU ``(z, y, x)`` on the input grid: inside the window the model
        output in HU replaces the input (so the noise finer than the model grid goes too), plus the
        input's *fine band* (the input minus what the model saw, the clipped model-grid HU, taken back;
        relative to the clipped image so that it meets the input at the window's edges) through a local
        Wiener gain against ``fine_noise_hu``; voxels outside the window keep the input value, as in
        :meth:`to_input_grid`. ``source``: the caller's :meth:`input_array`, when it holds one already (a
        whole CT is not read a second time)."""
        from .noise_bands import wiener_shrink

        self._check_shape(model_output)
        source = self.input_array() if source is None else source
        out = np.clip(np.asarray(model_output, dtype=np.float32), -1.0, 1.0)[self._crop]
        result = wiener_shrink(source - self._to_input(self.model_hu[self._crop]), fine_noise_hu)
        result += self._to_input(self.window.model_to_hu(out))
        clipped = (source < self.window.low) | (source > self.window.high)
        result[clipped] = source[clipped]
        return result

    def mask_to_model(self, mask: np.ndarray, threshold: float = 0.5, geometry: Optional[Geometry] = None
                      ) -> np.ndarray:
        """A bool ``(z, y, x)`` mask on the input grid (or on ``geometry``, e.g. a thick-slice source of a
        super-resolution grid) -> bool mask shaped like ``model_array`` (linear resampling, then
        ``>= threshold``: 0.5 keeps voxels at least half covered; a smaller value keeps thin structures).
        The padding is outside the mask."""
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1]; got {threshold}")
        mask = np.asarray(mask, dtype=bool)
        g = geometry or self.input_geometry
        if mask.shape != g.shape:
            raise ValueError(f"mask shape {mask.shape} != its grid's shape {g.shape}")
        image = image_from_array(mask.astype(np.float32), g.spacing, g.origin, g.direction)
        on_model = resample_like(image, self.model_geometry, "linear", 0.0, extrapolate=True)
        inside = sitk.GetArrayFromImage(on_model) >= threshold
        return np.pad(inside, self.padding, constant_values=False)
