"""guess_region on generated volumes (the calibration on real CT is in the shared-data test)."""

from __future__ import annotations

import numpy as np
from helpers.volumes import make_image

from MedDiffFMLib.preprocessing import guess_region, region_features


def _ellipse_body(shape=(24, 96, 96), spacing=(3.5, 3.5, 4.0), lungs=False, bone=False):
    nz, ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx]
    body = ((y - ny / 2) / (0.35 * ny)) ** 2 + ((x - nx / 2) / (0.45 * nx)) ** 2 <= 1
    sl = np.where(body, 40, -1000).astype(np.int16)
    if lungs:
        for side in (-1, 1):
            dx = (x - nx / 2 - side * 0.2 * nx) / (0.12 * nx)
            sl[((y - ny / 2) / (0.22 * ny)) ** 2 + dx**2 <= 1] = -850
    if bone:
        ring = body & ~(((y - ny / 2) / (0.30 * ny)) ** 2 + ((x - nx / 2) / (0.38 * nx)) ** 2 <= 1)
        sl[ring] = 1500
    return make_image(np.repeat(sl[None], nz, axis=0), spacing, (0, 0, 0), tuple(np.eye(3).ravel()))


def test_large_body_with_lungs_is_chest():
    assert guess_region(_ellipse_body(lungs=True)) == "chest"


def test_large_body_without_air_is_abdomen():
    image = _ellipse_body()
    assert region_features(image).median_area_cm2 > 450
    assert guess_region(image) == "abdomen"


def test_small_body_with_a_skull_is_head():
    assert guess_region(_ellipse_body(spacing=(1.8, 1.8, 4.0), bone=True)) == "head_neck"


def test_small_soft_tissue_crop_and_empty_volume_are_unsure():
    assert guess_region(_ellipse_body(spacing=(1.5, 1.5, 4.0))) is None
    air = make_image(np.full((8, 16, 16), -1000, np.int16), (2, 2, 2), (0, 0, 0), np.eye(3).ravel())
    assert guess_region(air) is None and region_features(air) is None
