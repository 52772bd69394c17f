"""One-to-one matching of a detected catalogue to a truth catalogue (DESIGN section 6).

A truth source and a detection may be paired when they lie within half a beam major axis (or
2 pixels if that is larger) of each other on the sky and their line centres are within
max(truth line FWHM, 2) channels. Among the allowed pairs the assignment is one-to-one and
optimal (Hungarian algorithm, `scipy.optimize.linear_sum_assignment`): it matches as many
pairs as possible and, among such assignments, minimises the summed normalised distance
``separation / position_tolerance + |dz| / spectral_tolerance``. Greedy nearest-neighbour
matching can steal a detection from the only truth source it could serve; this cannot.
"""

from __future__ import annotations

from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.table import QTable
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ..exceptions import InvalidInputError
from ._columns import column_values, meta_value, require_columns

__all__ = [
    "MatchResult",
    "match_catalogs",
    "matched_table",
    "MIN_POSITION_TOLERANCE",
    "MIN_SPECTRAL_TOLERANCE",
]

#: Smallest position tolerance (pixels).
MIN_POSITION_TOLERANCE = 2.0
#: Smallest line-centre tolerance (channels).
MIN_SPECTRAL_TOLERANCE = 2.0

#: Columns needed for matching.
POSITION_COLUMNS = ("x_centroid", "y_centroid", "z_centroid")


@dataclass(frozen=True)
class MatchResult:
    """Outcome of `match_catalogs`.

    Attributes
    ----------
    truth_index, catalog_index : `numpy.ndarray` of int
        Row indices of the matched pairs in the truth and detected catalogues, ordered by truth row.
    unmatched_truth : `numpy.ndarray` of int
        Truth rows left without a detection (missed sources).
    unmatched_catalog : `numpy.ndarray` of int
        Detected rows left without a truth source (false detections).
    separation : `numpy.ndarray`
        Position error of each matched pair (pixels).
    spectral_offset : `numpy.ndarray`
        Detected minus true line centre of each matched pair (channels).
    position_tolerance : float
        Largest allowed separation (pixels): max(beam major / 2, 2).
    spectral_tolerance : `numpy.ndarray`
        Largest allowed line-centre offset of each truth row (channels): max(line FWHM, 2).
    beam_major : float
        Beam major axis used (pixels).
    channel_velocity_width : float
        Channel width used to turn line widths into channels (km/s).
    """

    truth_index: np.ndarray
    catalog_index: np.ndarray
    unmatched_truth: np.ndarray
    unmatched_catalog: np.ndarray
    separation: np.ndarray
    spectral_offset: np.ndarray
    position_tolerance: float
    spectral_tolerance: np.ndarray
    beam_major: float
    channel_velocity_width: float

    @property
    def n_matched(self) -> int:
        """Number of matched pairs."""
        return len(self.truth_index)

    @property
    def n_truth(self) -> int:
        """Number of truth sources."""
        return len(self.truth_index) + len(self.unmatched_truth)

    @property
    def n_catalog(self) -> int:
        """Number of detections."""
        return len(self.catalog_index) + len(self.unmatched_catalog)


def _beam_major_pixels(truth, beam_major, cell) -> float:
    """Beam major axis in pixels, from the arguments or ``truth.meta``."""
    if beam_major is None:
        meta_beam = meta_value(truth.meta, "beam_major_arcsec")
        if meta_beam is None:
            raise InvalidInputError(
                "the beam is unknown: pass beam_major (angle, or pixels) or give the truth "
                "catalogue meta 'beam_major_arcsec'"
            )
        beam_major = float(meta_beam) * u.arcsec
    if not isinstance(beam_major, u.Quantity):
        raise InvalidInputError(f"beam_major must be a Quantity (angle or pixels), got {beam_major!r}")
    if beam_major.unit.is_equivalent(u.pix):
        beam_pix = beam_major.to_value(u.pix)
    elif beam_major.unit.is_equivalent(u.deg):
        if cell is None:
            meta_cell = meta_value(truth.meta, "cell_arcsec")
            if meta_cell is None:
                raise InvalidInputError(
                    "the pixel size is unknown: pass cell (angle) or give the truth catalogue "
                    "meta 'cell_arcsec'"
                )
            cell = float(meta_cell) * u.arcsec
        if not (isinstance(cell, u.Quantity) and cell.unit.is_equivalent(u.deg)):
            raise InvalidInputError(f"cell must be an angle Quantity, got {cell!r}")
        beam_pix = (beam_major / cell).to_value(u.dimensionless_unscaled)
    else:
        raise InvalidInputError(f"beam_major must be an angle or pixels, got unit {beam_major.unit}")
    beam_pix = float(np.abs(beam_pix))
    if not np.isfinite(beam_pix) or beam_pix <= 0:
        raise InvalidInputError(f"beam major axis must be positive and finite, got {beam_pix} pixels")
    return beam_pix


