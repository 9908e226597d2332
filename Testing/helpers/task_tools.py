"""Tools for the task tests: a progress recorder that can cancel, and the standard test volume."""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import SimpleITK as sitk

from helpers.volumes import oblique_ct


def task_ct(shape=(12, 24, 20), seed: int = 0) -> sitk.Image:
    """int16 CT phantom, oblique direction, anisotropic spacing (0.8, 0.7, 2.5) mm."""
    return oblique_ct(shape, seed=seed)


def box_mask(image: sitk.Image, z=(4, 8), y=(9, 15), x=(7, 13)) -> np.ndarray:
    """A uint8 (z, y, x) box mask on the image grid."""
    mask = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    mask[z[0] : z[1], y[0] : y[1], x[0] : x[1]] = 1
    return mask


def write_ct_and_mask(folder, mask_name: str = "mask.nii.gz"):
    """The standard test CT (``ct.nii.gz``) and a box mask on its grid, written into ``folder``;
    returns (folder, ct path, mask path)."""
    image = task_ct()
    ct = folder / "ct.nii.gz"
    sitk.WriteImage(image, str(ct))
    mask = sitk.GetImageFromArray(box_mask(image))
    mask.CopyInformation(image)
    mask_path = folder / mask_name
    sitk.WriteImage(mask, str(mask_path))
    return folder, ct, mask_path


class Recorder:
    """Progress callback (with notes) that can also act as the cancel check.

    ``cancel_at=(stage, step)``: ``cancel()`` returns True once that stage reported that step.
    """

    def __init__(self, cancel_at: Optional[tuple] = None) -> None:
        self.events: List = []
        self.notes: List[str] = []
        self.cancel_at = cancel_at

    def __call__(self, event) -> None:
        self.events.append(event)

    def note(self, message: str) -> None:
        self.notes.append(message)

    def cancel(self) -> bool:
        if self.cancel_at is None:
            return False
        stage, step = self.cancel_at
        return any(e.stage == stage and e.step >= step for e in self.events)

    def stage(self, name: str) -> list:
        return [e for e in self.events if e.stage == name]

    def assert_complete(self, name: str) -> None:
        events = self.stage(name)
        assert events, f"no '{name}' progress"
        assert events[-1].step == events[-1].total, events[-1]
        assert all(e.total == events[-1].total for e in events)
        steps = [e.step for e in events]
        assert steps == sorted(steps)
