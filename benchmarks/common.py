"""Shared pieces of the benchmark scripts: the real CT cases, the model to test, metrics, tables,
timing and peak memory, and the machine description printed above every table.

Nothing here is timed by tests; the scripts print tables whose baselines are measured in the same
run. Arrays are numpy in SimpleITK's (z, y, x) order, in HU; spacings are (x, y, z) as SimpleITK
gives them unless a name says ``_zyx``.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import SimpleITK as sitk

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"

# ---------------------------------------------------------------------------------------------
# Real CT (../shared/data/ct, see its MANIFEST.md); never copied into the repository.
# ---------------------------------------------------------------------------------------------


def data_root() -> Path:
    """The shared CT folder: ``$MEDDIFFFM_CT_DATA``, else ``<repo>/../shared/data/ct``."""
    env = os.environ.get("MEDDIFFFM_CT_DATA")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "data" / "ct"


@dataclass(frozen=True)
class Case:
    """One real CT: its file, the body region it shows, and optional masks (name -> file)."""

    name: str
    path: str
    region: Optional[str] = None
    masks: dict = field(default_factory=dict)
    note: str = ""


def _sarcoma(i: int) -> Case:
    return Case(
        f"STS_{i:03d}",
        f"sarcoma/STS_{i:03d}_ct.nii.gz",
        None,
        {"tumour": f"sarcoma/STS_{i:03d}_tumour.nii.gz"},
        "thigh crop, CT of PET/CT (noisy, HU clipped at -1000)",
    )


CASES: dict[str, Case] = {
    c.name: c
    for c in [
        Case("lung_tumour_5mm", "chest/lung_tumour_5mm.nii.gz", "chest",
             {"tumour": "chest/lung_tumour_5mm_tumour.nii.gz"}, "chest, 0.63x0.63x5 mm"),
        Case("abdomen_pelvis_3mm", "abdomen/abdomen_pelvis_3mm.nii.gz", "abdomen", {}, "abdomen+pelvis, 3 mm iso"),
        Case("abdomen_3mm_small", "abdomen/abdomen_3mm_small.nii.gz", "abdomen",
             {"labels": "abdomen/abdomen_3mm_small_labels.nii.gz"}, "30 slices of abdomen_pelvis_3mm, TotalSegmentator labels"),
        Case("cta_aorta_crop", "chest/cta_aorta_crop.nii.gz", "chest",
             {"aorta": "chest/cta_aorta_crop_aorta.nii.gz"}, "chest CTA crop, 1.5 mm iso"),
        Case("lidc_chest_1mm", "chest/lidc_chest_1mm.nii.gz", "chest", {}, "chest, 1 mm iso (resampled)"),
        Case("chest_upper_abdomen", "chest/chest_upper_abdomen.nii.gz", "chest",
             {"labels": "chest/chest_upper_abdomen_labels.nii.gz"}, "chest + upper abdomen, 0.7x0.7x2.5 mm"),
        Case("head_cranium", "head/head_cranium_1.5mm.nii.gz", "head_neck", {}, "head, 0.96x0.96x1.5 mm"),
        Case("head_trauma_ge", "head/head_trauma_ge.nii.gz", "head_neck", {}, "head, 0.98x0.98x2 mm (resampled)"),
    ]
    + [_sarcoma(i) for i in range(1, 37)]
}

# TotalSegmentator (v2) label ids used by the inpainting benchmark (see chest_upper_abdomen_labels.csv).
TOTALSEG_LIVER = 5


def parse_cases(text: Optional[str], default: Sequence[str]) -> list[str]:
    """Comma-separated case names (``STS_034..036`` ranges allowed) or the default list."""
    if not text:
        return list(default)
    names: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if ".." in part:
            first, last = part.split("..")
            prefix = first.rstrip("0123456789")
            start = int(first[len(prefix):])
            stop = int(last.lstrip("STS_") or last)
            names += [f"{prefix}{i:03d}" for i in range(start, stop + 1)]
        elif part:
            names.append(part)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise SystemExit(f"Unknown case(s) {unknown}. Known: {', '.join(CASES)}")
    return names


def read_case(name: str) -> sitk.Image:
    """The case's CT as a float32 image (HU), with its own geometry."""
    path = data_root() / CASES[name].path
    if not path.is_file():
        raise SystemExit(f"Missing {path}: the shared CT data is needed (set MEDDIFFFM_CT_DATA to its folder).")
    return sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat32)


