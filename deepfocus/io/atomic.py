"""Atomic file output: write to a temporary file beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_path", "refuse_clobbering"]


def refuse_clobbering(outputs, inputs=None):
    """Check that no output would replace an input file or another output.

    Parameters
    ----------
    outputs : dict
        ``{label: path or None}`` of the files to write (labels such as ``"--output"`` name them
        in the message).
    inputs : dict, optional
        ``{label: path or None}`` of the files read (arrays and other objects are ignored).

    Raises
    ------
    deepfocus.exceptions.InvalidInputError
        Naming the two labels and the path where two of them are the same file.
    """
    from ..exceptions import InvalidInputError

    def files(named):
        return [(k, Path(v)) for k, v in (named or {}).items() if isinstance(v, (str, os.PathLike))]

    readers = files(inputs)
    seen = []
    for label, path in files(outputs):
        for other, source in readers:
            if _same_file(path, source):
                raise InvalidInputError(f"{label} {path} is the input {other}: it would be overwritten")
        for other, earlier in seen:
            if _same_file(path, earlier):
                raise InvalidInputError(f"{label} and {other} are the same file {path}")
        seen.append((label, path))


def _same_file(a, b):
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


#: Suffixes that tell writers (astropy's FITS writer) to compress what they write.
COMPRESSION_SUFFIXES = (".gz", ".bz2")


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
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise NotADirectoryError(f"cannot write {path}: {blocker} is a file, not a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    # A compression suffix stays last: writers such as astropy compress by the name they write.
    compressed = path.suffix if path.suffix.lower() in COMPRESSION_SUFFIXES else ""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{compressed}", dir=path.parent)
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
