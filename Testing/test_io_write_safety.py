"""write_volume is atomic and refuses unsafe targets."""

from __future__ import annotations

import pytest
import SimpleITK as sitk
from helpers.volumes import oblique_ct

import MedDiffFMLib.io.dicom_write as dicom_write
from MedDiffFMLib.errors import InputError
from MedDiffFMLib.io import read_volume, write_volume


def listing(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.mhd", "ct.nhdr", "dcm"])
def test_success_leaves_no_temporary_files(tmp_path, name):
    write_volume(oblique_ct((3, 8, 6)), tmp_path / name)
    assert not [p for p in listing(tmp_path) if ".tmp" in p]


def test_failed_file_write_leaves_nothing_and_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "ct.nii.gz"
    write_volume(oblique_ct((3, 8, 6)), target)
    before = target.read_bytes()

    def broken(image, path, *args, **kwargs):
        with open(path, "wb") as f:  # a half-written file, then the failure
            f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", broken)
    with pytest.raises(InputError, match="disk full"):
        write_volume(oblique_ct((3, 8, 6), seed=1), target)
    assert listing(tmp_path) == ["ct.nii.gz"]
    assert target.read_bytes() == before


def test_failed_dicom_write_leaves_nothing(tmp_path, monkeypatch):
    real = sitk.ImageFileWriter.Execute
    calls = []

    def fail_on_third(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("cannot write slice")
        return real(self, *args)

    monkeypatch.setattr(dicom_write.sitk.ImageFileWriter, "Execute", fail_on_third)
    with pytest.raises(InputError, match="cannot write slice"):
        write_volume(oblique_ct((5, 8, 6)), tmp_path / "dcm")
    assert listing(tmp_path) == []


def test_interrupt_leaves_nothing(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sitk, "WriteImage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_volume(oblique_ct((3, 8, 6)), tmp_path / "ct.mha")
    assert listing(tmp_path) == []


def test_refuses_to_overwrite_input_file(tmp_path):
    src = write_volume(oblique_ct((3, 8, 6)), tmp_path / "in.nrrd")
    with pytest.raises(InputError, match="never overwrites its input"):
        write_volume(oblique_ct((3, 8, 6)), tmp_path / "sub" / ".." / "in.nrrd", inputs=[src])


def test_refuses_to_overwrite_input_dicom_folder(tmp_path):
    src = write_volume(oblique_ct((3, 8, 6)), tmp_path / "in_dicom")
    with pytest.raises(InputError, match="never overwrites its input"):
        write_volume(oblique_ct((3, 8, 6)), str(tmp_path / "in_dicom") + "/", inputs=[str(src)])
    assert len(list(src.iterdir())) == 3


def test_refuses_missing_parent_folder(tmp_path):
    with pytest.raises(InputError) as err:
        write_volume(oblique_ct((3, 8, 6)), tmp_path / "missing" / "out.nii.gz")
    assert "missing" in str(err.value) and "does not exist" in str(err.value)
    assert "Create it" in str(err.value)


def test_refuses_unknown_extension(tmp_path):
    with pytest.raises(InputError, match="unknown extension '.png'"):
        write_volume(oblique_ct((3, 8, 6)), tmp_path / "out.png")


def test_refuses_non_empty_dicom_folder(tmp_path):
    (tmp_path / "dcm").mkdir()
    (tmp_path / "dcm" / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty"):
        write_volume(oblique_ct((3, 8, 6)), tmp_path / "dcm")
    assert listing(tmp_path) == ["dcm", "dcm/notes.txt"]


def test_overwrites_previous_output_file(tmp_path):
    target = tmp_path / "out.mha"
    write_volume(oblique_ct((3, 8, 6), seed=0), target)
    new = oblique_ct((3, 8, 6), seed=5)
    write_volume(new, target)
    assert sitk.GetArrayFromImage(read_volume(target)).tolist() == sitk.GetArrayFromImage(new).tolist()



def test_refuses_to_overwrite_the_data_file_of_an_input(tmp_path):
    # another tool wrote an uncompressed detached NRRD: in.nhdr + in.raw
    sitk.WriteImage(oblique_ct((3, 8, 6)), str(tmp_path / "in.nhdr"), useCompression=False)
    before = (tmp_path / "in.raw").read_bytes()
    with pytest.raises(InputError, match=r"would overwrite .*in\.raw.*belongs to an input"):
        write_volume(oblique_ct((3, 8, 6), seed=3), tmp_path / "in.mhd", inputs=[tmp_path / "in.nhdr"])
    assert (tmp_path / "in.raw").read_bytes() == before
    assert listing(tmp_path) == ["in.nhdr", "in.raw"]


def test_files_written_through_a_temporary_name_are_shareable(tmp_path):
    import os
    import stat
    import tempfile

    from pathlib import Path

    from MedDiffFMLib.io.permissions import make_shareable

    umask = os.umask(0o022)
    try:
        handle, name = tempfile.mkstemp(dir=tmp_path)
        os.close(handle)
        folder = Path(tempfile.mkdtemp(dir=tmp_path))
        (folder / "weights.safetensors").write_bytes(b"x")
        (folder / "weights.safetensors").chmod(0o600)
        make_shareable(name)
        make_shareable(folder)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(name).st_mode) == 0o644
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE((folder / "weights.safetensors").stat().st_mode) == 0o644
