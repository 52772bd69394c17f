"""The integrated image of a cube with its detections drawn as ellipses and numbered."""

from __future__ import annotations

import astropy.units as u
import numpy as np

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
    import matplotlib.pyplot as plt
    from astropy.visualization import AsinhStretch, ImageNormalize, PercentileInterval

    from ..detection.detector import prepare
    from ..io.regions import catalog_to_regions

    prepared = prepare(cube)
    dv = prepared.channel_velocity_width.to_value(u.km / u.s)
    image = np.nansum(prepared.data, axis=0) * dv
    image[~prepared.valid.any(axis=0)] = np.nan
    celestial = prepared.wcs.celestial
    if ax is None:
        figure = plt.figure(figsize=(6.4, 5.6))
        ax = figure.add_subplot(projection=celestial)
    figure = ax.figure
    norm = ImageNormalize(image, interval=PercentileInterval(99.8), stretch=AsinhStretch(0.1))
    shown = ax.imshow(image, origin="lower", cmap=cmap, norm=norm)
    figure.colorbar(shown, ax=ax, label="Jy/beam km/s")
    ax.set_xlabel("RA (ICRS)")
    ax.set_ylabel("Dec (ICRS)")
    if catalog is not None and len(catalog):
        for region in catalog_to_regions(catalog):
            pixel = region.to_pixel(celestial)
            pixel.plot(ax=ax, edgecolor="cyan", facecolor="none", lw=1.2)
            ax.text(
                pixel.center.x + 2, pixel.center.y + 2, region.meta.get("label", ""), color="cyan", fontsize=8
            )
    ax.set_title(f"{0 if catalog is None else len(catalog)} detections")
    return figure
