"""Helpers shared by the plot modules: figures, sky axes, image scaling and saving."""

from __future__ import annotations

import warnings
from pathlib import Path

import astropy.units as u
import numpy as np

from ..exceptions import InvalidInputError

__all__ = [
    "new_figure",
    "sky_axes",
    "label_sky_axes",
    "image_norm",
    "as_image",
    "unit_label",
    "plain_log_ticks",
    "save_figure",
    "figure_format",
]

#: How the usual units of radio images are written on axes (astropy would write "Jy km / (beam s)").
_UNIT_TEXT = {"Jy/beam": u.Jy / u.beam, "Jy/pixel": u.Jy / u.pix, "Jy": u.Jy, "K": u.K}


def unit_label(unit, default=""):
    """Axis text of ``unit``: ``"Jy/beam km/s"``, ``"Jy/pixel"``, ... or astropy's string."""
    if unit is None:
        return default
    for text, base in _UNIT_TEXT.items():
        if unit == base:
            return text
        if unit == base * u.km / u.s:
            return f"{text} km/s"
    return unit.to_string()


def new_figure(figsize):
    """A new pyplot figure (pyplot, so that notebooks show it; `save_figure` closes it)."""
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize)


def _frame_names(wcs):
    """Axis labels of a celestial WCS: ``("RA (ICRS)", "Dec (ICRS)")`` or Galactic names."""
    ctype = [str(c).upper() for c in list(wcs.wcs.ctype)[:2]]
    if ctype[0].startswith("GLON"):
        return "Galactic longitude", "Galactic latitude"
    frame = (wcs.wcs.radesys or "ICRS").strip().upper() or "ICRS"
    return f"RA ({frame})", f"Dec ({frame})"


def label_sky_axes(ax, wcs):
    """Name the celestial axes of a `~astropy.visualization.wcsaxes.WCSAxes` after ``wcs``'s frame."""
    xlabel, ylabel = _frame_names(wcs)
    ax.coords[0].set_axislabel(xlabel)
    ax.coords[1].set_axislabel(ylabel)


def sky_axes(figure, wcs, *args):
    """Add a `~astropy.visualization.wcsaxes.WCSAxes` subplot (``figure.add_subplot(*args)``) on ``wcs``.

    Without a WCS (None) a plain pixel subplot is added, labelled in pixels.
    """
    if wcs is None:
        ax = figure.add_subplot(*args)
        ax.set_xlabel("x (pix)")
        ax.set_ylabel("y (pix)")
        return ax
    ax = figure.add_subplot(*args, projection=wcs)
    label_sky_axes(ax, wcs)
    return ax


def image_norm(image, *, percentile=99.8, stretch="asinh", symmetric=False):
    """A colour normalisation of ``image`` that ignores NaNs (asinh or linear stretch).

    ``symmetric`` makes the range ``[-v, v]`` with ``v`` the ``percentile`` of ``|image|``
    (residual maps).
    """
    from astropy.visualization import AsinhStretch, ImageNormalize, LinearStretch, PercentileInterval

    finite = np.asarray(image, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return ImageNormalize(vmin=0.0, vmax=1.0)
    if symmetric:
        vmax = float(np.percentile(np.abs(finite), percentile)) or 1.0
        return ImageNormalize(vmin=-vmax, vmax=vmax, stretch=LinearStretch())
    chosen = AsinhStretch(0.1) if stretch == "asinh" else LinearStretch()
    vmin, vmax = PercentileInterval(percentile).get_limits(finite)
    if not vmax > vmin:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    return ImageNormalize(vmin=vmin, vmax=vmax, stretch=chosen)


def as_image(image, name, wcs=None):
    """``(array, unit, celestial_wcs)`` of a 2-D `~spectral_cube.Projection`, Quantity or array.

    Parameters
    ----------
    image : `~spectral_cube.Projection`, `~astropy.units.Quantity` or array-like
        A 2-D image.
    name : str
        How to call it in error messages.
    wcs : `~astropy.wcs.WCS`, optional
        Used when ``image`` carries none (its celestial part if it has more axes).

    Raises
    ------
    InvalidInputError
        If the image is not 2-D or the WCS is not celestial.
    """
    unit = None
    own_wcs = getattr(image, "wcs", None)
    if isinstance(image, u.Quantity):
        unit = image.unit
        array = np.asarray(image.value, dtype=float)
    else:
        try:
            array = np.asarray(image, dtype=float)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{name} must be a 2-D image (array, Quantity or Projection)") from exc
    if array.ndim != 2:
        raise InvalidInputError(f"{name} must be a 2-D image, got shape {array.shape}")
    chosen = own_wcs if own_wcs is not None else wcs
    if chosen is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            chosen = chosen.celestial
        if chosen.naxis != 2 or not chosen.has_celestial:
            raise InvalidInputError(f"the WCS of {name} has no celestial axes")
    return array, unit, chosen


def plain_log_ticks(axis):
    """Ticks at 1, 2, 5 x 10^n written as plain numbers (``0.2``, ``5``) on a log axis."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def figure_format(path):
    """The image format a figure is written in to ``path``: its suffix (``png``, ``pdf``,
    ``svg``, ... whatever matplotlib writes), ``png`` without one.

    Raises
    ------
    deepfocus.exceptions.InvalidInputError
        If matplotlib cannot write the suffix's format (e.g. ``.fits``).
    """
    from pathlib import Path

    from matplotlib.backend_bases import FigureCanvasBase

    suffix = Path(path).suffix.lower().lstrip(".")
    if not suffix:
        return "png"
    # PGF needs a LaTeX installation and would fail only after the run: not offered.
    supported = {k: v for k, v in FigureCanvasBase.get_supported_filetypes().items() if k != "pgf"}
    if suffix not in supported:
        raise InvalidInputError(
            f"cannot write a plot as .{suffix} ({path}): use one of "
            f"{', '.join('.' + k for k in sorted(supported))}"
        )
    return suffix


def save_figure(figure, path, *, dpi=120):
    """Write ``figure`` atomically (`~deepfocus.io.atomic.atomic_path`) in the format of the
    file's suffix (`figure_format`) and close it.

    Parameters
    ----------
    figure : `matplotlib.figure.Figure`
        The figure; closed afterwards (also when writing fails).
    path : str or path-like
        Image file name (``.png``, ``.pdf``, ``.svg``, ...; PNG without a suffix).
    dpi : int
        Resolution (dots per inch) of raster formats.
    """
    import matplotlib.pyplot as plt

    from ..io.atomic import atomic_path

    try:
        image_format = figure_format(path)
        with atomic_path(path) as tmp:
            if image_format == "svgz":
                # matplotlib's own svgz writer fails on a tight bounding box (the gzip stream
                # is closed before the second pass): write the SVG and compress it here.
                import gzip
                import io

                svg = io.BytesIO()
                figure.savefig(svg, format="svg", dpi=dpi, bbox_inches="tight")
                Path(tmp).write_bytes(gzip.compress(svg.getvalue(), mtime=0))
            else:
                figure.savefig(tmp, format=image_format, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(figure)
