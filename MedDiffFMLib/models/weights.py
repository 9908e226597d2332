"""The weights format: safetensors shards + JSON config + model card, listed with sha256 in a manifest.

A model folder holds::

    config.json          {"format": ..., "kind": "unet"|"controlnet", "model": {...}, "controlnet": {...}}
    model.safetensors    (or model-00001-of-0000N.safetensors shards, each under max_shard_bytes)
    MODEL_CARD.md        what the model saw, how long it trained, what it reached
    manifest.json        {"name": ..., "kind": ..., "files": {"config.json": sha256, ...}}

A folder loads only when every file's sha256 matches its manifest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import ModelChecksumError, ModelConfigError, ModelError
from ..io.durable import staged_folder
from .config import CONTROLNET_RUNTIME_SETTINGS, ControlNetConfig, ModelConfig
from .network import MedDiffFMControlNet, MedDiffFMUNet

FORMAT = "meddifffm-weights/1"
MANIFEST = "manifest.json"
CONFIG = "config.json"
CARD = "MODEL_CARD.md"
# Weight files are split below this size: small files fit git hosts' and upload forms' per-file limits.
DEFAULT_MAX_SHARD_BYTES = 15 * 2**20


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ModelFiles:
    """A verified model folder."""

    path: Path
    name: str
    kind: str
    model_config: ModelConfig
    controlnet_config: Optional[ControlNetConfig]
    files: dict[str, str]
    card: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """One sha256 standing for all the weight files (used to pair a ControlNet with its base)."""
        lines = "".join(f"{k}:{v}\n" for k, v in sorted(self.files.items()) if k.endswith(".safetensors"))
        return hashlib.sha256(lines.encode()).hexdigest()

    @property
    def card_summary(self) -> str:
        """First paragraph of the model card after its title."""
        paragraphs = [p.strip() for p in self.card.split("\n\n") if p.strip() and not p.lstrip().startswith("#")]
        return paragraphs[0].replace("\n", " ") if paragraphs else ""


def _split_state(state: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    return shards


def save_model(
    module: MedDiffFMUNet | MedDiffFMControlNet,
    out_dir: str | Path,
    *,
    name: str,
    card: str = "",
    storage_dtype: torch.dtype = torch.float32,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    extra: Optional[dict] = None,
) -> ModelFiles:
    """Write ``module`` as a model folder, atomically (a temporary folder renamed into place).

    ``storage_dtype`` float16/bfloat16 halves the files; weights are loaded back as float32.
    """
    out_dir = Path(out_dir)
    if not out_dir.parent.is_dir():
        raise ModelError(f"Cannot write the model to '{out_dir}': the folder '{out_dir.parent}' does not exist.")
    is_control = isinstance(module, MedDiffFMControlNet)
    config_doc = {
        "format": FORMAT,
        "name": name,
        "kind": "controlnet" if is_control else "unet",
        "model": module.config.to_dict(),
        "extra": extra or {},
    }
    if is_control:
        config_doc["controlnet"] = module.control.to_dict()
    state = {k: v.detach().to("cpu", storage_dtype).contiguous() for k, v in module.state_dict().items()}
    shards = _split_state(state, max_shard_bytes)
    with staged_folder(out_dir, what=f"the model folder '{out_dir.name}'", replace=True) as tmp:
        (tmp / CONFIG).write_text(json.dumps(config_doc, indent=2))
        (tmp / CARD).write_text(card or f"# {name}\n\nNo model card was written for this model.\n")
        for index, shard in enumerate(shards, start=1):
            fname = "model.safetensors" if len(shards) == 1 else f"model-{index:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(tmp / fname), metadata={"format": FORMAT, "name": name})
        files = {p.name: sha256_of(p) for p in sorted(tmp.iterdir())}
        (tmp / MANIFEST).write_text(json.dumps({"name": name, "kind": config_doc["kind"], "files": files}, indent=2))
        verify_model_folder(tmp)
    return verify_model_folder(out_dir)


def set_controlnet_settings(path: str | Path, settings: dict, reason: str = "") -> ModelFiles:
    """Change how a ControlNet folder is applied (``CONTROLNET_RUNTIME_SETTINGS``: its residual scale,
    the lowest time step it acts at) without touching its weights, so their fingerprint stays.

    config.json, the model card (one line per changed value, with ``reason``) and the manifest are
    rewritten in a copy of the folder that then replaces it, so a failure leaves the folder as it was.
    Returns the verified folder; unchanged values write nothing.
    """
    files = verify_model_folder(path)
    if files.controlnet_config is None:
        raise ModelError(f"'{files.path}' is a base model; only a ControlNet has "
                         f"{', '.join(CONTROLNET_RUNTIME_SETTINGS)}.")
    unknown = sorted(set(settings) - set(CONTROLNET_RUNTIME_SETTINGS))
    if unknown:
        raise ModelError(f"Only {', '.join(CONTROLNET_RUNTIME_SETTINGS)} can change after training, "
                         f"not {', '.join(unknown)}.")
    current = files.controlnet_config.to_dict()
    changed = {k: v for k, v in settings.items() if current[k] != v}
    if not changed:
        return files
    doc = json.loads((files.path / CONFIG).read_text())
    doc["controlnet"].update(changed)
    lines = "".join(f"- {k}: {current[k]} -> {v}{f' ({reason})' if reason else ''}\n" for k, v in changed.items())
    card = files.card.rstrip("\n") + f"\n\n## Settings changed after training\n\n{lines}"
    return _rewrite_files(files, {CONFIG: json.dumps(doc, indent=2).encode(), CARD: card.encode()})


def _rewrite_files(files: ModelFiles, contents: dict[str, bytes]) -> ModelFiles:
    """The verified folder ``files`` with ``contents`` added or replaced and listed with their sha256 in
    its manifest; rebuilt in a staged copy that then replaces it, so a failure leaves it as it was."""
    with staged_folder(files.path, what=f"the model folder '{files.path.name}'", replace=True) as tmp:
        for name in files.files:
            if name not in contents:
                shutil.copy2(files.path / name, tmp / name)
        for name, data in contents.items():
            (tmp / name).write_bytes(data)
        manifest = json.loads((files.path / MANIFEST).read_text())
        manifest["files"] = {**files.files, **{name: sha256_of(tmp / name) for name in contents}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        verify_model_folder(tmp)
    return verify_model_folder(files.path)


def add_model_files(path: str | Path, contents: dict[str, bytes]) -> ModelFiles:
    """Add (or replace) side files of a verified model folder, e.g. the anomaly map's healthy statistics
    or the model card, and list them with their sha256 in its manifest; the weights and the config stay.

    The folder is rewritten in a copy that then replaces it, so a failure leaves it as it was.
    """
    files = verify_model_folder(path)
    protected = sorted(name for name in contents if name in (CONFIG, MANIFEST) or name.endswith(".safetensors"))
    if protected:
        raise ModelError(f"{', '.join(protected)} cannot be replaced this way (the weights and config keep their "
                         "checksums).")
    bad = sorted(name for name in contents if Path(name).name != name or name.startswith("."))
    if bad:
        raise ModelError(f"Side files must be plain names inside the model folder, not {', '.join(bad)}.")
    return _rewrite_files(files, contents)


def verify_model_folder(path: str | Path) -> ModelFiles:
    """Check every file of a model folder against its manifest and parse its config."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ModelError(
            f"'{path}' is not a MedDiffFM model folder: it has no {MANIFEST}. "
            "Import weights with `meddifffm import-weights PATH`, or point --model at a model folder."
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        files: dict[str, str] = dict(manifest["files"])
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ModelConfigError(f"The manifest of model '{path}' is unreadable ({error}). Re-import the model.") from error
    for fname, expected in files.items():
        fpath = path / fname
        if not fpath.is_file():
            raise ModelError(f"Model '{path}' is incomplete: '{fname}' listed in its manifest is missing.")
        actual = sha256_of(fpath)
        if actual != expected:
            raise ModelChecksumError(
                f"Model '{path}': the checksum of '{fname}' does not match its manifest "
                f"(expected {expected[:12]}…, found {actual[:12]}…). The file is damaged or was changed; "
                "download or import the model again. It was not loaded."
            )
    if not any(f.endswith(".safetensors") for f in files):
        raise ModelError(f"Model '{path}' lists no .safetensors weights in its manifest.")
    return _read_folder(path, files, str(manifest.get("name", path.name)))


