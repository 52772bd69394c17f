"""The source catalogue: its columns, flag bits, validation, and ECSV / FITS / VOTable I/O.

A deepfocus catalogue is an `~astropy.table.QTable` with one row per source and the columns of
`CATALOG_COLUMNS` (DESIGN section 4), in this order:

=====================  =================  ==========================================================
column                 unit               meaning
=====================  =================  ==========================================================
``id``                 --                 source number, 1..N
``x_centroid``         pix                0-based pixel column of the centre (numpy convention)
``y_centroid``         pix                0-based pixel row of the centre
``z_centroid``         --                 0-based channel of the line centre (float)
``sky_centroid``       `SkyCoord` (ICRS)  sky position
``spectral_centroid``  spectral unit      line centre: GHz, km/s or wavelength, as the cube's axis
``z_min``, ``z_max``   --                 first and last channel of the line emission
``fwhm_major``         arcsec             intrinsic (beam-deconvolved) FWHM major axis; 0 if unresolved
``fwhm_minor``         arcsec             intrinsic FWHM minor axis; 0 if unresolved
``position_angle``     deg                major-axis position angle, east of north, in [0, 180)
``line_width``         km/s               line FWHM (radio convention)
``flux``               Jy km/s            continuum-free line flux, integrated over source and line
``continuum_flux``     Jy                 spatially integrated continuum flux density (0 if none)
``snr``                --                 peak line S/N per channel
``flags``              --                 bit mask, see below
=====================  =================  ==========================================================

Flags (`FLAG_BITS`, `SourceFlag`); a source's ``flags`` is the sum (bitwise OR) of:

=====  ===============  ===================================================================
bit    name             meaning
=====  ===============  ===================================================================
1      ``EDGE``         near the image edge or the NaN (primary-beam cut-off) border
2      ``BLENDED``      blended with a neighbour (overlapping footprint or line)
4      ``BAND_EDGE``    line cut off by the band's edge or by blank channels, or wide enough
                        to fill the band (no line-free channel for its continuum)
8      ``UNRESOLVED``   size at the resolution limit: unresolved along at least one axis
16     ``OUT_OF_RANGE`` a fit or network output lies outside the range seen in training
32     ``FIT_FALLBACK`` the forward fit failed or left the first estimate, which is kept
=====  ===============  ===================================================================

Meta keys with a fixed meaning (besides ``version``, ``date``, ``parameters``, ``models``):
``beam_major_arcsec``, ``beam_minor_arcsec`` (restoring beam FWHMs, arcsec) and ``beam_pa_deg``
(its position angle, deg east of ICRS north like ``position_angle``, but not folded into
[0, 180): the header's ``BPA`` plus the angle of the cube's north); see `BEAM_META_KEYS`.
`~deepfocus.io.catalog_to_regions` draws unresolved sources as this beam.
``velocity_convention`` (``radio``, ``optical`` or ``relativistic``: that of a velocity
``spectral_centroid``, ``radio`` if the cube's axis is no velocity) sets that column's UCD in a
VOTable. ``spectral_frame``: the cube's spectral reference frame (its ``SPECSYS``, e.g.
``LSRK``, or ``not given``), to which ``spectral_centroid`` refers.

File formats (chosen from the suffix or ``format=``):

- ECSV (``.ecsv``): everything round-trips, ``meta`` included (YAML header).
- FITS (``.fits``, ``.fit``): astropy stores ``sky_centroid`` as ``sky_centroid.ra`` /
  ``sky_centroid.dec`` columns and rebuilds the `~astropy.coordinates.SkyCoord` on reading. Meta
  scalars become header cards (long or lower-case names as ``HIERARCH`` cards) and the whole
  ``meta`` is also stored as JSON in the ``DFMETA`` card, from which `read_catalog` restores it
  exactly (FITS would otherwise upper-case short keys and drop nested dicts).
- VOTable (``.xml``, ``.vot``, ``.votable``): ``sky_centroid`` becomes ``ra`` and ``dec`` fields
  (deg, ICRS, with a ``COOSYS``); every field has a UCD and a description; meta scalars become
  ``INFO`` elements and the whole ``meta`` is stored as JSON in the ``deepfocus_meta`` ``INFO``.

Every write goes through a temporary file that is renamed onto the target only when complete.
"""

from __future__ import annotations

import enum
import json
import numbers
import re
import warnings
from pathlib import Path
from typing import NamedTuple

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import MaskedColumn, QTable, Table

from ..exceptions import InvalidInputError
from .atomic import atomic_path

