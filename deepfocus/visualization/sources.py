"""One detected source in two panels: its line-integrated cutout and its spectrum.

The spectrum is the continuum-free spectrum at the source's pixel, as the detector's spectral
network sees it (each channel divided by its own robust noise), shown back in mJy/beam with the
catalogue's line window and, when the network is available, its denoised spectrum.
"""

from __future__ import annotations

import functools
import warnings

import astropy.units as u
import numpy as np
from astropy.table import QTable

from ..exceptions import DeepFocusWarning, InvalidInputError
from ._common import image_norm, label_sky_axes, new_figure

__all__ = ["source_spectrum", "plot_source", "plot_source_cutout", "plot_source_spectrum"]

#: Default cutout size, in beam major axes.
CUTOUT_BEAMS = 8.0


def _row(catalog, source):
    """The catalogue row of source ``id`` ``source`` (or the 1-based row number without ``id``)."""
    if catalog is None or len(catalog) == 0:
        raise InvalidInputError("the catalogue has no sources to plot")
    missing = [c for c in ("x_centroid", "y_centroid", "z_min", "z_max") if c not in catalog.colnames]
    if missing:
        raise InvalidInputError(f"the catalogue lacks column(s) {', '.join(missing)}")
    ids = np.asarray(catalog["id"]) if "id" in catalog.colnames else np.arange(1, len(catalog) + 1)
    where = np.flatnonzero(ids == source)
    if len(where) == 0:
        raise InvalidInputError(f"no source with id {source!r} in the catalogue")
    return catalog[int(where[0])], int(where[0])


def _pixel(value):
    return float(value.to_value(u.pix) if isinstance(value, u.Quantity) else value)


def _noise(prepared):
    """Per-channel noise (Jy/beam) with NaN channels replaced by the median, as the detector does."""
    noise = np.asarray(u.Quantity(prepared.noise, prepared.unit).value, dtype=float)
    fill = np.nanmedian(noise) if np.isfinite(noise).any() else 1.0
    return np.where(np.isfinite(noise) & (noise > 0), noise, fill)


@functools.lru_cache(maxsize=4)
def _cached_network(model):
    from ..detection.detector import _load

    return _load(model, "spectral")[0]


def _spectral_network(model):
    """The spectral network for ``model`` (a name, folder or module), or None with a warning."""
    if model is None:
        return None
    if hasattr(model, "forward"):
        return model
    try:
        return _cached_network(str(model))
    except Exception as exc:  # plots never fail for want of weights: show the spectrum alone
        warnings.warn(
            f"spectral network {model!r} unavailable ({exc}); plotting without the denoised spectrum",
            DeepFocusWarning,
            stacklevel=3,
        )
        return None


def source_spectrum(cube, catalog, source, *, model="default"):
    """The spectrum at a source's pixel, its line window and the network's denoised spectrum.

    Parameters
    ----------
    cube : `~deepfocus.io.cube.PreparedCube`, `~spectral_cube.SpectralCube` or path
        The cube the catalogue was made from.
    catalog : `~astropy.table.QTable`
        Catalogue with ``x_centroid``, ``y_centroid``, ``z_min``, ``z_max`` (and ``id``).
    source : int
        The source's ``id`` (its 1-based row number if the catalogue has no ``id``).
    model : str, path-like, `torch.nn.Module` or None
        The spectral network: ``"default"`` (shipped weights), a folder with
        ``spectral-default.safetensors``, a loaded module, or None for none. If it cannot be
        loaded a `~deepfocus.exceptions.DeepFocusWarning` is issued and ``denoised`` is NaN.

    Returns
    -------
    spectrum : `~astropy.table.QTable`
        One row per channel, frequency ascending: ``channel`` (channel of the input cube),
        ``frequency`` (GHz), ``flux`` (continuum-subtracted, Jy/beam), ``snr`` (``flux`` over
        the channel noise), ``denoised`` (Jy/beam; NaN without the network),
        ``line_probability`` (the network's probability that the channel holds the line; NaN
        without it) and ``in_window`` (channel within ``z_min``..``z_max``). ``meta`` holds
        ``x``, ``y`` (the pixel used), ``lo``, ``hi`` (the window in this table's rows) and
        ``source``.
    """
    from ..detection.detector import prepare
    from ..detection.lines import network_lines
    from ..detection.matched_filter import blank_channels, estimate_continuum

    prepared = prepare(cube)
    row, _ = _row(catalog, source)
    n_chan, ny, nx = prepared.shape
    x = int(np.clip(np.rint(_pixel(row["x_centroid"])), 0, nx - 1))
    y = int(np.clip(np.rint(_pixel(row["y_centroid"])), 0, ny - 1))
    noise = _noise(prepared)
    pixel = prepared.data[:, y : y + 1, x : x + 1].astype(np.float32)
    continuum = estimate_continuum(pixel, noise)[0, 0]
    flux = pixel[:, 0, 0] - continuum
    snr = np.where(np.isfinite(flux), flux / noise, 0.0)  # what the detector feeds the network
    network = _spectral_network(model)
    if network is not None:
        blank = blank_channels(u.Quantity(prepared.noise, u.Jy / u.beam).value)
        probability, denoised = network_lines(snr[None], network, blank=blank)
        probability, denoised = probability[0].astype(float), denoised[0].astype(float) * noise
    else:
        probability = denoised = np.full(n_chan, np.nan)
    lo, hi = prepared.line_channels(row["z_min"], row["z_max"])
    table = QTable()
    table["channel"] = np.asarray(prepared.channel_order)
    table["frequency"] = prepared.spectral_axis.to(u.GHz)
    table["flux"] = flux.astype(float) * prepared.unit
    table["snr"] = snr
    table["denoised"] = denoised * prepared.unit
    table["line_probability"] = probability
    table["in_window"] = (np.arange(n_chan) >= lo) & (np.arange(n_chan) <= hi)
    table.meta.update({"x": x, "y": y, "lo": lo, "hi": hi, "source": source})
    return table


