"""The registry drives every front end: a seventh task is one task module and one registry entry
(and, for the Slicer combo box, its label). This test is the worked example of docs/ARCHITECTURE.md:
it registers a toy task, "smooth", and runs it through the command line (single command and batch),
the Python API and the argument list the Slicer module builds from ``info --json``, declaring nothing
anywhere else."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.models import tiny_models  # noqa: F401  (fixture)
from helpers.task_tools import task_ct
from MedDiffFMLib import api
from MedDiffFMLib.errors import InputError
from MedDiffFMLib.tasks.registry import TASKS, Argument, ExtraOutput, TaskRun, export_tasks, preview_of
from MedDiffFMLib.tasks.task_entry import TaskEntry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slicer_helpers import paths as _slicer_paths  # noqa: E402,F401  (sys.path for MedDiffFMModuleLib)


# -- the task module (tasks/smooth.py in a real addition) ---------------------------------------

@dataclass
class SmoothOptions:
    """Gaussian smoothing, ``steps`` passes of ``sigma_mm``."""

    sigma_mm: float = 1.5
    steps: int = 2

    def validate(self) -> None:
        if not self.sigma_mm > 0:
            raise InputError(f"--sigma-mm must be above 0; got {self.sigma_mm}.")
        if self.steps < 1:
            raise InputError(f"--steps must be at least 1; got {self.steps}.")


def smooth_image(image: sitk.Image, options: SmoothOptions) -> sitk.Image:
    smoothed = sitk.Cast(image, sitk.sitkFloat32)
    for _ in range(options.steps):
        smoothed = sitk.SmoothingRecursiveGaussian(smoothed, options.sigma_mm)
    return smoothed


def _run(engine, inputs, options, progress, cancel) -> TaskRun:
    # A real task samples with ``engine`` on tasks/skeleton.py; the toy only needs the front ends.
    smoothed = smooth_image(inputs["input"], options)
    difference = sitk.Cast(inputs["input"], sitk.sitkFloat32) - smoothed
    return TaskRun({"": smoothed, "difference": difference}, result=options.steps)


# -- the registry entry (one more item of TASKS in tasks/registry.py) ----------------------------

SMOOTH = TaskEntry(
    "smooth", SmoothOptions, _run, "base", False, (
        Argument("--sigma-mm", "sigma_mm", "Gaussian standard deviation in mm"),
        Argument("--steps", "steps", "smoothing passes", "int")),
    help="smooth a CT (toy task)",
    output_help="where to write the smoothed CT",
    extra_outputs=(ExtraOutput("difference", "--difference-out", "also write input - smoothed"),),
    summary=lambda done: f"Smoothed {done.paths['input']} -> {done.paths['output']} in {done.result} pass(es).",
    preview=preview_of("input", "smoothed"),
)


@pytest.fixture
def smooth(monkeypatch):
    monkeypatch.setitem(TASKS, "smooth", SMOOTH)
    return SMOOTH


def _expected(image: sitk.Image, sigma: float, steps: int) -> np.ndarray:
    return sitk.GetArrayFromImage(smooth_image(image, SmoothOptions(sigma, steps)))


def test_the_command_line_builds_and_runs_the_toy_task(smooth, tiny_models, tmp_path, capsys):
    from MedDiffFMLib.cli import main

    image = task_ct()
    ct = tmp_path / "ct.nii.gz"
    sitk.WriteImage(image, str(ct))
    out, difference = tmp_path / "smooth.nii.gz", tmp_path / "difference.nii.gz"

    with pytest.raises(SystemExit):
        main(["smooth", "--help"])
    help_text = capsys.readouterr().out
    assert "smooth a CT (toy task)" in help_text and "--difference-out" in help_text and "--series" in help_text
    assert "smoothing passes (default 2)" in help_text

    code = main(["--progress", "none", "smooth", str(ct), str(out), "--sigma-mm", "2", "--difference-out",
                 str(difference), "--model", str(tiny_models.base), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"Smoothed {ct} -> {out} in 2 pass(es)." in err
    np.testing.assert_allclose(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), _expected(image, 2.0, 2), atol=1e-4)
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(difference)))
    np.testing.assert_allclose(written, sitk.GetArrayFromImage(image).astype(np.float32) - _expected(image, 2.0, 2),
                               atol=1e-3)

    # The registry's checks run before any work: a bad option is one paragraph, exit 2, nothing written.
    bad = tmp_path / "bad.nii.gz"
    code = main(["--progress", "none", "smooth", str(ct), str(bad), "--sigma-mm", "0", "--model",
                 str(tiny_models.base), "--device", "cpu"])
    assert code == 2 and "--sigma-mm must be above 0" in capsys.readouterr().err and not bad.exists()

    # Batch takes every registry task too, extra outputs included.
    cases = tmp_path / "cases"
    cases.mkdir()
    sitk.WriteImage(image, str(cases / "a.nii.gz"))
    code = main(["--progress", "none", "batch", "smooth", "--inputs", str(cases), "--out", str(tmp_path / "b"),
                 "--steps", "1", "--model", str(tiny_models.base), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["a_smooth.nii.gz", "a_smooth_difference.nii.gz"]
    np.testing.assert_allclose(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "b" / "a_smooth.nii.gz"))),
                               _expected(image, 1.5, 1), atol=1e-4)


def test_the_api_runs_the_toy_task(smooth, tiny_models):
    image = task_ct()
    array = sitk.GetArrayFromImage(image)
    out = api.run_task("smooth", array, spacing=image.GetSpacing(), origin=image.GetOrigin(),
                       direction=image.GetDirection(), model=str(tiny_models.base), device="cpu", sigma_mm=2.0)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, _expected(image, 2.0, 2), atol=1e-4)
    done = api.run_task("smooth", image, model=str(tiny_models.base), device="cpu", steps=1, details=True)
    assert set(done.images) == {"", "difference"} and done.result == 1
    assert isinstance(done.images["difference"], sitk.Image)
    with pytest.raises(InputError, match="Unknown option"):
        api.run_task("smooth", image, model=str(tiny_models.base), device="cpu", strength=0.5)


def test_the_slicer_module_builds_the_toy_tasks_argv_from_info_json(smooth, tiny_models, tmp_path, capsys):
    """The module knows the toy task only from the library's export: its path arguments, its options
    and extra outputs; the argument list it builds is run by the real command line."""
    from MedDiffFMLib.cli import _hoist_global_options, build_parser, main
    from MedDiffFMModuleLib import Tasks
    from MedDiffFMModuleLib.Models import parseInfoOutput

    info = parseInfoOutput(json.dumps({"version": "x", "devices": ["cpu"], "models": [], "tasks": export_tasks()}))
    spec = Tasks.taskSpec("smooth", info.tasks)
    assert spec.paths == ("input", "output") and spec.inputRequired and spec.options == (Tasks.STEPS,)
    assert spec.extraOutputs == (("difference", "--difference-out"),)
    assert "smooth" not in Tasks.TASK_LABELS and Tasks.outputName("smooth", "CT") == "CT smooth"
    assert spec.description == "smooth a CT (toy task)"
    with pytest.raises(ValueError, match="no task 'smooth'"):
        Tasks.taskSpec("smooth")  # before `info --json` the module knows only the shipped tasks

    image = task_ct()
    ct = tmp_path / "input.nrrd"
    sitk.WriteImage(image, str(ct))
    paths = Tasks.TaskPaths(output=str(tmp_path / "output.nrrd"), input=str(ct),
                            extras={"difference": str(tmp_path / "difference.nrrd")})
    options = Tasks.TaskOptions(steps=1, seed=5, strength=0.3, model=str(tiny_models.base), device=Tasks.Device.CPU)
    argv = Tasks.buildTaskArguments("smooth", paths, options, platform="linux", tasks=info.tasks)
    assert "--seed" not in argv and "--strength" not in argv  # options the task does not take are not sent
    parsed = build_parser().parse_args(_hoist_global_options(argv))
    assert parsed.command == "smooth" and parsed.steps == 1 and str(parsed.difference_out).endswith("difference.nrrd")
    assert main(argv) == 0, capsys.readouterr().err
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert lines[-1]["stage"] == "done" and len(lines[-1]["outputs"]) == 2
    np.testing.assert_allclose(sitk.GetArrayFromImage(sitk.ReadImage(paths.output)), _expected(image, 1.5, 1),
                               atol=1e-4)
    batch = Tasks.buildBatchArguments("smooth", "in", "out", options, platform="linux", tasks=info.tasks)
    assert build_parser().parse_args(_hoist_global_options(batch)).batch_task == "smooth"


def test_controlnet_roles_and_choices_come_from_one_table():
    """A task with its own ControlNet adds one row to ``models.config.CONTROLNET_TASKS``: the model
    roles, ``init-model --controlnet`` and ``finetune --task`` choices and the model card's words
    follow, and fine-tuning must have a condition builder for it."""
    from MedDiffFMLib.cli import build_parser
    from MedDiffFMLib.models.config import CONTROLNET_TASKS
    from MedDiffFMLib.models.registry import FALLBACK_NAMES, ROLES
    from MedDiffFMLib.training.condition_builders import CONDITION_BUILDERS

    assert ROLES == ("base", *CONTROLNET_TASKS) and set(FALLBACK_NAMES) == set(ROLES)
    assert set(CONDITION_BUILDERS) == set(CONTROLNET_TASKS)
    assert {entry.role for entry in TASKS.values()} <= set(ROLES)
    parser = build_parser()
    for task in CONTROLNET_TASKS:
        assert parser.parse_args(["init-model", "--controlnet", task, "out"]).controlnet == task
        assert parser.parse_args(["finetune", "c.json", "--task", task]).task == task
