"""Where models live and how a ``--model`` argument becomes a verified model folder.

Search order for a model *name*: ``$MEDDIFFFM_MODELS_DIR``, the user's model folder
(``~/.local/share/meddifffm/models`` or ``$XDG_DATA_HOME``), then the models shipped in the
extension's ``Resources/Models``. Nothing is ever downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterable, Optional

from ..errors import ModelError
from ..io.durable import staged_folder
from .config import CONTROLNET_TASKS
from .weights import MANIFEST, ModelFiles, sha256_of, verify_model_folder

# Roles a shipped model can play (the base model and each ControlNet task);
# ``Resources/Models/models.json`` maps each to a model name.
ROLES = ("base", *CONTROLNET_TASKS)
FALLBACK_NAMES = {"base": "meddifffm-default", **{task: f"meddifffm-{task}" for task in CONTROLNET_TASKS}}


def shipped_models_dir() -> Path:
    """``Resources/Models`` beside the library (source checkout or Slicer extension install)."""
    return Path(__file__).resolve().parents[2] / "Resources" / "Models"


def user_models_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "meddifffm" / "models"


def search_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("MEDDIFFFM_MODELS_DIR"):
        dirs.append(Path(os.environ["MEDDIFFFM_MODELS_DIR"]))
    dirs += [user_models_dir(), shipped_models_dir()]
    return dirs


def _role_names() -> dict[str, str]:
    names = dict(FALLBACK_NAMES)
    for folder in reversed(search_dirs()):
        index = folder / "models.json"
        if index.is_file():
            try:
                names.update(json.loads(index.read_text()).get("roles", {}))
            except json.JSONDecodeError:
                pass
    return names


def iter_model_folders() -> Iterable[Path]:
    """Every folder with a manifest in the search folders (not verified yet)."""
    seen = set()
    for folder in search_dirs():
        if not folder.is_dir():
            continue
        for manifest in sorted(folder.glob(f"*/{MANIFEST}")):
            if manifest.parent.name not in seen:
                seen.add(manifest.parent.name)
                yield manifest.parent


def resolve_model(ref: Optional[str | Path], role: str = "base") -> ModelFiles:
    """Verify and describe the model named or pointed to by ``ref`` (None: the default for ``role``)."""
    if ref is None or str(ref) == "":
        name = _role_names()[role]
        return _find_by_name(name, default_role=role)
    path = Path(ref).expanduser()
    if path.is_dir():
        return verify_model_folder(path)
    if path.is_file():
        if path.name == MANIFEST:
            return verify_model_folder(path.parent)
        raise ModelError(
            f"'{path}' is a single file. Point --model at a model folder (with {MANIFEST}), "
            "or import weights first with `meddifffm import-weights PATH`."
        )
    if os.sep in str(ref) or str(ref).startswith("."):
        raise ModelError(f"Model path '{ref}' does not exist.")
    return _find_by_name(str(ref))


def _find_by_name(name: str, default_role: Optional[str] = None) -> ModelFiles:
    for folder in search_dirs():
        candidate = folder / name
        if (candidate / MANIFEST).is_file():
            return verify_model_folder(candidate)
    known = [p.name for p in iter_model_folders()]
    what = f"the default {default_role} model '{name}'" if default_role else f"model '{name}'"
    hint = f" Known models: {', '.join(known)}." if known else " No models are installed."
    raise ModelError(
        f"Cannot find {what} in {', '.join(str(d) for d in search_dirs())}.{hint} "
        "Pass --model with a model folder, or import one with `meddifffm import-weights PATH` "
        "(works offline; nothing is downloaded)."
    )


def import_weights(source: str | Path, name: Optional[str] = None, dest_root: Optional[Path] = None) -> ModelFiles:
    """Copy a model folder (verified) into the user's model folder, atomically."""
    source = Path(source).expanduser()
    if source.is_file() and source.name == MANIFEST:
        source = source.parent
    if not source.is_dir():
        raise ModelError(f"Cannot import '{source}': give a MedDiffFM model folder (with {MANIFEST}).")
    files = verify_model_folder(source)
    dest_root = dest_root or user_models_dir()
    dest_root.mkdir(parents=True, exist_ok=True)
    dest = dest_root / (name or files.name)
    if dest.exists():
        raise ModelError(f"A model named '{dest.name}' already exists in {dest_root}; choose another --name.")
    with staged_folder(dest, what=f"the model '{dest.name}'") as tmp:
        for fname in files.files:
            shutil.copy2(source / fname, tmp / fname)
        shutil.copy2(source / MANIFEST, tmp / MANIFEST)
        for fname, expected in files.files.items():
            if sha256_of(tmp / fname) != expected:
                raise ModelError(f"Copying '{fname}' failed its checksum; nothing was imported.")
    return verify_model_folder(dest)
