"""The tasks on real CT from the shared data set (skipped when ../shared is absent).

Crops keep the tiny-model runs short; what is checked is the plumbing on real headers and
intensities (geometry, mask handling, the exactness guarantees), not image quality: the tiny
models have random weights.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from conftest import requires_shared_data
from helpers.models import single_torch_thread, tiny_engines, tiny_models  # noqa: F401  (fixtures)
from helpers.phantoms import assert_same_grid
from MedDiffFMLib.io import read_volume
from MedDiffFMLib.tasks.anomaly import AnomalyOptions, anomaly_map_image
from MedDiffFMLib.tasks.inpaint import InpaintOptions, inpaint_image
from MedDiffFMLib.preprocessing.model_masks import body_mask, mask_for_image
from MedDiffFMLib.tasks.superres import SuperResOptions, super_resolve_image


def _lung_tumour(shared_ct, z=(12, 28), y=(320, 410), x=(305, 415)):
    crop = (slice(x[0], x[1]), slice(y[0], y[1]), slice(z[0], z[1]))
    image = read_volume(shared_ct / "chest" / "lung_tumour_5mm.nii.gz")[crop]
    mask = read_volume(shared_ct / "chest" / "lung_tumour_5mm_tumour.nii.gz")[crop]
    return image, mask


@requires_shared_data
def test_inpaint_real_lung_tumour(shared_ct, tiny_engines):
    image, mask = _lung_tumour(shared_ct)
    result = inpaint_image(image, mask, tiny_engines["base"], InpaintOptions(steps=2, region="chest"))
    assert_same_grid(result.image, image, tol=0)
    inside = sitk.GetArrayFromImage(mask) > 0
    before, after = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(result.image)
    assert after.dtype == before.dtype == np.int16
    assert np.array_equal(after[~inside], before[~inside])
    assert not result.mask_resampled


@requires_shared_data
def test_superres_real_5mm_chest(shared_ct, tiny_engines):
    image, _ = _lung_tumour(shared_ct, z=(14, 22))
    result = super_resolve_image(image, tiny_engines["superres"], SuperResOptions(factor_z=5, steps=2, region="chest"))
    thin = sitk.GetArrayFromImage(result.image).astype(np.float64)
    assert result.image.GetSize() == (image.GetSize()[0], image.GetSize()[1], image.GetSize()[2] * 5)
    assert result.image.GetSpacing()[2] == 1.0
    means = thin.reshape(image.GetSize()[2], 5, *thin.shape[1:]).mean(axis=1)
    np.testing.assert_allclose(means, sitk.GetArrayFromImage(image), atol=0.05)


@requires_shared_data
def test_anomaly_real_abdomen_body_only(shared_ct, tiny_engines):
    image = read_volume(shared_ct / "abdomen" / "abdomen_3mm_small.nii.gz")[0:60, 20:80, 5:25]  # a body edge
    result = anomaly_map_image(image, tiny_engines["base"], AnomalyOptions(steps=2, region="abdomen", body_only=True,
                                                                            threshold=100.0))
    assert_same_grid(result.anomaly_map, image, tol=0)
    amap = sitk.GetArrayFromImage(result.anomaly_map)
    hu = sitk.GetArrayFromImage(image)
    body = body_mask(hu, image.GetSpacing()[::-1])
    assert (~body).sum() > 1000 and np.mean(hu[~body] < -500) > 0.95  # outside the body is air
    assert np.mean(body[hu > -200]) > 0.95  # soft tissue is inside
    assert np.all(amap[~body] == 0) and np.all(sitk.GetArrayFromImage(result.mask)[~body] == 0)
    assert np.isfinite(result.score)


@requires_shared_data
def test_real_labels_on_another_array_grid_are_resampled(shared_ct):
    image = read_volume(shared_ct / "abdomen" / "upper_abdomen_dicom")
    labels = read_volume(shared_ct / "abdomen" / "upper_abdomen_dicom_labels.nii.gz")
    notes = []

    class Notes:
        def note(self, message):
            notes.append(message)

    first = int(np.unique(sitk.GetArrayViewFromImage(labels))[1])
    inside, resampled = mask_for_image(labels, image, label=first, progress=Notes())
    assert inside.shape == sitk.GetArrayViewFromImage(image).shape and inside.any()
    assert resampled and "resampled" in notes[0]
    # Same physical voxels: the count is preserved by a nearest-neighbour move between equal grids.
    assert inside.sum() == np.count_nonzero(sitk.GetArrayViewFromImage(labels) == first)
