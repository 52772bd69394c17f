"""The integrated image of a cube with its detections drawn as ellipses and numbered."""

from __future__ import annotations

import astropy.units as u
import numpy as np

from ._common import image_norm, label_sky_axes, new_figure, sky_axes

__all__ = ["plot_detections"]


def plot_detections(cube, catalog, *, ax=None, cmap="inferno"):
    """Moment-0 image (WCSAxes, RA/Dec) with one ellipse and id per detection.

    Parameters
    ----------
    cube : `~deepfocus.io.cube.PreparedCube`, `~spectral_cube.SpectralCube` or path
        The cube.
    catalog : `~astropy.table.QTable` or None
        Detections (``sky_centroid``, ``fwhm_major``, ``fwhm_minor``, ``position_angle``, ``id``).
    ax : `~astropy.visualization.wcsaxes.WCSAxes`, optional
        Axes with the cube's celestial WCS; a new figure is made if None.

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
        for region in catalog_to_regions(catalog):
            pixel = region.to_pixel(celestial)
            pixel.plot(ax=ax, edgecolor="cyan", facecolor="none", lw=1.2)
            ax.text(
                pixel.center.x + 2, pixel.center.y + 2, region.meta.get("label", ""), color="cyan", fontsize=8
            )
    ax.set_title(f"{0 if catalog is None else len(catalog)} detections")
    return figure