def read_mask(name: str, which: str) -> np.ndarray:
    """A mask or label map of a case as a (z, y, x) integer array on the case's grid."""
    path = data_root() / CASES[name].masks[which]
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def cache_dir() -> Path:
    """Where simulated inputs are cached between runs: ``$MEDDIFFFM_BENCH_CACHE`` or
    ``~/.cache/meddifffm-bench`` (delete it to re-simulate)."""
    env = os.environ.get("MEDDIFFFM_BENCH_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "meddifffm-bench"


def spacing_zyx(image: sitk.Image) -> np.ndarray:
    return np.asarray(image.GetSpacing()[::-1], dtype=float)


def crop_box(
    hu: np.ndarray, spacing_xyz: Sequence[float], size_mm: float | Sequence[float], center: Optional[Sequence[float]] = None
) -> tuple[slice, slice, slice]:
    """A (z, y, x) box of about ``size_mm`` (one number or (z, y, x)) around ``center`` (voxel
    indices; default: the centroid of the voxels above -300 HU), clipped to the volume."""
    size = np.broadcast_to(np.asarray(size_mm, dtype=float), (3,))
    sp = np.asarray(spacing_xyz, dtype=float)[::-1]
    if center is None:
        body = np.argwhere(hu > -300)
        center = body.mean(axis=0) if len(body) else np.asarray(hu.shape) / 2.0
    box = []
    for c, n, s, length in zip(center, hu.shape, sp, size):
        count = int(min(n, max(1, round(length / s))))
        start = int(round(c - count / 2.0))
        start = min(max(0, start), n - count)
        box.append(slice(start, start + count))
    return tuple(box)  # type: ignore[return-value]


def crop_image(image: sitk.Image, box: Sequence[slice]) -> sitk.Image:
    """Crop a SimpleITK image with a (z, y, x) box, keeping its physical geometry."""
    z, y, x = box
    return image[x.start:x.stop, y.start:y.stop, z.start:z.stop]


def like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """``array`` (z, y, x) as an image on ``reference``'s grid."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.CopyInformation(reference)
    return image


# ---------------------------------------------------------------------------------------------
# The model under test.
# ---------------------------------------------------------------------------------------------


@dataclass
class BenchModel:
    """The model a benchmark runs: ``ref`` (a folder, for ``model=``) or None when there is none."""

    ref: Optional[str]
    name: str = ""
    config: str = ""
    trained: Optional[bool] = None
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.ref is not None

    def describe(self) -> str:
        if not self.available:
            return f"none ({self.reason})"
        state = "trained" if self.trained else "UNTRAINED (random weights: quality figures are meaningless)"
        return f"{self.name} (config '{self.config}', {state}) at {self.ref}"


def _is_trained(files) -> bool:
    card = (files.card or "").lower()
    if "randomly initialised" in card or "randomly initialized" in card or "has not been trained" in card:
        return False
    extra = files.extra or {}
    if extra.get("trained") is False or extra.get("untrained") is True:
        return False
    return True


_TMP_DIRS: list[str] = []


def _tmp_dir(prefix: str) -> Path:
    path = tempfile.mkdtemp(prefix=prefix)
    _TMP_DIRS.append(path)
    return Path(path)


@atexit.register
def _cleanup_tmp() -> None:
    for path in _TMP_DIRS:
        shutil.rmtree(path, ignore_errors=True)


def redraw_zero_weights(module, gain: float = 1.0) -> int:
    """Give the all-zero weight tensors of a fresh network random values (normal, std gain/sqrt(fan_in)).

    MONAI zero-initialises the U-Net's output convolution, the attention output projections and
    the ControlNet's zero convolutions, so a fresh model predicts exactly 0 and every path (naive,
    batched, sdpa...) agrees trivially. Redrawn, the random model's outputs are non-trivial and the
    speed benchmark's output-equality checks mean something. Returns the number of tensors redrawn.
    """
    import torch

    count = 0
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.ndim >= 2 and not bool(param.any()):
                fan_in = param[0].numel()
                param.normal_(0.0, gain / max(fan_in, 1) ** 0.5)
                count += 1
    return count


def make_random_model(config: str, controlnet: Optional[str] = None, seed: int = 0) -> Path:
    """A randomly initialised model folder (like ``meddifffm init-model``) in a temporary folder;
    with ``controlnet`` ('superres' or 'lesion') a ControlNet beside its random base."""
    import torch

    from MedDiffFMLib.models.config import ControlNetConfig, named_config
    from MedDiffFMLib.models.network import MedDiffFMControlNet, MedDiffFMUNet
    from MedDiffFMLib.models.weights import save_model

    root = _tmp_dir("meddifffm-bench-")
    torch.manual_seed(seed)
    cfg = named_config(config)
    base_name = f"random-{Path(config).stem}"
    card = (f"# {base_name}\n\nRandomly initialised MedDiffFM model (config '{config}', seed {seed}; zero-initialised "
            "layers redrawn by the benchmarks); not trained.\n")
    unet = MedDiffFMUNet(cfg)
    redraw_zero_weights(unet)
    base = save_model(unet, root / base_name, name=base_name, card=card)
    if controlnet is None:
        return base.path
    control = ControlNetConfig(task=controlnet, condition_channels=1, base_model=base.name, base_sha256=base.fingerprint)
    module = MedDiffFMControlNet(cfg, control)
    module.initialise_from(unet)
    redraw_zero_weights(module, gain=0.1)
    name = f"{base_name}-{controlnet}"
    files = save_model(module, root / name, name=name, card=card.replace(base_name, name, 1))
    return files.path


def add_common_args(parser: argparse.ArgumentParser, default_cases: Sequence[str], quick_cases: Sequence[str]) -> None:
    parser.add_argument("--model", default=None,
                        help="model folder or name (default: the installed default model from the registry)")
    parser.add_argument("--config", default=None,
                        help="no installed model: use a RANDOM model of this config (tiny, default, paper or JSON); "
                             "figures are then marked untrained")
    parser.add_argument("--cases", default=None,
                        help=f"comma-separated cases (default: {','.join(default_cases)}; "
                             f"--quick: {','.join(quick_cases)}); known: lung_tumour_5mm, abdomen_pelvis_3mm, "
                             "cta_aorta_crop, lidc_chest_1mm, chest_upper_abdomen, STS_001..STS_036")
    parser.add_argument("--quick", action="store_true", help="fewer and smaller cases (minutes, not tens of minutes)")
    parser.add_argument("--save", action="store_true", help="also write the tables to benchmarks/results/")
    parser.add_argument("--save-name", default=None,
                        help="file stem under benchmarks/results/ (default: the script name, + _quick with --quick)")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda|mps for MedDiffFM")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")


def add_overlap_arg(parser: argparse.ArgumentParser) -> None:
    """``--overlap``: MedDiffFM's patch overlap, to check that a speed setting leaves quality unchanged."""
    parser.add_argument("--overlap", type=float, default=None,
                        help="patch overlap for MedDiffFM (default: the library's); e.g. 0.5 = the naive baseline's")
    parser.add_argument("--precision", default=None, choices=("auto", "float32", "bfloat16"),
                        help="MedDiffFM's arithmetic (default: the library's auto); float32 = before issue 40's bf16")


