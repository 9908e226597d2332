"""The module's tasks: their labels (the one per-task piece of the module), which options each one
shows, how outputs are named, and the ``meddifffm`` command-line arguments built from the panel or
console options.

What a task takes (its path arguments, options, extra outputs, whether it needs a mask) is the
library's task registry, as ``meddifffm info --json`` exports it under ``"tasks"`` (read by
``Models.parseInfoOutput``): every function here takes that export as ``tasks``, and until the
library was asked (``tasks`` None) uses the copy shipped with the module
(``Resources/library-tasks.json``, checked against the library by the tests). The combo box lists
the tasks with a label here; the functions below also build the arguments of any other task of the
library, by its name (its output node is then named after the task).

The library's defaults (steps, strength...) are not repeated here: an option left at ``None`` is
not passed, so the library's task registry decides. The tests parse every argument list built here
with the library's real parser.

Pure Python (no ``slicer``, ``qt`` or ``vtk``): unit-tested without Slicer.
"""

import dataclasses
import enum
import json
import os
import sys
from typing import Dict, List, Optional, Tuple, Union

from .I18n import _


@dataclasses.dataclass(frozen=True)
class TaskLabel:
    """How the module shows a task: its combo-box label, the output node's suffix and the panel's
    description."""

    label: str
    outputSuffix: str
    description: str = ""


# The Slicer label of each task, in the combo box's order: adding a task to the module is one line here.
TASK_LABELS: Dict[str, TaskLabel] = {
    "denoise": TaskLabel(
        _("Denoise"), "denoised",
        _("Removes noise with the diffusion model as prior; the noise level is estimated from the volume. "
          "Strength: the fraction of that noise removed (1 = all).")),
    "anomaly": TaskLabel(
        _("Anomaly map"), "anomaly map",
        _("Reconstructs pseudo-healthy volumes from moderate noise levels and maps where the input differs from "
          "them more than healthy tissue of the same structure does (1 = typical healthy tissue). Voxels above "
          "the model's calibrated threshold (exceeded by 1 % of healthy body voxels), or above your own "
          "threshold, become a segment.")),
    "synthesize": TaskLabel(
        _("Synthesize"), "synthesized",
        _("Generates a synthetic CT of the chosen body region, on the grid of the reference volume when one is "
          "selected (or of the anatomy label map, for a model that takes one).")),
    "superres": TaskLabel(
        _("Super-resolve"), "super-resolved",
        _("Generates thin slices from a thick-slice volume: the z factor is the number of thin slices per thick "
          "slice (0 = chosen from the voxel spacing).")),
    "inpaint": TaskLabel(
        _("Inpaint"), "with generated tissue",
        _("Replaces the region of the selected segment with plausible healthy tissue.")),
    "lesion": TaskLabel(
        _("Generate lesion"), "with generated lesion",
        _("Generates a lesion inside the region of the selected segment.")),
}


class _TaskChoice(enum.Enum):
    """A task of the module; the value is the ``meddifffm`` subcommand."""

    def label(self) -> str:
        """Text shown in the task combo box (used by Slicer's parameterNodeWrapper)."""
        return TASK_LABELS[self.value].label


# An enum (the parameter node's combo box needs one) with one member per labelled task.
Task = _TaskChoice("Task", [(name.upper(), name) for name in TASK_LABELS], module=__name__, qualname="Task")

TaskName = Union[Task, str]


def _taskName(task: TaskName) -> str:
    return task.value if isinstance(task, enum.Enum) else str(task)


SHIPPED_TASKS_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Resources",
                                  "library-tasks.json")
_shipped: Dict[str, Dict] = {}


def shippedTasks() -> Dict[str, Dict]:
    """The library's task export as shipped with the module (what ``info --json`` prints under "tasks")."""
    if not _shipped:
        with open(SHIPPED_TASKS_FILE, encoding="utf-8") as f:
            _shipped.update(json.load(f))
    return _shipped


