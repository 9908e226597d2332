"""Durable, verified, atomic writes: the one place every file or folder the project writes goes through.

A write is published under its name only when it is known to be complete:

1. the content goes to a temporary name in the target's own folder (same disk, so the rename is atomic);
2. the writer's own result is checked, and a ``verify`` callable reads the temporary file back (for
   volumes: the same complete-read check that inputs get, because ITK's NIfTI writer reports a full disk
   on stderr and returns as if it had succeeded);
3. the file (or every file of a folder) and its folder are fsync'ed: a page-cache write can still fail
   for lack of space at that point, and a rename is only durable once the folder's entry is on disk;
4. then the rename, and an fsync of the parent folder.

On any failure the temporary is removed and a :class:`WriteError` (one paragraph: what, where, why,
what to do) is raised; a cancel or Ctrl-C also removes it. Pure standard library: the GPU image and
the training tools use it without SimpleITK.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple, Union

from ..errors import WriteError
from .permissions import make_shareable

PathLike = Union[str, os.PathLike]


def _fsync(path: Path, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:
            return  # e.g. Windows cannot open a folder; its renames are durable by themselves
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if not directory or exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def sync_tree(path: Path) -> None:
    """fsync ``path`` (a file, or a folder with every file under it) and the folder entries."""
    path = Path(path)
    if path.is_dir():
        for root, _dirs, files in os.walk(path):
            for name in files:
                _fsync(Path(root) / name)
            _fsync(Path(root), directory=True)
    else:
        _fsync(path)


def free_bytes(folder: PathLike) -> Optional[int]:
    """Bytes free for this user in ``folder``'s file system, or None when it cannot be told."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


# Less free space than this after a failed write names the full disk as the likely cause.
_NEARLY_FULL = 4 * 2**20


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def check_free_space(folder: PathLike, needed: int, what: str) -> None:
    """Refuse up front (WriteError) when ``folder`` has measurably less free space than ``needed`` bytes."""
    free = free_bytes(folder)
    if free is not None and needed > free:
        raise WriteError(
            f"Not enough free space for {what}: it needs at least {_mib(needed)} and '{folder}' has "
            f"{_mib(free)} free. Free some space or choose an output folder on another disk. Nothing was written."
        )


def write_error(what: str, folder: PathLike, exc: BaseException, detail: str = "") -> WriteError:
    """One paragraph naming what could not be written, where, and why (a full disk named as such)."""
    number = getattr(exc, "errno", None)
    if number == errno.ENOSPC or "no space" in str(exc).lower():
        free = free_bytes(folder)
        reason = "the disk is full" + (f" ({_mib(free)} free)" if free is not None else "")
    elif number == errno.EFBIG:
        reason = "the file is larger than this file system or the process's file-size limit allows"
    elif number in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "the folder is not writable"
    else:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = getattr(exc, "strerror", None) or (lines[-1][:200] if lines else type(exc).__name__)
        free = free_bytes(folder)
        if free is not None and free < _NEARLY_FULL:
            reason += f"; the disk looks full ({_mib(free)} free)"
    extra = f"; {detail}" if detail else ""
    return WriteError(
        f"Could not write {what} into '{folder}': {reason}{extra}. Free some space or choose another folder "
        "(and check that it is writable). Nothing was left under the output's name."
    )


def _temporary_name(target: Path) -> Path:
    return target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:
            pass


def _publish_folder(tmp: Path, target: Path, *, replace_folder: bool = False) -> None:
    """Move the finished, verified ``tmp`` (file or folder, same parent) to ``target`` durably.

    ``replace_folder``: an existing folder at ``target`` is moved aside first and removed after, so
    that readers never see a mix of the two.
    """
    make_shareable(tmp)
    sync_tree(tmp)
    if replace_folder and target.is_dir():
        backup = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(target, backup)
        os.replace(tmp, target)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(tmp, target)
    _fsync(target.parent, directory=True)


@dataclass
class Staged:
    """A write that is complete, verified and fsync'ed under temporary names in the target's folder,
    waiting to take its name: :meth:`publish` renames it into place, :meth:`discard` removes it.

    Staging every output of a command first and publishing them together means a failure on the
    last one leaves none of them in place.
    """

    target: Path
    tmp: Path  # the temporary file or folder (removed by discard)
    moves: List[Tuple[Path, Path]] = field(default_factory=list)  # (temporary, final), renamed in order
    what: str = ""

    def publish(self) -> Path:
        try:
            for source, final in self.moves:
                if final.is_dir() and source.is_dir():
                    final.rmdir()  # an empty DICOM folder the user named (checked when planned)
                os.replace(source, final)
            for folder in {final.parent for _, final in self.moves}:
                _fsync(folder, directory=True)
        except OSError as exc:
            self.discard()
            raise write_error(self.what or f"'{self.target.name}'", self.target.parent, exc) from None
        self.discard()  # what is left: an emptied temporary folder
        return self.target

    def discard(self) -> None:
        if self.tmp.exists():
            _remove(self.tmp)


def stage_file(
    target: PathLike,
    write: Callable[[Path], None],
    *,
    verify: Optional[Callable[[Path], None]] = None,
    what: Optional[str] = None,
) -> Staged:
    """Write ``target``'s content through ``write(tmp)``, check it with ``verify(tmp)`` (both may raise)
    and fsync it; returns the :class:`Staged` write. OSErrors (a full disk...) become a
    :class:`WriteError`; any failure or interrupt leaves nothing behind."""
    target = Path(target)
    label = what or f"'{target.name}'"
    tmp = _temporary_name(target)
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
    except OSError as exc:
        raise write_error(label, target.parent, exc) from None
    try:
        write(tmp)
        if verify is not None:
            verify(tmp)
        make_shareable(tmp)
        sync_tree(tmp)
    except OSError as exc:
        _remove(tmp)
        raise write_error(label, target.parent, exc) from None
    except BaseException:
        _remove(tmp)
        raise
    return Staged(target, tmp, [(tmp, target)], label)


def atomic_file(
    target: PathLike,
    write: Callable[[Path], None],
    *,
    verify: Optional[Callable[[Path], None]] = None,
    what: Optional[str] = None,
) -> Path:
    """:func:`stage_file`, then publish at once. Returns ``target``."""
    return stage_file(target, write, verify=verify, what=what).publish()


@contextmanager
def staged_folder(target: PathLike, *, what: Optional[str] = None, replace: bool = False) -> Iterator[Path]:
    """Build a folder at a temporary name beside ``target``; published (fsync + rename) when the block
    ends without error, removed otherwise. ``replace``: an existing ``target`` folder is swapped out."""
    target = Path(target)
    label = what or f"'{target.name}'"
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as exc:
        raise write_error(label, target.parent, exc) from None
    try:
        yield tmp
        _publish_folder(tmp, target, replace_folder=replace)
    except OSError as exc:
        _remove(tmp)
        raise write_error(label, target.parent, exc) from None
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_bytes(path: PathLike, writer: Callable[[Path], None],
                       verify: Optional[Callable[[Path], None]] = None) -> None:
    """Like :func:`atomic_file`, creating ``path``'s folder first (caches, training runs)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(f"'{path.name}'", path.parent, exc) from None
    atomic_file(path, writer, verify=verify)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write a text file durably and atomically (its content read back and compared)."""
    data = text.encode("utf-8")

    def verify(tmp: Path) -> None:
        if tmp.read_bytes() != data:
            raise OSError(errno.EIO, "the file read back differs from what was written")

    atomic_write_bytes(path, lambda p: p.write_bytes(data), verify)
