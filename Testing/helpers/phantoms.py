"""Small CT-like phantoms in HU with oblique geometry, for fast tests."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

OBLIQUE_DIRECTION = (
    0.9659258262890683, -0.25881904510252074, 0.0,
    0.25881904510252074, 0.9659258262890683, 0.0,
    0.0, 0.0, 1.0,
)


def ct_phantom_array(shape=(24, 40, 36), noise_hu: float = 20.0, seed: int = 0) -> np.ndarray:
    """(z, y, x) int16 HU: air outside, a soft-tissue ellipse body, two lungs, a bone rod, noise."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    hu = np.full(shape, -1000.0)
    body = (y / 0.85) ** 2 + (x / 0.9) ** 2 < 1
    hu[body] = 40.0
    for cx in (-0.4, 0.4):
        hu[((y + 0.1) / 0.45) ** 2 + ((x - cx) / 0.25) ** 2 < 1] = -850.0
    hu[(y - 0.6) ** 2 + x**2 < 0.015] = 900.0
    hu[body] += rng.normal(0.0, noise_hu, int(body.sum()))
    return np.round(hu).astype(np.int16)


def ct_phantom(shape=(24, 40, 36), spacing=(1.7, 1.3, 2.9), origin=(-21.5, 13.25, 101.0),
               direction=OBLIQUE_DIRECTION, noise_hu: float = 20.0, seed: int = 0) -> sitk.Image:
    """A phantom image with anisotropic spacing and an oblique direction (x, y, z conventions)."""
    image = sitk.GetImageFromArray(ct_phantom_array(shape, noise_hu, seed))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def assert_same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-6) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=tol)


def air_and_body_ct(shape=(36, 80, 80), box=(slice(8, 28), slice(10, 30), slice(4, 24)), spacing=(2.0, 2.0, 2.0),
                    noise_hu: float = 20.0, seed: int = 0) -> tuple[sitk.Image, np.ndarray]:
    """A float32 CT (image, its (z, y, x) HU array) of a soft-tissue box in noisy air. The default, at 2 mm,
    is 18 x 40 x 40 voxels on the tiny model's 4 mm grid: its 16-voxel patches beyond x = 40 (80 mm) hold
    only air, what the body-only patch skip leaves out. ``spacing`` is (x, y, z)."""
    rng = np.random.default_rng(seed)
    hu = np.full(shape, -1000.0, np.float32) + rng.normal(0, noise_hu, shape).astype(np.float32)
    hu[box] = 40.0 + rng.normal(0, noise_hu, hu[box].shape)
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing(spacing)
    return image, hu
