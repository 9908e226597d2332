"""Complete reads: every format cut short at several points, and gzip streams that end early or fail
their CRC, are refused with the sizes, by read_volume, the task commands, batch and prepare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.models import tiny_models  # noqa: F401  (fixture)
from helpers.safety import assert_refused, digests, run_cli
from helpers.task_tools import task_ct
from MedDiffFMLib.errors import InputError
from MedDiffFMLib.io import read_volume

FORMATS = [("a.nii", False), ("a.nii.gz", True), ("a.nrrd", False), ("a.nrrd", True), ("a.mha", False),
           ("a.mha", True), ("a.nhdr", False), ("a.nhdr", True), ("a.mhd", False), ("a.mhd", True)]
CUTS = (0.25, 0.6, 0.9, 0.999)


def _data_file(folder: Path, name: str) -> Path:
    """The file holding the voxel data (the header itself, or a detached header's data file)."""
    if name.endswith((".nhdr", ".mhd")):
        return next(p for p in folder.iterdir() if p.name.startswith("a.") and p.name != name)
    return folder / name


@pytest.mark.parametrize("name,compress", FORMATS)
def test_every_format_cut_short_is_refused_with_the_sizes(tmp_path, name, compress):
    image = task_ct((10, 20, 16))
    sitk.WriteImage(image, str(tmp_path / name), useCompression=compress)
    assert np.array_equal(sitk.GetArrayFromImage(read_volume(tmp_path / name)), sitk.GetArrayFromImage(image))
    data = _data_file(tmp_path, name)
    whole = data.read_bytes()
    declared = f"{10 * 20 * 16 * 2:,} bytes"
    for cut in CUTS:
        data.write_bytes(whole[: int(len(whole) * cut)])
        with pytest.raises(InputError) as error:
            read_volume(tmp_path / name)
        message = str(error.value)
        assert "incomplete" in message and str(data) in message, message
        if not compress or name.endswith(".nii.gz"):
            assert declared in message or "ends early" in message, message
        else:
            assert "ends early" in message, message


def test_gzip_crc_and_corruption_are_refused(tmp_path):
    path = tmp_path / "a.nii.gz"
    sitk.WriteImage(task_ct(), str(path), useCompression=True)
    whole = bytearray(path.read_bytes())
    for position, words in ((-8, "CRC"), (-2, "CRC"), (len(whole) // 2, "damaged")):
        broken = bytearray(whole)
        broken[position] ^= 0x5A
        path.write_bytes(bytes(broken))
        with pytest.raises(InputError, match=words):
            read_volume(path)


def test_the_header_itself_cut_short(tmp_path):
    path = tmp_path / "a.nii"
    sitk.WriteImage(task_ct(), str(path))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match="header is missing or cut short"):
        read_volume(path)


def test_commands_refuse_a_truncated_input_and_write_nothing(tmp_path, tiny_models, capsys):  # noqa: F811
    ct = tmp_path / "ct.nii.gz"
    sitk.WriteImage(task_ct(), str(ct), useCompression=True)
    ct.write_bytes(ct.read_bytes()[: int(ct.stat().st_size * 0.9)])
    plain = tmp_path / "ct.nii"
    sitk.WriteImage(task_ct(), str(plain))
    plain.write_bytes(plain.read_bytes()[: int(plain.stat().st_size * 0.9)])
    model = ["--model", tiny_models.base, "--steps", "1", "--progress", "none"]
    for source in (ct, plain):
        for argv in (["denoise", source, tmp_path / "o.nii.gz", *model],
                     ["anomaly", source, tmp_path / "o.nii.gz", *model],
                     ["inpaint", plain.with_name("whole.nrrd"), source, tmp_path / "o.nii.gz", *model]):
            sitk.WriteImage(task_ct(), str(tmp_path / "whole.nrrd"))
            message = assert_refused(argv, capsys, tmp_path, [ct, plain, tiny_models.base])
            assert "incomplete" in message and str(source) in message


def test_batch_reports_a_truncated_case_and_writes_the_others(tmp_path, tiny_models, capsys):  # noqa: F811
    cts = tmp_path / "cts"
    cts.mkdir()
    for k in range(2):
        sitk.WriteImage(task_ct(seed=k), str(cts / f"c{k}.nii.gz"), useCompression=True)
    bad = cts / "c1.nii.gz"
    bad.write_bytes(bad.read_bytes()[:-200])
    before = digests([cts])
    out = tmp_path / "out"
    code, err = run_cli(["batch", "denoise", "--inputs", cts, "--out", out, "--model", tiny_models.base, "--steps", "1",
                         "--noise-hu", "20", "--progress", "none"], capsys)
    assert code == 2 and "Traceback" not in err
    assert "c1" in err and "incomplete" in err
    assert sorted(p.name for p in out.iterdir()) == ["c0_denoise.nii.gz"]
    assert digests([cts]) == before


def test_prepare_refuses_a_truncated_image(tmp_path, capsys):
    image = tmp_path / "ct.nii.gz"
    sitk.WriteImage(task_ct((12, 24, 20)), str(image), useCompression=True)
    image.write_bytes(image.read_bytes()[: int(image.stat().st_size * 0.8)])
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"cases": [{"id": "c0", "image": "ct.nii.gz", "region": "chest"}]}))
    cache = tmp_path / "cache"
    message = assert_refused(["prepare", manifest, cache, "--config", "tiny", "--progress", "none"], capsys, tmp_path,
                             [image, manifest])
    assert "incomplete" in message and "c0" in message


@pytest.mark.parametrize("endian", ["<", ">"])
def test_nifti_header_layouts_give_the_declared_data(tmp_path, endian):
    """NIfTI-1 (348-byte) and NIfTI-2 (540-byte) headers, either byte order: the bytes of voxel data
    they declare, where it starts, its float type and its size."""
    import struct

    from MedDiffFMLib.io.truncation import _nifti_header

    one = bytearray(348)
    one[0:4] = struct.pack(endian + "i", 348)
    one[40:56] = struct.pack(endian + "8h", 3, 4, 5, 6, 1, 1, 1, 1)
    one[70:72], one[72:74] = struct.pack(endian + "h", 16), struct.pack(endian + "h", 32)  # float32
    one[108:112] = struct.pack(endian + "f", 352.0)
    two = bytearray(540)
    two[0:4] = struct.pack(endian + "i", 540)
    two[12:14], two[14:16] = struct.pack(endian + "h", 4), struct.pack(endian + "h", 16)  # int16
    two[16:80] = struct.pack(endian + "8q", 3, 7, 8, 9, 1, 1, 1, 1)
    two[168:176] = struct.pack(endian + "q", 560)
    path = tmp_path / "a.nii"
    assert _nifti_header(bytes(one), path) == (4 * 5 * 6 * 4, 352, np.dtype(endian + "f4"), (4, 5, 6))
    assert _nifti_header(bytes(two), path) == (7 * 8 * 9 * 2, 560, None, (7, 8, 9))
    with pytest.raises(InputError, match="348 or 540"):
        _nifti_header(bytes(two[:400]), path)