def plot_source_spectrum(cube, catalog, source, *, model="default", ax=None):
    """The spectrum of one source with its line window and denoised spectrum.

    Parameters
    ----------
    cube, catalog, source, model
        As in `source_spectrum`.
    ax : `matplotlib.axes.Axes`, optional
        Axes to draw on; a new figure is made if None.

    Returns
    -------
    figure : `matplotlib.figure.Figure`
        Lines labelled ``"spectrum"`` and (with the network) ``"denoised (spectral network)"``;
        the line window as a shaded span labelled ``"line window"``; the line centre as a dotted
        vertical line. x: frequency (GHz), y: mJy/beam.
    """
    from ..detection.detector import prepare

    prepared = prepare(cube)
    spectrum = source_spectrum(prepared, catalog, source, model=model)
    if ax is None:
        ax = new_figure((6.4, 3.6)).add_subplot()
    frequency = spectrum["frequency"].to_value(u.GHz)
    step = np.gradient(frequency) if len(frequency) > 1 else np.ones(1)
    ax.step(
        frequency,
        spectrum["flux"].to_value(u.mJy / u.beam),
        where="mid",
        color="0.2",
        lw=1.0,
        label="spectrum",
    )
    if np.isfinite(spectrum["denoised"].value).any():
        ax.plot(
            frequency,
            spectrum["denoised"].to_value(u.mJy / u.beam),
            color="tab:orange",
            lw=1.6,
            label="denoised (spectral network)",
        )
    lo, hi = spectrum.meta["lo"], spectrum.meta["hi"]
    ax.axvspan(
        frequency[lo] - 0.5 * step[lo], frequency[hi] + 0.5 * step[hi], color="tab:cyan", alpha=0.25,
        label="line window",
    )  # fmt: skip
    row, _ = _row(catalog, source)
    if "z_centroid" in catalog.colnames and np.isfinite(float(row["z_centroid"])):
        prepared_z = float(prepared.to_input_channel(float(row["z_centroid"])))  # its own inverse
        centre = np.interp(prepared_z, np.arange(len(frequency)), frequency)
        ax.axvline(centre, color="tab:cyan", ls=":", lw=1.0)
    ax.axhline(0.0, color="0.6", lw=0.6)
    ax.set_xlabel("frequency (GHz)")
    ax.set_ylabel("flux density (mJy/beam)")
    ax.set_xlim(frequency[0] - 0.5 * step[0], frequency[-1] + 0.5 * step[-1])
    ax.legend(loc="best", fontsize=8, framealpha=0.7)
    ax.set_title(
        f"source {source}: spectrum at pixel ({spectrum.meta['x']}, {spectrum.meta['y']})", fontsize=10
    )
    return ax.figure


