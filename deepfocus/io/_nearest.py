"""The nearest valid channel of every channel: how bad beams and blank PSF planes are filled."""

from __future__ import annotations

import numpy as np


def nearest_true(mask):
    """For every index of a 1-D boolean ``mask``, the nearest index where it is True (itself
    where it is; the earlier of two as near). ``mask`` must hold a True.

    Sorted search, not a distance matrix: channel counts reach tens of thousands.
    """
    good = np.flatnonzero(mask)
    index = np.arange(len(mask))
    after = np.clip(np.searchsorted(good, index), 0, len(good) - 1)  # first True at or after
    before = np.clip(after - 1, 0, len(good) - 1)
    closer = np.abs(good[before] - index) <= np.abs(good[after] - index)
    return np.where(closer, good[before], good[after])