def engine_options(args: argparse.Namespace) -> dict:
    """Engine options given on the command line (only those set)."""
    options = {}
    if getattr(args, "overlap", None) is not None:
        options["overlap"] = float(args.overlap)
    if getattr(args, "precision", None) is not None:
        options["precision"] = args.precision
    return options


def resolve_bench_model(args: argparse.Namespace, role: str = "base") -> BenchModel:
    """``--model``, else a random ``--config`` model, else the registry's default for ``role``."""
    if args.model:
        return bench_model(args.model, role)
    if args.config:
        from MedDiffFMLib.errors import MedDiffFMError

        try:
            path = make_random_model(args.config, controlnet=None if role == "base" else role)
        except MedDiffFMError as error:
            return BenchModel(None, reason=f"no {role} model: {str(error).split('. ')[0]}")
        return bench_model(str(path), role)
    return bench_model(None, role)


def bench_model(ref: Optional[str], role: str = "base") -> BenchModel:
    """The model at ``ref`` (a folder or name; None: the registry's default for ``role``), or an
    unavailable :class:`BenchModel` saying why. A ControlNet counts as trained only when its base does."""
    from MedDiffFMLib.errors import MedDiffFMError
    from MedDiffFMLib.models.loading import find_base
    from MedDiffFMLib.models.registry import resolve_model

    try:
        files = resolve_model(ref, role)
    except MedDiffFMError as error:
        first = str(error).split(". ")[0]
        return BenchModel(None, reason=f"no {role} model: {first}. Pass --model PATH or --config default")
    trained = _is_trained(files)
    if files.kind == "controlnet":
        try:
            trained = trained and _is_trained(find_base(files))
        except MedDiffFMError:
            pass
    return BenchModel(str(files.path), files.name, files.model_config.name, trained)


def controlnet_base(model: BenchModel) -> BenchModel:
    """The base model a ControlNet ``model`` runs on, found the way the library finds it (a sibling
    folder named by its config, else the registry, with the base's sha256 checked); unavailable,
    with the library's reason, when there is none."""
    from MedDiffFMLib.errors import MedDiffFMError
    from MedDiffFMLib.models.loading import find_base
    from MedDiffFMLib.models.registry import resolve_model

    if not model.available:
        return BenchModel(None, reason=model.reason)
    try:
        files = resolve_model(model.ref)
        if files.kind != "controlnet":
            return model
        base = find_base(files)
    except MedDiffFMError as error:
        return BenchModel(None, reason=f"no base for {model.name}: {str(error).split('. ')[0]}")
    return BenchModel(str(base.path), base.name, base.model_config.name, _is_trained(base))


