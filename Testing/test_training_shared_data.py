"""The real shared CT: the project manifest prepares into a cache under 50 MB at 1.5 mm."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import requires_shared_data, shared_ct_path

from MedDiffFMLib.models.config import named_config
from MedDiffFMLib.training import SampleOptions, SampleSource, TrainingCache, load_manifest, prepare_cache

REPO = Path(__file__).resolve().parents[1]


@requires_shared_data
def test_shared_ct_cache_is_small_and_samples(tmp_path):
    config = named_config("cpu_starter")
    manifest = load_manifest(REPO / "configs" / "shared_ct_manifest.json", shared_ct_path())
    index = prepare_cache(manifest, tmp_path / "cache", [1.5] * 3, dtype="uint8", windows=config.window_for)
    assert index["total_bytes"] < 50e6, index["total_bytes"]
    by_id = {c["id"]: c for c in index["cases"]}
    assert any("resampled by physical position" in n for n in by_id["upper_abdomen_dicom"]["notes"])
    assert by_id["upper_abdomen_dicom"]["anatomy_labels"] and by_id["cta_aorta_crop"]["anatomy_labels"] == [52]
    assert by_id["lung_tumour_5mm"]["lesion_voxels"] > 0 and all(
        by_id[f"STS_{i:03d}"]["lesion_voxels"] > 0 for i in range(1, 37))
    # thick slices are not upsampled on disk; the model grid is computed as inference does
    assert by_id["lung_tumour_5mm"]["spacing_mm"][0] == 5.0 and by_id["lung_tumour_5mm"]["model_shape"][0] == 203
    cache = TrainingCache(tmp_path / "cache")
    source = SampleSource(cache, cache.split("train"), config, SampleOptions(), seed=0)
    for i in range(12):
        sample = source.sample(i)
        assert sample["image"].shape == config.patch_size
        assert -1.0 <= sample["image"].min() and sample["image"].max() <= 1.0 and np.isfinite(sample["image"]).all()