def _read_folder(path: Path, files: dict[str, str], name: str) -> ModelFiles:
    try:
        doc = json.loads((path / CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ModelConfigError(f"Cannot read the config of model '{path}': {error}.") from error
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ModelConfigError(f"Model '{path}' has format '{found}', this MedDiffFM reads '{FORMAT}'.")
    try:
        model_config = ModelConfig.from_dict(doc["model"])
        control = ControlNetConfig.from_dict(doc["controlnet"]) if doc.get("kind") == "controlnet" else None
    except (KeyError, TypeError, ValueError) as error:
        raise ModelConfigError(f"The config of model '{path}' is unreadable ({type(error).__name__}: {error}). "
                               "Re-import or re-export the model.") from error
    card = (path / CARD).read_text() if (path / CARD).is_file() else ""
    return ModelFiles(path, name, doc.get("kind", "unet"), model_config, control, files, card, doc.get("extra", {}))


def load_state(model_files: ModelFiles) -> dict[str, torch.Tensor]:
    """Read (and merge) the safetensors shards of a verified folder as float32."""
    state: dict[str, torch.Tensor] = {}
    for fname in sorted(f for f in model_files.files if f.endswith(".safetensors")):
        try:
            state.update(load_file(str(model_files.path / fname)))
        except (SafetensorError, OSError, ValueError) as error:
            raise ModelError(
                f"The weights file '{model_files.path / fname}' is truncated or corrupt ({error}). "
                "Download or import the model again."
            ) from error
    return {k: v.float() for k, v in state.items()}


def build_module(model_files: ModelFiles) -> MedDiffFMUNet | MedDiffFMControlNet:
    """Instantiate the network described by the folder's config and load its weights."""
    if model_files.kind == "controlnet":
        assert model_files.controlnet_config is not None
        module: MedDiffFMUNet | MedDiffFMControlNet = MedDiffFMControlNet(
            model_files.model_config, model_files.controlnet_config
        )
    else:
        module = MedDiffFMUNet(model_files.model_config)
    state = load_state(model_files)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0:3]
        raise ModelError(
            f"The config of model '{model_files.path}' does not match its weights ({' '.join(first)[:300]}). "
            "The config.json was edited or belongs to another model; restore the model folder."
        ) from error
    module.eval()
    return module