__all__ = [
    "BEAM_META_KEYS",
    "CATALOG_COLUMNS",
    "FLAG_BITS",
    "OPTIONAL_COLUMNS",
    "ColumnSpec",
    "SourceFlag",
    "read_catalog",
    "validate_catalog",
    "write_catalog",
]


class ColumnSpec(NamedTuple):
    """Unit, description and IVOA UCD of one catalogue column.

    ``unit`` is the unit written by deepfocus; any unit convertible to it is accepted (for
    ``spectral_centroid`` any spectral unit: frequency, wavelength, energy or velocity).
    ``None`` means dimensionless; ``sky_centroid`` is a `~astropy.coordinates.SkyCoord`.
    """

    unit: u.UnitBase | None
    description: str
    ucd: str


CATALOG_COLUMNS = {
    "id": ColumnSpec(None, "Source number, 1..N", "meta.id;meta.main"),
    "x_centroid": ColumnSpec(
        u.pix, "0-based pixel column of the source centre", "pos.cartesian.x;instr.pixel"
    ),
    "y_centroid": ColumnSpec(u.pix, "0-based pixel row of the source centre", "pos.cartesian.y;instr.pixel"),
    "z_centroid": ColumnSpec(None, "0-based channel of the line centre", "em.freq;instr.pixel"),
    "sky_centroid": ColumnSpec(u.deg, "Sky position of the source centre (ICRS)", "pos.eq;meta.main"),
    "spectral_centroid": ColumnSpec(
        u.GHz,
        "Line centre in the kind of the cube's spectral axis: frequency (GHz), velocity (km/s, the "
        "axis's convention) or wavelength (vacuum or air, as the axis, in its unit)",
        "em.freq;spect.line",
    ),
    "z_min": ColumnSpec(None, "First channel (0-based) of the line emission", "em.freq;instr.pixel;stat.min"),
    "z_max": ColumnSpec(None, "Last channel (0-based) of the line emission", "em.freq;instr.pixel;stat.max"),
    "fwhm_major": ColumnSpec(
        u.arcsec,
        "Intrinsic (beam-deconvolved) FWHM along the major axis; 0 if unresolved",
        "phys.angSize;src",
    ),
    "fwhm_minor": ColumnSpec(
        u.arcsec,
        "Intrinsic (beam-deconvolved) FWHM along the minor axis; 0 if unresolved",
        "phys.angSize;src",
    ),
    "position_angle": ColumnSpec(
        u.deg, "Position angle of the major axis, east of north, in [0, 180)", "pos.posAng"
    ),
    "line_width": ColumnSpec(u.km / u.s, "Line FWHM (radio velocity convention)", "spect.line.width"),
    "flux": ColumnSpec(
        u.Jy * u.km / u.s,
        "Continuum-free line flux integrated over the source and the line",
        "phot.flux;spect.line",
    ),
    "continuum_flux": ColumnSpec(
        u.Jy, "Spatially integrated continuum flux density (0 if none)", "phot.flux.density;em.mm"
    ),
    "snr": ColumnSpec(None, "Peak line signal-to-noise ratio per channel", "stat.snr"),
    "flags": ColumnSpec(
        None,
        "Quality flags, a bit mask: 1 edge, 2 blended, 4 band edge, "
        "8 unresolved, 16 outside the training range, 32 forward fit not used",
        "meta.code.qual",
    ),
}

#: Columns a run may add beyond the contract's, described in the files too.
OPTIONAL_COLUMNS = {
    "filter_snr": ColumnSpec(
        None, "Matched-filter S/N of the detection (the S/N the detection threshold applies to)", "stat.snr"
    ),
    "primary_beam_gain": ColumnSpec(
        None, "Primary-beam gain at the source; flux and continuum_flux are divided by it", "instr.beam"
    ),
}

# The VOTable split of sky_centroid.
_RA_DEC_SPECS = {
    "ra": ColumnSpec(u.deg, "Right ascension of the source centre (ICRS)", "pos.eq.ra;meta.main"),
    "dec": ColumnSpec(u.deg, "Declination of the source centre (ICRS)", "pos.eq.dec;meta.main"),
}


class SourceFlag(enum.IntFlag):
    """Bits of the catalogue ``flags`` column (combine with ``|``)."""

    EDGE = 1
    BLENDED = 2
    BAND_EDGE = 4
    UNRESOLVED = 8
    OUT_OF_RANGE = 16
    FIT_FALLBACK = 32


