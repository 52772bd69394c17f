"""Flag 16 (``OUT_OF_RANGE``): sources measured outside what the networks saw in training.

The shipped networks learnt from the simulator's random catalogues
(`~deepfocus.simulation.catalog.random_catalog`): intrinsic major axes up to
`~deepfocus.simulation.catalog.WIDE_MAJOR_BEAMS` beams, line FWHMs within
`~deepfocus.simulation.catalog.WIDE_LINE_WIDTH_CHANNELS` channels and per-channel peak S/N
within `~deepfocus.simulation.catalog.WIDE_SNR_RANGE`. A source measured outside these ranges
is flagged: its measurements are extrapolations of the networks (and of thresholds chosen on
such catalogues), to be checked by eye.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np

from ..io.catalog import SourceFlag
from ..simulation.catalog import WIDE_LINE_WIDTH_CHANNELS, WIDE_MAJOR_BEAMS, WIDE_SNR_RANGE

__all__ = ["out_of_training_range", "flag_out_of_range"]


def out_of_training_range(table, *, beam_major, channel_width):
    """Which rows of a catalogue lie outside the training catalogues' ranges.

    Parameters
    ----------
    table : `~astropy.table.QTable`
        With ``fwhm_major`` (angle), ``line_width`` (velocity) and ``snr``; a missing column
        is not tested.
    beam_major : `~astropy.units.Quantity`
        The beam's major axis (FWHM, angle): one, or one per row.
    channel_width : `~astropy.units.Quantity`
        The channel width (velocity).

    Returns
    -------
    outside : `numpy.ndarray`
        Boolean, one per row: major axis beyond ``WIDE_MAJOR_BEAMS[1]`` beams, line FWHM outside
        ``WIDE_LINE_WIDTH_CHANNELS`` channels, or S/N outside ``WIDE_SNR_RANGE``.
    """
    outside = np.zeros(len(table), dtype=bool)
    if "fwhm_major" in table.colnames:
        major = (u.Quantity(table["fwhm_major"]) / beam_major).to_value(u.one)
        outside |= major > WIDE_MAJOR_BEAMS[1]
    if "line_width" in table.colnames:
        width = (u.Quantity(table["line_width"]) / abs(channel_width)).to_value(u.one)
        outside |= (width < WIDE_LINE_WIDTH_CHANNELS[0]) | (width > WIDE_LINE_WIDTH_CHANNELS[1])
    if "snr" in table.colnames:
        snr = np.asarray(table["snr"], dtype=float)
        outside |= (snr < WIDE_SNR_RANGE[0]) | (snr > WIDE_SNR_RANGE[1])
    return outside


def flag_out_of_range(table, frame):
    """Set flag 16 on the rows `out_of_training_range` finds and clear it on the others.

    Parameters
    ----------
    table : `~astropy.table.QTable`
        A characterised catalogue (``flags``, ``z_min`` and ``z_max`` at least); modified in
        place.
    frame : `~deepfocus.io.cube.PreparedCube`
        The cube it was measured in: each row's size is compared with the beam of its line's
        middle channel.

    Returns
    -------
    table : `~astropy.table.QTable`
        ``table`` itself.
    """
    beams = []
    for row in table:
        lo, hi = frame.line_channels(row["z_min"], row["z_max"])
        beams.append(frame.beams[(lo + hi) // 2].major.to_value(u.arcsec))
    outside = out_of_training_range(
        table, beam_major=np.asarray(beams) * u.arcsec, channel_width=frame.channel_velocity_width
    )
    bit = int(SourceFlag.OUT_OF_RANGE)
    flags = np.asarray(table["flags"], dtype=np.int32)
    table["flags"] = ((flags & ~bit) | np.where(outside, bit, 0)).astype(np.int32)
    return table
