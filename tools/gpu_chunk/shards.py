"""Cache shards: a prepared cache split into smaller caches that each travel to a GPU lease.

Every shard is itself a prepared cache (same ``index.json`` format, a subset of the cases), so the
trainer reads one like any cache. The training cases are packed into the fewest shards under the
size limit (largest first, each into the emptiest shard, so shards come out about equally full);
every shard also holds all the validation cases, so the validation loss of every chunk is measured
on the same held-out data. Chunk ``k`` trains shard ``k mod n``: after ``n`` chunks every training
case has been seen, and the shards' similar sizes give each case about the same share of steps.

No SimpleITK here: the files are copied (hard-linked when possible) from the prepared cache. With
``lzma=True`` the ``.npz`` files are re-packed with LZMA instead of zlib (about a fifth smaller on CT
codes; ``numpy.load`` reads both, decoding LZMA a little slower), once, into ``OUT/_lzma``.

A training case larger than a whole shard (a chest CT at 1 mm) is either refused, left out
(``leave_out_oversized``) or, with ``split_oversized``, cut along z into slabs written to
``OUT/_slabs``: each slab is a case of its own (``<id>.slabKofN``, with ``slab_of`` naming the scan), as
a scan cropped to those slices would be, and the slabs are packed like any other case.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

from MedDiffFMLib.io.durable import atomic_write_bytes, atomic_write_text
from MedDiffFMLib.training.cache import INDEX, TrainingCache
from MedDiffFMLib.training.manifest import ManifestError

SHARDS_JSON = "shards.json"
SLAB_MARK = ".slab"


def _recompress_lzma(src: Path, dst: Path) -> None:
    if dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime:
        return
    def recompress(tmp: Path) -> None:
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_LZMA) as zout:
            for info in zin.infolist():
                zout.writestr(info.filename, zin.read(info.filename))

    atomic_write_bytes(dst, recompress)


def _case_bytes(cache: Path, entry: dict) -> int:
    return sum((cache / rel).stat().st_size for rel in set(entry["files"].values()))


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _zip_arrays(path: Path, arrays: dict[str, np.ndarray], lzma: bool) -> None:
    """An ``.npz`` of ``arrays`` (what ``np.savez_compressed`` writes, with LZMA when asked)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_LZMA if lzma else zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, np.ascontiguousarray(array))
            archive.writestr(f"{key}.npy", buffer.getvalue())


def split_case_z(arrays: dict[str, np.ndarray], entry: dict, parts: int, out: Path, lzma: bool) -> list[dict]:
    """Cut a cached case (its index ``entry`` and its ``arrays``, as :meth:`TrainingCache.arrays` reads
    them) along z into ``parts`` slabs of about equal thickness, written as ``out/cases/<id>.slabKofN.npz``;
    returns their index entries: the shape, the model-grid and source sizes scaled to the slab, the
    lesion voxels and anatomy labels recounted."""
    depth = int(arrays["image"].shape[0])
    parts = max(1, min(int(parts), depth))
    edges = np.linspace(0, depth, parts + 1).round().astype(int)
    slabs = []
    for number, (start, stop) in enumerate(zip(edges[:-1], edges[1:]), 1):
        slab_id = f"{entry['id']}{SLAB_MARK}{number}of{parts}"
        rel = f"cases/{slab_id}.npz"
        payload = {key: array[start:stop] for key, array in arrays.items()}
        atomic_write_bytes(out / rel, lambda path, payload=payload: _zip_arrays(path, payload, lzma))
        fraction = (stop - start) / depth
        source_size = list(entry["source_size_xyz"])
        source_size[2] = max(1, int(round(source_size[2] * fraction)))
        slab = dict(entry, id=slab_id, slab_of=entry["id"], slab_z=[int(start), int(stop)],
                    shape=[int(stop - start), *entry["shape"][1:]], files={key: rel for key in payload},
                    model_shape=[max(1, int(round(entry["model_shape"][0] * fraction))), *entry["model_shape"][1:]],
                    source_size_xyz=source_size)
        if "lesion" in payload:
            slab["lesion_voxels"] = int(np.count_nonzero(payload["lesion"]))
        if "anatomy" in payload:
            slab["anatomy_labels"] = sorted(int(v) for v in np.unique(payload["anatomy"]) if v)
        slabs.append(slab)
    return slabs