def _channel_width_kms(truth, channel_velocity_width) -> float:
    """Channel width in km/s, from the argument or ``truth.meta``."""
    if channel_velocity_width is None:
        meta_width = meta_value(truth.meta, "channel_velocity_width_kms")
        if meta_width is None:
            raise InvalidInputError(
                "the channel width is unknown: pass channel_velocity_width (km/s) or give the truth "
                "catalogue meta 'channel_velocity_width_kms'"
            )
        channel_velocity_width = float(meta_width) * u.km / u.s
    width = channel_velocity_width
    if not (isinstance(width, u.Quantity) and width.unit.is_equivalent(u.m / u.s)):
        raise InvalidInputError(
            f"channel_velocity_width must be a velocity Quantity, got {channel_velocity_width!r}"
        )
    width = float(np.abs(channel_velocity_width.to_value(u.km / u.s)))
    if not np.isfinite(width) or width <= 0:
        raise InvalidInputError(f"channel width must be positive and finite, got {width} km/s")
    return width


def _positions(table, what):
    """``(x, y, z)`` float arrays (pixels, pixels, channels)."""
    return (
        column_values(table, "x_centroid", u.pix, what=what),
        column_values(table, "y_centroid", u.pix, what=what),
        column_values(table, "z_centroid", None, what=what),
    )


def _candidate_pairs(truth_xyz, cat_xyz, position_tolerance, spectral_tolerance):
    """All allowed (truth row, catalogue row) pairs with their separation and line-centre offset."""
    xt, yt, zt = truth_xyz
    xd, yd, zd = cat_xyz
    ok_t = np.flatnonzero(np.isfinite(xt) & np.isfinite(yt) & np.isfinite(zt))
    ok_d = np.flatnonzero(np.isfinite(xd) & np.isfinite(yd) & np.isfinite(zd))
    empty = np.zeros(0, dtype=int), np.zeros(0, dtype=int), np.zeros(0), np.zeros(0)
    if len(ok_t) == 0 or len(ok_d) == 0:
        return empty
    tree_t = cKDTree(np.column_stack([xt[ok_t], yt[ok_t]]))
    tree_d = cKDTree(np.column_stack([xd[ok_d], yd[ok_d]]))
    neighbours = tree_t.query_ball_tree(tree_d, r=position_tolerance * (1 + 1e-9))
    counts = np.array([len(n) for n in neighbours], dtype=int)
    if counts.sum() == 0:
        return empty
    ti = np.repeat(ok_t, counts)
    di = ok_d[np.concatenate([np.asarray(n, dtype=int) for n in neighbours])]
    sep = np.hypot(xd[di] - xt[ti], yd[di] - yt[ti])
    dz = zd[di] - zt[ti]
    keep = (sep <= position_tolerance) & (np.abs(dz) <= spectral_tolerance[ti])
    return ti[keep], di[keep], sep[keep], dz[keep]


def _assign(ti, di, cost, n_truth, n_cat):
    """Optimal one-to-one assignment of the candidate pairs, one connected group at a time.

    Within a group, pairs that are not allowed get a cost larger than any sum of allowed costs
    (each at most 2), so the assignment first maximises the number of allowed pairs, then
    minimises their summed cost; such pairs are dropped afterwards.
    """
    if len(ti) == 0:
        return np.zeros(0, dtype=int)
    graph = coo_matrix((np.ones(len(ti)), (ti, n_truth + di)), shape=(n_truth + n_cat,) * 2)
    _, labels = connected_components(graph, directed=False)
    group = labels[ti]
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])
    chosen = []
    for members in np.split(order, starts[1:]):
        rows, r_inv = np.unique(ti[members], return_inverse=True)
        cols, c_inv = np.unique(di[members], return_inverse=True)
        forbidden = 4.0 * (min(len(rows), len(cols)) + 1)
        matrix = np.full((len(rows), len(cols)), forbidden)
        pair_of = np.full((len(rows), len(cols)), -1, dtype=int)
        matrix[r_inv, c_inv] = cost[members]
        pair_of[r_inv, c_inv] = members
        r, c = linear_sum_assignment(matrix)
        picked = pair_of[r, c]
        chosen.append(picked[picked >= 0])
    return np.concatenate(chosen)