def _cutout(prepared, x, y, size, lo, hi):
    """Continuum-free line image (Jy/beam km/s) of channels ``lo..hi`` around ``(x, y)``, as a Cutout2D.

    The continuum is taken off as the characterizer does it: the per-pixel median over the
    channels outside the line (none if fewer than 3 are left).
    """
    from astropy.nddata import Cutout2D

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        celestial = prepared.wcs.celestial
    n_chan, ny, nx = prepared.shape
    cut = Cutout2D(
        np.zeros((ny, nx), dtype=np.float32), (x, y), (size, size), wcs=celestial, mode="partial",
        fill_value=np.nan,
    )  # fmt: skip
    sub = np.full((n_chan, *cut.shape), np.nan, dtype=np.float32)
    sub[:, cut.slices_cutout[0], cut.slices_cutout[1]] = prepared.data[
        :, cut.slices_original[0], cut.slices_original[1]
    ]
    off = np.ones(n_chan, dtype=bool)
    off[lo : hi + 1] = False
    dv = prepared.channel_velocity_width.to_value(u.km / u.s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels outside the image
        continuum = np.nanmedian(sub[off], axis=0) if off.sum() >= 3 else np.zeros(cut.shape)
        window = sub[lo : hi + 1] - np.nan_to_num(continuum)[None]
        image = np.nansum(window, axis=0) * dv
    image[~np.isfinite(window).any(axis=0)] = np.nan
    cut.data = image
    return cut


def _size_pixels(prepared, catalog, row, size):
    """Cutout side in pixels (default: the larger of 8 beams and 4 source major axes)."""
    cell = prepared.cell.to_value(u.arcsec)
    if size is None:
        beam = prepared.beams[prepared.n_channels // 2].major.to_value(u.arcsec)
        major = row["fwhm_major"] if "fwhm_major" in catalog.colnames else 0 * u.arcsec
        major = float(np.nan_to_num(u.Quantity(major, u.arcsec).value))
        size_pix = max(CUTOUT_BEAMS * beam, 4 * major) / cell
    elif isinstance(size, u.Quantity):
        size_pix = size.to_value(u.arcsec) / cell
    else:
        size_pix = float(size)
    if not (np.isfinite(size_pix) and size_pix >= 3):
        raise InvalidInputError(f"cutout size must be at least 3 pixels, got {size!r}")
    return int(np.ceil(size_pix))


def _source_cutout(prepared, catalog, source, size):
    """``(cutout, row, row_index)``: the line image around ``source`` (`_cutout`)."""
    row, index = _row(catalog, source)
    lo, hi = prepared.line_channels(row["z_min"], row["z_max"])
    x, y = _pixel(row["x_centroid"]), _pixel(row["y_centroid"])
    return _cutout(prepared, x, y, _size_pixels(prepared, catalog, row, size), lo, hi), row, index


def _draw_cutout(ax, prepared, catalog, source, cut, row, index, cmap):
    from astropy.visualization.wcsaxes import add_beam

    from ..io.regions import catalog_to_regions

    label_sky_axes(ax, cut.wcs)
    ax.coords[0].set_ticks(number=3)
    ax.coords[1].set_ticks(number=4)
    shown = ax.imshow(cut.data, origin="lower", cmap=cmap, norm=image_norm(cut.data, stretch="linear"))
    ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.03, label="Jy/beam km/s")
    cx, cy = cut.to_cutout_position((_pixel(row["x_centroid"]), _pixel(row["y_centroid"])))
    ax.plot([cx], [cy], marker="+", color="cyan", ms=10, mew=1.2, ls="none")
    if all(c in catalog.colnames for c in ("sky_centroid", "fwhm_major", "fwhm_minor", "position_angle")):
        one = catalog[[index]]
        if "id" not in one.colnames:
            one["id"] = [source]
        region = catalog_to_regions(one)[0].to_pixel(cut.wcs)
        artist = region.plot(ax=ax, edgecolor="cyan", facecolor="none", lw=1.4)
        artist.set_gid("source")
    beam = prepared.beams[prepared.n_channels // 2]
    add_beam(
        ax, major=beam.major, minor=beam.minor, angle=beam.pa, corner="bottom left", frame=False,
        facecolor="none", edgecolor="white", lw=1.0,
    )  # fmt: skip
    ax.set_xlim(-0.5, cut.shape[1] - 0.5)
    ax.set_ylim(-0.5, cut.shape[0] - 0.5)
    channels = sorted(int(row[c]) for c in ("z_min", "z_max"))
    ax.set_title(f"line image, channels {channels[0]}-{channels[1]}", fontsize=10)


def plot_source_cutout(cube, catalog, source, *, size=None, figure=None, cmap="inferno"):
    """The line-integrated image around one source with its catalogue ellipse and the beam.

    Parameters
    ----------
    cube, catalog, source
        As in `source_spectrum`.
    size : `~astropy.units.Quantity` or float, optional
        Side of the cutout: an angle, or pixels as a number. Default: the larger of 8 beam
        major axes and 4 source major axes.
    figure : `matplotlib.figure.Figure`, optional
        Figure to add the axes to (the cutout has its own WCS, so the axes are made here); a
        new figure if None.
    cmap : str
        Colour map.

    Returns
    -------
    figure : `matplotlib.figure.Figure`
        WCSAxes (RA/Dec) with the image of channels ``z_min``..``z_max`` summed (continuum
        removed; Jy/beam km/s), the source's ellipse (an `~matplotlib.patches.Ellipse` with
        ``gid="source"``, drawn from `~deepfocus.io.regions.catalog_to_regions`; absent when the
        catalogue has no size columns), a ``+`` at its centroid and the restoring beam.
    """
    from ..detection.detector import prepare

    prepared = prepare(cube)
    cut, row, index = _source_cutout(prepared, catalog, source, size)
    if figure is None:
        figure = new_figure((5.2, 4.6))
    ax = figure.add_subplot(projection=cut.wcs)
    _draw_cutout(ax, prepared, catalog, source, cut, row, index, cmap)
    return figure


def plot_source(cube, catalog, source, *, model="default", size=None, figure=None):
    """One source in two panels: line-integrated cutout (RA/Dec) and spectrum.

    Parameters
    ----------
    cube : `~deepfocus.io.cube.PreparedCube`, `~spectral_cube.SpectralCube` or path
        The cube the catalogue was made from.
    catalog : `~astropy.table.QTable`
        The catalogue (DESIGN section 4 columns).
    source : int
        The source's ``id``.
    model : str, path-like, `torch.nn.Module` or None
        Spectral network for the denoised spectrum (see `source_spectrum`).
    size : `~astropy.units.Quantity` or float, optional
        Cutout side (see `plot_source_cutout`).
    figure : `matplotlib.figure.Figure`, optional
        Figure to draw in (cleared first); a new one if None.

    Returns
    -------
    figure : `matplotlib.figure.Figure`
        Left: `plot_source_cutout`; right: `plot_source_spectrum`.

    Examples
    --------
    Source 1 of the example cube shipped with deepfocus, as its truth catalogue describes it:

    >>> from importlib.resources import files
    >>> from astropy.table import QTable
    >>> from deepfocus.visualization import plot_source
    >>> data = files("deepfocus.data")
    >>> catalog = QTable.read(data / "example_truth.ecsv")
    >>> figure = plot_source(data / "example_dirty.fits", catalog, 1)
    >>> figure.savefig("source1.png")  # doctest: +SKIP
    """
    from ..detection.detector import prepare

    prepared = prepare(cube)
    cut, row, index = _source_cutout(prepared, catalog, source, size)
    if figure is None:
        figure = new_figure((11.5, 4.4))
    else:
        figure.clear()
    ax_image = figure.add_subplot(1, 2, 1, projection=cut.wcs)
    _draw_cutout(ax_image, prepared, catalog, source, cut, row, index, "inferno")
    ax_spec = figure.add_subplot(1, 2, 2)
    plot_source_spectrum(prepared, catalog, source, model=model, ax=ax_spec)
    title = f"source {source}"
    value = row["spectral_centroid"] if "spectral_centroid" in catalog.colnames else None
    if isinstance(value, u.Quantity):
        title += f" at {value.value:.7g} {value.unit:unicode}"
    if "snr" in catalog.colnames and np.isfinite(float(row["snr"])):
        title += f", S/N {float(row['snr']):.1f}"
    if "flux" in catalog.colnames and isinstance(row["flux"], u.Quantity):
        title += f", line flux {row['flux'].to_value(u.Jy * u.km / u.s):.3g} Jy km/s"
    figure.suptitle(title, fontsize=11)
    figure.subplots_adjust(wspace=0.35)
    return figure
