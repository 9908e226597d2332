"""One end-to-end task call (read the input, run the API, write the output), timed by stage, with its
peak memory and CPU time, each in a fresh Python process (:class:`IsolatedRunner`)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk
import torch

from benchmarks import REPO_ROOT
from benchmarks.common import model_setup, timing
from benchmarks.speed_parts.inputs import TaskInput
from benchmarks.speed_parts.paths import PATHS, path_engine

TASKS = ["denoise", "anomaly", "inpaint", "synthesize", "superres", "lesion"]
CONTROLNET_TASKS = ("superres", "lesion")
# How IsolatedRunner starts a fresh process for one run (benchmarks.speed hands it to child_main).
CHILD_COMMAND = [sys.executable, "-m", "benchmarks.speed", "--child"]


class StageClock:
    """Time stamps of the progress events of one task call."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, int, int]] = []

    def __call__(self, event) -> None:
        self.events.append((time.perf_counter(), event.stage, int(event.step), int(event.total)))

    def split(self, start: float, end: float) -> dict[str, float]:
        pre_end = next((t for t, s, k, n in self.events if s == "preprocessing" and k >= n), None)
        post_start = next((t for t, s, k, n in self.events if s == "postprocessing"), None)
        sampling = [(t, k) for t, s, k, n in self.events if s not in ("preprocessing", "postprocessing")]
        steps = max((k for _, k in sampling), default=0)
        pre_end = pre_end if pre_end is not None else start
        post_start = post_start if post_start is not None else end
        return {"preprocess": pre_end - start, "sampling": post_start - pre_end, "post": end - post_start,
                "steps": steps}


def default_steps(task: str) -> int:
    from MedDiffFMLib import api

    fn = {"denoise": api.denoise, "anomaly": api.anomaly_map, "inpaint": api.inpaint, "synthesize": api.synthesize,
          "superres": api.super_resolve, "lesion": api.generate_lesion}[task]
    return int(inspect.signature(fn).parameters["steps"].default)


def call_task(task: str, item: TaskInput, image: sitk.Image, mask, engine, steps: int, clock: StageClock):
    from MedDiffFMLib import api

    if task == "denoise":
        return api.denoise(image, engine=engine, steps=steps, progress=clock)
    if task == "anomaly":
        return api.anomaly_map(image, engine=engine, steps=steps, progress=clock)
    if task == "inpaint":
        return api.inpaint(image, mask, engine=engine, steps=steps, progress=clock)
    if task == "lesion":
        return api.generate_lesion(image, mask, engine=engine, steps=steps, progress=clock)
    if task == "synthesize":
        return api.synthesize("chest", like=image, engine=engine, steps=steps, progress=clock)
    if task == "superres":
        return api.super_resolve(image, engine=engine, steps=steps, factor_z=item.factor, progress=clock)
    raise ValueError(task)


@dataclasses.dataclass
class E2E:
    task: str
    path: str
    steps_run: int
    default_steps: int
    read: float
    preprocess: float
    sampling: float
    post: float
    write: float
    total: float
    evaluations: int
    peak_rss: int
    start_rss: int
    cuda_peak: Optional[int]
    output: np.ndarray
    user: float = 0.0    # CPU seconds of the process in user mode during the run (all threads)
    system: float = 0.0  # ... in the kernel (page faults of memory churn show here)

    @property
    def per_step(self) -> float:
        return self.sampling / self.steps_run if self.steps_run else float("nan")

    @property
    def projected(self) -> float:
        if self.steps_run >= self.default_steps or not self.steps_run:
            return self.total
        return self.total - self.sampling + self.per_step * self.default_steps

    @property
    def patches_per_step(self) -> float:
        return self.evaluations / self.steps_run if self.steps_run else float("nan")


def run_e2e(task: str, item: TaskInput, engine, steps: int, folder: Path, path_name: str) -> E2E:
    out_path = folder / f"out_{task}_{path_name}.nii.gz"
    clock = StageClock()
    cuda = engine.device.type == "cuda"
    engine.made = []
    with timing.PeakMemory(cuda=cuda) as memory:
        t0 = time.perf_counter()
        image = sitk.ReadImage(str(item.image_path))
        mask = sitk.ReadImage(str(item.mask_path)) if item.mask_path else None
        t1 = time.perf_counter()
        result = call_task(task, item, image, mask, engine, steps, clock)
        t2 = time.perf_counter()
        sitk.WriteImage(result, str(out_path))
        t3 = time.perf_counter()
    split = clock.split(t1, t2)
    evaluations = sum(int(getattr(p, "evaluations", 0)) for p in engine.made)
    output = sitk.GetArrayFromImage(result).astype(np.float32)
    return E2E(task, path_name, int(split["steps"]), default_steps(task), t1 - t0, split["preprocess"],
               split["sampling"], split["post"], t3 - t2, t3 - t0, evaluations, memory.peak_rss, memory.start_rss,
               memory.cuda_peak, output)



class IsolatedRunner:
    """Runs each end-to-end measurement in a fresh Python process, so that its peak memory is its
    own (freed memory kept by the allocator of an earlier run would hide a later run's growth)."""

    def __init__(self, model_ref: str, role: str, device: str, threads: Optional[int], tuned: dict, work: Path):
        self.base = {"model": model_ref, "role": role, "device": device, "threads": threads, "tuned": tuned}
        self.work = work

    def run(self, task: str, item: TaskInput, steps: int, path: str, tag: str = "", stub: bool = False) -> E2E:
        name = f"{task}_{path}{tag}"
        spec = dict(self.base, task=task, steps=steps, path=path, stub=stub, name=name,
                    item={"task": item.task, "image_path": str(item.image_path),
                          "mask_path": str(item.mask_path) if item.mask_path else None, "factor": item.factor,
                          "voxels": item.voxels},
                    work=str(self.work))
        spec_path = self.work / f"spec_{name}.json"
        spec_path.write_text(json.dumps(spec))
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        done = subprocess.run([*CHILD_COMMAND, str(spec_path)],
                              cwd=str(REPO_ROOT), env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        data = json.loads((self.work / f"result_{name}.json").read_text())
        output = np.load(self.work / f"out_{name}.npy")
        return E2E(output=output, **data)


def child_main(spec_path: str) -> int:
    """One end-to-end run in this (fresh) process; see :class:`IsolatedRunner`."""
    spec = json.loads(Path(spec_path).read_text())
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    prepare = PATHS[spec["path"]].prepare_process
    if prepare is not None:
        prepare()
    engine = model_setup.make_engine(model_setup.BenchModel(spec["model"]), spec["device"], role=spec["role"])
    made = path_engine(engine, spec["path"], spec["tuned"], stub=spec["stub"])
    item = spec["item"]
    task_input = TaskInput(item["task"], Path(item["image_path"]),
                           Path(item["mask_path"]) if item["mask_path"] else None, item["factor"], item["voxels"])
    work = Path(spec["work"])
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = run_e2e(spec["task"], task_input, made, int(spec["steps"]), work, spec["name"])
    after = resource.getrusage(resource.RUSAGE_SELF)
    result.user, result.system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    np.save(work / f"out_{spec['name']}.npy", result.output)
    data = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name != "output"}
    (work / f"result_{spec['name']}.json").write_text(json.dumps(data))
    return 0

