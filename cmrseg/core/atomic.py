"""Atomic, durable writes: a result either exists complete or not at all, also after a crash."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_dir", "atomic_path", "fsync_tree"]


def _fsync(path: Path) -> None:
    """Flush a file or a folder entry to disk (folders: the names of their entries)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: str | os.PathLike[str]) -> None:
    """``fsync`` a file, or every file and folder below (and including) a folder."""
    root = Path(path)
    if root.is_dir():
        for folder, _, files in os.walk(root):
            for name in files:
                _fsync(Path(folder) / name)
            _fsync(Path(folder))
    else:
        _fsync(root)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` and move it into place on success.

    The temporary file lives in the destination folder so that the final ``os.replace`` is
    atomic on POSIX file systems; it is ``fsync``-ed before the rename and the folder after it,
    so a power loss leaves the old file or the new one, never a torn one. On any exception the
    temporary file is removed and an existing file at ``path`` is left untouched.

    Args:
        path: Final destination. Its parent folder is created if needed.

    Yields:
        A path to write to; it does not exist yet when yielded.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, final)
        _fsync(final.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``path`` whose files appear at ``path`` only together.

    On success every file written into the temporary folder is ``fsync``-ed and moved into
    ``path`` (created if needed) by one rename per file, after all of them are complete; files
    of ``path`` that the temporary folder does not hold are kept; a sub-folder replaces the one
    of its name in ``path`` as a whole (the old one is moved aside, then removed). When ``path``
    does not exist yet, the whole folder is renamed into place at once. On any exception the
    temporary folder is removed and ``path`` is left as it was.

    Args:
        path: Destination folder.

    Yields:
        An empty temporary folder to write the results into.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent))
    try:
        yield tmp
        fsync_tree(tmp)
        if not final.exists():
            os.replace(tmp, final)
        else:
            items = sorted(tmp.iterdir())
            aside = Path(tempfile.mkdtemp(dir=tmp))  # replaced sub-folders; removed with tmp
            for item in items:
                if item.is_dir() and (final / item.name).is_dir():
                    os.replace(final / item.name, aside / item.name)
                os.replace(item, final / item.name)
            _fsync(final)
        _fsync(final.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
