"""Masks and image-quality metrics of the benchmarks (numpy, scipy and scikit-image only, no SimpleITK,
so that the GPU training chunk's quality check can use them on a machine without it). Arrays are
(z, y, x) in HU."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

HU_RANGE = (-1000.0, 1000.0)  # PSNR: both images clipped here, data range 2000 HU
SSIM_WINDOW = (-160.0, 240.0)  # SSIM: soft-tissue window W400/L40 mapped to [0, 1]
SOFT_TISSUE_HU = (-150.0, 250.0)  # soft-tissue mask of the clean image (fat to enhanced organ)


def soft_tissue_mask(clean_hu: np.ndarray, hu_range: Sequence[float] = SOFT_TISSUE_HU, erode: int = 1) -> np.ndarray:
    """Voxels of soft tissue in the *clean* image: its 3x3x3 median inside ``hu_range``, eroded by
    ``erode`` voxels in-plane so that edges (where blurring is expected) stay out."""
    from scipy import ndimage

    smooth = ndimage.median_filter(clean_hu, size=3)
    mask = (smooth >= hu_range[0]) & (smooth <= hu_range[1])
    if erode > 0:
        mask = ndimage.binary_erosion(mask, structure=np.ones((1, 3, 3), bool), iterations=erode)
    return mask


def body_mask(hu: np.ndarray, threshold: float = -500.0) -> np.ndarray:
    """The body: the largest connected region above ``threshold`` HU, holes filled slice by slice
    (so lungs and bowel gas count as body)."""
    from scipy import ndimage

    above = hu > threshold
    labels, count = ndimage.label(above)
    if count == 0:
        return above
    sizes = ndimage.sum(above, labels, index=np.arange(1, count + 1))
    body = labels == (1 + int(np.argmax(sizes)))
    return np.stack([ndimage.binary_fill_holes(s) for s in body])


def _select(a: np.ndarray, mask: Optional[np.ndarray]) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a[mask] if mask is not None else a.ravel()


def rmse(reference: np.ndarray, test: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """Root-mean-square error (HU) over ``mask`` (all voxels when None)."""
    d = _select(test, mask) - _select(reference, mask)
    return float(np.sqrt(np.mean(d * d))) if d.size else float("nan")


def mae(reference: np.ndarray, test: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """Mean absolute error (HU) over ``mask``."""
    d = _select(test, mask) - _select(reference, mask)
    return float(np.mean(np.abs(d))) if d.size else float("nan")


def psnr(
    reference: np.ndarray, test: np.ndarray, mask: Optional[np.ndarray] = None, hu_range: Sequence[float] = HU_RANGE
) -> float:
    """PSNR (dB) with both images clipped to ``hu_range`` and data range = its width."""
    lo, hi = hu_range
    r = np.clip(_select(reference, mask), lo, hi)
    t = np.clip(_select(test, mask), lo, hi)
    mse = float(np.mean((r - t) ** 2)) if r.size else float("nan")
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10((hi - lo) ** 2 / mse))


def _window01(hu: np.ndarray, window: Sequence[float]) -> np.ndarray:
    lo, hi = window
    return np.clip((np.asarray(hu, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)


def ssim_axial(reference: np.ndarray, test: np.ndarray, window: Sequence[float] = SSIM_WINDOW) -> float:
    """Mean over axial slices of the 2D SSIM (Wang et al. 2004: Gaussian window sigma 1.5 px,
    K1 0.01, K2 0.03, population covariance) of the images mapped from ``window`` (HU) to [0, 1]."""
    from skimage.metrics import structural_similarity

    r, t = _window01(reference, window), _window01(test, window)
    values = [
        structural_similarity(r[k], t[k], data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        for k in range(r.shape[0])
    ]
    return float(np.mean(values))


def ssim_3d(reference: np.ndarray, test: np.ndarray, window: Sequence[float] = SSIM_WINDOW) -> float:
    """3D SSIM (Gaussian window sigma 1.5 voxels in every axis, same constants as :func:`ssim_axial`)."""
    from skimage.metrics import structural_similarity

    r, t = _window01(reference, window), _window01(test, window)
    return float(structural_similarity(r, t, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def best_dice(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The best Dice of ``scores >= threshold`` against ``labels`` over every threshold, and that threshold."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    positives = int(labels.sum())
    if positives == 0:
        return float("nan"), float("nan")
    order = np.argsort(-scores, kind="stable")
    s, hits = scores[order], labels[order]
    true_pos = np.cumsum(hits)
    selected = np.arange(1, s.size + 1)
    # Only cut between different score values (a threshold cannot split ties).
    last_of_run = np.r_[s[1:] != s[:-1], True]
    dice = np.where(last_of_run, 2.0 * true_pos / (selected + positives), -1.0)
    best = int(np.argmax(dice))
    return float(dice[best]), float(s[best])


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    return float(2.0 * np.logical_and(a, b).sum() / total) if total else float("nan")
