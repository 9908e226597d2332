"""Every option is checked before any input is read or model loaded: ranges (exit 2, one paragraph,
nothing written, inputs unchanged), the model's role against the task (named), capped steps noted."""

from __future__ import annotations

import pytest
import SimpleITK as sitk

from helpers.models import tiny_models  # noqa: F401  (fixture)
from helpers.safety import assert_refused, run_cli
from helpers.task_tools import box_mask, task_ct
from MedDiffFMLib.errors import InputError
from MedDiffFMLib.tasks.anomaly import AnomalyOptions
from MedDiffFMLib.tasks.denoise import DenoiseOptions
from MedDiffFMLib.engine import EngineOptions
from MedDiffFMLib.tasks.inpaint import InpaintOptions
from MedDiffFMLib.tasks.lesion import LesionOptions
from MedDiffFMLib.tasks.superres import SuperResOptions
from MedDiffFMLib.tasks.synthesize import SynthesisOptions

# (command, option arguments, words of the message). The input given does not exist: the option
# must be refused before anything is read.
BAD_OPTIONS = [
    ("denoise", ["--overlap", "1.0"], "--overlap"),
    ("denoise", ["--overlap", "-0.1"], "--overlap"),
    ("denoise", ["--seed", str(2**64)], "--seed"),
    ("denoise", ["--seed", "-1"], "--seed"),
    ("denoise", ["--noise-hu", "-5"], "--noise-hu"),
    ("denoise", ["--noise-hu", "nan"], "--noise-hu"),
    ("denoise", ["--lambda", "-1"], "--lambda"),
    ("denoise", ["--lambda", "0"], "--lambda"),
    ("denoise", ["--batch-size", "0"], "--batch-size"),
    ("denoise", ["--steps", "0"], "--steps"),
    ("denoise", ["--strength", "1.5"], "--strength"),
    ("anomaly", ["--samples", "0"], "--samples"),
    ("anomaly", ["--smooth-mm", "-1"], "--smooth-mm"),
    ("anomaly", ["--seed", str(2**64 - 1), "--samples", "2"], "--seed"),
    ("superres", ["--lambda", "-2"], "--lambda"),
    ("superres", ["--factor-z", "1"], "--factor-z"),
]


@pytest.mark.parametrize("command,extra,words", BAD_OPTIONS)
def test_out_of_range_options_are_refused_before_reading(tmp_path, capsys, command, extra, words):
    model = []  # the default models are never loaded: the option is refused first
    argv = [command, tmp_path / "missing.nii.gz", tmp_path / "o.nii.gz", *extra, *model, "--progress", "none"]
    message = assert_refused(argv, capsys, tmp_path, [])
    assert words in message and "does not exist" not in message, message


def test_masked_tasks_check_their_options_before_reading(tmp_path, capsys):
    for extra, words in ((["--resample", "0"], "--resample"), (["--label", "0"], "--label"), (["--steps", "-3"], "--steps")):
        argv = ["inpaint", tmp_path / "a.nii.gz", tmp_path / "m.nii.gz", tmp_path / "o.nii.gz", *extra]
        assert words in assert_refused(argv, capsys, tmp_path, [])


def test_options_validate_in_the_api():
    for bad in (DenoiseOptions(lam=-1), DenoiseOptions(noise_hu=-1), DenoiseOptions(seed=2**64), AnomalyOptions(samples=0),
                SuperResOptions(lam=0), SuperResOptions(factor_z=2, spacing=1.0), InpaintOptions(resample=0),
                LesionOptions(steps=0), SynthesisOptions(seed=-5), EngineOptions(overlap=1.0), EngineOptions(batch_size=0)):
        with pytest.raises(InputError):
            bad.validate()
    for good in (DenoiseOptions(), AnomalyOptions(), SuperResOptions(), InpaintOptions(), LesionOptions(),
                 SynthesisOptions(region="chest"), EngineOptions(), DenoiseOptions(seed=2**64 - 1)):
        good.validate()


def test_the_model_role_is_checked_before_reading_and_named(tmp_path, tiny_models, capsys):  # noqa: F811
    missing = tmp_path / "missing.nii.gz"
    cases = [
        (["denoise", missing, tmp_path / "o.nii.gz", "--model", tiny_models.lesion], "tiny-lesion", "base model"),
        (["anomaly", missing, tmp_path / "o.nii.gz", "--model", tiny_models.superres], "tiny-superres", "base model"),
        (["lesion", missing, missing, tmp_path / "o.nii.gz", "--model", tiny_models.base], "tiny-base", "'lesion' ControlNet"),
        (["superres", missing, tmp_path / "o.nii.gz", "--model", tiny_models.lesion], "tiny-lesion", "'superres'"),
        (["synthesize", tmp_path / "o.nii.gz", "--region", "chest", "--model", tiny_models.lesion], "tiny-lesion",
         "base model"),
    ]
    for argv, name, words in cases:
        message = assert_refused([*argv, "--progress", "none"], capsys, tmp_path, [tiny_models.root])
        assert name in message and words in message and "does not exist" not in message, message


def test_batch_checks_options_and_model_before_any_case(tmp_path, tiny_models, capsys):  # noqa: F811
    cts = tmp_path / "cts"
    cts.mkdir()
    sitk.WriteImage(task_ct(), str(cts / "a.nii.gz"))
    out = tmp_path / "out"
    for extra, words in ((["--overlap", "1"], "--overlap"), (["--model", tiny_models.lesion], "tiny-lesion")):
        message = assert_refused(["batch", "denoise", "--inputs", cts, "--out", out, *extra, "--progress", "none"],
                                 capsys, tmp_path, [cts, tiny_models.root])
        assert words in message and not out.exists()


def test_capped_steps_are_noted(tmp_path, tiny_models, capsys):  # noqa: F811
    ct = tmp_path / "ct.nrrd"
    sitk.WriteImage(task_ct(), str(ct))
    code, err = run_cli(["denoise", ct, tmp_path / "o.nii.gz", "--model", tiny_models.base, "--steps", "900",
                         "--noise-hu", "20", "--progress", "none"], capsys)
    assert code == 0, err
    assert "--steps 900 capped at" in err


def test_inpaint_mask_is_called_mask(tmp_path, tiny_models, capsys):  # noqa: F811
    ct = tmp_path / "ct.nrrd"
    sitk.WriteImage(task_ct(), str(ct))
    message = assert_refused(["inpaint", ct, tmp_path / "nomask.nii.gz", tmp_path / "o.nii.gz", "--model",
                              tiny_models.base, "--progress", "none"], capsys, tmp_path, [ct])
    assert "The mask '" in message and "The input" not in message
    mask = sitk.GetImageFromArray(box_mask(task_ct()))
    assert mask.GetSize()
