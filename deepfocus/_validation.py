"""Checks of arguments shared by the simulation, training and command-line modules."""

from __future__ import annotations

import numbers
import operator

import numpy as np

from .exceptions import InvalidInputError

__all__ = ["check_seed", "check_positive_int", "check_bool"]


def check_seed(seed, *, upper=None) -> int:
    """Check a random seed and return it as a Python `int`.

    Parameters
    ----------
    seed : int
        The seed: a non-negative integer (Python or numpy; not a bool, nor a float such as
        ``2.0``), as numpy's seeds are.
    upper : int, optional
        The largest seed allowed (e.g. ``2**32 - 1`` for generators seeded with 32 bits).

    Returns
    -------
    seed : int
        ``seed`` as a plain `int` (numpy integers do not serialise to JSON).

    Raises
    ------
    deepfocus.exceptions.InvalidInputError
        If ``seed`` is a bool, not an integer, negative or above ``upper``.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    if upper is not None and seed > upper:
        raise InvalidInputError(f"seed must be a non-negative integer up to {upper}, got {seed!r}")
    return operator.index(seed)


def check_positive_int(value, name) -> int:
    """``value`` as a positive Python `int`; `InvalidInputError` naming ``name`` for a bool, a
    non-integer (``2.5``, ``"2"``) or a number below 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return operator.index(value)


def check_bool(value, name) -> bool:
    """``value`` as a `bool`; `InvalidInputError` naming ``name`` for anything but True or False
    (a string such as ``"no"`` would otherwise count as True)."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidInputError(f"{name} must be True or False, got {value!r}")
    return bool(value)