FLAG_BITS = {
    int(SourceFlag.EDGE): "near the image edge or the NaN (primary-beam cut-off) border",
    int(SourceFlag.BLENDED): "blended with a neighbour (overlapping footprint or line)",
    int(SourceFlag.BAND_EDGE): (
        "line cut off by the band's edge (its first or last channel with data) or blank channels, "
        "or filling the band (its centre +- 1.5 FWHM leaves it at both ends)"
    ),
    int(SourceFlag.UNRESOLVED): "size at the resolution limit (unresolved along at least one axis)",
    int(SourceFlag.OUT_OF_RANGE): "a fit or network output lies outside the range seen in training",
    int(SourceFlag.FIT_FALLBACK): (
        "the forward fit failed or ended far from the first estimate, whose size, angle and flux are kept"
    ),
}

BEAM_META_KEYS = ("beam_major_arcsec", "beam_minor_arcsec", "beam_pa_deg")

_FORMATS = {"ecsv": "ascii.ecsv", "ascii.ecsv": "ascii.ecsv", "fits": "fits", "votable": "votable"}
_SUFFIXES = {
    ".ecsv": "ascii.ecsv",
    ".fits": "fits",
    ".fit": "fits",
    ".xml": "votable",
    ".vot": "votable",
    ".votable": "votable",
}
_FITS_META_CARD = "DFMETA"
_VOTABLE_META_INFO = "deepfocus_meta"


# --------------------------------------------------------------------------------------------
# validation


def _spectral_ok(unit):
    return unit is not None and (
        unit.is_equivalent(u.Hz, equivalencies=u.spectral()) or unit.is_equivalent(u.km / u.s)
    )


def validate_catalog(table):
    """Check that a table has the catalogue columns with usable units.

    Extra columns are allowed. Units need only be convertible to those of `CATALOG_COLUMNS`
    (e.g. ``fwhm_major`` in mas is fine); ``spectral_centroid`` may be in any spectral unit
    (frequency, wavelength, energy or velocity).

    Parameters
    ----------
    table : `~astropy.table.QTable` or `~astropy.table.Table`
        The catalogue.

    Raises
    ------
    InvalidInputError
        Naming every missing column and every column with a wrong unit or type.
    """
    if not isinstance(table, Table):
        raise InvalidInputError(f"a catalogue must be an astropy QTable, got {type(table).__name__}")
    missing = [name for name in CATALOG_COLUMNS if name not in table.colnames]
    problems = []
    for name, spec in CATALOG_COLUMNS.items():
        if name in missing:
            continue
        col = table[name]
        if name == "sky_centroid":
            if not isinstance(col, SkyCoord):
                problems.append(f"'sky_centroid' must be a SkyCoord, got {type(col).__name__}")
            continue
        unit = getattr(col, "unit", None)
        unit = None if unit is None else u.Unit(unit)
        if name == "spectral_centroid":
            if not _spectral_ok(unit):
                problems.append(f"'spectral_centroid' has unit {unit}, expected a spectral unit (e.g. GHz)")
        elif spec.unit is None:
            if unit is not None and unit != u.dimensionless_unscaled:
                problems.append(f"{name!r} has unit {unit}, expected none (dimensionless)")
        elif unit is None or not unit.is_equivalent(spec.unit):
            problems.append(f"{name!r} has unit {unit}, expected {spec.unit} (or convertible)")
    if missing or problems:
        parts = []
        if missing:
            parts.append("missing column(s) " + ", ".join(repr(m) for m in missing))
        parts.extend(problems)
        raise InvalidInputError("not a valid deepfocus catalogue: " + "; ".join(parts))


# --------------------------------------------------------------------------------------------
# meta <-> JSON (FITS header, VOTable INFO)


def _json_default(obj):
    # Tagged so that Quantities come back as Quantities.
    if isinstance(obj, u.Quantity):
        return {"__quantity__": np.asarray(obj.value).tolist(), "unit": obj.unit.to_string()}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (u.UnitBase, Path)):
        return str(obj)
    if hasattr(obj, "isot"):  # astropy Time
        return obj.isot
    return str(obj)


def _json_hook(obj):
    if "__quantity__" in obj and "unit" in obj and len(obj) == 2:
        return u.Quantity(obj["__quantity__"], obj["unit"])
    return obj


def _meta_to_json(meta):
    return json.dumps(dict(meta), default=_json_default, ensure_ascii=True, separators=(",", ":"))


def _meta_from_json(text):
    return json.loads(text, object_hook=_json_hook)


def _scalar_meta(meta):
    """The meta items that fit a FITS card or a VOTable INFO: plain ASCII-able scalars."""
    out = {}
    for key, value in meta.items():
        if isinstance(value, np.generic):
            value = value.item()
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", key):
            continue
        if isinstance(value, str) and (not value.isascii() or not value.isprintable()):
            continue
        if isinstance(value, (str, bool, numbers.Integral, numbers.Real)):
            out[key] = value
    return out


