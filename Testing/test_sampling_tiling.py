"""Where the sliding window's patches go (issue 40): the fewest windows the overlap allows, spread
evenly, as MONAI enumerates them from the fitted overlaps; and the body's box."""

from __future__ import annotations

import math

import pytest
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers.utils import _get_scan_interval

from MedDiffFMLib.sampling.tiling import axis_windows, body_box, fitted_overlaps, window_count


def _monai_starts(size: int, patch: int, overlap) -> list[int]:
    interval = _get_scan_interval((size,), (patch,), 1, overlap if isinstance(overlap, tuple) else (overlap,))
    return [window[0].start for window in dense_patch_slices((size,), (patch,), interval)]


@pytest.mark.parametrize("overlap", [0.0, 0.1, 0.125, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("patch", [16, 80])
def test_fitted_windows_cover_the_axis_with_the_least_overlap_and_no_more_windows(overlap, patch):
    least = min(patch - 1, math.ceil(overlap * patch))
    for size in range(patch, 5 * patch + 3):
        count, stride = axis_windows(size, patch, overlap)
        starts = _monai_starts(size, patch, fitted_overlaps((size,), (patch,), overlap))
        assert len(starts) == count
        assert starts[0] == 0 and starts[-1] + patch == size  # the whole axis, no padding
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        assert all(patch - gap >= least for gap in gaps)  # every seam overlaps at least that much
        assert all(gap == stride for gap in gaps[:-1]) and all(0 < gap <= stride for gap in gaps[-1:])  # even
        # One window fewer could not cover the axis at that overlap; never more windows than MONAI's own.
        assert count == 1 or (count - 2) * (patch - least) + patch < size
        assert count <= len(_monai_starts(size, patch, overlap))


def test_the_bundled_samples_grid_needs_a_third_fewer_patches():
    """The sample's body box on the 1 mm grid (140 x 272 x 351 voxels): MONAI at 0.25 places 2 x 5 x 6."""
    assert window_count((140, 272, 351), (80, 80, 80), 0.25) == 60
    assert window_count((140, 272, 351), (80, 80, 80), 0.125) == 40
    assert window_count((80, 80, 80), (80, 80, 80), 0.125) == 1


def test_body_box_is_the_bounding_box_grown_to_a_patch_inside_the_volume():
    body = torch.zeros((30, 50, 60), dtype=torch.bool)
    body[5:9, 10:40, 50:58] = True
    box = body_box(body, (16, 16, 16))
    assert box == (slice(0, 16), slice(10, 40), slice(44, 60))  # z and x grown to 16, x pushed back inside
    assert body[box].sum() == body.sum()
    assert body_box(torch.zeros((20, 20, 20), dtype=torch.bool), (16, 16, 16)) is None
    assert body_box(None, (16, 16, 16)) is None
