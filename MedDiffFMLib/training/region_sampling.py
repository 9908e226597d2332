"""Sampling weights by body region: how often each region's cases are drawn, whatever their number.

The base model's first training runs drew every case equally often, and 32 of its 42 volumes were limb
sarcoma crops: three quarters of what it saw were thighs with tumours. ``region_weights`` (a TrainConfig
key) gives each region's *share* of the samples, e.g. ``{"chest": 1, "abdomen": 1, "head_neck": 1,
"unknown": 1}``: the limb crops (no region, ``"unknown"``) then make a quarter of the samples. A region
without cases in the split is left out and the others' shares are renormalised; a case whose region is
not listed is never drawn. Within a region the cases are drawn uniformly.

Like the rest of the sampling, the case of sample ``g`` is a pure function of ``(seed, g)``, so a
resumed or multi-GPU run draws the same cases as an uninterrupted single-process one.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from ..models.config import UNKNOWN_REGION


def region_key(region: Optional[str]) -> str:
    """The ``region_weights`` key of a case's region (None: ``"unknown"``)."""
    return region or UNKNOWN_REGION


def region_weight_problems(weights: Mapping) -> list[str]:
    """What is wrong with a ``region_weights`` mapping (empty when usable)."""
    if not isinstance(weights, Mapping):
        return ["'region_weights' must be an object of region -> share, e.g. {\"chest\": 1, \"unknown\": 0.5}"]
    problems = []
    for key, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            problems.append(f"'region_weights.{key}' must be a share of 0 or more (got {value!r})")
    if weights and not any(isinstance(v, (int, float)) and v > 0 for v in weights.values()):
        problems.append("'region_weights' needs at least one positive share")
    return problems


class RegionSampler:
    """Chooses the case of each sample index by region shares, then uniformly within the region."""

    def __init__(self, regions: Sequence[Optional[str]], weights: Mapping[str, float], seed: int) -> None:
        self.seed = int(seed)
        groups: dict[str, list[int]] = {}
        for index, region in enumerate(regions):
            groups.setdefault(region_key(region), []).append(index)
        self.keys = [key for key in groups if float(weights.get(key, 0.0)) > 0.0]
        if not self.keys:
            raise ValueError(f"region_weights {dict(weights)} give no share to any region of these cases "
                             f"({', '.join(sorted(groups))})")
        self.members = [np.asarray(groups[key]) for key in self.keys]
        shares = np.asarray([float(weights[key]) for key in self.keys], dtype=np.float64)
        self.shares = shares / shares.sum()

    def share_of(self, key: str) -> float:
        """The share of samples that region ``key`` gets (0 when it is left out)."""
        return float(self.shares[self.keys.index(key)]) if key in self.keys else 0.0

    def case_index(self, index: int) -> int:
        """The case (an index into ``regions``) of sample ``index``."""
        rng = np.random.default_rng([self.seed, 11, int(index)])
        group = int(rng.choice(len(self.keys), p=self.shares))
        members = self.members[group]
        return int(members[int(rng.integers(0, len(members)))])
