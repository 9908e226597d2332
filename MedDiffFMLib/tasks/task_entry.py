"""What the front ends know of one task, as data: :class:`TaskEntry` and its parts.

The entries themselves are in :mod:`.registry`. Nothing here builds a parser or reads a file: the
command line (``cli/task_command.py``, ``cli/task_arguments.py``), the Python API (``api.run_task``),
the server and ``meddifffm info --json`` (read by the Slicer module) turn these facts into their own
form, so a new task is one task module plus one entry.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import SimpleITK as sitk

from ..errors import InputError

Images = Dict[str, sitk.Image]  # "" -> the main output, other keys -> extra outputs
Inputs = Mapping[str, sitk.Image]  # "input", "mask" and a command's own input files (e.g. "anatomy")

CT_HELP = "CT volume (NIfTI, NRRD, MHA or a DICOM folder)"
MASK_HELP = "mask / label volume (non-zero = region; any grid)"


@dataclass(frozen=True)
class Argument:
    """One command-line option of a task, as data: ``--flag`` sets the options field ``field``.

    ``kind``: ``int``, ``float``, ``str``, ``flag`` (store_true) or ``path`` (an input file the
    command reads, named ``read_as`` in messages, given to the runner as ``inputs[field]``).
    ``exclusive`` names a group of options that cannot be given together; ``group`` titles the help
    section of a command's own arguments; ``nargs``/``metavar`` as in argparse. The default is the
    options type's field default (None for a field it does not have).
    """

    flag: str
    field: str
    help: str
    kind: str = "float"
    choices: Tuple[str, ...] = ()
    required: bool = False
    exclusive: Optional[str] = None
    nargs: Any = None
    metavar: Any = None
    group: Optional[str] = None
    read_as: str = ""

    def to_dict(self, default: Any) -> dict:
        out = {"flag": self.flag, "field": self.field, "help": self.help, "kind": self.kind,
               "choices": list(self.choices), "required": self.required, "default": default}
        if self.nargs is not None:
            out["nargs"] = self.nargs
        if self.group is not None:
            out["group"] = self.group
        return out


@dataclass(frozen=True)
class ExtraOutput:
    """An output besides the main one, e.g. the anomaly mask: the runner's image ``name``, written
    to ``--flag`` by the single command; in ``batch`` always written when the runner gives it, or
    only with ``batch_flag`` (``batch_help``) when one is named."""

    name: str
    flag: str
    help: str
    batch_flag: Optional[str] = None
    batch_help: str = ""

    @property
    def dest(self) -> str:
        """The command line's attribute of ``--flag``."""
        return _dest(self.flag)

    @property
    def batch_dest(self) -> Optional[str]:
        """The ``batch`` command line's attribute of ``batch_flag`` (None without one)."""
        return _dest(self.batch_flag) if self.batch_flag else None

    def to_dict(self) -> dict:
        return {"name": self.name, "flag": self.flag, "help": self.help, "batch_flag": self.batch_flag}


@dataclass
class TaskRun:
    """What a runner returns: its images (``""``: the main output, else the extras by name) and
    the task's own result object (its summary line reads it)."""

    images: Images
    result: Any = None


@dataclass(frozen=True)
class Finished:
    """What a task's summary line is made of: the command's paths by name (``input``, ``mask``,
    ``output``, its own input files), the options, the task's result and the model's name."""

    task: str
    paths: Mapping[str, Optional[Path]]
    options: Any
    result: Any
    model: str


# ``preview(inputs, images) -> (before, after, (before title, after title))``
Preview = Callable[[Inputs, Images], Tuple[sitk.Image, sitk.Image, Tuple[str, str]]]


def preview_of(before_title: str, after_title: str, after: str = "") -> Preview:
    """The usual ``--preview``: the input beside output ``after`` (the main one by default)."""
    return lambda inputs, images: (inputs["input"], images[after], (before_title, after_title))


def _plain_summary(done: Finished) -> str:
    return f"{done.task}: {done.paths.get('input') or ''} -> {done.paths['output']} (model {done.model})."


