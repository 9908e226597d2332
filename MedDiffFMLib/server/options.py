"""A job's task options from JSON, checked like the command line's: each option the task registry
declares is converted by its registry type (``int``, ``float``, ``str`` with its choices, ``flag``),
then the options type's ``validate()`` runs (:meth:`TaskEntry.options`). Nothing per task here."""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import InputError
from ..tasks.registry import Argument, TaskEntry


def _convert(argument: Argument, value: Any) -> Any:
    if value is None:
        return None
    kind = argument.kind
    if kind == "flag":
        if isinstance(value, bool):
            return value
        raise InputError(f"{argument.flag} is a switch: true or false; got {value!r}.")
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise InputError(f"{argument.flag} must be a whole number; got {value!r}.")
        return int(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{argument.flag} must be a number; got {value!r}.")
        return float(value)
    if not isinstance(value, str):
        raise InputError(f"{argument.flag} must be text; got {value!r}.")
    if argument.choices and value not in argument.choices:
        raise InputError(f"{argument.flag} must be one of {', '.join(argument.choices)}; got {value!r}.")
    return value


def options_from_json(entry: TaskEntry, values: Mapping[str, Any]) -> Any:
    """The options object of ``entry`` from a JSON object of options fields (InputError if bad)."""
    if not isinstance(values, Mapping):
        raise InputError("The task options must be a JSON object of option fields, e.g. {\"steps\": 10}.")
    by_field = {a.field: a for a in entry.arguments}
    converted = {name: (_convert(by_field[name], value) if name in by_field else
                        tuple(value) if isinstance(value, list) else value)
                 for name, value in values.items()}
    missing = [a.flag for a in entry.arguments if a.required and converted.get(a.field) is None]
    if missing:
        raise InputError(f"Task '{entry.name}' needs {', '.join(missing)}.")
    return entry.options(**converted)
