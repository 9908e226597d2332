"""A task's command-line options, built from the task registry: the single commands and ``batch``
declare nothing of their own, and every default is the task options type's."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Iterable

from ..tasks.registry import Argument, TaskEntry

_TYPES = {"int": int, "float": float, "str": str, "path": Path}


def add_task_options(parser: argparse.ArgumentParser, entry: TaskEntry) -> None:
    """Add ``entry``'s options to ``parser``, with the options type's defaults."""
    add_arguments(parser.add_argument_group(f"{entry.name} options"), entry.arguments, entry.defaults)


def add_command_arguments(parser: argparse.ArgumentParser, entry: TaskEntry) -> None:
    """Add the single command's own arguments of ``entry``, each in its titled group."""
    groups: dict[str, Any] = {}
    for argument in entry.command_arguments:
        title = argument.group or f"{entry.name} options"
        if title not in groups:
            groups[title] = parser.add_argument_group(title)
        add_arguments(groups[title], [argument], entry.defaults)


def add_arguments(group, arguments: Iterable[Argument], defaults: dict) -> None:
    """Add ``arguments`` to ``group`` (a parser or argument group) as argparse options."""
    exclusive: dict[str, Any] = {}
    for argument in arguments:
        target = group
        if argument.exclusive:
            if argument.exclusive not in exclusive:  # (setdefault would add an empty group per member)
                exclusive[argument.exclusive] = group.add_mutually_exclusive_group()
            target = exclusive[argument.exclusive]
        default = defaults.get(argument.field)
        help_text = argument.help
        if argument.kind != "flag" and default is not None and "default" not in help_text:
            help_text += f" (default {default})"
        kwargs: dict[str, Any] = {"dest": argument.field, "help": help_text}
        if argument.kind == "flag":
            kwargs["action"] = "store_true"
        else:
            kwargs.update(type=_TYPES[argument.kind], default=default)
            if argument.choices:
                kwargs["choices"] = list(argument.choices)
            if argument.required:
                kwargs["required"] = True
            if argument.nargs is not None:
                kwargs["nargs"] = argument.nargs
            if argument.metavar is not None:
                kwargs["metavar"] = argument.metavar
        target.add_argument(argument.flag, **kwargs)


def task_options(args: argparse.Namespace, entry: TaskEntry) -> Any:
    """The options object of ``entry`` from parsed arguments: every options field the command line
    set (its own options and the command's, e.g. synthesis' ``--size``), checked."""
    fields = {f.name for f in dataclasses.fields(entry.options_type)}
    return entry.options(**{name: getattr(args, name) for name in fields if hasattr(args, name)})