@dataclass(frozen=True)
class TaskEntry:
    """Everything the front ends need to know about one task.

    Attributes:
        name: the ``meddifffm`` subcommand and batch task name.
        options_type: the options dataclass (defaults; ``validate()`` checks ranges).
        run: ``run(engine, inputs, options, progress, cancel) -> TaskRun``; ``inputs`` holds
            ``main_input`` (absent for a synthesis without anatomy), ``"mask"`` when
            ``needs_mask``, and the command's ``path`` arguments that were given.
        role: the model role loaded (``base``, or a ControlNet task such as ``superres``).
        needs_mask: whether the task reads a mask beside the CT.
        arguments: the task's options (besides paths, model and device), in commands, batch and jobs.
        help: the subcommand's one-line help; ``description`` its longer text (default: ``help``).
        output_help / input_help: the help of the ``output`` and ``input`` path arguments.
        input_name: what the batch inputs are.
        main_input: the input a batch case or a server job's volume is (``input``; ``anatomy``).
        positionals: the single command's path arguments, in order.
        command_arguments: options of the single command only (e.g. synthesis' output grid).
        extra_outputs: the outputs besides the main one.
        summary: the success line of the single command.
        preview: what ``--preview`` shows (:func:`preview_of`).
        check_arguments: ``check(args)``: checks between options argparse cannot express (also run
            before a ``--server`` job); raises InputError.
        check_model: ``check(args, model_files)``: checks that need the chosen model, run before
            any input is read; raises InputError.
    """

    name: str
    options_type: type
    run: Callable[..., TaskRun]
    role: str
    needs_mask: bool
    arguments: Tuple[Argument, ...]
    help: str = ""
    description: str = ""
    output_help: str = "where to write the result"
    input_help: str = CT_HELP
    input_name: str = "CT volume"
    main_input: str = "input"
    positionals: Tuple[str, ...] = ("input", "output")
    command_arguments: Tuple[Argument, ...] = ()
    extra_outputs: Tuple[ExtraOutput, ...] = ()
    summary: Callable[[Finished], str] = _plain_summary
    preview: Preview = preview_of("input", "result")
    check_arguments: Optional[Callable[[Any], None]] = None
    check_model: Optional[Callable[[Any, Any], None]] = None

    @property
    def expect_task(self) -> Optional[str]:
        """The ControlNet task the model must be (None for the base model)."""
        return None if self.role == "base" else self.role

    @property
    def defaults(self) -> dict:
        """The options type's defaults, by field."""
        return {f.name: _field_default(f) for f in dataclasses.fields(self.options_type)}

    @property
    def default_steps(self) -> Optional[int]:
        """The options type's default ``steps`` (None for a task without steps)."""
        steps = self.defaults.get("steps")
        return None if steps is None else int(steps)

    def input_label(self, name: str) -> str:
        """How messages name input ``name`` (a ``path`` argument's ``read_as``, else the name)."""
        return next((a.read_as for a in self.command_arguments if a.kind == "path" and a.field == name), name)

    def options(self, **values: Any) -> Any:
        """An options object: the given fields over the defaults, checked by its ``validate()``."""
        known = {f.name for f in dataclasses.fields(self.options_type)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"Unknown option(s) {unknown} for task '{self.name}'; it takes {sorted(known)}.")
        options = self.options_type(**values)
        validate = getattr(options, "validate", None)
        if callable(validate):
            validate()
        return options

    def to_dict(self) -> dict:
        """The JSON form ``meddifffm info --json`` exports (read by the Slicer module)."""
        defaults = self.defaults
        return {
            "name": self.name, "role": self.role, "needs_mask": self.needs_mask, "input_name": self.input_name,
            "help": self.help, "main_input": self.main_input,
            "positionals": list(self.positionals), "default_steps": self.default_steps,
            "defaults": {k: _jsonable(v) for k, v in defaults.items()},
            "arguments": [a.to_dict(_jsonable(defaults[a.field])) for a in self.arguments],
            "command_arguments": [a.to_dict(_jsonable(defaults.get(a.field))) for a in self.command_arguments],
            "extra_outputs": [e.to_dict() for e in self.extra_outputs],
        }


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return None


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
