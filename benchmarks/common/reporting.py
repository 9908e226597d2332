"""What every benchmark prints and saves: the machine it ran on, Markdown tables, and the result files
``benchmarks/results/<stem>.md`` and ``.json`` (with the command, machine and model)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from benchmarks import REPO_ROOT
from benchmarks.common.model_setup import BenchModel

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str = "auto") -> dict[str, Any]:
    """What the figures were measured on (printed above every table)."""
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    try:
        import monai

        info["monai"] = monai.__version__
    except ImportError:
        pass
    try:
        from MedDiffFMLib.device import resolve_device

        dev = resolve_device(device)
        info["device"] = str(dev)
        if dev.type == "cuda":
            props = torch.cuda.get_device_properties(dev)
            info["gpu"] = props.name
            info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
    except Exception as error:  # noqa: BLE001 - a description, not a check
        info["device"] = f"{device} ({error})"
    return info


def format_machine(info: dict[str, Any]) -> str:
    gpu = f", GPU {info['gpu']} ({info['gpu_memory_gib']} GiB)" if "gpu" in info else ", no GPU"
    return (
        f"Machine: {info['cpu']}, {info['usable_cores']} usable cores (of {info['cores']}){gpu}; "
        f"torch {info['torch']} ({info['torch_threads']} threads), MONAI {info.get('monai', '?')}, "
        f"Python {info['python']}; device {info.get('device')}; load average at start "
        f"{info.get('load_average_at_start')} (the machine is shared: timings are noisy)."
    )


@dataclass
class Column:
    key: str
    header: str
    fmt: str = "{}"


class Table:
    """A titled table printed as Markdown and saved as Markdown + JSON."""

    def __init__(self, title: str, columns: Iterable[tuple[str, str] | tuple[str, str, str]], note: str = "") -> None:
        self.title = title
        self.columns = [Column(*c) for c in columns]
        self.rows: list[dict[str, Any]] = []
        self.note = note

    def add(self, **values: Any) -> dict[str, Any]:
        self.rows.append(values)
        return values

    @staticmethod
    def _cell(value: Any, fmt: str) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            if np.isnan(value):
                return "n/a"
            if np.isinf(value):
                return "inf"
        if isinstance(value, str):
            return value
        try:
            return fmt.format(value)
        except (ValueError, TypeError):
            return str(value)

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(c.header for c in self.columns) + " |")
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        for row in self.rows:
            lines.append("| " + " | ".join(self._cell(row.get(c.key), c.fmt) for c in self.columns) + " |")
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines)

    def print(self) -> None:
        print("\n" + self.markdown() + "\n", flush=True)

    def as_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, (np.floating, np.integer)):
                v = v.item()
            if isinstance(v, float) and (np.isnan(v) or np.isinf(v)):
                return None if np.isnan(v) else str(v)
            return v

        return {"title": self.title, "note": self.note, "columns": [c.key for c in self.columns],
                "rows": [{k: clean(v) for k, v in r.items()} for r in self.rows]}


def save_results(
    script: str, args: argparse.Namespace, machine: dict[str, Any], model: Optional[BenchModel],
    tables: Sequence[Table], notes: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Write ``benchmarks/results/<script>[_quick].md`` and ``.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = getattr(args, "save_name", None) or (script + ("_quick" if getattr(args, "quick", False) else ""))
    md_path, json_path = RESULTS_DIR / f"{stem}.md", RESULTS_DIR / f"{stem}.json"
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    command = f"python -m {script_module()} " + " ".join(sys.argv[1:])
    parts = [f"# {script} ({when})", "", f"Command: `{command}`", "", format_machine(machine), ""]
    if model is not None:
        parts += [f"Model: {model.describe()}", ""]
    parts += [n + "\n" for n in notes]
    parts += [t.markdown() + "\n" for t in tables]
    md_path.write_text("\n".join(parts))
    doc = {
        "script": script, "when": when, "command": command, "machine": machine,
        "model": None if model is None else {"ref": model.ref, "name": model.name, "config": model.config,
                                              "trained": model.trained, "reason": model.reason},
        "notes": list(notes), "tables": [t.as_dict() for t in tables],
    }
    json_path.write_text(json.dumps(doc, indent=2, default=str))
    print(f"Saved {md_path.relative_to(REPO_ROOT)} and {json_path.relative_to(REPO_ROOT)}")
    return md_path, json_path


def script_module() -> str:
    """The dotted module of the running script (``benchmarks.speed``, ``benchmarks.studies.sampler_steps``),
    as ``python -m`` takes it; the script's stem under ``benchmarks.`` when it runs from elsewhere."""
    script = Path(sys.argv[0]).resolve()
    try:
        return ".".join(script.relative_to(REPO_ROOT).with_suffix("").parts)
    except ValueError:
        return "benchmarks." + script.stem


def print_header(title: str, machine: dict[str, Any], model: Optional[BenchModel] = None) -> None:
    print(f"== {title} ==")
    print(format_machine(machine))
    if model is not None:
        print(f"Model: {model.describe()}")
    sys.stdout.flush()