def libraryTask(task: TaskName, tasks: Optional[Dict[str, Dict]] = None) -> Dict:
    """The library's export of ``task``: from ``tasks`` (``info --json``), else the shipped copy."""
    name = _taskName(task)
    export = (tasks or {}).get(name) or shippedTasks().get(name)
    if export is None:
        raise ValueError(_("The library has no task '{task}'.").format(task=name))
    return export


class Region(enum.Enum):
    """Body region for synthesis (``--region``)."""

    CHEST = "chest"
    ABDOMEN = "abdomen"
    HEAD_NECK = "head_neck"

    def label(self) -> str:
        return {
            Region.CHEST: _("Chest"),
            Region.ABDOMEN: _("Abdomen"),
            Region.HEAD_NECK: _("Head and neck"),
        }[self]


class _InputRegionChoice(enum.Enum):
    """Body region of the input CT, for the tasks that read one (their ``--region``). It sets the
    model's region condition and HU window; AUTO passes nothing, so the library guesses it."""

    def label(self) -> str:
        if self.name == "AUTO":
            return _("Automatic (guessed from the image)")
        if self.name == "UNKNOWN":
            return _("None (limbs, or a crop the guess misreads)")
        return Region(self.value).label()

    def cliValue(self) -> Optional[str]:
        """The ``--region`` value; None for AUTO (the library's guess)."""
        return None if self.name == "AUTO" else self.value


# Region's members between the two choices only an input CT has, so the regions are listed once.
InputRegion = _InputRegionChoice(
    "InputRegion", [("AUTO", "auto"), *((r.name, r.value) for r in Region), ("UNKNOWN", "unknown")],
    module=__name__, qualname="InputRegion")


class Device(enum.Enum):
    """Where inference runs (``--device``)."""

    AUTO = "auto"
    GPU = "gpu"
    CPU = "cpu"

    def label(self) -> str:
        return {
            Device.AUTO: _("Automatic (GPU if available)"),
            Device.GPU: _("GPU"),
            Device.CPU: _("CPU"),
        }[self]

    def cliValue(self, platform: Optional[str] = None) -> str:
        """The ``--device`` value: GPU means CUDA, or Apple's MPS on macOS."""
        platform = platform or sys.platform
        if self is Device.GPU:
            return "mps" if platform == "darwin" else "cuda"
        return self.value


class RunOn(enum.Enum):
    """Where the run happens: this computer, or a ``meddifffm serve`` server (``--server URL``)."""

    LOCAL = "local"
    SERVER = "server"

    def label(self) -> str:
        return {RunOn.LOCAL: _("This computer"), RunOn.SERVER: _("A server")}[self]


# Option identifiers. Each one is a row of the panel named ``<option>Row`` in the .ui file.
STRENGTH = "strength"
STEPS = "steps"
SEED = "seed"
REGION = "region"
INPUT_REGION = "inputRegion"
THRESHOLD = "threshold"
FACTOR_Z = "factorZ"
MASK = "mask"
ANATOMY = "anatomy"
"""Synthesis' anatomy label map: shown only for a model trained with anatomy channels."""

ALL_OPTIONS = (STRENGTH, STEPS, SEED, REGION, ANATOMY, INPUT_REGION, THRESHOLD, FACTOR_Z, MASK)


# The panel rows set by a library option, by its flag (``--region`` is synthesis' REGION when it is
# required, else the input CT's INPUT_REGION).
OPTION_ROWS = {"--strength": STRENGTH, "--factor-z": FACTOR_Z, "--threshold": THRESHOLD, "--steps": STEPS,
               "--seed": SEED}


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What a task needs and shows, from the library's export and the module's label."""

    task: str
    options: Tuple[str, ...]
    """The panel rows shown (library options the panel has a row for, and the mask)."""
    paths: Tuple[str, ...] = ("input", "output")
    """The subcommand's path arguments, in order (fields of :class:`TaskPaths`)."""
    inputRequired: bool = True
    """False for synthesis, where the input volume is an optional reference geometry."""
    outputSuffix: str = ""
    """The output node is named ``"<input> <suffix>"``."""
    description: str = ""
    extraOutputs: Tuple[Tuple[str, str], ...] = ()
    """(name, flag) of each output besides the main one (anomaly: mask, healthy)."""
    inputOptions: Tuple[Tuple[str, str, Optional[str]], ...] = ()
    """(field, flag, group) of each input file option (synthesis: anatomy, like); one per group is passed."""


