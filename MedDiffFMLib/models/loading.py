"""Load a verified model (and, for a ControlNet, its base) ready for sampling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..errors import ModelError
from .network import ConditionedModel, MedDiffFMControlNet, MedDiffFMUNet
from .registry import resolve_model
from .weights import ModelFiles, build_module, verify_model_folder


@dataclass
class LoadedModel:
    """A network on its device plus the files it came from."""

    model: ConditionedModel
    files: ModelFiles
    base_files: ModelFiles

    @property
    def config(self):
        return self.base_files.model_config


def base_lineage(base: ModelFiles) -> list[str]:
    """Fingerprints of the earlier versions of a base model that training continued from (a run that
    continues a shipped model records them in config.json's ``extra.training.lineage``), oldest first."""
    training = (base.extra or {}).get("training") or {}
    return [str(f) for f in training.get("lineage", [])]


def find_base(control_files: ModelFiles) -> ModelFiles:
    """The verified base model a ControlNet runs on: the sibling folder its config names, else that
    name in the registry; refused (:class:`ModelError`) unless it has the sha256 the ControlNet was
    trained on or descends from it (:func:`base_lineage`)."""
    control = control_files.controlnet_config
    assert control is not None
    # A ControlNet folder may sit beside its base, or the base is found by name in the registry.
    sibling = control_files.path.parent / control.base_model
    base = verify_model_folder(sibling) if (sibling / "manifest.json").is_file() else resolve_model(control.base_model)
    # A ControlNet fine-tuned on an earlier version of the same base (before its training went on)
    # keeps working on the newer one: same network, weights moved on; anything else is refused.
    if control.base_sha256 and base.fingerprint != control.base_sha256 and control.base_sha256 not in base_lineage(base):
        raise ModelError(
            f"ControlNet '{control_files.name}' was trained on base model '{control.base_model}' "
            f"({control.base_sha256[:12]}…) but the base found at '{base.path}' has fingerprint "
            f"{base.fingerprint[:12]}…, and that base does not descend from it. Install the matching base model."
        )
    return base


def inference_memory_format(device: torch.device) -> torch.memory_format:
    """Weight layout for sampling on ``device``.

    channels-last 3D lets oneDNN (CPU) and cuDNN pick their fastest 3D convolutions: 1.12x (32^3
    starter) and 1.15x (64^3 default) per patch on the 2-core CPU at the same output
    (benchmarks/speed.py, section 1). MPS keeps the default layout, which it supports best.
    """
    return torch.channels_last_3d if device.type in ("cpu", "cuda") else torch.contiguous_format


def check_model_role(files: ModelFiles, role: str = "base", expect_task: Optional[str] = None,
                     task: Optional[str] = None) -> None:
    """Raise ModelError, naming the model, unless it suits the task: a base model when ``expect_task``
    is None, else a ControlNet trained for ``expect_task``. ``role`` only picks the default model;
    ``task`` names the command in the message."""
    what = f"'{task}'" if task else "this task"
    where = f"'{files.name}' ({files.path})"
    if files.kind == "controlnet":
        control = files.controlnet_config
        assert control is not None
        if expect_task is None:
            raise ModelError(
                f"Model {where} is a '{control.task}' ControlNet; {what} needs a base model (such as the "
                "default meddifffm-default). Leave --model out or pass a base model folder."
            )
        if control.task != expect_task:
            raise ModelError(
                f"Model {where} is a '{control.task}' ControlNet; {what} needs a '{expect_task}' one. "
                f"Leave --model out for the default, or pass a '{expect_task}' ControlNet folder."
            )
    elif expect_task:
        needed = expect_task
        raise ModelError(
            f"Model {where} is a base model; {what} needs a '{needed}' ControlNet. Leave --model out for the "
            f"default, or pass a '{needed}' ControlNet folder."
        )


def model_for_task(ref: Optional[str | Path], role: str = "base", expect_task: Optional[str] = None,
                   task: Optional[str] = None) -> ModelFiles:
    """Resolve and verify ``ref`` (checksums, config) and check its role, loading no weights."""
    files = resolve_model(ref, role)
    check_model_role(files, role, expect_task, task)
    return files


def load_pipeline_model(
    ref: Optional[str | Path], role: str = "base", device: torch.device | str = "cpu", expect_task: Optional[str] = None
) -> LoadedModel:
    """Resolve ``ref`` (name, folder or None for the default of ``role``), verify checksums, build the
    network(s) and move them to ``device``."""
    files = resolve_model(ref, role)
    check_model_role(files, role, expect_task)
    if files.kind == "controlnet":
        control = files.controlnet_config
        assert control is not None
        base_files = find_base(files)
        unet = build_module(base_files)
        controlnet = build_module(files)
        assert isinstance(unet, MedDiffFMUNet) and isinstance(controlnet, MedDiffFMControlNet)
        model = ConditionedModel(unet, controlnet)
    else:
        base_files = files
        unet = build_module(files)
        assert isinstance(unet, MedDiffFMUNet)
        model = ConditionedModel(unet)
    device = torch.device(device)
    model.to(device, memory_format=inference_memory_format(device)).eval()
    return LoadedModel(model=model, files=files, base_files=base_files)
