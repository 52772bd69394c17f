"""Region files (DS9, CRTF) drawing the sources of a catalogue.

Each source becomes an `~regions.EllipseSkyRegion` with ``center = sky_centroid``,
``width = fwhm_major``, ``height = fwhm_minor`` and ``angle = position_angle + 90 deg``.

**Angle convention.** ``position_angle`` is the astronomical PA of the major axis: from north,
increasing through east. The ``angle`` of a regions sky ellipse is the direction of its *width*
axis, counter-clockwise from the longitude axis (RA, i.e. west on a north-up image):
`~regions.EllipseSkyRegion.to_pixel` turns it into a PA by subtracting 90 deg, and DS9 reads a
sky ellipse angle the same way (on a north-up, east-left image it is counter-clockwise from +x,
i.e. from west). West + 90 deg = north, so the width (major) axis lies at PA when
angle = PA + 90 deg. The tests check this numerically through a north-up and a rotated WCS.

**CRTF.** The CASA region format defines ``ellipse[[ra, dec], [bmaj, bmin], pa]`` with semi-axes,
``pa`` being the PA of the first (major) axis. The regions writer puts ``height`` first and copies
``angle`` verbatim: geometrically right (the height axis lies at PA = angle), but the first axis
would be the minor one. `write_regions` therefore writes each ellipse in the equivalent form
``width = minor, height = major, angle = PA``, so the file reads ``[major/2, minor/2], PA`` as
the CASA specification defines it, whichever way a reader takes the axis order.

**Unresolved sources.** A source with ``fwhm_major`` 0 (or not finite) is drawn as the restoring
beam when the catalogue meta records it (``beam_major_arcsec``, ``beam_minor_arcsec``,
``beam_pa_deg``; see `~deepfocus.io.catalog.BEAM_META_KEYS`), otherwise as a circle of diameter
``unresolved_size`` (default 0.5 arcsec). A source resolved along its major axis only
(``fwhm_minor`` 0) gets the beam minor axis (or ``unresolved_size``) as height, capped at its
width. Unresolved sources are drawn dashed.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import Table
from regions import EllipseSkyRegion, Region, Regions

from ..exceptions import DeepFocusWarning, InvalidInputError
from .atomic import atomic_path
from .catalog import BEAM_META_KEYS

__all__ = ["catalog_to_regions", "write_regions"]

_SUFFIXES = {".reg": "ds9", ".crtf": "crtf"}
_REQUIRED = ("id", "sky_centroid", "fwhm_major", "fwhm_minor", "position_angle")
# Decimal places of degrees (1e-12 deg = 4 nano-arcsec) for centres and sizes. CRTF sizes stay in
# deg: regions writes radunit='arcsec' as a '"' suffix that its own reader rejects.
_DS9_PRECISION = 12
_CRTF_FMT = ".12f"


def _meta_value(meta, key):
    """``meta[key]`` looked up case-insensitively (FITS upper-cases short keys), or None."""
    for name, value in (meta or {}).items():
        if isinstance(name, str) and name.lower() == key:
            return value
    return None


def _beam(meta):
    """``(major, minor, pa)`` Quantities from the catalogue meta, or None."""
    values = [_meta_value(meta, key) for key in BEAM_META_KEYS]
    if values[0] is None or values[1] is None:
        return None
    units = (u.arcsec, u.arcsec, u.deg)
    out = []
    for value, unit in zip(values, units, strict=True):
        value = 0.0 if value is None else value
        out.append(u.Quantity(value, unit) if not isinstance(value, u.Quantity) else value.to(unit))
    if not (np.isfinite(out[0]) and np.isfinite(out[1]) and out[0] > 0 and out[1] > 0):
        return None
    return tuple(out)


def _spectral_text(value):
    if value.unit.is_equivalent(u.Hz, equivalencies=u.spectral()):
        return f"{value.to_value(u.GHz, equivalencies=u.spectral()):.4f} GHz"
    if value.unit.is_equivalent(u.km / u.s):
        return f"{value.to_value(u.km / u.s):.1f} km/s"
    return f"{value.value:.4g} {value.unit}"


def _channel_ranges(catalog, spectral_axis):
    """Per row, the ``[low, high]`` spectral range (strings) covering channels z_min..z_max."""
    axis = u.Quantity(spectral_axis)
    if axis.ndim != 1 or axis.size < 2:
        raise InvalidInputError("spectral_axis must be a 1-D Quantity with one value per channel")
    if axis.unit.is_equivalent(u.Hz, equivalencies=u.spectral()):
        values, unit = axis.to_value(u.GHz, equivalencies=u.spectral()), "GHz"
    elif axis.unit.is_equivalent(u.km / u.s):
        values, unit = axis.to_value(u.km / u.s), "km/s"
    else:
        raise InvalidInputError(f"spectral_axis must be a frequency, wavelength or velocity, got {axis.unit}")
    missing = [name for name in ("z_min", "z_max") if name not in catalog.colnames]
    if missing:
        raise InvalidInputError(f"spectral_axis needs the catalogue column(s) {', '.join(missing)}")
    # A quarter channel beyond the centres of the first and last channels: CASA's region
    # manager took the channel beyond a range that ended on a channel edge (z_max + 1).
    half = np.abs(np.gradient(values)) / 4
    ranges = []
    for z0, z1 in zip(np.asarray(catalog["z_min"], float), np.asarray(catalog["z_max"], float), strict=True):
        if not (np.isfinite(z0) and np.isfinite(z1)):
            ranges.append(None)
            continue
        k0, k1 = (int(np.clip(round(z), 0, values.size - 1)) for z in (z0, z1))
        edges = [values[k0] - half[k0], values[k0] + half[k0], values[k1] - half[k1], values[k1] + half[k1]]
        lo, hi = min(edges), max(edges)
        ranges.append([f"{lo:.10g}{unit}", f"{hi:.10g}{unit}"])
    return ranges


def catalog_to_regions(
    catalog, *, unresolved_size=0.5 * u.arcsec, color="green", flagged_color="yellow", spectral_axis=None
):
    """Turn a catalogue into sky ellipse regions, one per source.

    Parameters
    ----------
    catalog : `~astropy.table.QTable`
        Needs ``id``, ``sky_centroid``, ``fwhm_major``, ``fwhm_minor`` (angles) and
        ``position_angle`` (angle, east of north); uses ``spectral_centroid``, ``snr`` and
        ``flags`` if present, and the beam in ``meta`` (``beam_major_arcsec``,
        ``beam_minor_arcsec`` in arcsec, ``beam_pa_deg`` in deg).
    unresolved_size : `~astropy.units.Quantity`, optional
        Diameter (angle) of the circle drawn for an unresolved source when ``meta`` has no beam.
    color : str, optional
        Line colour of unflagged sources (a DS9 / CASA colour name).
    flagged_color : str, optional
        Line colour of sources with non-zero ``flags``; None for ``color``.
    spectral_axis : `~astropy.units.Quantity`, optional
        The cube's channel values (frequency, wavelength or velocity), one per channel. Gives each
        region a ``range`` meta (the frequency or velocity span of channels ``z_min`` to
        ``z_max``: a quarter channel beyond their centres) that CRTF files carry.

    Returns
    -------
    regions : `~regions.Regions`
        `~regions.EllipseSkyRegion` objects centred on ``sky_centroid`` (in ICRS), with
        ``angle = position_angle + 90 deg`` (the regions convention; see the module notes),
        ``meta['label'] = str(id)``, ``meta['text'] = '{id}: {frequency} GHz S/N {snr}'`` and
        ``visual['color']``.

    Raises
    ------
    InvalidInputError
        Missing columns or non-angle units.
    """
    if not isinstance(catalog, Table):
        raise InvalidInputError(f"catalog must be an astropy QTable, got {type(catalog).__name__}")
    missing = [name for name in _REQUIRED if name not in catalog.colnames]
    if missing:
        raise InvalidInputError("catalogue is missing column(s) " + ", ".join(repr(m) for m in missing))
    try:
        major = u.Quantity(catalog["fwhm_major"]).to(u.arcsec)
        minor = u.Quantity(catalog["fwhm_minor"]).to(u.arcsec)
        pa = u.Quantity(catalog["position_angle"]).to(u.deg)
        unresolved_size = u.Quantity(unresolved_size).to(u.arcsec)
    except u.UnitsError as exc:
        raise InvalidInputError(f"sizes and position angle must be angles: {exc}") from exc
    if not unresolved_size > 0:
        raise InvalidInputError(f"unresolved_size must be positive, got {unresolved_size}")
    beam = _beam(catalog.meta)
    floor = beam[1] if beam is not None else unresolved_size
    sky = catalog["sky_centroid"]
    spectral = catalog["spectral_centroid"] if "spectral_centroid" in catalog.colnames else None
    snr = np.asarray(catalog["snr"], float) if "snr" in catalog.colnames else None
    flags = np.asarray(catalog["flags"]) if "flags" in catalog.colnames else None
    ranges = _channel_ranges(catalog, spectral_axis) if spectral_axis is not None else None

    out = []
    for i in range(len(catalog)):
        center = sky[i].icrs
        if not (np.isfinite(center.spherical.lon.deg) and np.isfinite(center.spherical.lat.deg)):
            warnings.warn(
                f"source {catalog['id'][i]} has no finite sky position: no region drawn",
                DeepFocusWarning,
                stacklevel=2,
            )
            continue
        unresolved = not (np.isfinite(major[i]) and major[i] > 0)
        if unresolved and beam is not None:
            width, height, angle = beam[0], beam[1], beam[2] + 90 * u.deg
        elif unresolved:
            width, height, angle = unresolved_size, unresolved_size, 90 * u.deg
        else:
            width = major[i]
            angle = (pa[i] if np.isfinite(pa[i]) else 0 * u.deg) + 90 * u.deg
            if np.isfinite(minor[i]) and minor[i] > 0:
                height = minor[i]
            else:
                unresolved = True
                height = min(floor, width)

        ident = catalog["id"][i]
        text = f"{ident}"
        if spectral is not None and np.isfinite(spectral[i]):
            text += f": {_spectral_text(u.Quantity(spectral[i]))}"
        if snr is not None and np.isfinite(snr[i]):
            text += f" S/N {snr[i]:.1f}"
        meta = {"label": str(ident), "text": text}
        if ranges is not None and ranges[i] is not None:
            meta["range"] = ranges[i]
        flagged = flags is not None and flags[i] != 0
        visual = {"color": flagged_color if (flagged and flagged_color) else color}
        if unresolved:
            visual["linestyle"] = "--"  # DS9 dash=1, CASA dashed
        out.append(
            EllipseSkyRegion(center=center, width=width, height=height, angle=angle, meta=meta, visual=visual)
        )
    return Regions(out)


def _crtf_form(region):
    """The same ellipse with the major axis as ``height`` and ``angle`` = its PA (CRTF order)."""
    if not isinstance(region, EllipseSkyRegion):
        return region.copy()
    meta = dict(region.meta)
    if "text" in meta:
        meta["label"] = meta["text"]  # CRTF shapes carry no text: show it as the label
    if region.width > region.height:
        # Major = width, lying at PA = angle - 90 deg; swap so that the height axis is the major.
        width, height, angle = region.height, region.width, region.angle - 90 * u.deg
    else:
        width, height, angle = region.width, region.height, region.angle
    return EllipseSkyRegion(
        center=region.center.icrs,
        width=width,
        height=height,
        angle=angle.to(u.deg) % (180 * u.deg),
        meta=meta,
        visual=dict(region.visual),
    )


#: A DS9 file without regions: the header and frame line that regions writes before them.
_DS9_EMPTY = "# Region file format: DS9 astropy/regions\nicrs\n"


def write_regions(regions_or_catalog, path, *, format=None, overwrite=False, spectral_axis=None):
    """Write source regions to a DS9 or CRTF (CASA) file, atomically.

    Parameters
    ----------
    regions_or_catalog : `~regions.Regions`, list of `~regions.Region`, or `~astropy.table.QTable`
        Regions, or a catalogue turned into regions with `catalog_to_regions`.
    path : str or path-like
        Output file: ``.reg`` (DS9) or ``.crtf`` (CRTF), unless ``format`` is given.
    format : {'ds9', 'crtf'}, optional
        Output format, overriding the suffix.
    overwrite : bool, optional
        Replace an existing file; if False (default) an existing ``path`` raises `FileExistsError`.
    spectral_axis : `~astropy.units.Quantity`, optional
        With a catalogue: the cube's channel values, so that each CRTF region carries the
        frequency (or velocity) range of its line, ``range=[low, high]``. DS9 has no such field.

    Raises
    ------
    InvalidInputError
        Unknown format, or input that is neither regions nor a catalogue.
    FileExistsError
        ``path`` exists and ``overwrite`` is False.

    Notes
    -----
    Sky positions are written in ICRS decimal degrees. DS9 files keep ``text`` (the label
    drawn by DS9); CRTF files show the same text as the region ``label`` and write ellipses as
    ``[major/2, minor/2], PA`` (see the module notes). Precision: better than 1 micro-arcsec in
    position and 1e-6 relative in size.
    """
    if format is None:
        suffix = Path(path).suffix.lower()
        if suffix not in _SUFFIXES:
            raise InvalidInputError(
                f"cannot tell the region format from {Path(path).name!r}: use .reg (DS9) or .crtf "
                "(CRTF) (or, in Python, format='ds9'|'crtf')"
            )
        fmt = _SUFFIXES[suffix]
    else:
        fmt = str(format).lower()
        if fmt not in ("ds9", "crtf"):
            raise InvalidInputError(f"unknown region format {format!r}; use 'ds9' or 'crtf'")

    if isinstance(regions_or_catalog, Table):
        regions = catalog_to_regions(regions_or_catalog, spectral_axis=spectral_axis)
    elif spectral_axis is not None:
        raise InvalidInputError("spectral_axis needs a catalogue (its z_min, z_max columns), not regions")
    elif isinstance(regions_or_catalog, Region):
        regions = Regions([regions_or_catalog])
    elif isinstance(regions_or_catalog, (Regions, list, tuple)):
        regions = Regions(list(regions_or_catalog))
    else:
        raise InvalidInputError(
            f"expected regions or a catalogue QTable, got {type(regions_or_catalog).__name__}"
        )

    with atomic_path(path, overwrite=overwrite) as tmp:
        # The temporary name ends in '.part': always name the format explicitly.
        if fmt == "ds9" and not len(regions):  # regions writes nothing at all: DS9 wants its header
            Path(tmp).write_text(_DS9_EMPTY)
        elif fmt == "ds9":
            regions.write(tmp, format="ds9", precision=_DS9_PRECISION)
        else:
            crtf = Regions([_crtf_form(region) for region in regions])
            crtf.write(tmp, format="crtf", coordsys="icrs", fmt=_CRTF_FMT, radunit="deg")
