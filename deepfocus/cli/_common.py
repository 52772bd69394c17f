"""Argument types shared by the subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["positive_int", "positive_float", "refuse_existing", "check_fits_names", "FITS_SUFFIXES"]

#: Suffixes of the FITS files the commands write (each may be followed by ``.gz`` or ``.bz2``, which
#: astropy compresses by).
FITS_SUFFIXES = (".fits", ".fit", ".fts")


def positive_int(text):
    """An ``argparse`` type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text):
    """An ``argparse`` type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def spectral_channels(text):
    """An ``argparse`` type: a number of channels of a spectral cube (>= 2)."""
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"a spectral cube needs at least 2 channels, got {text}")
    return value


def positive_float(text):
    """An ``argparse`` type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def refuse_existing(outputs, overwrite):
    """Check, before any work, that the outputs can be written without replacing a file by surprise.

    Parameters
    ----------
    outputs : dict or iterable of tuple
        ``{label: path or None}`` (or ``(label, path)`` pairs) of the files to write (labels such
        as ``"--json"`` name them in the message).
    overwrite : bool
        Whether ``--overwrite`` was given: existing files may then be replaced.

    Raises
    ------
    deepfocus.exceptions.InvalidInputError
        If an output is a folder (even with ``overwrite``), or exists and ``overwrite`` is False.
    """
    from ..exceptions import InvalidInputError

    pairs = outputs.items() if isinstance(outputs, dict) else outputs
    named = [(label, Path(path)) for label, path in pairs if path is not None]
    for label, path in named:
        if path.is_dir():
            raise InvalidInputError(f"{label} {path} is a folder, not a file")
    existing = [f"{label} {path}" for label, path in named if path.exists()]
    if existing and not overwrite:
        raise InvalidInputError(f"output exists: {', '.join(existing)} (use --overwrite)")


def check_fits_names(outputs):
    """Check that the FITS outputs have a FITS suffix (`FITS_SUFFIXES`, optionally ``.gz``/``.bz2``).

    Parameters
    ----------
    outputs : dict
        ``{label: path or None}`` of the FITS files to write.

    Raises
    ------
    deepfocus.exceptions.InvalidInputError
        Naming the first output whose name does not end in a FITS suffix.
    """
    from ..exceptions import InvalidInputError
    from ..io.atomic import COMPRESSION_SUFFIXES

    endings = tuple(s + c for s in FITS_SUFFIXES for c in ("", *COMPRESSION_SUFFIXES))
    for label, path in outputs.items():
        if path is not None and not Path(path).name.lower().endswith(endings):
            raise InvalidInputError(
                f"{label} {path}: not a FITS file name (use {', '.join(FITS_SUFFIXES)}, optionally "
                f"followed by {' or '.join(COMPRESSION_SUFFIXES)})"
            )
