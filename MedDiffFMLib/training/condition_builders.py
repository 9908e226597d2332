"""Condition builders: what a sample feeds the network besides the noisy image.

* anatomy one-hot for the U-Net input (channel k is label id k + 1; missing or dropped anatomy is
  all zeros, exactly what inference feeds when no anatomy is given);
* ControlNet conditions for fine-tuning, one builder per task, chosen by name:
  ``superres`` (the patch degraded to thick slices) and ``lesion`` (the lesion mask).

Builders run in the data pipeline on numpy arrays, with the sample's own random generator, so a
sample is a pure function of (seed, sample index) and resuming or splitting the samples across processes
never changes it.

These follow the contract of :mod:`MedDiffFMLib.models.conditions` (what sampling feeds the network),
and use its functions where one exists.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional, Sequence

import numpy as np

from ..models.conditions import degrade_z, lesion_condition, superres_condition


def thick_slices(volume: np.ndarray, factor: int, phase: int = 0) -> np.ndarray:
    """Simulate thick slices along z with the condition contract's :func:`~MedDiffFMLib.models.conditions.degrade_z`
    (average ``factor`` consecutive slices, interpolate linearly back to every slice).

    ``phase`` (0..factor-1) shifts where the blocks start (the first block then holds ``phase``
    copies of the first slice), since thick slices of a real scan do not line up with the patch grid.
    """
    factor = int(factor)
    phase = int(phase) % max(factor, 1)
    if factor <= 1:
        return np.asarray(volume, dtype=np.float32).copy()
    if phase == 0:
        return degrade_z(volume, factor)
    padded = np.pad(np.asarray(volume, dtype=np.float32), ((phase, 0), (0, 0), (0, 0)), mode="edge")
    return degrade_z(padded, factor)[phase:]


class ConditionBuilder(ABC):
    """Builds the ControlNet condition (channels, z, y, x) of one sample; one subclass per task."""

    task = ""
    channels = 1
    needs_lesion = False

    def __init__(self, options: Optional[dict] = None) -> None:
        self.options = dict(options or {})

    @abstractmethod
    def build(self, sample: dict, rng: np.random.Generator) -> np.ndarray:
        """The condition of ``sample`` (its crop and, for lesions, the lesion mask)."""

    def describe(self) -> str:
        return self.task


class SuperResCondition(ConditionBuilder):
    """The clean patch degraded to thick slices (factor drawn from ``superres_factors``)."""

    task = "superres"

    def __init__(self, options: Optional[dict] = None) -> None:
        super().__init__(options)
        self.factors: Sequence[int] = tuple(int(f) for f in self.options.get("superres_factors", (2, 3, 4, 5)))
        if not self.factors or min(self.factors) < 1:
            raise ValueError("superres_factors must be a list of integers >= 1")

    def build(self, sample: dict, rng: np.random.Generator) -> np.ndarray:
        factor = int(rng.choice(self.factors))
        phase = int(rng.integers(0, factor))
        sample["superres_factor"] = factor
        return superres_condition(thick_slices(sample["image"], factor, phase)).numpy()

    def describe(self) -> str:
        return (f"super-resolution: the patch averaged over {list(self.factors)} consecutive model-grid slices "
                "along z (random phase) and linearly interpolated back to every slice")


class LesionCondition(ConditionBuilder):
    """The binary lesion mask of the crop (crops are centred on lesions most of the time)."""

    task = "lesion"
    needs_lesion = True

    def build(self, sample: dict, rng: np.random.Generator) -> np.ndarray:
        return lesion_condition(sample["lesion"]).numpy()

    def describe(self) -> str:
        return "lesion generation: the binary lesion mask on the patch"


CONDITION_BUILDERS = {"superres": SuperResCondition, "lesion": LesionCondition}


def condition_builder(task: str, options: Optional[dict] = None) -> ConditionBuilder:
    from .manifest import ManifestError

    if task not in CONDITION_BUILDERS:
        raise ManifestError(f"Unknown fine-tuning task '{task}'; use one of {', '.join(CONDITION_BUILDERS)}.")
    return CONDITION_BUILDERS[task](options)
