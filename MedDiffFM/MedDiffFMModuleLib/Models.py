"""Models and tasks known to the library (``meddifffm info --json``) and a rough run-time estimate.

The tasks' defaults (steps...) and the sliding window's overlap come from that export (the library's
task registry and tiling); no library constant is copied here. The estimate does repeat the library's
window count along an axis (:func:`_patchesPerAxis`, five lines of arithmetic), because the library's
tiling imports torch, which the Slicer process does not load. Pure Python: unit-tested without Slicer.
"""

import dataclasses
import json
import math
from typing import Dict, List, Optional, Sequence

from .I18n import _


@dataclasses.dataclass
class ModelInfo:
    name: str
    path: str = ""
    kind: str = "unet"
    sha256Ok: Optional[bool] = None
    cardSummary: str = ""
    config: Dict = dataclasses.field(default_factory=dict)
    error: str = ""
    anomalyThreshold: Optional[float] = None
    """The calibrated default threshold of the anomaly map (``anomaly_threshold``; None: not calibrated)."""
    taskSteps: Dict[str, int] = dataclasses.field(default_factory=dict)
    """Default sampler steps per task (from the library's task registry, see :func:`parseInfoOutput`)."""

    @classmethod
    def fromJson(cls, payload: Dict) -> "ModelInfo":
        return cls(
            name=str(payload.get("name") or payload.get("path") or "?"),
            path=str(payload.get("path") or ""),
            kind=str(payload.get("kind") or "unet"),
            sha256Ok=payload.get("sha256_ok"),
            cardSummary=str(payload.get("card_summary") or ""),
            config=dict(payload.get("config") or {}),
            error=str(payload.get("error") or ""),
            anomalyThreshold=None if payload.get("anomaly_threshold") is None else float(payload["anomaly_threshold"]),
        )

    def checksumText(self) -> str:
        if self.sha256Ok is True:
            return _("checksum verified")
        if self.sha256Ok is False:
            return _("CHECKSUM MISMATCH: the weights will not be loaded; import them again")
        return _("checksum not checked")

    @property
    def anatomyChannels(self) -> int:
        """Anatomy label channels the model was trained with (its config's ``anatomy_channels``;
        0: it takes no anatomy label map)."""
        try:
            return max(0, int(self.config.get("anatomy_channels") or 0))
        except (TypeError, ValueError):
            return 0

    def conditionsText(self) -> str:
        """Which conditions a base model takes ("" when its config was not listed)."""
        if self.kind != "unet" or not self.config:
            return ""
        if self.anatomyChannels:
            return _("Conditions: body region and an anatomy label map (labels 1-{n}).").format(n=self.anatomyChannels)
        return _("Conditions: body region only (trained without anatomy label maps).")

    def summaryText(self) -> str:
        """Model card summary for the panel."""
        lines = [f"{self.name} ({self.kind}) - {self.checksumText()}"]
        if self.error:
            lines.append(self.error)
        if self.conditionsText():
            lines.append(self.conditionsText())
        if self.cardSummary:
            lines.append(self.cardSummary)
        return "\n".join(lines)


# The overlap a library that does not export its own tiles with (versions before the fitted windows of issue 40).
OLD_LIBRARY_OVERLAP = 0.25


@dataclasses.dataclass
class LibraryInfo:
    version: str = ""
    torch: str = ""
    devices: List[str] = dataclasses.field(default_factory=list)
    models: List[ModelInfo] = dataclasses.field(default_factory=list)
    tasks: Dict[str, Dict] = dataclasses.field(default_factory=dict)
    """The library's task registry: task -> {"role", "needs_mask", "default_steps", "defaults", ...}."""
    samplers: List[str] = dataclasses.field(default_factory=list)
    cpuPrecision: str = "float32"
    """What the library computes in on this CPU (``bfloat16`` where the CPU has it natively)."""
    overlap: float = OLD_LIBRARY_OVERLAP
    """The least overlap of neighbouring patches the library tiles with by default (``--overlap``)."""

    def defaultSteps(self, task: str) -> Optional[int]:
        """The library's default steps of ``task`` (None when the library did not say)."""
        steps = (self.tasks.get(task) or {}).get("default_steps")
        return int(steps) if steps else None

    def baseModel(self, name: Optional[str]) -> Optional[ModelInfo]:
        """The model called ``name``; when empty ("Default model"), the first base model listed."""
        if name:
            return self.model(name)
        return next((m for m in self.models if m.kind == "unet"), None)

    def model(self, name: Optional[str]) -> Optional[ModelInfo]:
        """The model called ``name`` (or at that path); the first one when ``name`` is empty."""
        if not self.models:
            return None
        if not name:
            return self.models[0]
        for model in self.models:
            if name in (model.name, model.path):
                return model
        return None

    @property
    def hasGpu(self) -> bool:
        return any(str(d).startswith(("cuda", "mps", "gpu")) for d in self.devices)


