"""Training data: manifests (and their errors), the prepared cache, masks on other grids.

Also home of the small generated training set the other ``test_training_*`` modules use.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import requires_shared_data, shared_ct_path
from helpers.phantoms import ct_phantom_array

from MedDiffFMLib.cli import main
from MedDiffFMLib.training import ManifestError, TrainingCache, load_manifest, prepare_cache

REPO = Path(__file__).resolve().parents[1]

# Tiny config: 4 mm grid, 16^3 patches. Image (x, y, z) spacing 3 x 3 x 4 mm.
SPACING = (3.0, 3.0, 4.0)


def _image(array: np.ndarray, spacing=SPACING, origin=(10.0, -20.0, 5.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def write_case(folder: Path, name: str, seed: int, shape=(24, 40, 36), lesion=True, anatomy=True) -> dict:
    """A phantom CT (+ a spherical lesion mask, + a 3-label anatomy map) as NIfTI files."""
    folder.mkdir(parents=True, exist_ok=True)
    hu = ct_phantom_array(shape, seed=seed)
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    centre = np.array(shape) // 2 + np.array([0, 3, -4])
    sphere = ((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) < 16
    hu = hu.copy()
    hu[sphere] = 70
    row = {"id": name, "image": f"{name}.nii.gz", "region": "chest"}
    sitk.WriteImage(_image(hu), str(folder / f"{name}.nii.gz"))
    if lesion:
        sitk.WriteImage(_image(sphere.astype(np.uint8)), str(folder / f"{name}_lesion.nii.gz"))
        row["lesion"] = f"{name}_lesion.nii.gz"
    if anatomy:
        labels = np.zeros(shape, np.uint8)
        labels[hu > -500] = 1
        labels[hu < -700] = 0
        labels[(hu > -900) & (hu < -800)] = 2
        labels[hu > 500] = 3
        sitk.WriteImage(_image(labels), str(folder / f"{name}_labels.nii.gz"))
        row["anatomy"] = f"{name}_labels.nii.gz"
    return row


def make_dataset(root: Path, n_train: int = 3, n_val: int = 1, **kwargs) -> Path:
    """A manifest of ``n_train`` + ``n_val`` phantom cases; returns the manifest path."""
    cases = []
    for i in range(n_train + n_val):
        row = write_case(root / "data", f"case{i}", seed=i, **kwargs)
        row["split"] = "train" if i < n_train else "val"
        if i == 1:
            row["region"] = None  # an unknown region
        cases.append(row)
    manifest = root / "manifest.json"
    manifest.write_text(json.dumps({"name": "phantoms", "data_root": "data",
                                    "sources": {"gen": "generated phantoms"},
                                    "cases": [dict(c, source="gen") for c in cases]}))
    return manifest


def make_cache(root: Path, spacing=4.0, dtype="int16", **kwargs) -> Path:
    from MedDiffFMLib.models.config import named_config

    manifest = make_dataset(root, **kwargs)
    cache = root / "cache"
    prepare_cache(load_manifest(manifest), cache, [spacing] * 3, dtype=dtype, windows=named_config("tiny").window_for)
    return cache


# ------------------------------------------------------------------------------------------ tests


def test_manifest_json_and_csv(tmp_path):
    manifest = make_dataset(tmp_path, n_train=2, n_val=1)
    parsed = load_manifest(manifest)
    assert [c.split for c in parsed.cases] == ["train", "train", "val"]
    assert parsed.cases[1].region is None and parsed.cases[0].region == "chest"
    assert parsed.cases[0].lesion.is_file() and parsed.cases[0].anatomy.is_file()
    assert parsed.attribution(parsed.cases[0]) == "generated phantoms"
    csv_path = tmp_path / "manifest.csv"
    csv_path.write_text("id,image,region,split,lesion\ncase0,data/case0.nii.gz,chest,train,data/case0_lesion.nii.gz\n"
                        "case2,data/case2.nii.gz,,val,\n")
    parsed = load_manifest(csv_path)
    assert parsed.cases[1].region is None and parsed.cases[1].lesion is None and parsed.cases[1].split == "val"


@pytest.mark.parametrize("change, message", [
    (lambda c: c[0].update(image="data/missing.nii.gz"), "does not exist"),
    (lambda c: c[0].update(lesion="data/nope.nii.gz"), "lesion file"),
    (lambda c: c[0].update(region="thorax"), "unknown region 'thorax'"),
    (lambda c: [x.update(split="val") for x in c], "'train' split is empty"),
    (lambda c: c[1].update(id="case0"), "appears twice"),
    (lambda c: c[0].update(split="test"), "split 'test'"),
])
def test_manifest_errors_are_clear(tmp_path, change, message):
    manifest = make_dataset(tmp_path, n_train=2, n_val=1)
    doc = json.loads(manifest.read_text())
    change(doc["cases"])
    manifest.write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match=message):
        load_manifest(manifest)


def test_cli_prepare_bad_manifest_exits_2(tmp_path, capsys):
    manifest = make_dataset(tmp_path, n_train=1, n_val=0)
    doc = json.loads(manifest.read_text())
    doc["cases"][0]["image"] = "data/gone.nii.gz"
    manifest.write_text(json.dumps(doc))
    assert main(["prepare", str(manifest), str(tmp_path / "cache"), "--config", "tiny"]) == 2
    assert "gone.nii.gz" in capsys.readouterr().err
    (tmp_path / "empty.json").write_text(json.dumps({"cases": []}))
    assert main(["prepare", str(tmp_path / "empty.json"), str(tmp_path / "cache"), "--config", "tiny"]) == 2


def test_prepare_cache_contents_and_reuse(tmp_path):
    manifest = make_dataset(tmp_path, n_train=2, n_val=1)
    cache_dir = tmp_path / "cache"
    assert main(["prepare", str(manifest), str(cache_dir), "--config", "tiny", "--progress", "none"]) == 0
    cache = TrainingCache(cache_dir)
    assert cache.index["dtype"] == "uint8" and cache.spacing_mm == (4.0, 4.0, 4.0)
    case = cache.cases[0]
    # 36 x 40 voxels of 3 mm -> 27 x 30 at 4 mm; z is already 4 mm.
    assert case.shape == (24, 30, 27) and case.model_shape_for((4.0, 4.0, 4.0)) == (24, 30, 27)
    arrays = cache.arrays(case)
    assert arrays["image"].dtype == np.uint8 and arrays["lesion"].dtype == np.uint8
    assert case.lesion_voxels > 0 and set(np.unique(arrays["anatomy"])) <= {0, 1, 2, 3}
    assert case.window == (-500.0, 1800.0)
    assert cache.split("val")[0].id == "case2" and cache.cases[1].region is None
    assert cache.index["sources"] == ["generated phantoms"]
    stamp = (cache_dir / case.files["image"]).stat().st_mtime_ns
    assert main(["prepare", str(manifest), str(cache_dir), "--config", "tiny", "--progress", "none"]) == 0
    assert (cache_dir / case.files["image"]).stat().st_mtime_ns == stamp  # unchanged cases are reused


def test_int16_cache_keeps_hu(tmp_path):
    cache = TrainingCache(make_cache(tmp_path, dtype="int16", n_train=1, n_val=0))
    image = cache.arrays(cache.cases[0])["image"]
    assert image.dtype == np.int16 and image.min() >= -1024 and image.max() > 500


def test_mask_on_another_grid_is_resampled_or_refused(tmp_path):
    folder = tmp_path / "data"
    row = write_case(folder, "c0", seed=0, anatomy=False)
    lesion = sitk.ReadImage(str(folder / "c0_lesion.nii.gz"))
    # The same physical mask on a grid with permuted axes and another spacing.
    moved = sitk.Resample(lesion, [18, 20, 12], sitk.Transform(), sitk.sitkNearestNeighbor,
                          lesion.GetOrigin(), [6.0, 6.0, 8.0], lesion.GetDirection())
    sitk.WriteImage(moved, str(folder / "c0_lesion_other.nii.gz"))
    far = sitk.Image(moved)
    far.SetOrigin((5000.0, 5000.0, 5000.0))
    sitk.WriteImage(far, str(folder / "c0_lesion_far.nii.gz"))
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"data_root": "data", "cases": [dict(row, lesion="c0_lesion_other.nii.gz")]}))
    index = prepare_cache(load_manifest(manifest), tmp_path / "cache", [4.0] * 3)
    assert index["cases"][0]["lesion_voxels"] > 0
    assert any("resampled by physical position" in n for n in index["cases"][0]["notes"])
    manifest.write_text(json.dumps({"data_root": "data", "cases": [dict(row, lesion="c0_lesion_far.nii.gz")]}))
    with pytest.raises(ManifestError, match="none of it falls inside the image"):
        prepare_cache(load_manifest(manifest), tmp_path / "cache2", [4.0] * 3)


def test_non_hu_image_is_refused(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    sitk.WriteImage(_image((ct_phantom_array((16, 20, 20)).astype(np.int32) + 1024).astype(np.int16)),
                    str(folder / "raw.nii.gz"))
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"data_root": "data", "cases": [{"image": "raw.nii.gz"}]}))
    with pytest.raises(ManifestError, match="Hounsfield"):
        prepare_cache(load_manifest(manifest), tmp_path / "cache", [4.0] * 3)


@requires_shared_data
def test_shared_ct_manifest_is_valid():
    manifest = load_manifest(REPO / "configs" / "shared_ct_manifest.json", shared_ct_path(),
                             require_splits=("train", "val"))
    assert len(manifest.cases) == 49
    val = {c.id for c in manifest.split("val")}
    assert {"STS_034", "STS_035", "STS_036"} <= val and any(c.region == "chest" for c in manifest.split("val"))
    assert all(c.region is None for c in manifest.cases if c.id.startswith("STS"))
    assert all(c.lesion is not None for c in manifest.cases if c.id.startswith("STS"))
    assert not any("head_raw_values" in str(c.image) for c in manifest.cases)  # not HU
    heads = [c for c in manifest.cases if c.region == "head_neck"]
    assert {c.id for c in heads} == {"head_cranium_1.5mm", "head_trauma_ge", "hn_pt1_3mm"}
    assert "cta_aorta_crop" in val  # the GPU chunk's held-out denoising check
    assert all(manifest.attribution(c) for c in manifest.cases)