def training_status(model: Optional[BenchModel], case: str) -> str:
    """Whether ``case`` was held out from the model's training, from its model card: 'held out'
    when the card's "validation cases: N (a, b, ...)" lists it, 'seen in training' when the card
    says the model trained on the shared CT (shared/data/ct) and does not list it, else 'unknown'."""
    import re

    if model is None or not model.available:
        return "–"
    from MedDiffFMLib.models.registry import resolve_model

    try:
        card = resolve_model(model.ref).card or ""
    except Exception:  # noqa: BLE001 - a label, not a check
        return "unknown"
    if card.lower().startswith(f"# {model.name.lower()}") and "randomly initialised" in card.lower():
        return "untrained"
    held = re.search(r"validation cases:\s*\d+\s*\(([^)]*)\)", card, flags=re.IGNORECASE)
    names = {n.strip() for n in held.group(1).split(",")} if held else set()
    if case in names:
        return "held out"
    if "shared/data/ct" in card or "shared real ct" in card.lower():
        return "seen in training"
    return "unknown"


def make_engine(model: BenchModel, device: str, role: str = "base", **options):
    """An :class:`~MedDiffFMLib.tasks.Engine` for ``model`` (loaded once, reused over cases)."""
    from MedDiffFMLib.engine import Engine, EngineOptions

    return Engine(EngineOptions(model=model.ref, device=device, **options), role=role,
                  expect_task=None if role == "base" else role)


def setup_threads(args: argparse.Namespace) -> None:
    import torch

    if getattr(args, "threads", None):
        torch.set_num_threads(int(args.threads))


# ---------------------------------------------------------------------------------------------
# Machine, timing, memory.
# ---------------------------------------------------------------------------------------------


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


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __enter__(self) -> "Stopwatch":
        self.start = time.perf_counter()
        self.seconds = float("nan")
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def mvox_per_s(voxels: int, seconds: float) -> float:
    return voxels / 1e6 / seconds if seconds > 0 else float("nan")


def _status_kib(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_bytes() -> int:
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Peak memory of this process during a ``with`` block.

    CPU: the resident set's high-water mark (Linux ``VmHWM``, reset on entry by writing 5 to
    ``/proc/self/clear_refs``); where that is not possible, a thread samples ``VmRSS`` every 5 ms.
    GPU: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``.
    Attributes after the block: ``peak_rss``, ``start_rss`` (bytes), ``cuda_peak`` (bytes or None).
    """

    def __init__(self, cuda: bool = False) -> None:
        self.cuda = cuda
        self.cuda_peak: Optional[int] = None

    def __enter__(self) -> "PeakMemory":
        import gc

        from MedDiffFMLib.device import release_cpu_memory

        gc.collect()
        # Memory the CPU allocator kept (device.configure_cpu_runtime) would hide the block's growth.
        release_cpu_memory()
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.start_rss = current_rss_bytes()
        self._sampler: Optional[threading.Thread] = None
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self.mode = "VmHWM"
        except OSError:
            self.mode = "sampled"
            self._stop = threading.Event()
            self._max = self.start_rss

            def sample() -> None:
                while not self._stop.is_set():
                    self._max = max(self._max, current_rss_bytes())
                    time.sleep(0.005)

            self._sampler = threading.Thread(target=sample, daemon=True)
            self._sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._sampler is not None:
            self._stop.set()
            self._sampler.join()
            self.peak_rss = max(self._max, current_rss_bytes())
        else:
            hwm = _status_kib("VmHWM")
            self.peak_rss = hwm * 1024 if hwm is not None else current_rss_bytes()
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.cuda_peak = int(torch.cuda.max_memory_allocated())


def gib(n: Optional[float]) -> float:
    return float("nan") if n is None else n / 2**30


# ---------------------------------------------------------------------------------------------
# Tables.
# ---------------------------------------------------------------------------------------------


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
    command = "python -m benchmarks." + Path(sys.argv[0]).stem + " " + " ".join(sys.argv[1:])
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


def print_header(title: str, machine: dict[str, Any], model: Optional[BenchModel] = None) -> None:
    print(f"== {title} ==")
    print(format_machine(machine))
    if model is not None:
        print(f"Model: {model.describe()}")
    sys.stdout.flush()


def whole_scan_region(image: sitk.Image) -> str:
    """The region the library guesses on the whole scan, as a user running a task on a loaded CT gets;
    "unknown" when it finds none, so that a box cut from it is not guessed again (STS_035's tumour box,
    a thigh crop around its femur, reads as head and neck)."""
    from MedDiffFMLib.models.config import UNKNOWN_REGION
    from MedDiffFMLib.preprocessing import guess_region

    return guess_region(image) or UNKNOWN_REGION