# --------------------------------------------------------------------------------------------
# writing


def _resolve_format(path, format):
    if format is not None:
        key = str(format).lower()
        if key not in _FORMATS:
            raise InvalidInputError(
                f"unknown catalogue format {format!r}; use one of 'ecsv', 'fits', 'votable'"
            )
        return _FORMATS[key]
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise InvalidInputError(
            f"cannot tell the catalogue format from {Path(path).name!r}: use a suffix among "
            f"{', '.join(_SUFFIXES)} (or, in Python, format='ecsv'|'fits'|'votable')"
        )
    return _SUFFIXES[suffix]


#: UCD of a velocity ``spectral_centroid`` by ``meta["velocity_convention"]`` (the cube's axis's).
_VELOCITY_UCDS = {
    "radio": "spect.dopplerVeloc.radio;spect.line",
    "optical": "spect.dopplerVeloc.opt;spect.line",
    "relativistic": "spect.dopplerVeloc;spect.line",
}


def _spectral_ucd(unit, convention="radio"):
    """UCD of ``spectral_centroid`` in ``unit``; a velocity's follows its ``convention``."""
    if unit is not None and unit.is_equivalent(u.km / u.s):
        return _VELOCITY_UCDS.get(convention, "spect.dopplerVeloc;spect.line")
    if unit is not None and unit.is_equivalent(u.m):
        return "em.wl;spect.line"
    if unit is not None and unit.is_equivalent(u.J):
        return "em.energy;spect.line"
    return CATALOG_COLUMNS["spectral_centroid"].ucd


def _describe(table):
    """Copy of ``table`` whose catalogue columns carry a description and a UCD (kept if set)."""
    out = QTable(table, copy=True)
    for name, spec in {**CATALOG_COLUMNS, **OPTIONAL_COLUMNS, **_RA_DEC_SPECS}.items():
        if name not in out.colnames:
            continue
        info = out[name].info
        if not info.description:
            info.description = spec.description
        ucd = spec.ucd
        if name == "spectral_centroid":
            unit = getattr(out[name], "unit", None)
            ucd = _spectral_ucd(unit, out.meta.get("velocity_convention", "radio"))
        info.meta = dict(info.meta or {})
        info.meta.setdefault("ucd", ucd)
    return out


def _split_sky(table):
    """Replace ``sky_centroid`` by ICRS ``ra``, ``dec`` columns (deg) at the same place."""
    if "sky_centroid" not in table.colnames:
        return table
    icrs = table["sky_centroid"].icrs
    index = table.colnames.index("sky_centroid")
    table = table.copy(copy_data=False)
    table.remove_column("sky_centroid")
    table.add_column(icrs.ra.to(u.deg), name="ra", index=index)
    table.add_column(icrs.dec.to(u.deg), name="dec", index=index + 1)
    return table


def _write_votable(table, tmp):
    from astropy.io.votable import from_table
    from astropy.io.votable.tree import CooSys, Info

    vot = from_table(Table(table))
    resource = vot.resources[0]
    resource.coordinate_systems.append(CooSys(ID="icrs", system="ICRS", equinox=None, epoch=None))
    for field in vot.get_first_table().fields:
        # from_table copies column.info.meta['ucd'] and the description; set them again so that a
        # future astropy that ignores them cannot drop them silently.
        spec = table[field.name].info
        if spec.meta and spec.meta.get("ucd"):
            field.ucd = spec.meta["ucd"]
        if spec.description:
            field.description = spec.description
        if field.name in ("ra", "dec"):
            field.ref = "icrs"
    for key, value in _scalar_meta(table.meta).items():
        resource.infos.append(Info(name=key, value=str(value)))
    resource.infos.append(Info(name=_VOTABLE_META_INFO, value=_meta_to_json(table.meta)))
    vot.to_xml(str(tmp))


def _write_fits(table, tmp):
    from astropy.io.fits.verify import VerifyWarning

    meta = dict(table.meta)
    table = table.copy(copy_data=False)
    header_meta = _scalar_meta(meta)
    header_meta.pop(_FITS_META_CARD, None)
    header_meta[_FITS_META_CARD] = _meta_to_json(meta)
    table.meta = header_meta
    with warnings.catch_warnings():
        # Long or lower-case keys become HIERARCH cards: expected, not worth a warning.
        warnings.filterwarnings("ignore", category=VerifyWarning)
        table.write(tmp, format="fits")


