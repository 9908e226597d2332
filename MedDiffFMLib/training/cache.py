"""The training cache: every manifest case preprocessed once onto the model grid, stored compactly.

This module reads a cache and needs only numpy (no SimpleITK: a GPU machine trains from a prepared
cache without it); :mod:`.prepare` writes one.

``meddifffm prepare MANIFEST CACHE_DIR`` writes::

    CACHE_DIR/index.json        format, spacing, per-case shape/region/split/source, storage, sizes
    CACHE_DIR/cases/<id>.<digest>.npz  image: int16 HU on the cache grid (clipped to [-1024, 3071]), or uint8
                                codes of the case's HU window (``dtype="uint8"``, 4x smaller on disk),
                                anatomy: uint8 label map (optional), lesion: uint8 0/1 (optional)

The cache grid is the model spacing, except along axes where the image is coarser: those keep the
image's spacing (thick slices are not upsampled on disk). The sampler interpolates crops onto the
model grid, so a cache also serves models of another (coarser) spacing: the model-grid shape is
computed from the source size and spacing exactly as inference does. int16 HU is the default (the
region's window is applied when a sample is drawn, so one cache serves models with other windows). ``storage="npy"`` writes uncompressed ``.npy`` files instead, which
training memory-maps (faster crops for large volumes, bigger on disk).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .manifest import ManifestError

CACHE_FORMAT = "meddifffm-cache/1"
INDEX = "index.json"
HU_RANGE = (-1024, 3071)


# ----------------------------------------------------------------------------------------------
# Reading the cache


@dataclass
class CacheCase:
    """Index entry of one cached case."""

    id: str
    split: str
    region: Optional[str]
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    model_shape: tuple[int, int, int]
    window: Optional[tuple[float, float]]
    files: dict[str, str]
    lesion_voxels: int
    has_anatomy: bool
    source: str
    source_size_zyx: tuple[int, int, int]
    source_spacing_zyx: tuple[float, float, float]
    slab_of: Optional[str] = None
    """For a case that is a slab cut along z from a larger scan (a slab counts as its scan): that scan's id."""

    def model_shape_for(self, spacing_zyx) -> tuple[int, int, int]:
        """The shape of this image on a model grid of ``spacing_zyx`` (as inference computes it)."""
        return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(self.source_size_zyx, self.source_spacing_zyx,
                                                                        spacing_zyx))  # type: ignore[return-value]


class TrainingCache:
    """A prepared cache: the index plus an LRU of decoded case arrays (per process / data worker)."""

    def __init__(self, cache_dir: str | Path, max_cached_cases: int = 64) -> None:
        self.path = Path(cache_dir).expanduser().resolve()
        index_path = self.path / INDEX
        if not index_path.is_file():
            raise ManifestError(
                f"'{self.path}' is not a prepared training cache (no {INDEX}). "
                "Run `meddifffm prepare MANIFEST CACHE_DIR` first."
            )
        self.index = json.loads(index_path.read_text())
        if self.index.get("format") != CACHE_FORMAT:
            raise ManifestError(f"The cache '{self.path}' has format {self.index.get('format')}; "
                                f"this MedDiffFM reads {CACHE_FORMAT}. Prepare it again.")
        self.spacing_mm = tuple(float(s) for s in self.index["spacing_mm"])
        self.cases = [
            CacheCase(c["id"], c["split"], c.get("region"), tuple(c["shape"]), tuple(c["spacing_mm"]),
                      tuple(c["model_shape"]), tuple(c["window"]) if c.get("window") else None, dict(c["files"]),
                      int(c.get("lesion_voxels", 0)), bool(c.get("has_anatomy")), c.get("source", ""),
                      tuple(c["source_size_xyz"][::-1]), tuple(c["source_spacing_xyz"][::-1]), c.get("slab_of"))
            for c in self.index["cases"]
        ]
        self.max_cached_cases = max(1, int(max_cached_cases))
        self._lru: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()

    def split(self, name: str) -> list[CacheCase]:
        return [c for c in self.cases if c.split == name]

    def arrays(self, case: CacheCase) -> dict[str, np.ndarray]:
        """``image`` (int16 HU) and, when present, ``anatomy`` and ``lesion`` (uint8), (z, y, x)."""
        hit = self._lru.get(case.id)
        if hit is not None:
            self._lru.move_to_end(case.id)
            return hit
        data: dict[str, np.ndarray] = {}
        for key, rel in case.files.items():
            file = self.path / rel
            if rel.endswith(".npz"):
                if key not in data:
                    with np.load(file) as archive:
                        for name in archive.files:
                            data[name] = archive[name]
            else:
                data[key] = np.load(file, mmap_mode="r")
        self._lru[case.id] = data
        while len(self._lru) > self.max_cached_cases:
            self._lru.popitem(last=False)
        return data

    def __getstate__(self):  # data-loader workers start with an empty LRU
        state = dict(self.__dict__)
        state["_lru"] = OrderedDict()
        return state
