"""The real ``meddifffm`` parser as data, so the fake command accepts exactly what the real one does.

:func:`describe` walks ``MedDiffFMLib.cli.build_parser()`` (every subcommand, nested ``batch``
tasks included) into JSON: each argument's flags, dest, type, default, choices, nargs, action and
mutually exclusive group. :func:`rebuild` makes an equivalent argparse parser from that JSON without
importing the library (its import of torch costs seconds per fake run). The test session writes the
JSON once (``Testing/conftest.py``) and points ``FAKE_MEDDIFFFM_PARSER`` at it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

_TYPES = {"int": int, "float": float, "str": str}


def _type_name(kind: Any) -> Optional[str]:
    if kind is None:
        return None
    if kind in (int, float):
        return kind.__name__
    return "str"  # str, Path and other path-like converters: the fake only needs the text


def _describe_action(action: argparse.Action, groups: dict) -> Optional[dict]:
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
        return None
    name = type(action).__name__
    kind = {"_StoreAction": "store", "_StoreTrueAction": "store_true", "_StoreFalseAction": "store_false",
            "_StoreConstAction": "store_const", "_AppendAction": "append", "_CountAction": "count"}.get(name)
    if kind is None:
        raise ValueError(f"cli_spec cannot describe argparse action {name} ({action.option_strings})")
    return {"flags": list(action.option_strings), "dest": action.dest, "action": kind,
            "type": _type_name(action.type), "default": action.default, "choices": list(action.choices or []) or None,
            "nargs": action.nargs, "required": bool(action.required), "const": action.const,
            "group": groups.get(id(action))}


def describe(parser: argparse.ArgumentParser) -> dict:
    """``parser`` (and its subcommands, recursively) as JSON-able data."""
    groups = {id(a): index for index, group in enumerate(parser._mutually_exclusive_groups)
              for a in group._group_actions}
    arguments = [d for d in (_describe_action(a, groups) for a in parser._actions) if d is not None]
    sub = {}
    dest = None
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            dest = action.dest
            required = bool(action.required)
            sub = {name: describe(child) for name, child in action.choices.items()}
    doc: dict = {"prog": parser.prog, "arguments": arguments}
    if sub:
        doc["subcommands"] = {"dest": dest, "required": required, "parsers": sub}
    return doc


def _add(target, spec: dict) -> None:
    kwargs: dict = {"dest": spec["dest"]} if spec["flags"] else {}
    action = spec["action"]
    if action in ("store_true", "store_false", "count"):
        kwargs["action"] = action
        kwargs["default"] = spec["default"]
    else:
        if action != "store":
            kwargs["action"] = action
        if action == "store_const":
            kwargs["const"] = spec["const"]
        else:
            if spec["type"]:
                kwargs["type"] = _TYPES[spec["type"]]
            if spec["choices"]:
                kwargs["choices"] = spec["choices"]
            if spec["nargs"] is not None:
                kwargs["nargs"] = spec["nargs"]
        kwargs["default"] = spec["default"]
    if spec["flags"] and spec["required"]:
        kwargs["required"] = True
    names = spec["flags"] or [spec["dest"]]
    target.add_argument(*names, **kwargs)


def _fill(parser: argparse.ArgumentParser, doc: dict) -> None:
    groups: dict = {}
    for spec in doc["arguments"]:
        target = parser
        if spec["group"] is not None:
            target = groups.setdefault(spec["group"], parser.add_mutually_exclusive_group())
        _add(target, spec)
    if "subcommands" in doc:
        info = doc["subcommands"]
        subparsers = parser.add_subparsers(dest=info["dest"], required=info["required"])
        for name, child in info["parsers"].items():
            _fill(subparsers.add_parser(name), child)


def rebuild(doc: dict) -> argparse.ArgumentParser:
    """An argparse parser accepting exactly the arguments ``doc`` describes."""
    parser = argparse.ArgumentParser(prog=doc.get("prog", "meddifffm"))
    _fill(parser, doc)
    return parser


def write_spec(path: Path) -> Path:
    """Describe the real ``meddifffm`` parser into ``path`` (JSON), with the task registry's export
    under ``"tasks"`` (what the real ``info --json`` prints)."""
    from MedDiffFMLib.cli import build_parser
    from MedDiffFMLib.tasks.registry import export_tasks

    doc = describe(build_parser())
    doc["tasks"] = export_tasks()
    path.write_text(json.dumps(doc))
    return path
