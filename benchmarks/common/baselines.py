"""The classical denoisers the denoising benchmarks compare against (numpy, scipy, scikit-image and
the optional PyPI ``bm4d``; no SimpleITK, so that the GPU training chunk's quality check runs them
too): (noisy HU (z, y, x), spacing (x, y, z)) -> denoised HU. Parameters as tuned in
benchmarks/denoise_quality.py (see benchmarks/README.md)."""

from __future__ import annotations

from typing import Optional

import numpy as np

# Tuned with --tune on lidc_chest_1mm (64 mm box, ~35 HU added), best SSIM; see benchmarks/README.md.
GAUSSIAN_SIGMA_MM = 0.6
NLM_H_FACTOR = 0.3  # the low end of the tuning grid (0.3..0.8); best PSNR and RMSE at 0.4
NLM_PATCH = 5
NLM_DISTANCE = 5
BM4D_SIGMA_FACTOR = 1.0


def gaussian(noisy: np.ndarray, spacing_xyz, sigma_mm: float = GAUSSIAN_SIGMA_MM) -> np.ndarray:
    from scipy import ndimage

    sigma = [sigma_mm / s for s in spacing_xyz[::-1]]
    return ndimage.gaussian_filter(noisy.astype(np.float32), sigma=sigma, mode="nearest")


def estimated_sigma(noisy: np.ndarray) -> float:
    """Blind noise std (HU) for NLM and BM4D: the estimator MedDiffFM itself uses (MAD of neighbour
    differences in soft tissue, :func:`MedDiffFMLib.preprocessing.noise_estimate.estimate_noise_hu`). It is
    closer to the truth on CT than skimage's wavelet estimate, which misses most of the spatially
    correlated FBP noise (e.g. 24 vs 33 HU); skimage's estimate is the fallback when there is too
    little soft tissue."""
    from MedDiffFMLib.preprocessing.noise_estimate import estimate_noise_hu

    sigma = estimate_noise_hu(noisy)
    if sigma > 0:
        return float(sigma)
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(noisy.astype(np.float64), channel_axis=None))


def nlm(noisy: np.ndarray, spacing_xyz, h_factor: float = NLM_H_FACTOR, sigma: Optional[float] = None) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    sigma = estimated_sigma(noisy) if sigma is None else sigma
    out = denoise_nl_means(noisy.astype(np.float64), patch_size=NLM_PATCH, patch_distance=NLM_DISTANCE,
                           h=h_factor * sigma, sigma=sigma, fast_mode=True, channel_axis=None, preserve_range=True)
    return out.astype(np.float32)


def bm4d_available() -> bool:
    try:
        import bm4d  # noqa: F401
    except ImportError:
        return False
    return True


def bm4d_denoise(noisy: np.ndarray, spacing_xyz, factor: float = BM4D_SIGMA_FACTOR,
                 sigma: Optional[float] = None) -> np.ndarray:
    import bm4d

    sigma = estimated_sigma(noisy) if sigma is None else sigma
    scale = 1000.0  # BM4D on HU / 1000 (values of order 1), sigma scaled alike
    out = bm4d.bm4d(noisy.astype(np.float32) / scale, factor * sigma / scale)
    return (np.asarray(out, dtype=np.float32) * scale).reshape(noisy.shape)