def taskSpec(task: TaskName, tasks: Optional[Dict[str, Dict]] = None) -> TaskSpec:
    """``task``'s spec from the library's export (``tasks``, else the shipped copy) and its label."""
    name = _taskName(task)
    export = libraryTask(name, tasks)
    arguments = {a["flag"]: a for a in export.get("arguments", [])}
    commandArguments = export.get("command_arguments", [])
    rows = [MASK] if export.get("needs_mask") else []
    rows += [OPTION_ROWS[flag] for flag in arguments if flag in OPTION_ROWS]
    if "--region" in arguments:
        rows.append(REGION if arguments["--region"].get("required") else INPUT_REGION)
    if any(a["field"] == "anatomy" for a in commandArguments):
        rows.append(ANATOMY)
    label = TASK_LABELS.get(name)
    paths = tuple(export.get("positionals", ("input", "output")))
    return TaskSpec(
        name, tuple(rows), paths=paths, inputRequired="input" in paths,
        outputSuffix=label.outputSuffix if label else name,
        description=label.description if label else str(export.get("help", "")),
        extraOutputs=tuple((e["name"], e["flag"]) for e in export.get("extra_outputs", [])),
        inputOptions=tuple((a["field"], a["flag"], a.get("group")) for a in commandArguments
                           if a.get("kind") == "path"))


SYNTHETIC_CT_NAME = "synthetic CT"


def visibleOptions(task: TaskName, anatomyChannels: int = 0, tasks: Optional[Dict[str, Dict]] = None) -> Dict[str, bool]:
    """For each option row of the panel: whether it is shown for ``task``. The anatomy label map is
    shown only when the chosen model has ``anatomyChannels`` (``meddifffm info --json``: its config's
    ``anatomy_channels``): a model trained without them refuses one."""
    shown = set(taskSpec(task, tasks).options)
    if anatomyChannels <= 0:
        shown.discard(ANATOMY)
    return {option: option in shown for option in ALL_OPTIONS}


def needsMask(task: TaskName, tasks: Optional[Dict[str, Dict]] = None) -> bool:
    return MASK in taskSpec(task, tasks).options


def outputName(task: TaskName, inputName: Optional[str]) -> str:
    """Default name of the output node, e.g. ``"CT denoised"``; ``"synthetic CT"`` for a
    synthesis without reference volume."""
    name = _taskName(task)
    label = TASK_LABELS.get(name)
    if name == Task.SYNTHESIZE.value and not inputName:
        return SYNTHETIC_CT_NAME
    return f"{inputName} {label.outputSuffix if label else name}"


def anomalySegmentationName(inputName: str) -> str:
    return f"{inputName} anomalies"


def healthyVolumeName(inputName: str) -> str:
    return f"{inputName} pseudo-healthy"


