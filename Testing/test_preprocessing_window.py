"""HU windows and the map to the model range."""

from __future__ import annotations

import numpy as np
import pytest

from MedDiffFMLib.errors import InputError
from MedDiffFMLib.preprocessing import REGION_WINDOWS, HUWindow, window_for_region


def test_low_high_and_paper_defaults():
    w = HUWindow(40, 400)
    assert (w.low, w.high) == (-160, 240)
    assert REGION_WINDOWS["head_neck"] == HUWindow(50, 400)
    assert REGION_WINDOWS["chest"] == HUWindow(-500, 1800)
    assert REGION_WINDOWS["abdomen"] == HUWindow(60, 360)


def test_hu_to_model_clips_and_is_linear():
    w = HUWindow(0, 200)
    m = w.hu_to_model(np.array([-1000, -100, 0, 50, 100, 3000], dtype=np.int16))
    assert m.dtype == np.float32
    np.testing.assert_array_equal(m, [-1, -1, 0, 0.5, 1, 1])


def test_model_to_hu_inverts_inside_the_window():
    w = REGION_WINDOWS["abdomen"]
    hu = np.linspace(w.low, w.high, 101)
    np.testing.assert_allclose(w.model_to_hu(w.hu_to_model(hu)), hu, atol=1e-3)
    assert w.model_to_hu(np.array([-3.0, 3.0])).tolist() == [w.low, w.high]


def test_bad_window_and_region():
    with pytest.raises(ValueError):
        HUWindow(0, 0)
    with pytest.raises(InputError, match="Unknown region 'brain'.*head_neck"):
        window_for_region("brain")
    assert window_for_region("chest") is REGION_WINDOWS["chest"]
