"""Every task runs on the one skeleton (MedDiffFMLib/tasks/skeleton.py): the same progress stages in
the same order, cancel honoured at each stage boundary, the sampler loop run through the skeleton's
plan (so the planned time steps, the seeded generator and the capped-steps note are the skeleton's),
and the same seed giving the same output."""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.models import single_torch_thread, tiny_engines, tiny_models  # noqa: F401  (fixtures)
from helpers.task_tools import Recorder, box_mask, task_ct
from MedDiffFMLib.errors import CancelledError
from MedDiffFMLib.tasks import skeleton
from MedDiffFMLib.tasks.anomaly import AnomalyOptions, anomaly_map_image
from MedDiffFMLib.tasks.denoise import DenoiseOptions, denoise_image
from MedDiffFMLib.tasks.inpaint import InpaintOptions, inpaint_image
from MedDiffFMLib.tasks.lesion import LesionOptions, generate_lesion_image
from MedDiffFMLib.tasks.superres import SuperResOptions, super_resolve_image
from MedDiffFMLib.tasks.synthesize import SynthesisOptions, synthesize_image


class Task(NamedTuple):
    stage: str  # the sampling stage's progress name
    role: str  # the engine it needs
    run: Callable  # (engine, recorder, **options) -> result with .image (or .anomaly_map)
    start_step: bool  # whether the task takes --start-step (so its steps can be capped)


def _output(result) -> np.ndarray:
    image = getattr(result, "image", None)
    return sitk.GetArrayFromImage(result.anomaly_map if image is None else image)


TASKS = {
    "denoise": Task("denoising", "base", lambda e, r, **o: denoise_image(
        task_ct(), e, DenoiseOptions(**{"steps": 2, "region": "chest", "noise_hu": 40.0, **o}),
        progress=r, cancel=r.cancel), False),
    "anomaly": Task("reconstruction", "base", lambda e, r, **o: anomaly_map_image(
        task_ct(), e, AnomalyOptions(**{"steps": 2, "region": "chest", "method": "residual", **o}), progress=r,
        cancel=r.cancel), True),  # one pass; the default ensemble's several passes: test_task_anomaly.py
    "synthesize": Task("synthesis", "base", lambda e, r, **o: synthesize_image(
        e, SynthesisOptions(**{"steps": 2, "region": "abdomen", **o}), progress=r, cancel=r.cancel), False),
    "superres": Task("super-resolution", "superres", lambda e, r, **o: super_resolve_image(
        task_ct(), e, SuperResOptions(**{"steps": 2, "region": "chest", "factor_z": 2, **o}),
        progress=r, cancel=r.cancel), True),
    "inpaint": Task("inpainting", "base", lambda e, r, **o: inpaint_image(
        task_ct(), box_mask(task_ct()), e, InpaintOptions(**{"steps": 2, "region": "abdomen", **o}),
        progress=r, cancel=r.cancel), True),
    "lesion": Task("lesion", "lesion", lambda e, r, **o: generate_lesion_image(
        task_ct(), box_mask(task_ct()), e, LesionOptions(**{"steps": 2, "region": "abdomen", **o}),
        progress=r, cancel=r.cancel), True),
}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_reports_the_skeleton_stages_in_order(name, tiny_engines, monkeypatch):
    task = TASKS[name]
    runs = []
    original = skeleton.run_sampler
    monkeypatch.setattr(skeleton, "run_sampler", lambda *a, **k: runs.append(k["stage"]) or original(*a, **k))
    recorder = Recorder()
    first = task.run(tiny_engines[task.role], recorder, seed=3)
    stages = [e.stage for e in recorder.events]
    # preprocessing 0/1, the sampling stage, postprocessing 0/1, and nothing else.
    compact = [s for i, s in enumerate(stages) if i == 0 or s != stages[i - 1]]
    assert compact == ["preprocessing", task.stage, "postprocessing"], compact
    for stage in ("preprocessing", task.stage, "postprocessing"):
        recorder.assert_complete(stage)
    # Denoise runs DiffPIR's loop (sampling/diffpir.py, shared with training's check); the others
    # run the sampler through the skeleton's plan.
    assert runs == ([] if name == "denoise" else [task.stage])
    second = task.run(tiny_engines[task.role], Recorder(), seed=3)
    assert np.array_equal(_output(first), _output(second))


@pytest.mark.parametrize("name", sorted(TASKS))
@pytest.mark.parametrize("at", ["preprocessing", "sampling"])
def test_every_task_cancels_at_each_stage_and_stops_there(name, at, tiny_engines):
    task = TASKS[name]
    stage = "preprocessing" if at == "preprocessing" else task.stage
    recorder = Recorder(cancel_at=(stage, 1))
    with pytest.raises(CancelledError):
        task.run(tiny_engines[task.role], recorder, steps=3)
    later = {"preprocessing": [task.stage, "postprocessing"], "sampling": ["postprocessing"]}[at]
    assert not [e for e in recorder.events if e.stage in later], recorder.events


@pytest.mark.parametrize("name", sorted(n for n, t in TASKS.items() if t.start_step))
def test_capped_steps_note_comes_from_the_skeleton_plan(name, tiny_engines):
    task = TASKS[name]
    recorder = Recorder()
    result = task.run(tiny_engines[task.role], recorder, start_step=2, steps=6)
    assert result.steps == 3  # t = 2, 1, 0
    assert any("--steps 6 capped at 3" in note for note in recorder.notes), recorder.notes
