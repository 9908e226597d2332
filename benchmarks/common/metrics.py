"""Masks and image-quality metrics of the benchmarks (numpy, scipy and scikit-image only, no SimpleITK,
so that the GPU training chunk's quality check can use them on a machine without it). Arrays are
(z, y, x) in HU."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

HU_RANGE = (-1000.0, 1000.0)  # PSNR: both images clipped here, data range 2000 HU
SSIM_WINDOW = (-160.0, 240.0)  # SSIM: soft-tissue window W400/L40 mapped to [0, 1]
SOFT_TISSUE_HU = (-150.0, 250.0)  # soft-tissue mask of the clean image (fat to enhanced organ)
# Synthetic CT against real (synthesis_quality, studies.sampler_steps): the HU histogram's range and tissue classes.
HIST_RANGE = (-1024.0, 1500.0)
TISSUES = {"air": (-np.inf, -900), "lung": (-900, -500), "fat": (-150, -50), "soft": (0, 100), "bone": (300, np.inf)}


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


def auprc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (precision at each positive, ties
    cut together); a random map scores the prevalence."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    positives = int(labels.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    s, hits = scores[order], labels[order]
    true_pos = np.cumsum(hits)
    selected = np.arange(1, s.size + 1)
    last_of_run = np.r_[s[1:] != s[:-1], True]
    tp, n = true_pos[last_of_run], selected[last_of_run]
    recall_gain = np.diff(np.r_[0, tp]) / positives
    return float(np.sum(recall_gain * tp / n))


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


# ---------------------------------------------------------------------------------------------
# Distribution and texture of a generated region next to a real one (lesion benchmark): a
# generated lesion is a new sample, so it is compared by its statistics, never voxel by voxel.
# ---------------------------------------------------------------------------------------------


def std_ratio(reference_values: np.ndarray, test_values: np.ndarray) -> float:
    """std(test) / std(reference) of two sets of voxel values (1 = the same spread; 0 = a flat fill)."""
    ref = float(np.std(np.asarray(reference_values, dtype=np.float64)))
    return float(np.std(np.asarray(test_values, dtype=np.float64))) / ref if ref > 0 else float("nan")


def wasserstein_hu(reference_values: np.ndarray, test_values: np.ndarray) -> float:
    """1D Wasserstein (earth mover's) distance between two HU distributions, in HU: the mean shift
    needed to turn one histogram into the other (0 = the same distribution, whatever the voxel order)."""
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(np.ravel(reference_values), np.ravel(test_values)))


def _interior_axial(mask: np.ndarray) -> np.ndarray:
    """``mask`` eroded by one voxel in-plane (so that a central difference sees only mask voxels);
    the mask itself when that would leave nothing."""
    from scipy import ndimage

    inner = ndimage.binary_erosion(mask, structure=np.ones((1, 3, 3), bool))
    return inner if inner.any() else np.asarray(mask, bool)


def mean_gradient_axial(hu: np.ndarray, mask: np.ndarray, spacing_yx: Sequence[float] = (1.0, 1.0)) -> float:
    """Mean in-plane gradient magnitude (HU/mm, central differences) over the voxels of ``mask``
    at least one voxel in from its in-plane edge: the fine texture of the region, not its border.
    In-plane only: the slices of the real scans are 3-5 mm apart, too far for texture along z."""
    hu = np.asarray(hu, dtype=np.float64)
    gy = np.gradient(hu, float(spacing_yx[0]), axis=1) if hu.shape[1] > 1 else np.zeros_like(hu)
    gx = np.gradient(hu, float(spacing_yx[1]), axis=2) if hu.shape[2] > 1 else np.zeros_like(hu)
    inner = _interior_axial(np.asarray(mask, bool))
    return float(np.mean(np.hypot(gy, gx)[inner])) if inner.any() else float("nan")


def glcm_axial(hu: np.ndarray, mask: np.ndarray, hu_range: Sequence[float], levels: int = 32) -> dict[str, float]:
    """GLCM contrast and homogeneity of the voxels inside ``mask``, pooled over axial slices.

    HU in ``hu_range`` are quantised to ``levels`` grey levels (values outside clipped); the
    co-occurrence matrix (skimage ``graycomatrix``, distance 1 voxel, angles 0 and 90 degrees,
    symmetric) counts only pairs with both voxels in the mask (outside voxels get an extra level
    that is dropped). Contrast: mean squared level difference of neighbours (grows with fine
    texture); homogeneity: mean of 1 / (1 + difference^2) (1 for a flat region)."""
    from skimage.feature import graycomatrix, graycoprops

    lo, hi = float(hu_range[0]), float(hu_range[1])
    scale = (levels - 1) / max(hi - lo, 1e-6)
    quantised = np.clip(np.rint((np.asarray(hu, np.float64) - lo) * scale), 0, levels - 1).astype(np.uint8) + 1
    quantised[~np.asarray(mask, bool)] = 0
    total = np.zeros((levels, levels), dtype=np.float64)
    for k in range(quantised.shape[0]):
        if not mask[k].any():
            continue
        glcm = graycomatrix(quantised[k], distances=[1], angles=[0.0, np.pi / 2], levels=levels + 1, symmetric=True)
        total += glcm[1:, 1:].sum(axis=(2, 3))
    if total.sum() == 0:
        return {"contrast": float("nan"), "homogeneity": float("nan")}
    pooled = total[:, :, None, None]
    return {"contrast": float(graycoprops(pooled, "contrast")[0, 0]),
            "homogeneity": float(graycoprops(pooled, "homogeneity")[0, 0])}