def plan_shards(index: dict, sizes: dict[str, int], max_bytes: int) -> list[list[str]]:
    """Training case ids per shard: the fewest shards whose training cases plus all validation cases
    stay under ``max_bytes`` (largest case first, into the emptiest shard). A case too large to share a
    shard with every validation case gets a shard of its own, where :func:`validation_for_shard` keeps
    the validation cases that still fit (a large chest CT at 1 mm must still be seen)."""
    val_bytes = sum(sizes[c["id"]] for c in index["cases"] if c["split"] != "train")
    train = sorted((c for c in index["cases"] if c["split"] == "train"), key=lambda c: -sizes[c["id"]])
    room = max_bytes - val_bytes
    too_big = [c["id"] for c in train if sizes[c["id"]] > max_bytes]
    if too_big:
        raise ManifestError(
            f"Cannot make shards of at most {max_bytes / 2**20:.1f} MiB: the cases {', '.join(too_big)} alone are "
            "larger. Raise the limit, hold out fewer or smaller cases, or prepare at a coarser spacing / as uint8."
        )
    alone = [[c["id"]] for c in train if sizes[c["id"]] > room]
    shared = [c for c in train if sizes[c["id"]] <= room]
    if not shared:
        return alone
    total = sum(sizes[c["id"]] for c in shared)
    count = max(1, -(-total // room))
    while True:
        bins: list[list[str]] = [[] for _ in range(count)]
        loads = [0] * count
        for case in shared:
            target = min(range(count), key=lambda i: loads[i])
            if loads[target] + sizes[case["id"]] > room:
                break
            bins[target].append(case["id"])
            loads[target] += sizes[case["id"]]
        else:
            return bins + alone
        count += 1


def validation_for_shard(train_ids: list[str], val_ids: list[str], sizes: dict[str, int], max_bytes: int) -> list[str]:
    """The validation cases a shard carries: all of them when they fit beside its training cases, else
    the smallest that fit (possibly none: that shard's chunk then trains without a validation loss)."""
    room = max_bytes - sum(sizes[i] for i in train_ids)
    if sum(sizes[i] for i in val_ids) <= room:
        return list(val_ids)
    kept = []
    for case in sorted(val_ids, key=lambda i: sizes[i]):
        if sizes[case] <= room:
            kept.append(case)
            room -= sizes[case]
    return [i for i in val_ids if i in kept]


def build_shards(cache_dir: str | Path, out_dir: str | Path, max_bytes: int, lzma: bool = False,
                 leave_out_oversized: bool = False, split_oversized: bool = False) -> dict:
    """Split the prepared cache ``cache_dir`` into shard caches ``out_dir/shard-NN``; returns the plan
    (also written to ``out_dir/shards.json``). Shards of an earlier plan are replaced.

    A training case larger than ``max_bytes`` makes this raise, unless ``split_oversized``: then it is cut
    along z into the fewest slabs that each fit beside the validation cases (or, when those leave too
    little room, in a shard), listed in the plan's ``split``; or unless ``leave_out_oversized``: then it is
    left out of every shard and listed in the plan's ``left_out`` (id and MiB), so that a chunk can still
    run when the shipped models leave little room to travel."""
    cache_dir = Path(cache_dir).expanduser().resolve()
    out_dir = Path(out_dir).expanduser().resolve()
    cache = TrainingCache(cache_dir)  # checks the format
    index = json.loads((cache_dir / INDEX).read_text())
    source = cache_dir
    if lzma:
        source = out_dir / "_lzma"
        for case in index["cases"]:
            for rel in set(case["files"].values()):
                if rel.endswith(".npz"):
                    _recompress_lzma(cache_dir / rel, source / rel)
                else:
                    _link_or_copy(cache_dir / rel, source / rel)
    origin = {rel: source for case in index["cases"] for rel in case["files"].values()}
    sizes = {c["id"]: _case_bytes(source, c) for c in index["cases"]}
    oversized = [c for c in index["cases"] if c["split"] == "train" and sizes[c["id"]] > max_bytes]
    left_out, split, cases = [], [], [c for c in index["cases"] if c not in oversized]
    slab_dir = out_dir / "_slabs"
    shutil.rmtree(slab_dir, ignore_errors=True)
    val_bytes = sum(sizes[c["id"]] for c in index["cases"] if c["split"] != "train")
    cached = {c.id: c for c in cache.cases}
    for case in oversized:
        if not split_oversized:
            if leave_out_oversized:
                left_out.append(case["id"])
                continue
            cases.append(case)  # plan_shards refuses it with its message
            continue
        # The fewest slabs that share a shard with the validation cases (else that fit a shard at all).
        room = max_bytes - val_bytes if max_bytes - val_bytes > max_bytes // 4 else max_bytes
        parts = -(-sizes[case["id"]] // room)
        while True:
            slabs = split_case_z(cache.arrays(cached[case["id"]]), case, parts, slab_dir, lzma)
            slab_sizes = {slab["id"]: _case_bytes(slab_dir, slab) for slab in slabs}
            if max(slab_sizes.values()) <= room or parts >= case["shape"][0]:
                break
            parts += 1
        for slab in slabs:
            origin.update({rel: slab_dir for rel in slab["files"].values()})
        sizes.update(slab_sizes)
        cases.extend(slabs)
        split.append({"id": case["id"], "mib": round(sizes[case["id"]] / 2**20, 2), "slabs": len(slabs)})
    bins = plan_shards(dict(index, cases=cases), sizes, max_bytes)
    if out_dir.exists():
        for old in out_dir.glob("shard-*"):
            shutil.rmtree(old)
    out_dir.mkdir(parents=True, exist_ok=True)
    val = [c for c in cases if c["split"] != "train"]
    by_id = {c["id"]: c for c in cases}
    shards = []
    for number, ids in enumerate(bins):
        name = f"shard-{number:02d}"
        kept = validation_for_shard(ids, [c["id"] for c in val], sizes, max_bytes)
        members = [by_id[i] for i in ids] + [c for c in val if c["id"] in kept]
        for case in members:
            for rel in set(case["files"].values()):
                _link_or_copy(origin[rel] / rel, out_dir / name / rel)
        total = sum(sizes[c["id"]] for c in members)
        sub = dict(index, cases=members, total_bytes=total, shard={"name": name, "number": number, "of": len(bins)},
                   sources=sorted({c["source"] for c in members if c.get("source")}))
        atomic_write_text(out_dir / name / INDEX, json.dumps(sub, indent=1))
        shards.append({"name": name, "bytes": total, "train": ids, "val": kept})
    plan = {"source_cache": str(cache_dir), "spacing_mm": index["spacing_mm"], "dtype": index.get("dtype"),
            "max_bytes": int(max_bytes), "lzma": bool(lzma), "split_oversized": bool(split_oversized),
            "shards": shards, "split": split,
            "left_out": [{"id": i, "mib": round(sizes[i] / 2**20, 2)} for i in left_out]}
    atomic_write_text(out_dir / SHARDS_JSON, json.dumps(plan, indent=1))
    return plan


def shard_for_chunk(chunk: int, count: int) -> int:
    """The shard chunk ``chunk`` (0, 1, ...) trains: a plain rotation, so n chunks see every case."""
    return int(chunk) % max(1, int(count))


def usable_shards(plan: dict, index: dict, needs_lesion: bool) -> list[int]:
    """The plan's shards a chunk can train: all of them, or for a lesion ControlNet those holding at least
    one training case with a lesion mask (a shard without one would stop the chunk on the device)."""
    if not needs_lesion:
        return list(range(len(plan["shards"])))
    with_lesion = {c["id"] for c in index["cases"] if c.get("lesion_voxels", 0) > 0}
    return [i for i, shard in enumerate(plan["shards"]) if with_lesion & set(shard["train"])]


def read_plan(out_dir: str | Path) -> Optional[dict]:
    path = Path(out_dir) / SHARDS_JSON
    return json.loads(path.read_text()) if path.is_file() else None
