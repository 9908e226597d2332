"""Dataset manifests: which CT volumes to train on, with their region, labels, lesion masks and split.

A manifest is JSON (or CSV with the same column names)::

    {
      "name": "my-ct",
      "data_root": "relative/to/this/file/or/absolute",      (optional; --data-root overrides it)
      "sources": {"lidc": "TCIA LIDC-IDRI, CC BY 3.0"},     (optional: attribution per source key)
      "cases": [
        {"id": "case001", "image": "ct/case001.nii.gz", "region": "chest", "split": "train",
         "anatomy": "labels/case001.nii.gz", "anatomy_remap": {"1": 52},
         "lesion": "lesions/case001.nii.gz", "source": "lidc"}
      ]
    }

``image`` is any volume SimpleITK reads or a DICOM series folder; ``region`` is one of the model's
regions or null/empty (unknown); ``split`` is ``train`` or ``val``; ``anatomy`` (a label map,
TotalSegmentator ids) and ``lesion`` (a binary mask) are optional and may lie on another grid than
the image (they are resampled by physical position). ``anatomy_remap`` maps label values of that
file to the ids the model uses (e.g. a binary aorta mask to TotalSegmentator's aorta id 52).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from ..errors import InputError

SPLITS = ("train", "val")
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class ManifestError(InputError):
    """The training manifest is unusable (missing file, bad field, unknown region, empty split)."""


@dataclass
class CaseEntry:
    """One volume of a manifest, with absolute paths."""

    id: str
    image: Path
    split: str = "train"
    region: Optional[str] = None
    anatomy: Optional[Path] = None
    lesion: Optional[Path] = None
    anatomy_remap: dict[int, int] = field(default_factory=dict)
    source: str = ""

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "image": str(self.image),
            "split": self.split,
            "region": self.region,
            "anatomy": str(self.anatomy) if self.anatomy else None,
            "lesion": str(self.lesion) if self.lesion else None,
            "anatomy_remap": {str(k): v for k, v in self.anatomy_remap.items()},
            "source": self.source,
        }


@dataclass
class Manifest:
    """A parsed, checked manifest."""

    name: str
    path: Path
    data_root: Path
    cases: list[CaseEntry]
    sources: dict[str, str] = field(default_factory=dict)

    def split(self, name: str) -> list[CaseEntry]:
        return [c for c in self.cases if c.split == name]

    def attribution(self, case: CaseEntry) -> str:
        return self.sources.get(case.source, case.source)


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in ("", "null", "none", "None"))


def _read_rows(path: Path) -> tuple[dict, list[dict]]:
    if not path.is_file():
        raise ManifestError(f"The manifest '{path}' does not exist.")
    text = path.read_text()
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if rows and "image" not in rows[0]:
            raise ManifestError(f"The CSV manifest '{path}' needs an 'image' column (columns found: "
                                f"{', '.join(rows[0])}).")
        return {}, rows
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as error:
        raise ManifestError(f"The manifest '{path}' is not valid JSON ({error}).") from error
    if isinstance(doc, list):
        return {}, doc
    if not isinstance(doc, dict) or not isinstance(doc.get("cases"), list):
        raise ManifestError(f"The manifest '{path}' must be a JSON object with a 'cases' list (or a CSV file).")
    return doc, doc["cases"]


def load_manifest(
    path: str | Path,
    data_root: Optional[str | Path] = None,
    regions: Sequence[str] = ("head_neck", "chest", "abdomen"),
    check_files: bool = True,
    require_splits: Sequence[str] = ("train",),
) -> Manifest:
    """Read and check a manifest; raise :class:`ManifestError` naming every problem found.

    Relative paths are resolved against ``data_root`` (argument), else the manifest's ``data_root``
    (itself relative to the manifest's folder), else the manifest's folder.
    """
    path = Path(path).expanduser().resolve()
    doc, rows = _read_rows(path)
    if data_root is not None:
        root = Path(data_root).expanduser().resolve()
    elif doc.get("data_root"):
        root = (path.parent / str(doc["data_root"])).resolve()
    else:
        root = path.parent
    if check_files and not root.is_dir():
        raise ManifestError(f"The data root '{root}' of manifest '{path.name}' does not exist; pass --data-root.")
    problems: list[str] = []
    cases: list[CaseEntry] = []
    seen: set[str] = set()
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or _blank(row.get("image")):
            problems.append(f"case #{number} has no 'image'")
            continue
        image = root / str(row["image"])
        case_id = str(row.get("id") or "").strip() or re.sub(r"(\.nii)?(\.gz)?$|\.nrrd$|\.mha$", "", image.name)
        case_id = re.sub(r"[^A-Za-z0-9_.-]", "_", case_id)
        label = f"case '{case_id}'"
        if case_id in seen:
            problems.append(f"{label} appears twice (ids must be unique)")
        seen.add(case_id)
        split = str(row.get("split") or "train").strip().lower()
        if split not in SPLITS:
            problems.append(f"{label} has split '{split}'; use one of {', '.join(SPLITS)}")
        region = None if _blank(row.get("region")) else str(row["region"]).strip()
        if region is not None and region not in regions:
            problems.append(f"{label} has unknown region '{region}'; use one of {', '.join(regions)} or null (unknown)")
        anatomy = None if _blank(row.get("anatomy")) else root / str(row["anatomy"])
        lesion = None if _blank(row.get("lesion")) else root / str(row["lesion"])
        remap_raw = row.get("anatomy_remap") or {}
        if isinstance(remap_raw, str):
            try:
                remap_raw = json.loads(remap_raw) if remap_raw.strip() else {}
            except json.JSONDecodeError:
                problems.append(f"{label} has an anatomy_remap that is not JSON")
                remap_raw = {}
        try:
            remap = {int(k): int(v) for k, v in dict(remap_raw).items()}
        except (TypeError, ValueError):
            problems.append(f"{label} has an anatomy_remap that is not a mapping of integers")
            remap = {}
        if any(not 0 <= v <= 255 for v in remap.values()):
            problems.append(f"{label} remaps anatomy labels outside 0..255")
        if check_files:
            for what, file in (("image", image), ("anatomy", anatomy), ("lesion", lesion)):
                if file is not None and not file.exists():
                    problems.append(f"{label}: the {what} file '{file}' does not exist")
        cases.append(CaseEntry(case_id, image, split, region, anatomy, lesion, remap, str(row.get("source") or "")))
    if not rows:
        problems.append("it lists no cases")
    for split in require_splits:
        if rows and not any(c.split == split for c in cases):
            problems.append(f"its '{split}' split is empty")
    if problems:
        shown = problems[:12] + ([f"... and {len(problems) - 12} more"] if len(problems) > 12 else [])
        raise ManifestError(f"The manifest '{path}' has problems: " + "; ".join(shown) + ".")
    sources = {str(k): str(v) for k, v in dict(doc.get("sources") or {}).items()}
    return Manifest(str(doc.get("name") or path.stem), path, root, cases, sources)
