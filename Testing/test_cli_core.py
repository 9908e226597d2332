"""The `meddifffm` command end to end (in-process): info, init-model, denoise, and every bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import requires_shared_data
from helpers.phantoms import assert_same_grid, ct_phantom
from MedDiffFMLib.cli import main
from MedDiffFMLib.models.weights import MANIFEST, sha256_of



@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "tiny"
    assert main(["init-model", "--config", "tiny", "--randomize-output", str(folder)]) == 0
    return folder


@pytest.fixture()
def phantom_file(tmp_path) -> Path:
    path = tmp_path / "phantom.nrrd"
    sitk.WriteImage(ct_phantom(), str(path))
    return path


def _digest(path: Path) -> str:
    if path.is_dir():
        return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(path.iterdir()))).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _denoise(inp, out, model, *extra):
    return main(["denoise", str(inp), str(out), "--model", str(model), "--steps", "2", "--progress", "none", *extra])


def test_info_lists_versions_and_models(tiny_model, capsys, monkeypatch):
    monkeypatch.setenv("MEDDIFFFM_MODELS_DIR", str(tiny_model.parent))
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["torch"] and "cpu" in info["devices"]
    model = next(m for m in info["models"] if m["name"] == "tiny")
    assert model["sha256_ok"] and model["kind"] == "unet" and model["config"]["name"] == "tiny"
    assert model["config"]["anatomy_channels"] == 0  # what the Slicer module hides its anatomy input by
    assert main(["info"]) == 0
    assert "conditions: body region, no anatomy label map" in capsys.readouterr().out


def test_denoise_keeps_the_exact_geometry_and_type(tiny_model, phantom_file, tmp_path, capsys):
    out = tmp_path / "out.nii.gz"
    before = _digest(phantom_file)
    assert main(["denoise", str(phantom_file), str(out), "--model", str(tiny_model), "--steps", "3",
                 "--noise-hu", "30", "--progress", "json", "--preview", str(tmp_path / "p.png")]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    sampling = [e for e in lines if e["stage"] == "denoising"]
    assert sampling[-1]["step"] == sampling[-1]["total"] == 3
    assert lines[-1]["stage"] == "done" and str(out) in lines[-1]["outputs"]
    source, result = sitk.ReadImage(str(phantom_file)), sitk.ReadImage(str(out))
    assert_same_grid(source, result, tol=1e-5)
    assert result.GetPixelID() == source.GetPixelID()
    assert not np.array_equal(sitk.GetArrayFromImage(result), sitk.GetArrayFromImage(source))
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert _digest(phantom_file) == before  # the input is never modified


def test_denoise_is_deterministic_with_a_seed(tiny_model, phantom_file, tmp_path):
    outs = [tmp_path / "a.nrrd", tmp_path / "b.nrrd"]
    for out in outs:
        assert _denoise(phantom_file, out, tiny_model, "--noise-hu", "30", "--seed", "4") == 0
    assert np.array_equal(*(sitk.GetArrayFromImage(sitk.ReadImage(str(o))) for o in outs))


def test_zero_strength_returns_the_input_unchanged(tiny_model, phantom_file, tmp_path):
    out = tmp_path / "same.nrrd"
    assert _denoise(phantom_file, out, tiny_model, "--strength", "0") == 0
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))),
                          sitk.GetArrayFromImage(sitk.ReadImage(str(phantom_file))))


def _image_file(tmp_path, array, name="bad.nrrd", spacing=None) -> Path:
    image = sitk.GetImageFromArray(array, isVector=array.ndim == 4 and array.shape[-1] <= 4)
    if spacing:
        image.SetSpacing(spacing)
    path = tmp_path / name
    sitk.WriteImage(image, str(path))
    return path


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    rng = np.random.default_rng(0)
    ct = rng.normal(0, 50, (8, 20, 20)).astype(np.float32) - 1000 * (rng.random((8, 20, 20)) < 0.3)
    nan = ct.copy()
    nan[2, 3, 4] = np.nan
    empty_dicom = tmp_path / "empty_dicom"
    empty_dicom.mkdir()
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"this is not a nifti file" * 10)
    return {
        "2d": (_image_file(tmp_path, ct[0], "2d.nrrd"), "2D"),
        "vector": (_image_file(tmp_path, np.stack([ct, ct, ct], -1), "vector.nrrd"), "values per voxel"),
        "4d": (_image_file(tmp_path, np.stack([ct] * 5)[..., :1].repeat(5, -1), "4d.nrrd"), ""),
        "nan": (_image_file(tmp_path, nan, "nan.nrrd"), "NaN"),
        "not_ct": (_image_file(tmp_path, rng.random((8, 20, 20)).astype(np.float32), "norm.nrrd"), "HU"),
        "missing": (tmp_path / "does_not_exist.nii.gz", "does not exist"),
        "corrupt": (corrupt, ""),
        "empty_dicom": (empty_dicom, "DICOM"),
    }


@pytest.mark.parametrize("case", ["2d", "vector", "4d", "nan", "not_ct", "missing", "corrupt", "empty_dicom"])
def test_bad_input_gives_a_clear_message_and_writes_nothing(case, tiny_model, tmp_path, capsys):
    path, expected = _bad_inputs(tmp_path)[case]
    before = _digest(path) if path.exists() else None
    out = tmp_path / "out.nrrd"
    assert _denoise(path, out, tiny_model) == 2
    err = capsys.readouterr().err
    assert err.startswith("meddifffm: error:") and "Traceback" not in err
    assert expected.lower() in " ".join(err.lower().split())  # the message is wrapped at 100 columns
    assert not out.exists()
    assert (_digest(path) if path.exists() else None) == before


def test_output_equal_to_input_or_in_a_missing_folder_is_refused(tiny_model, phantom_file, capsys):
    before = _digest(phantom_file)
    assert _denoise(phantom_file, phantom_file, tiny_model) == 2
    assert "is the input" in capsys.readouterr().err
    assert _denoise(phantom_file, phantom_file.parent / "nope" / "out.nrrd", tiny_model) == 2
    assert "does not exist" in capsys.readouterr().err
    assert _digest(phantom_file) == before


def test_damaged_models_are_refused(tiny_model, phantom_file, tmp_path, capsys):
    def broken_copy(name):
        folder = tmp_path / name
        shutil.copytree(tiny_model, folder)
        return folder

    bad_sum = broken_copy("bad_sum")
    shard = next(bad_sum.glob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-8] + b"\0" * 8)
    truncated = broken_copy("truncated")
    shard = next(truncated.glob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-64])
    mismatch = broken_copy("mismatch")
    doc = json.loads((mismatch / "config.json").read_text())
    doc["model"]["channels"] = [8, 32]
    (mismatch / "config.json").write_text(json.dumps(doc))
    for folder in (truncated, mismatch):  # matching checksums: the deeper checks must catch them
        manifest = json.loads((folder / MANIFEST).read_text())
        manifest["files"] = {n: sha256_of(folder / n) for n in manifest["files"]}
        (folder / MANIFEST).write_text(json.dumps(manifest))
    for folder, expected in ((bad_sum, "checksum"), (truncated, "truncated"), (mismatch, "does not match")):
        out = tmp_path / f"{folder.name}.nrrd"
        assert _denoise(phantom_file, out, folder) == 2
        assert expected in capsys.readouterr().err
        assert not out.exists()


def test_too_large_for_memory_is_refused(tiny_model, phantom_file, tmp_path, capsys, monkeypatch):
    import MedDiffFMLib.device as device

    monkeypatch.setattr(device, "available_memory_bytes", lambda: 1000)
    out = tmp_path / "out.nrrd"
    assert _denoise(phantom_file, out, tiny_model) == 2
    assert "memory" in capsys.readouterr().err and not out.exists()


def test_two_dicom_series_are_named_and_one_can_be_picked(tiny_model, tmp_path, capsys):
    from MedDiffFMLib.io import list_dicom_series, write_volume

    folder = tmp_path / "two_series"
    folder.mkdir()
    for index in range(2):
        one = tmp_path / f"series{index}"
        write_volume(ct_phantom(shape=(16, 20, 20), seed=index), one)
        for file in one.iterdir():
            shutil.move(str(file), folder / f"{index}_{file.name}")
    uids = [s.uid for s in list_dicom_series(folder)]
    assert len(uids) == 2
    assert _denoise(folder, tmp_path / "x.nrrd", tiny_model) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert all(uid in err for uid in uids) and "--series" in err
    assert _denoise(folder, tmp_path / "x.nrrd", tiny_model, "--series", uids[1], "--allow-non-hu") == 0


def test_cancel_writes_nothing(tiny_model, phantom_file, tmp_path, monkeypatch, capsys):
    from MedDiffFMLib.cli import common

    calls = {"n": 0}

    def cancel_on_second_check(self):
        calls["n"] += 1
        return calls["n"] >= 2

    monkeypatch.setattr(common.CancelFlag, "__call__", cancel_on_second_check)
    out = tmp_path / "out.nrrd"
    assert _denoise(phantom_file, out, tiny_model, "--noise-hu", "30") == 130
    assert "Cancelled" in capsys.readouterr().err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["phantom.nrrd"]


@requires_shared_data
@pytest.mark.parametrize("relative", ["abdomen/upper_abdomen_dicom", "chest/cta_aorta_crop.nii.gz"])
def test_denoise_real_ct_keeps_geometry(relative, tiny_model, tmp_path, shared_ct):
    source = shared_ct / relative
    out = tmp_path / "out.nii.gz"
    assert _denoise(source, out, tiny_model, "--noise-hu", "25") == 0
    from MedDiffFMLib.io import read_volume

    assert_same_grid(read_volume(source), sitk.ReadImage(str(out)), tol=1e-4)


@requires_shared_data
def test_non_hu_real_head_is_refused(tiny_model, tmp_path, capsys, shared_ct):
    head = shared_ct / "head" / "head_raw_values_dicom"
    assert _denoise(head, tmp_path / "out.nrrd", tiny_model) == 2
    assert "HU" in capsys.readouterr().err


def test_every_subcommand_prints_its_help():
    """--help of every command and batch task renders (an empty mutually exclusive group used to
    crash argparse's usage line)."""
    from MedDiffFMLib.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, command in sub.choices.items():
        assert command.format_help(), name
        if name == "batch":
            tasks = next(a for a in command._actions if a.__class__.__name__ == "_SubParsersAction")
            for task in tasks.choices.values():
                assert task.format_help()