def match_catalogs(truth, catalog, *, beam_major=None, cell=None, channel_velocity_width=None) -> MatchResult:
    """Match detected sources one-to-one to truth sources (DESIGN section 6).

    A pair is allowed when its position separation is at most max(beam major axis / 2, 2 pixels)
    and its line centres differ by at most max(truth line FWHM, 2 channels). The assignment
    matches as many allowed pairs as possible and, among those assignments, minimises the summed
    ``separation / position_tolerance + |dz| / spectral_tolerance`` (Hungarian algorithm).

    Parameters
    ----------
    truth : `~astropy.table.QTable`
        Truth catalogue with ``x_centroid``, ``y_centroid`` (pix), ``z_centroid`` (channels)
        and ``line_width`` (km/s); ``meta`` may give ``beam_major_arcsec``, ``cell_arcsec`` and
        ``channel_velocity_width_kms`` (as the simulator writes them).
    catalog : `~astropy.table.QTable` or None
        Detected catalogue with ``x_centroid``, ``y_centroid`` (pix) and ``z_centroid``
        (channels). None or a table without rows means nothing was detected.
    beam_major : `~astropy.units.Quantity`, optional
        Beam major axis FWHM, an angle (converted with ``cell``) or pixels. Default:
        ``truth.meta['beam_major_arcsec']``.
    cell : `~astropy.units.Quantity`, optional
        Pixel size (angle). Default: ``truth.meta['cell_arcsec']``.
    channel_velocity_width : `~astropy.units.Quantity`, optional
        Channel width (velocity) that turns truth line widths into channels. Default:
        ``truth.meta['channel_velocity_width_kms']``.

    Returns
    -------
    result : `MatchResult`

    Raises
    ------
    InvalidInputError
        If required columns are missing or the beam, pixel size or channel width is unknown.

    Examples
    --------
    >>> import astropy.units as u
    >>> from astropy.table import QTable
    >>> truth = QTable({"x_centroid": [10.0, 30.0] * u.pix, "y_centroid": [10.0, 30.0] * u.pix,
    ...                 "z_centroid": [5.0, 8.0], "line_width": [60.0, 60.0] * u.km / u.s})
    >>> found = QTable({"x_centroid": [30.4] * u.pix, "y_centroid": [29.8] * u.pix, "z_centroid": [8.5]})
    >>> result = match_catalogs(truth, found, beam_major=0.5 * u.arcsec, cell=0.1 * u.arcsec,
    ...                         channel_velocity_width=20 * u.km / u.s)
    >>> result.truth_index, result.catalog_index, result.unmatched_truth
    (array([1]), array([0]), array([0]))
    """
    require_columns(truth, (*POSITION_COLUMNS, "line_width"), "truth catalogue")
    beam_pix = _beam_major_pixels(truth, beam_major, cell)
    dv = _channel_width_kms(truth, channel_velocity_width)
    position_tolerance = max(0.5 * beam_pix, MIN_POSITION_TOLERANCE)
    width_chan = column_values(truth, "line_width", u.km / u.s, what="truth catalogue") / dv
    spectral_tolerance = np.fmax(np.abs(width_chan), MIN_SPECTRAL_TOLERANCE)

    n_truth = len(truth)
    n_cat = 0 if catalog is None else len(catalog)
    if n_truth and n_cat:
        require_columns(catalog, POSITION_COLUMNS, "detected catalogue")
        ti, di, sep, dz = _candidate_pairs(
            _positions(truth, "truth catalogue"),
            _positions(catalog, "detected catalogue"),
            position_tolerance,
            spectral_tolerance,
        )
        cost = sep / position_tolerance + np.abs(dz) / spectral_tolerance[ti]
        picked = _assign(ti, di, cost, n_truth, n_cat)
        order = picked[np.argsort(ti[picked], kind="stable")]
        ti, di, sep, dz = ti[order], di[order], sep[order], dz[order]
    else:
        ti = di = np.zeros(0, dtype=int)
        sep = dz = np.zeros(0)
    return MatchResult(
        truth_index=ti,
        catalog_index=di,
        unmatched_truth=np.setdiff1d(np.arange(n_truth), ti),
        unmatched_catalog=np.setdiff1d(np.arange(n_cat), di),
        separation=sep,
        spectral_offset=dz,
        position_tolerance=position_tolerance,
        spectral_tolerance=spectral_tolerance,
        beam_major=beam_pix,
        channel_velocity_width=dv,
    )


def matched_table(truth, catalog, result=None, **match_kwargs) -> QTable:
    """The matched pairs side by side, for plots of measured against true values.

    Parameters
    ----------
    truth : `~astropy.table.QTable`
        Truth catalogue.
    catalog : `~astropy.table.QTable` or None
        Detected catalogue.
    result : `MatchResult`, optional
        A matching already made; if None, `match_catalogs` is called with ``match_kwargs``.
    **match_kwargs
        Passed to `match_catalogs`.

    Returns
    -------
    table : `~astropy.table.QTable`
        One row per matched pair: ``truth_index`` and ``catalog_index`` (row numbers), every
        truth column prefixed ``true_``, every detected column prefixed ``det_`` (units kept),
        ``separation`` (pix) and ``z_offset`` (detected minus true line centre, channels).
    """
    if result is None:
        result = match_catalogs(truth, catalog, **match_kwargs)
    table = QTable()
    table["truth_index"] = result.truth_index
    table["catalog_index"] = result.catalog_index
    for name in truth.colnames:
        table[f"true_{name}"] = truth[name][result.truth_index]
    if catalog is not None:
        for name in catalog.colnames:
            table[f"det_{name}"] = catalog[name][result.catalog_index]
    table["separation"] = result.separation * u.pix
    table["z_offset"] = result.spectral_offset
    table.meta["position_tolerance_pix"] = result.position_tolerance
    table.meta["beam_major_pix"] = result.beam_major
    table.meta["channel_velocity_width_kms"] = result.channel_velocity_width
    return table
