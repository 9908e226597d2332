"""The body region a task runs with: given, guessed from the image (None), or "unknown" (no guess:
the region-less class and the default window, as training gives a case with no region)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.models import single_torch_thread, tiny_engines, tiny_models  # noqa: F401  (fixtures)
from helpers.task_tools import box_mask, task_ct
from MedDiffFMLib.cli import main
from MedDiffFMLib.errors import InputError
from MedDiffFMLib.models.config import UNKNOWN_REGION
from MedDiffFMLib.tasks import skeleton
from MedDiffFMLib.tasks.inpaint import InpaintOptions, inpaint_image
from MedDiffFMLib.tasks.shared import check_region


def _no_guess(image):
    raise AssertionError("the region was guessed although it was given")


def test_unknown_skips_the_guess_and_becomes_none(monkeypatch):
    monkeypatch.setattr(skeleton, "guess_region", _no_guess)
    _, region = skeleton.prepare_ct(task_ct(), region=UNKNOWN_REGION)
    assert region is None
    _, region = skeleton.prepare_ct(task_ct(), region="abdomen")
    assert region == "abdomen"


def test_none_still_guesses(monkeypatch):
    monkeypatch.setattr(skeleton, "guess_region", lambda image: "head_neck")
    assert skeleton.prepare_ct(task_ct(), region=None)[1] == "head_neck"


def test_check_region_accepts_unknown_only_where_a_region_is_optional(tiny_engines):
    engine = tiny_engines["base"]
    assert check_region(engine, UNKNOWN_REGION) == UNKNOWN_REGION
    with pytest.raises(InputError, match="required"):
        check_region(engine, None, required=True)
    with pytest.raises(InputError, match="Unknown region 'unknown'"):
        check_region(engine, UNKNOWN_REGION, required=True)  # synthesis needs a real region
    with pytest.raises(InputError, match="or 'unknown' for none"):
        check_region(engine, "pelvis")


def test_unknown_region_runs_with_the_default_window(tiny_engines, monkeypatch):
    """An "unknown" run is the region-less run: the same output as a run whose guess found nothing,
    and not the abdomen run (another window and class)."""
    image, mask = task_ct(), box_mask(task_ct())

    def run(region):
        options = InpaintOptions(steps=2, region=region, seed=3)
        return sitk.GetArrayFromImage(inpaint_image(image, mask, tiny_engines["base"], options).image)

    unknown = run(UNKNOWN_REGION)
    monkeypatch.setattr(skeleton, "guess_region", lambda image: None)
    assert np.array_equal(unknown, run(None))
    assert not np.array_equal(unknown, run("abdomen"))


def test_cli_takes_region_unknown(tmp_path, tiny_models, capsys):
    image = task_ct()
    ct, mask_path, out = tmp_path / "ct.nii.gz", tmp_path / "mask.nii.gz", tmp_path / "out.nii.gz"
    sitk.WriteImage(image, str(ct))
    mask = sitk.GetImageFromArray(box_mask(image))
    mask.CopyInformation(image)
    sitk.WriteImage(mask, str(mask_path))
    code = main(["lesion", str(ct), str(mask_path), str(out), "--steps", "1", "--region", UNKNOWN_REGION,
                 "--model", str(tiny_models.lesion), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert out.exists()
    with pytest.raises(SystemExit) as exit_info:  # argparse: the choices, 'unknown' among them
        main(["inpaint", str(ct), str(mask_path), str(tmp_path / "x.nii.gz"), "--region", "limb"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "'unknown'" in err and "Traceback" not in err
