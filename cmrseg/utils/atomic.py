"""Atomic file writing: a result either exists complete or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` and move it into place on success.

    The temporary file lives in the destination folder so that the final ``os.replace``
    is atomic on POSIX file systems. On any exception the temporary file is removed and
    an existing file at ``path`` is left untouched.

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
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