@dataclasses.dataclass
class TaskOptions:
    """Options of one run. ``None`` (or the "default"/"random"/"auto" special values of the panel:
    steps 0, seed -1, factorZ 0) leaves the choice to the library."""

    strength: Optional[float] = None
    steps: Optional[int] = None
    seed: Optional[int] = None
    region: Region = Region.CHEST
    """The region synthesised."""
    inputRegion: InputRegion = InputRegion.AUTO
    """The input CT's region, for the tasks that read a CT."""
    threshold: Optional[float] = None
    factorZ: Optional[int] = None
    keepHealthy: bool = False
    model: Optional[str] = None
    device: Device = Device.AUTO
    server: Optional[str] = None
    """URL of a ``meddifffm serve`` server to run on (``--server``); ``None``: this computer."""

    def normalized(self) -> "TaskOptions":
        """The same options with the panel's special values turned into ``None``."""
        steps = int(self.steps) if self.steps else None
        seed = int(self.seed) if self.seed is not None and int(self.seed) >= 0 else None
        factorZ = self.factorZ if self.factorZ else None
        model = self.model or None
        server = (self.server or "").strip() or None
        return dataclasses.replace(
            self, strength=None if self.strength is None else float(self.strength), steps=steps, seed=seed, factorZ=factorZ, model=model,
            server=server,
            region=Region(self.region), inputRegion=InputRegion(self.inputRegion), device=Device(self.device),
            threshold=None if self.threshold is None else float(self.threshold))

    def validate(self, task: TaskName, tasks: Optional[Dict[str, Dict]] = None) -> None:
        """Raise ``ValueError`` with a clear message for an option out of range."""
        options = self.normalized()
        shown = taskSpec(task, tasks).options
        if STRENGTH in shown and options.strength is not None and not 0.0 <= options.strength <= 1.0:
            raise ValueError(_("The strength must be between 0 and 1 (got {value}).").format(value=options.strength))
        if options.server is not None and not options.server.startswith(("http://", "https://")):
            raise ValueError(_("The server URL must start with http:// or https://, e.g. http://gpu-server:8765 "
                               "(got {value}).").format(value=options.server))
        if options.steps is not None and options.steps < 1:
            raise ValueError(_("The number of steps must be at least 1 (got {value}).").format(value=options.steps))
        if FACTOR_Z in shown and options.factorZ is not None and (
                float(options.factorZ) != int(options.factorZ) or int(options.factorZ) < 2):
            raise ValueError(_("The z factor must be a whole number of at least 2, or 0 for automatic "
                               "(got {value}).").format(value=options.factorZ))


def consoleOptions(task: Optional[Task] = None, **values) -> TaskOptions:
    """:class:`TaskOptions` from the Python console's keywords (``None`` = not given). ``device`` may be
    "cuda", "mps" or "gpu"; ``region`` is the synthesised region for synthesis (or no ``task``) and the
    input CT's region for every other task. ``ValueError`` naming the choices for an unknown value."""
    values = {key: value for key, value in values.items() if value is not None}
    if "device" in values and not isinstance(values["device"], Device):
        text = str(values["device"] or "auto").strip().lower()
        if text in ("cuda", "mps", "gpu") or text.startswith("cuda:"):
            values["device"] = Device.GPU
        elif text in {d.value for d in Device}:
            values["device"] = Device(text)
        else:
            raise ValueError(_("Unknown device '{value}'. Choose one of: auto, gpu (cuda, mps), cpu.").format(
                value=values["device"]))
    if "region" in values:
        synthesis = task is None or Task(task) is Task.SYNTHESIZE
        regionType = Region if synthesis else InputRegion
        region = values.pop("region")
        try:
            values["region" if synthesis else "inputRegion"] = region if isinstance(region, regionType) else \
                regionType(str(region).strip().lower().replace("-", "_").replace(" ", "_"))
        except ValueError:
            raise ValueError(_("Unknown body region '{value}'. Choose one of: {choices}.").format(
                value=region, choices=", ".join(r.value for r in regionType))) from None
    return TaskOptions(**values)


