"""Atomic file output: write to a temporary file beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path, *, overwrite=True):
    """Yield a temporary path in the target's folder; rename it to ``path`` on success.

    If the block raises, the temporary file is removed and ``path`` is left untouched, so no
    half-written output is ever seen under the final name.

    Parameters
    ----------
    path : str or path-like
        Final file name.
    overwrite : bool
        Replace an existing file; if False, raise `FileExistsError`.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # writers such as astropy refuse to overwrite: give them a fresh name
    try:
        yield Path(tmp)
        # mkstemp's private mode would make outputs unreadable to others: use the umask's.
        umask = os.umask(0)
        os.umask(umask)
        if os.path.exists(tmp):
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
