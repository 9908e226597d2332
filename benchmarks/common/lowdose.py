"""Low-dose CT simulation in the sinogram domain (what the denoising benchmark feeds the denoisers).

Per axial slice (parallel-beam geometry, scikit-image's Radon transform):

1. HU -> linear attenuation mu = mu_water * (1 + HU / 1000) (HU below -1000, e.g. -2048 outside the
   field of view, count as air), the slice padded to a square with air;
2. line integrals p = R(mu) * pixel size (dimensionless), ``n_views`` angles over 180 degrees and one
   detector bin per pixel;
3. transmitted photons N ~ Poisson(I0 * exp(-p)) (I0 = incident photons per ray, optionally plus
   Gaussian electronic noise), noisy line integrals p~ = -log(max(N, 1) / I0);
4. filtered back-projection (ramp filter, linear interpolation) of the *difference* p~ - p, converted
   back to HU, added to the clean slice.

Only the noise is reconstructed, so the clean image keeps its exact values and the added noise has
the texture and the spatial non-uniformity of FBP CT noise (more noise behind dense, wide anatomy,
streaks along the strongly attenuating directions) rather than white noise. Slices are independent
(as in a reconstructed helical scan without z filtering).

The noise level scales as ~1/sqrt(I0); :func:`calibrate_i0` picks I0 so that a target std (HU) is
added in soft tissue, from a pilot on a few slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

# Linear attenuation of water at ~70 keV (the effective energy of a 120 kVp spectrum), per mm.
MU_WATER_PER_MM = 0.0192
DEFAULT_TARGET_STD_HU = 35.0
PILOT_I0 = 1.0e5


def hu_to_mu(hu: np.ndarray, mu_water: float = MU_WATER_PER_MM) -> np.ndarray:
    """Hounsfield units -> linear attenuation (1/mm); below -1000 HU counts as air (0)."""
    return mu_water * (1.0 + np.maximum(np.asarray(hu, dtype=np.float64), -1000.0) / 1000.0)


def _angles(n_views: int) -> np.ndarray:
    return np.linspace(0.0, 180.0, int(n_views), endpoint=False)


def _square(slice_hu: np.ndarray) -> tuple[np.ndarray, tuple[slice, slice]]:
    ny, nx = slice_hu.shape
    n = max(ny, nx)
    y0, x0 = (n - ny) // 2, (n - nx) // 2
    out = np.full((n, n), -1000.0)
    out[y0:y0 + ny, x0:x0 + nx] = slice_hu
    return out, (slice(y0, y0 + ny), slice(x0, x0 + nx))


def slice_noise_hu(
    slice_hu: np.ndarray,
    pixel_mm: float,
    i0: float,
    rng: np.random.Generator,
    n_views: Optional[int] = None,
    electronic_std: float = 0.0,
    mu_water: float = MU_WATER_PER_MM,
) -> np.ndarray:
    """The low-dose noise (HU) of one axial slice (y, x): FBP of the Poisson noise of its sinogram."""
    from skimage.transform import iradon, radon

    square, crop = _square(np.asarray(slice_hu, dtype=np.float64))
    n = square.shape[0]
    theta = _angles(n_views or n)
    line_integrals = radon(hu_to_mu(square, mu_water), theta=theta, circle=False) * pixel_mm
    expected = i0 * np.exp(-line_integrals)
    counts = rng.poisson(expected).astype(np.float64)
    if electronic_std > 0:
        counts += rng.normal(0.0, electronic_std, size=counts.shape)
    noisy = -np.log(np.maximum(counts, 1.0) / i0)
    delta_mu = iradon((noisy - line_integrals) / pixel_mm, theta=theta, circle=False, output_size=n,
                      filter_name="ramp", interpolation="linear")
    return (1000.0 * delta_mu / mu_water)[crop].astype(np.float32)


@dataclass
class LowDoseResult:
    noisy: np.ndarray  # (z, y, x) HU, float32
    noise: np.ndarray  # the added noise (HU), float32
    i0: float  # incident photons per ray
    n_views: int
    pixel_mm: float


def pixel_size(spacing_xyz: Sequence[float]) -> float:
    """In-plane pixel size (mm); anisotropic pixels use the geometric mean (the Radon model needs square pixels)."""
    sx, sy = float(spacing_xyz[0]), float(spacing_xyz[1])
    return float(np.sqrt(sx * sy))


def simulate_low_dose(
    hu: np.ndarray,
    spacing_xyz: Sequence[float],
    i0: float,
    *,
    seed: int = 0,
    n_views: Optional[int] = None,
    electronic_std: float = 0.0,
    slices: Optional[Sequence[int]] = None,
) -> LowDoseResult:
    """Add sinogram-domain low-dose noise to every axial slice of ``hu`` (z, y, x), or only to
    ``slices`` (the others are returned unchanged with zero noise)."""
    hu = np.asarray(hu, dtype=np.float32)
    pixel_mm = pixel_size(spacing_xyz)
    rng = np.random.default_rng(seed)
    noise = np.zeros_like(hu)
    indices = range(hu.shape[0]) if slices is None else slices
    for k in indices:
        noise[k] = slice_noise_hu(hu[k], pixel_mm, i0, rng, n_views, electronic_std)
    views = int(n_views or max(hu.shape[1:]))
    return LowDoseResult(hu + noise, noise, float(i0), views, pixel_mm)


def added_std(noise: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """Standard deviation (HU) of the added noise inside ``mask``."""
    values = noise[mask] if mask is not None else noise.ravel()
    return float(np.std(values)) if values.size else float("nan")


def calibrate_i0(
    hu: np.ndarray,
    spacing_xyz: Sequence[float],
    mask: np.ndarray,
    target_std_hu: float = DEFAULT_TARGET_STD_HU,
    *,
    pilot_slices: int = 3,
    pilot_i0: float = PILOT_I0,
    seed: int = 1,
    n_views: Optional[int] = None,
) -> tuple[float, float]:
    """``(i0, pilot_std)``: the incident flux that adds about ``target_std_hu`` of noise inside
    ``mask`` (soft tissue), from a pilot at ``pilot_i0`` on the ``pilot_slices`` slices with the
    most mask voxels (noise std scales as 1/sqrt(I0) away from photon starvation)."""
    counts = mask.reshape(mask.shape[0], -1).sum(axis=1)
    chosen = sorted(np.argsort(-counts)[:pilot_slices].tolist())
    pilot = simulate_low_dose(hu, spacing_xyz, pilot_i0, seed=seed, n_views=n_views, slices=chosen)
    sub = np.zeros_like(mask)
    sub[chosen] = mask[chosen]
    std = added_std(pilot.noise, sub)
    if not std > 0:
        raise ValueError("The pilot added no noise inside the mask; is the mask empty?")
    return float(pilot_i0 * (std / target_std_hu) ** 2), std
