"""Complete reads: a volume file whose data is shorter than its header declares is refused.

Hand-written on purpose: ITK's NIfTI reader fills the missing part of a cut-short ``.nii`` or
``.nii.gz`` with zeros and reports success, and a gzip stream that ends early or fails its CRC is
not always reported either. So before SimpleITK reads a file we compare the bytes its header
declares with the bytes that are really there (after decompression), for NIfTI, NRRD and
MetaImage, and check every gzip/zlib stream to its end (CRC and length included). The data is
streamed in chunks, so the check needs no memory beyond one chunk.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Dict, Optional, Tuple

import numpy as np

from ..errors import InputError
from .validate import NonFinite

_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"

# Bytes per voxel of each NRRD / MetaImage element type.
_NRRD_TYPES = {
    "signed char": 1, "int8": 1, "int8_t": 1, "uchar": 1, "unsigned char": 1, "uint8": 1, "uint8_t": 1,
    "short": 2, "short int": 2, "signed short": 2, "signed short int": 2, "int16": 2, "int16_t": 2,
    "ushort": 2, "unsigned short": 2, "unsigned short int": 2, "uint16": 2, "uint16_t": 2,
    "int": 4, "signed int": 4, "int32": 4, "int32_t": 4, "uint": 4, "unsigned int": 4, "uint32": 4,
    "uint32_t": 4, "longlong": 8, "long long": 8, "long long int": 8, "signed long long": 8,
    "signed long long int": 8, "int64": 8, "int64_t": 8, "ulonglong": 8, "unsigned long long": 8,
    "unsigned long long int": 8, "uint64": 8, "uint64_t": 8, "float": 4, "double": 8,
}
_META_TYPES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
    "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8,
}


def _size_text(n: int) -> str:
    return f"{n:,} bytes"


def _short(path: Path, what: str, declared: int, found: int, detail: str = "") -> InputError:
    percent = 100.0 * found / declared if declared else 0.0
    return InputError(
        f"The file '{path}' is incomplete: its header declares {_size_text(declared)} of {what} but only "
        f"{_size_text(found)} are there ({percent:.1f} %){detail}. The file was cut short (an interrupted "
        "copy or download, or a full disk); copy or export it again. Nothing was processed."
    )


def _stream_length(handle: BinaryIO, path: Path, zlib_wrapper: bool, declared: int = 0,
                   sink: Optional[Callable[[bytes], None]] = None) -> int:
    """Decompress a gzip stream (``zlib_wrapper`` False) or a zlib stream from ``handle`` to its end
    and return the decompressed length; raise InputError when it ends early or fails its check."""
    kind = "zlib" if zlib_wrapper else "gzip"
    total = 0
    decoder = zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapper else 16 + zlib.MAX_WBITS)
    try:
        while True:
            chunk = handle.read(_CHUNK)
            if not chunk:
                break
            while chunk:
                out = decoder.decompress(chunk)
                total += len(out)
                if sink is not None:
                    sink(out)
                if not decoder.eof:
                    break
                # A gzip file may hold several members one after the other.
                chunk = decoder.unused_data
                if zlib_wrapper or not chunk.startswith(_GZIP_MAGIC):
                    chunk = b""
                    break
                decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            if decoder.eof and zlib_wrapper:
                break
        out = decoder.flush()
        total += len(out)
        if sink is not None:
            sink(out)
    except zlib.error as exc:
        reason = "fails its CRC (or length) check" if "check" in str(exc) else f"is corrupt ({exc})"
        raise InputError(
            f"The file '{path}' is damaged: its {kind}-compressed data {reason}. "
            "Copy or export it again. Nothing was processed."
        ) from None
    if not decoder.eof:
        of_declared = f" where the header declares {_size_text(declared)} of voxel data" if declared else ""
        raise InputError(
            f"The file '{path}' is incomplete: its {kind}-compressed data ends early (no end-of-stream "
            f"marker), after {_size_text(total)} of decompressed data{of_declared}. The file was cut short "
            "(an interrupted copy or download, or a full disk); copy or export it again. Nothing was processed."
        )
    return total


def _gzip_length(path: Path, declared: int, sink: Optional[Callable[[bytes], None]] = None) -> int:
    with open(path, "rb") as handle:
        return _stream_length(handle, path, zlib_wrapper=False, declared=declared, sink=sink)


class _FloatScan:
    """Feeds the voxel bytes of a stream (after ``offset`` header bytes, ``declared`` bytes long)
    to a :class:`NonFinite` scan, whatever the chunk boundaries."""

    def __init__(self, offset: int, declared: int, dtype: np.dtype, found: NonFinite) -> None:
        self.skip, self.left, self.dtype, self.found = offset, declared, dtype, found
        self.rest = b""

    def __call__(self, chunk: bytes) -> None:
        if self.skip:
            cut = min(self.skip, len(chunk))
            chunk, self.skip = chunk[cut:], self.skip - cut
        data = self.rest + chunk[: max(self.left - len(self.rest), 0)]
        usable = len(data) - len(data) % self.dtype.itemsize
        if usable:
            self.found.add(np.frombuffer(data[:usable], self.dtype))
        self.rest = data[usable:]
        self.left -= usable


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == _GZIP_MAGIC


# NIfTI float datatypes, which ITK's reader turns from NaN into 0: scanned while checking.
_NIFTI_FLOATS = {16: "f4", 64: "f8"}


@dataclass(frozen=True)
class _NiftiLayout:
    """Where a NIfTI header keeps the fields the complete-read check needs (struct formats, byte ranges)."""

    header_bytes: int
    dims: str
    dims_at: slice
    datatype_at: slice
    bitpix_at: slice
    offset: str
    offset_at: slice
    min_offset: int


# By sizeof_hdr, the header's first field: NIfTI-1 (348) and NIfTI-2 (540).
_NIFTI_LAYOUTS = {
    348: _NiftiLayout(348, "8h", slice(40, 56), slice(70, 72), slice(72, 74), "f", slice(108, 112), 352),
    540: _NiftiLayout(540, "8q", slice(16, 80), slice(12, 14), slice(14, 16), "q", slice(168, 176), 544),
}


def _nifti_header(head: bytes, path: Path) -> Tuple[int, int, Optional[np.dtype], Tuple[int, ...]]:
    """(bytes of voxel data declared, offset of the data, float dtype or None, (x, y, z) size)
    from a NIfTI-1/2 header."""
    for endian in "<>" if len(head) >= 348 else "":
        layout = _NIFTI_LAYOUTS.get(struct.unpack(endian + "i", head[:4])[0])
        if layout is not None and len(head) >= layout.header_bytes:
            dims = struct.unpack(endian + layout.dims, head[layout.dims_at])
            datatype = struct.unpack(endian + "h", head[layout.datatype_at])[0]
            bitpix = struct.unpack(endian + "h", head[layout.bitpix_at])[0]
            offset = max(int(struct.unpack(endian + layout.offset, head[layout.offset_at])[0]), layout.min_offset)
            break
    else:
        raise InputError(
            f"The file '{path}' is damaged or not really NIfTI: its header is missing or cut short "
            f"({len(head)} bytes where NIfTI needs 348 or 540). Copy or export it again. Nothing was processed."
        )
    ndim = dims[0]
    if not 1 <= ndim <= 7 or bitpix <= 0:
        return 0, offset, None, ()  # a header ITK will refuse with its own message
    voxels = 1
    for n in dims[1 : ndim + 1]:
        voxels *= max(int(n), 1)
    kind = _NIFTI_FLOATS.get(datatype)
    dtype = np.dtype(endian + kind) if kind else None
    shape = tuple(max(int(n), 1) for n in dims[1 : ndim + 1])
    return voxels * bitpix // 8, offset, dtype, shape


def _check_nifti(path: Path) -> Optional[NonFinite]:
    gz = _is_gzip(path)
    if gz:
        import gzip

        with gzip.open(path, "rb") as handle:
            try:
                head = handle.read(544)
            except (OSError, EOFError, zlib.error):
                head = b""
        if len(head) < 348:
            _gzip_length(path, 0)  # names an early end or a CRC failure before the header's shortness
    else:
        with open(path, "rb") as handle:
            head = handle.read(544)
    declared, offset, dtype, shape = _nifti_header(head, path)
    found = NonFinite(shape) if dtype is not None and declared else None
    scan = _FloatScan(offset, declared, dtype, found) if found is not None else None
    if gz:
        length = _gzip_length(path, declared, scan)
    else:
        length = path.stat().st_size
        if scan is not None:
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(_CHUNK), b""):
                    scan(chunk)
    if declared and length < offset + declared:
        raise _short(path, "voxel data", declared, max(length - offset, 0),
                     " after decompression" if gz else "")
    return found


def _text_header(path: Path, end_of_header) -> Tuple[Dict[str, str], int]:
    """Key/value lines from the start of ``path`` up to the line ``end_of_header`` accepts;
    returns the fields (lower-case keys) and the byte offset just after that line."""
    fields: Dict[str, str] = {}
    offset = 0
    with open(path, "rb") as handle:
        for raw in handle:
            offset += len(raw)
            line = raw.decode("latin-1").rstrip("\r\n")
            done, key, value = end_of_header(line)
            if key:
                fields[key] = value
            if done:
                return fields, offset
            if offset > (1 << 20):
                break
    return fields, -1


def _nrrd_line(line: str):
    if line == "":
        return True, None, None
    if line.startswith("#") or line.startswith("NRRD"):
        return False, None, None
    key, sep, value = line.partition(":=") if ":=" in line else line.partition(": ")
    return False, (key.strip().lower() if sep else None), value.strip()


def _check_nrrd(path: Path) -> None:
    fields, offset = _text_header(path, _nrrd_line)
    try:
        sizes = [int(n) for n in fields["sizes"].split()]
        item = _NRRD_TYPES[fields["type"].lower()]
    except (KeyError, ValueError):
        return  # ITK reports a header it cannot use
    declared = item
    for n in sizes:
        declared *= n
    encoding = fields.get("encoding", "raw").lower()
    data_file = fields.get("data file", fields.get("datafile"))
    if data_file is not None:
        if data_file.upper().startswith("LIST") or "%" in data_file:
            return  # several data files: ITK reads and checks them
        data_path = (path.parent / data_file) if not os.path.isabs(data_file) else Path(data_file)
        if not data_path.is_file():
            raise InputError(f"The data file '{data_path}' named in the header of '{path}' does not exist. "
                             "Keep the header and its data file together.")
        offset, source = 0, data_path
    elif offset < 0:
        return
    else:
        source = path
    skip = int(fields.get("byte skip", "0") or 0)
    if encoding == "raw":
        if skip == -1:
            return  # data at the end of the file, by definition complete
        found = source.stat().st_size - offset - skip
        if found < declared:
            raise _short(source, "voxel data", declared, max(found, 0))
    elif encoding in ("gzip", "gz"):
        with open(source, "rb") as handle:
            handle.seek(offset)
            found = _stream_length(handle, source, zlib_wrapper=False, declared=declared)
        if found < declared:
            raise _short(source, "voxel data", declared, found, " after decompression")


def _meta_line(line: str):
    key, sep, value = line.partition("=")
    key = key.strip()
    return key == "ElementDataFile", (key if sep else None), value.strip()


def _check_metaimage(path: Path) -> None:
    fields, offset = _text_header(path, _meta_line)
    fields = {k.lower(): v for k, v in fields.items()}
    try:
        sizes = [int(n) for n in fields["dimsize"].split()]
        item = _META_TYPES[fields["elementtype"].upper()]
        channels = int(fields.get("elementnumberofchannels", "1"))
        data_file = fields["elementdatafile"]
    except (KeyError, ValueError):
        return  # ITK reports a header it cannot use
    declared = item * channels
    for n in sizes:
        declared *= n
    if data_file.upper() == "LOCAL":
        source = path
    elif data_file.upper().startswith("LIST") or "%" in data_file or " " in data_file:
        return  # one file per slice: ITK reads and checks them
    else:
        source = path.parent / data_file
        offset = 0
        if not source.is_file():
            raise InputError(f"The data file '{source}' named in the header of '{path}' does not exist. "
                             "Keep the .mhd header and its data file together.")
    header_skip = int(fields.get("headersize", "0") or 0)
    if header_skip < 0:
        return  # data at the end of the file, by definition complete
    offset = max(offset, 0) + header_skip
    if fields.get("compresseddata", "false").lower() == "true":
        with open(source, "rb") as handle:
            handle.seek(offset)
            found = _stream_length(handle, source, zlib_wrapper=True, declared=declared)
        if found < declared:
            raise _short(source, "voxel data", declared, found, " after decompression")
    else:
        found = source.stat().st_size - offset
        if found < declared:
            raise _short(source, "voxel data", declared, max(found, 0))


_CHECKS = {
    ".nii": _check_nifti, ".nii.gz": _check_nifti,
    ".nrrd": _check_nrrd, ".nhdr": _check_nrrd,
    ".mha": _check_metaimage, ".mhd": _check_metaimage,
}


def check_complete_file(path: Path, ext: Optional[str]) -> Optional[NonFinite]:
    """Raise InputError when the volume file ``path`` (extension ``ext``) holds less data than
    its header declares, or a compressed stream in it ends early or fails its check.

    For float NIfTI it also returns the scan of non-finite voxels (ITK's NIfTI reader turns NaN
    into 0, so they must be counted in the file itself); the caller raises with the geometry.
    """
    check = _CHECKS.get(ext or "")
    if check is None:
        return None
    try:
        return check(Path(path))
    except OSError as exc:
        raise InputError(f"Cannot read '{path}' ({exc.strerror or exc}). Check that the file is readable.") from None