def _number(value) -> str:
    """Format a number for the command line without a spurious ``.0`` on integers."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def taskOptionArguments(task: TaskName, options: TaskOptions, tasks: Optional[Dict[str, Dict]] = None) -> List[str]:
    """The task-specific flags (``--strength``, ``--region``, ``--factor-z``...), no paths."""
    options = options.normalized()
    shown = taskSpec(task, tasks).options
    args: List[str] = []
    if STRENGTH in shown and options.strength is not None:
        args += ["--strength", _number(options.strength)]
    if REGION in shown:
        args += ["--region", options.region.value]
    if INPUT_REGION in shown and options.inputRegion.cliValue():
        args += ["--region", options.inputRegion.cliValue()]
    if FACTOR_Z in shown and options.factorZ is not None:
        args += ["--factor-z", str(int(options.factorZ))]
    if THRESHOLD in shown and options.threshold is not None:
        args += ["--threshold", _number(options.threshold)]
    return args


def commonArguments(options: TaskOptions, platform: Optional[str] = None, progress: str = "json",
                    shown: Tuple[str, ...] = (STEPS, SEED)) -> List[str]:
    """``--model``, ``--device`` (or ``--server``), ``--steps``, ``--seed`` and ``--progress``
    (``--steps``/``--seed`` only when ``shown``: a task without them takes neither).

    On a server the model is named, never a local folder: a folder gives its name (the folder's)."""
    options = options.normalized()
    args: List[str] = []
    if options.model:
        args += ["--model", os.path.basename(os.path.normpath(options.model)) if options.server else options.model]
    if options.server:
        args += ["--server", options.server]  # the token travels in the environment, never in argv
    else:
        args += ["--device", options.device.cliValue(platform)]
    if options.steps is not None and STEPS in shown:
        args += ["--steps", str(options.steps)]
    if options.seed is not None and SEED in shown:
        args += ["--seed", str(options.seed)]
    if progress:
        args += ["--progress", progress]
    return args


@dataclasses.dataclass
class TaskPaths:
    """Files of one run in its temporary folder."""

    output: str
    input: Optional[str] = None
    mask: Optional[str] = None
    reference: Optional[str] = None
    anatomy: Optional[str] = None
    anomalyMask: Optional[str] = None
    healthy: Optional[str] = None
    extras: Dict[str, str] = dataclasses.field(default_factory=dict)
    """Other files by the library's name of the input or output (a task of the library the fields
    above do not name)."""

    # The library's names the fields above hold under another name.
    INPUT_FIELDS = {"like": "reference"}
    OUTPUT_FIELDS = {"mask": "anomalyMask"}

    def inputPath(self, name: str) -> Optional[str]:
        """The file of the library's input ``name`` (``input``, ``mask``, ``anatomy``, ``like``...)."""
        field = self.INPUT_FIELDS.get(name, name)
        return getattr(self, field) if field in ("input", "mask", "reference", "anatomy") else self.extras.get(name)

    def outputPath(self, name: str) -> Optional[str]:
        """The file of the library's extra output ``name`` (anomaly: ``mask``, ``healthy``)."""
        field = self.OUTPUT_FIELDS.get(name, name)
        return getattr(self, field) if field in ("anomalyMask", "healthy") else self.extras.get(name)


def buildTaskArguments(task: TaskName, paths: TaskPaths, options: TaskOptions,
                       platform: Optional[str] = None, tasks: Optional[Dict[str, Dict]] = None) -> List[str]:
    """Arguments after the ``meddifffm`` command for one task run, e.g.
    ``["denoise", IN, OUT, "--strength", "0.5", "--device", "auto", "--progress", "json"]``: the
    task's path arguments, options, extra outputs and input file options as the library's export
    (``tasks``, else the shipped copy) declares them."""
    spec = taskSpec(task, tasks)
    options = options.normalized()
    args = [spec.task] + [paths.output if name == "output" else paths.inputPath(name) for name in spec.paths]
    if any(a is None for a in args):
        raise ValueError(f"Missing file path for task {spec.task}: {paths}")
    args += taskOptionArguments(task, options, tasks)
    for name, flag in spec.extraOutputs:
        if paths.outputPath(name):
            args += [flag, paths.outputPath(name)]
    given = set()
    for field, flag, group in spec.inputOptions:
        # One per group: an anatomy label map also sets the grid, so no --like beside it.
        if paths.inputPath(field) and (group is None or group not in given):
            args += [flag, paths.inputPath(field)]
            given.add(group)
    return args + commonArguments(options, platform, shown=spec.options)


def buildBatchArguments(task: TaskName, inputDir: str, outDir: str, options: TaskOptions,
                        platform: Optional[str] = None, masksDir: Optional[str] = None,
                        tasks: Optional[Dict[str, Dict]] = None) -> List[str]:
    """Arguments for ``meddifffm batch TASK --inputs DIR --out DIR [--masks DIR] ...``."""
    name = _taskName(task)
    args = ["batch", name, "--inputs", inputDir, "--out", outDir]
    if needsMask(task, tasks):
        if not masksDir:
            raise ValueError(_("Batch {task} needs a folder of masks named like the volumes (masks=...).").format(
                task=name))
        args += ["--masks", masksDir]
    return args + taskOptionArguments(task, options, tasks) + commonArguments(options, platform,
                                                                               shown=taskSpec(task, tasks).options)