def parseInfoOutput(stdout: str) -> LibraryInfo:
    """Parse the output of ``meddifffm info --json``: the last JSON object with ``"models"``, on one
    line or pretty-printed over several; other lines are ignored. Raises ``ValueError`` when there
    is none."""
    decoder = json.JSONDecoder()
    payload = None
    offset = 0
    for line in stdout.splitlines(keepends=True):
        if line.lstrip().startswith("{"):
            start = offset + len(line) - len(line.lstrip())
            try:
                candidate, _end = decoder.raw_decode(stdout, start)
            except ValueError:
                candidate = None
            if isinstance(candidate, dict) and "models" in candidate:
                payload = candidate
        offset += len(line)
    if payload is None:
        raise ValueError(_("'meddifffm info --json' printed no model list."))
    tasks = {str(k): dict(v) for k, v in (payload.get("tasks") or {}).items() if isinstance(v, dict)}
    taskSteps = {name: int(task["default_steps"]) for name, task in tasks.items() if task.get("default_steps")}
    models = [ModelInfo.fromJson(m) for m in payload.get("models") or [] if isinstance(m, dict)]
    for model in models:
        model.taskSteps = dict(taskSteps)
    return LibraryInfo(
        version=str(payload.get("version") or ""),
        torch=str(payload.get("torch") or ""),
        devices=[str(d) for d in payload.get("devices") or []],
        models=models,
        tasks=tasks,
        samplers=[str(s) for s in payload.get("samplers") or []],
        cpuPrecision=str(payload.get("cpu_precision") or "float32"),
        overlap=float(OLD_LIBRARY_OVERLAP if payload.get("overlap") is None else payload["overlap"]),
    )


# Steps assumed for the estimate only when the library's export gave none (an old library).
FALLBACK_STEPS = 50

# Network FLOPs per patch voxel ~= FLOP_FACTOR * sum over levels of channels^2 / 8^level: fits the
# FlopCounterMode counts of benchmarks/speed.py (cpu_starter 0.34, the shipped 1 mm base 0.36 MFLOP/voxel)
# within 5 %.
FLOP_FACTOR = 790.0
# Sustained FLOP/s of a whole task on the project's 2-core CPU in fp32, overheads included: 0.33 TFLOP/s
# for the shipped base's main job (63.9 s for 3 steps of 40 patches, speed_issue40_sample.md); small
# models, whose tiling and blending weigh more, reach less (the former 3 mm starter: about 0.13). GPU
# and MPS: rough until measured there. The estimate counts the windows of the whole grid, an upper
# bound: the library tiles only the body's box (the main job: 60 counted, 40 run; estimated 61 s
# against 39 s measured).
SUSTAINED_FLOPS = {"cpu": 3.3e11, "cuda": 1.0e14, "mps": 5.0e12}
# On a CPU with native bf16 the library runs the network in bf16 (--precision auto): 2.1x the fp32 rate
# per patch and 1.7-1.8x end to end (37.8 against 63.9 s) on the same 2-core machine (speed_issue40_sample.md).
CPU_BF16_SPEEDUP = 1.8


def _patchesPerAxis(size: int, patch: int, overlap: float) -> int:
    """The fewest patches along an axis whose neighbours overlap by at least ``overlap * patch`` voxels:
    MedDiffFMLib/sampling/tiling.py's ``axis_windows`` (Testing/test_slicer_tasks.py compares the two)."""
    if size <= patch:
        return 1
    least = min(patch - 1, math.ceil(overlap * patch))
    count = -(-(size - least) // (patch - least))  # >= 2, as size > patch
    stride = -(-(size - patch) // (count - 1))
    return -(-(size - patch) // stride) + 1


def estimateSeconds(
    dims: Optional[Sequence[int]],
    spacing: Optional[Sequence[float]],
    steps: Optional[int],
    device: str,
    model: Optional[ModelInfo] = None,
    task: str = "denoise",
    cpuPrecision: str = "float32",
    overlap: float = OLD_LIBRARY_OVERLAP,
) -> float:
    """A rough run time in seconds for a volume of ``dims`` voxels (x, y, z) at ``spacing`` mm
    (``None``: one model patch, as synthesis without a reference volume). ``steps`` None: the
    library's default for ``task`` (from ``model.taskSteps``).

    Counts the network evaluations the library will make on the model's grid (patches per step with
    its overlap, times the task's steps) and multiplies by the model's FLOPs per patch over a
    sustained rate for ``device`` (``"cpu"``, ``"cuda"`` or ``"mps"``; on the CPU faster when
    ``cpuPrecision`` is ``bfloat16``). ``cpuPrecision`` and ``overlap`` (the library's least overlap of
    neighbouring patches) come from ``meddifffm info --json`` (:class:`LibraryInfo`).
    """
    config = (model.config if model else {}) or {}
    if not steps:
        steps = int(config.get("default_steps") or (model.taskSteps.get(task) if model else None) or FALLBACK_STEPS)
    patch = [int(p) for p in config.get("patch_size") or (64, 64, 64)]  # z, y, x
    modelSpacing = [float(v) for v in config.get("spacing_mm") or (2.0, 2.0, 2.0)]  # z, y, x
    channels = [int(c) for c in config.get("channels") or (32, 64, 128)]
    if dims is None or spacing is None:
        gridZyx = list(patch)
    else:
        gridZyx = [max(1, round(n * s / m)) for n, s, m in zip(list(dims)[::-1], list(spacing)[::-1], modelSpacing)]
    patches = 1
    for size, length in zip(gridZyx, patch):
        patches *= _patchesPerAxis(size, length, overlap)
    patchVoxels = patch[0] * patch[1] * patch[2]
    flopsPerVoxel = FLOP_FACTOR * sum(c * c / 8.0 ** level for level, c in enumerate(channels))
    rate = float(SUSTAINED_FLOPS.get(device, SUSTAINED_FLOPS["cpu"]))
    if device not in ("cuda", "mps") and cpuPrecision == "bfloat16":
        rate *= CPU_BF16_SPEEDUP
    return 2.0 + steps * patches * patchVoxels * flopsPerVoxel / rate


def formatDuration(seconds: float) -> str:
    if seconds < 90:
        return _("about {n} s").format(n=int(max(1, round(seconds))))
    minutes = seconds / 60.0
    if minutes < 90:
        return _("about {n} min").format(n=int(round(minutes)))
    return _("about {n:.1f} h").format(n=minutes / 60.0)
