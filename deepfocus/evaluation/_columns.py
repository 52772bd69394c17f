"""Reading catalogue columns and metadata as plain numbers in known units."""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.utils.masked import Masked

from ..exceptions import InvalidInputError

__all__ = ["column_values", "require_columns", "meta_value"]

#: Units a column without a unit (or with a dimensionless one) is assumed to have.
_PIXEL_LIKE = (u.pix, u.dimensionless_unscaled)


def require_columns(table, names, what):
    """Raise `~deepfocus.exceptions.InvalidInputError` naming the columns of ``names`` that ``table`` lacks.

    Parameters
    ----------
    table : `~astropy.table.Table`
        Catalogue to check.
    names : sequence of str
        Required column names.
    what : str
        How to name the table in the message (e.g. ``"truth catalogue truth.ecsv"``).
    """
    missing = [name for name in names if name not in table.colnames]
    if missing:
        raise InvalidInputError(f"{what} lacks required column(s): {', '.join(missing)}")


def column_values(table, name, unit=None, *, what="catalogue"):
    """Values of one column as a float array, in ``unit``, with NaN where masked.

    A column without a unit, or with a dimensionless one, is taken to be in ``unit`` already
    (the DESIGN section 4 unit), so catalogues written by tools that drop units still work.

    Parameters
    ----------
    table : `~astropy.table.Table` or `~astropy.table.QTable`
        Catalogue.
    name : str
        Column name.
    unit : `~astropy.units.Unit`, optional
        Unit to convert to; None takes the values as they are (e.g. channels, S/N).
    what : str
        How to name the table in error messages.

    Returns
    -------
    values : `numpy.ndarray`
        Float array, one value per row.

    Raises
    ------
    InvalidInputError
        If the column is not numeric or its unit cannot be converted to ``unit``.
    """
    col = table[name]
    col_unit = getattr(col, "unit", None)
    if isinstance(col, Masked):
        mask = np.asarray(col.mask)
        data = np.asarray(getattr(col.unmasked, "value", col.unmasked))
    elif isinstance(col, np.ma.MaskedArray):
        mask = np.ma.getmaskarray(col)
        data = np.asarray(np.ma.getdata(col))
    else:
        mask = None
        data = np.asarray(getattr(col, "value", col))
    try:
        values = np.array(data, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"column {name!r} of the {what} is not numeric") from exc
    if values.ndim != 1:
        raise InvalidInputError(f"column {name!r} of the {what} must hold one number per row")
    if mask is not None:
        values[mask] = np.nan
    if unit is None or col_unit is None or (col_unit in _PIXEL_LIKE and unit in _PIXEL_LIKE):
        return values
    if col_unit == u.dimensionless_unscaled:
        return values
    try:
        return (values * u.Unit(col_unit)).to_value(unit)
    except (u.UnitsError, ValueError, TypeError) as exc:
        raise InvalidInputError(
            f"column {name!r} of the {what} has unit {col_unit!s}, which cannot be converted to {unit!s}"
        ) from exc


def meta_value(meta, key):
    """``meta[key]`` looked up case-insensitively (FITS tables upper-case their keys), or None."""
    if not meta:
        return None
    if key in meta:
        return meta[key]
    lower = key.lower()
    for name, value in meta.items():
        if isinstance(name, str) and name.lower() == lower:
            return value
    return None
