"""DiffPIR data consistency: the closed-form proximal step for a linear measurement y = A x.

At each sampler step DiffPIR replaces the predicted clean image x0 by

    argmin_x ||y - A x||^2 + rho_t ||x - x0||^2  =  x0 + A^T (A A^T + rho_t I)^-1 (y - A x0),

with rho_t = lambda * sigma_n^2 / sigma_t^2 (sigma_n: measurement noise, sigma_t: the step's noise
level, both in model units). For A = I this is denoising's (y + rho x0) / (1 + rho); rho = 0 is the
exact projection x0 + A^T (A A^T)^-1 (y - A x0) onto {x : A x = y}.

:class:`SliceAverageOperator` is the thick-slice operator of super-resolution: each measured
(thick) slice is the weighted average of the fine slices it overlaps along z.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch


class SliceAverageOperator:
    """A: (.., Z, Y, X) -> (.., K, Y, X), thick slice k = sum_z W[k, z] x[z] (rows of W sum to 1).

    Build it with :meth:`block` (k = mean of slices kF .. kF + F - 1) or :meth:`from_intervals`
    (overlap of physical slice intervals, for grids that do not line up).
    """

    def __init__(self, weights: np.ndarray) -> None:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 2:
            raise ValueError("weights must be a (K, Z) matrix")
        sums = w.sum(axis=1)
        if np.any(sums <= 0):
            raise ValueError("every thick slice needs at least one fine slice")
        w = w / sums[:, None]
        self.weights = torch.as_tensor(w)
        self.rows = np.arange(w.shape[0])  # the thick slices measured (all, unless from_intervals drops some)
        self.gram = self.weights @ self.weights.T  # A A^T, (K, K)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.weights.shape)  # type: ignore[return-value]

    @classmethod
    def block(cls, thick_slices: int, factor: int) -> "SliceAverageOperator":
        """Thick slice k is the mean of the ``factor`` fine slices k*factor .. k*factor + factor - 1."""
        w = np.zeros((thick_slices, thick_slices * factor))
        for k in range(thick_slices):
            w[k, k * factor : (k + 1) * factor] = 1.0 / factor
        return cls(w)

    @classmethod
    def from_intervals(
        cls,
        fine_centres: np.ndarray,
        fine_width: float,
        thick_centres: np.ndarray,
        thick_width: float,
        fine_valid: Optional[np.ndarray] = None,
    ) -> "SliceAverageOperator":
        """Weights = length of overlap between fine slice [c - w/2, c + w/2] and thick slab, along
        the slice axis (mm). ``fine_valid`` (bool per fine slice) excludes padding slices."""
        fine = np.asarray(fine_centres, dtype=float)[None, :]
        thick = np.asarray(thick_centres, dtype=float)[:, None]
        low = np.maximum(fine - fine_width / 2.0, thick - thick_width / 2.0)
        high = np.minimum(fine + fine_width / 2.0, thick + thick_width / 2.0)
        w = np.clip(high - low, 0.0, None)
        if fine_valid is not None:
            w = w * np.asarray(fine_valid, dtype=float)[None, :]
        covered = w.sum(axis=1) > 0
        if not covered.any():
            raise ValueError("no thick slice overlaps a fine slice: the grids do not share an extent")
        # A thick slice the fine grid does not reach (it can end up to half a fine slice short)
        # is left out; ``rows`` says which thick slices the operator measures.
        operator = cls(w[covered])
        operator.rows = np.flatnonzero(covered)
        return operator

    def _w(self, x: torch.Tensor) -> torch.Tensor:
        return self.weights.to(device=x.device, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A x along the third-from-last axis."""
        return torch.einsum("kz,...zyx->...kyx", self._w(x), x.double()).to(x.dtype)

    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        """A^T r."""
        return torch.einsum("kz,...kyx->...zyx", self._w(r), r.double()).to(r.dtype)

    def prox(self, x0: torch.Tensor, y: torch.Tensor, rho: float = 0.0) -> torch.Tensor:
        """x0 + A^T (A A^T + rho I)^-1 (y - A x0): DiffPIR's data step (rho = 0: exact projection)."""
        residual = (y.double() - self.forward(x0.double()))
        k = self.gram.shape[0]
        # A tiny ridge keeps the solve stable when two thick slices see the same fine slices.
        system = self.gram.to(residual.device) + (float(rho) + 1e-9) * torch.eye(k, dtype=torch.float64, device=residual.device)
        moved = residual.movedim(-3, 0).reshape(k, -1)
        solved = torch.linalg.solve(system, moved).reshape(residual.movedim(-3, 0).shape).movedim(0, -3)
        return (x0.double() + self.adjoint(solved)).to(x0.dtype)


def project_block_average(thin: np.ndarray, thick: np.ndarray, factor: int) -> float:
    """Exact projection, in place, of ``thin`` (K * F, Y, X) onto {x : A x = thick} for block
    averaging A (thick slice k = mean of thin slices kF .. kF + F - 1): A A^T = I / F, so
    A^T (A A^T)^-1 r adds each thick slice's residual to its F thin slices. Computed slab by slab
    in float64 (no full-volume temporaries). Returns the largest remaining |A x - thick|."""
    factor = int(factor)
    if thin.shape[0] != thick.shape[0] * factor or thin.shape[1:] != thick.shape[1:]:
        raise ValueError(f"thin {thin.shape} is not {factor} x thick {thick.shape} along z")
    error = 0.0
    for k in range(thick.shape[0]):
        slab = thin[k * factor : (k + 1) * factor].astype(np.float64)
        slab += thick[k].astype(np.float64) - slab.mean(axis=0)
        thin[k * factor : (k + 1) * factor] = slab
        error = max(error, float(np.abs(thin[k * factor : (k + 1) * factor].astype(np.float64).mean(axis=0)
                                        - thick[k]).max()))
    return error

