"""The integrated image of a cube with its detections drawn as ellipses and numbered."""

from __future__ import annotations

import astropy.units as u
import numpy as np

from ._common import image_norm, label_sky_axes, new_figure, sky_axes

__all__ = ["plot_detections"]

#: Detections whose centres lie within this many pixels share one label ("1, 2"), and within
#: this many label heights on the page too, so that no id is printed over another.
LABEL_MERGE_RADIUS = 3.0
LABEL_MERGE_HEIGHTS = 1.6
#: Font size of the ids (points).
LABEL_FONTSIZE = 8


def plot_detections(cube, catalog, *, ax=None, cmap="inferno"):
    """Moment-0 image (WCSAxes, RA/Dec) with one ellipse and id per detection (the ids of
    detections at one position, such as two lines of one source, share one label: ``1, 2``).

    Parameters
    ----------
    cube : `~deepfocus.io.cube.PreparedCube`, `~spectral_cube.SpectralCube` or path
        The cube.
    catalog : `~astropy.table.QTable` or None
        Detections (``sky_centroid``, ``fwhm_major``, ``fwhm_minor``, ``position_angle``, ``id``).
    ax : `~astropy.visualization.wcsaxes.WCSAxes`, optional
        Axes with the cube's celestial WCS; a new figure is made if None.
    cmap : str or `~matplotlib.colors.Colormap`
        Colour map of the image.

    Returns
    -------
    figure : `matplotlib.figure.Figure`
    """
    from ..detection.detector import prepare
    from ..io.regions import catalog_to_regions

    prepared = prepare(cube)
    dv = prepared.channel_velocity_width.to_value(u.km / u.s)
    image = np.nansum(prepared.data, axis=0) * dv
    image[~prepared.valid.any(axis=0)] = np.nan
    celestial = prepared.wcs.celestial
    if ax is None:
        ax = sky_axes(new_figure((6.4, 5.6)), celestial, 1, 1, 1)
    else:
        label_sky_axes(ax, celestial)
    figure = ax.figure
    shown = ax.imshow(image, origin="lower", cmap=cmap, norm=image_norm(image))
    figure.colorbar(shown, ax=ax, label="Jy/beam km/s")
    if catalog is not None and len(catalog):
        centres, labels = [], []
        for region in catalog_to_regions(catalog):
            pixel = region.to_pixel(celestial)
            pixel.plot(ax=ax, edgecolor="cyan", facecolor="none", lw=1.2)
            centres.append((pixel.center.x, pixel.center.y))
            labels.append(region.meta.get("label", ""))
        radius = max(LABEL_MERGE_RADIUS, LABEL_MERGE_HEIGHTS * LABEL_FONTSIZE / _points_per_pixel(ax, image))
        for (x, y), text in _grouped_labels(np.asarray(centres), labels, radius):
            ax.text(x + 2, y + 2, text, color="cyan", fontsize=LABEL_FONTSIZE)
    ax.set_title(f"{0 if catalog is None else len(catalog)} detections")
    return figure


def _points_per_pixel(ax, image):
    """Printed size (points) of one image pixel in ``ax`` (equal aspect, the image filling it)."""
    ax.apply_aspect()
    width_points = ax.get_position().width * ax.figure.get_figwidth() * 72
    return width_points / max(image.shape[1], 1)


def _grouped_labels(centres, labels, radius=LABEL_MERGE_RADIUS):
    """``((x, y), text)`` per group of detections, the text their labels joined in catalogue
    order: two lines at one position, or two sources a few pixels apart on a large image, would
    otherwise print one id over the other.

    A detection joins the first group whose first member lies within ``radius`` pixels of it,
    else starts one: groups do not chain, so a crowded field keeps a label near every source.
    """
    anchors, members = [], []
    for i, (x, y) in enumerate(np.asarray(centres, dtype=float)):
        near = [g for g, (ax, ay) in enumerate(anchors) if np.hypot(x - ax, y - ay) <= radius]
        if near:
            members[near[0]].append(i)
        else:
            anchors.append((x, y))
            members.append([i])
    texts = [", ".join(labels[i] for i in group) for group in members]
    return list(zip(anchors, texts, strict=True))