def write_catalog(table, path, *, format=None, overwrite=False, validate=True):
    """Write a catalogue to ECSV, FITS or VOTable, atomically.

    Parameters
    ----------
    table : `~astropy.table.QTable`
        The catalogue (columns of `CATALOG_COLUMNS`; extra columns are written too).
    path : str or path-like
        Output file. The format follows the suffix: ``.ecsv`` (ECSV), ``.fits``/``.fit`` (FITS),
        ``.xml``/``.vot``/``.votable`` (VOTable), unless ``format`` is given.
    format : {'ecsv', 'fits', 'votable'}, optional
        Output format, overriding the suffix.
    overwrite : bool, optional
        Replace an existing file. If False (default), an existing ``path`` raises
        `FileExistsError`.
    validate : bool, optional
        Check the columns with `validate_catalog` first (default). Set False to write a table
        with only some of the columns (e.g. a truth table).

    Raises
    ------
    InvalidInputError
        Unknown format or, with ``validate``, an invalid catalogue.
    FileExistsError
        ``path`` exists and ``overwrite`` is False.

    Notes
    -----
    The table is written to a temporary ``.part`` file beside ``path`` and renamed onto it only
    when complete: a failed write leaves neither a partial ``path`` nor a temporary file.
    """
    fmt = _resolve_format(path, format)
    if validate:
        validate_catalog(table)
    elif not isinstance(table, Table):
        raise InvalidInputError(f"a catalogue must be an astropy QTable, got {type(table).__name__}")
    out = _describe(table)
    if fmt == "votable":
        out = _describe(_split_sky(out))
    with atomic_path(path, overwrite=overwrite) as tmp:
        # The temporary name ends in '.part': always name the format explicitly.
        if fmt == "votable":
            _write_votable(out, tmp)
        elif fmt == "fits":
            _write_fits(out, tmp)
        else:
            out.write(tmp, format=fmt)


# --------------------------------------------------------------------------------------------
# reading


def _unmask(table):
    """Turn masked columns with nothing masked (as VOTable reading gives) into plain ones."""
    for name in table.colnames:
        col = table[name]
        if isinstance(col, MaskedColumn) and not np.any(col.mask):
            table[name] = col.filled()
        elif isinstance(col, u.Quantity) and hasattr(col, "mask"):
            if not np.any(col.mask):
                table[name] = u.Quantity(col.unmasked)
    return table


def _read_votable(path):
    from astropy.io.votable import parse

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        vot = parse(str(path))
    vtable = vot.get_first_table()
    table = QTable(vtable.to_table(use_names_over_ids=True))
    _unmask(table)
    infos = [info for resource in vot.resources for info in resource.infos] + list(vtable.infos)
    meta = {info.name: info.value for info in infos if info.name != _VOTABLE_META_INFO}
    for info in infos:
        if info.name == _VOTABLE_META_INFO:
            meta = _meta_from_json(info.value)
    table.meta = meta
    if "sky_centroid" not in table.colnames and {"ra", "dec"} <= set(table.colnames):
        index = table.colnames.index("ra")
        sky = SkyCoord(ra=u.Quantity(table["ra"], u.deg), dec=u.Quantity(table["dec"], u.deg), frame="icrs")
        table.remove_columns(["ra", "dec"])
        table.add_column(sky, name="sky_centroid", index=index)
        table["sky_centroid"].info.description = CATALOG_COLUMNS["sky_centroid"].description
    return table


def read_catalog(path, *, format=None):
    """Read a catalogue written by `write_catalog` (or any table in these formats).

    Parameters
    ----------
    path : str or path-like
        ECSV, FITS or VOTable file.
    format : {'ecsv', 'fits', 'votable'}, optional
        Input format, overriding the suffix.

    Returns
    -------
    catalog : `~astropy.table.QTable`
        With units, ``sky_centroid`` as an ICRS `~astropy.coordinates.SkyCoord` (rebuilt from
        ``ra``/``dec`` for VOTable) and the ``meta`` that was written.

    Raises
    ------
    InvalidInputError
        Unknown format.
    FileNotFoundError
        No such file.
    """
    fmt = _resolve_format(path, format)
    if not Path(path).is_file():
        raise FileNotFoundError(f"no catalogue file {path}")
    if fmt == "votable":
        return _read_votable(path)
    table = QTable.read(path, format=fmt)
    if fmt == "fits":
        meta = {key.upper() if isinstance(key, str) else key: value for key, value in table.meta.items()}
        if _FITS_META_CARD in meta:
            table.meta = _meta_from_json(meta[_FITS_META_CARD])
    return table
