"""Models known to the library (``meddifffm info --json``) and a rough run-time estimate.

Pure Python: unit-tested without Slicer.
"""

import dataclasses
import json
from typing import Dict, List, Optional

from .I18n import _


@dataclasses.dataclass
class ModelInfo:
    name: str
    path: str = ""
    kind: str = "unet"
    sha256Ok: Optional[bool] = None
    cardSummary: str = ""
    config: Dict = dataclasses.field(default_factory=dict)
    error: str = ""

    @classmethod
    def fromJson(cls, payload: Dict) -> "ModelInfo":
        return cls(
            name=str(payload.get("name") or payload.get("path") or "?"),
            path=str(payload.get("path") or ""),
            kind=str(payload.get("kind") or "unet"),
            sha256Ok=payload.get("sha256_ok"),
            cardSummary=str(payload.get("card_summary") or ""),
            config=dict(payload.get("config") or {}),
            error=str(payload.get("error") or ""),
        )

    def checksumText(self) -> str:
        if self.sha256Ok is True:
            return _("checksum verified")
        if self.sha256Ok is False:
            return _("CHECKSUM MISMATCH: the weights will not be loaded; import them again")
        return _("checksum not checked")

    def summaryText(self) -> str:
        """Model card summary for the panel."""
        lines = [f"{self.name} ({self.kind}) - {self.checksumText()}"]
        if self.error:
            lines.append(self.error)
        if self.cardSummary:
            lines.append(self.cardSummary)
        return "\n".join(lines)


@dataclasses.dataclass
class LibraryInfo:
    version: str = ""
    torch: str = ""
    devices: List[str] = dataclasses.field(default_factory=list)
    models: List[ModelInfo] = dataclasses.field(default_factory=list)

    def model(self, name: Optional[str]) -> Optional[ModelInfo]:
        """The model called ``name`` (or at that path); the first one when ``name`` is empty."""
        if not self.models:
            return None
        if not name:
            return self.models[0]
        for model in self.models:
            if name in (model.name, model.path):
                return model
        return None

    @property
    def hasGpu(self) -> bool:
        return any(str(d).startswith(("cuda", "mps", "gpu")) for d in self.devices)


def parseInfoOutput(stdout: str) -> LibraryInfo:
    """Parse the output of ``meddifffm info --json``: the last JSON object with ``"models"``, on one
    line or pretty-printed over several; other lines are ignored. Raises ``ValueError`` when there
    is none."""
    decoder = json.JSONDecoder()
    payload = None
    offset = 0
    for line in stdout.splitlines(keepends=True):
        if line.lstrip().startswith("{"):
            start = offset + len(line) - len(line.lstrip())
            try:
                candidate, _end = decoder.raw_decode(stdout, start)
            except ValueError:
                candidate = None
            if isinstance(candidate, dict) and "models" in candidate:
                payload = candidate
        offset += len(line)
    if payload is None:
        raise ValueError(_("'meddifffm info --json' printed no model list."))
    return LibraryInfo(
        version=str(payload.get("version") or ""),
        torch=str(payload.get("torch") or ""),
        devices=[str(d) for d in payload.get("devices") or []],
        models=[ModelInfo.fromJson(m) for m in payload.get("models") or [] if isinstance(m, dict)],
    )


# Seconds per million voxels and per sampling step for the paper-size model. Rough figures that
# a model card may override with "seconds_per_megavoxel_step": {"cpu": ..., "cuda": ...}.
DEFAULT_SECONDS_PER_MEGAVOXEL_STEP = {"cpu": 6.0, "cuda": 0.05, "mps": 0.6}
DEFAULT_STEPS = 50


def estimateSeconds(voxels: int, steps: Optional[int], device: str, model: Optional[ModelInfo] = None) -> float:
    """A rough run time in seconds for a volume of ``voxels`` voxels (``device``: ``"cpu"``,
    ``"cuda"`` or ``"mps"``)."""
    config = (model.config if model else {}) or {}
    if not steps:
        steps = int(config.get("default_steps") or config.get("num_inference_steps") or DEFAULT_STEPS)
    rates = dict(DEFAULT_SECONDS_PER_MEGAVOXEL_STEP)
    rates.update(config.get("seconds_per_megavoxel_step") or {})
    rate = float(rates.get(device, rates["cpu"]))
    return 2.0 + voxels / 1.0e6 * steps * rate


def formatDuration(seconds: float) -> str:
    if seconds < 90:
        return _("about {n} s").format(n=int(max(1, round(seconds))))
    minutes = seconds / 60.0
    if minutes < 90:
        return _("about {n} min").format(n=int(round(minutes)))
    return _("about {n:.1f} h").format(n=minutes / 60.0)
