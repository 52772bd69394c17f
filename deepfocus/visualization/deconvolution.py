"""Dirty, deconvolved and residual images side by side (and the true sky when known)."""

from __future__ import annotations

from ..exceptions import InvalidInputError
from ._common import as_image, image_norm, new_figure, sky_axes, unit_label

__all__ = ["plot_deconvolution"]


def plot_deconvolution(
    dirty,
    deconvolved,
    residual=None,
    *,
    truth=None,
    wcs=None,
    figure=None,
    titles=None,
    cmap="inferno",
):
    """Dirty | deconvolved | residual (| true sky) images, on RA/Dec axes when a WCS is known.

    Parameters
    ----------
    dirty : `~spectral_cube.Projection`, `~astropy.units.Quantity` or array-like
        2-D dirty image (e.g. a moment-0 in Jy/beam km/s, or one channel in Jy/beam).
    deconvolved : same types as ``dirty``
        2-D deconvolved (sky-model) image of the same shape (e.g. Jy/pixel).
    residual : same types as ``dirty``, optional
        2-D residual image (dirty minus the model convolved with the PSF), drawn with a
        symmetric colour scale; left out if None.
    truth : same types as ``dirty``, optional
        The true sky (a simulation's sky model), drawn last on the colour scale of
        ``deconvolved`` so the two can be compared by eye.
    wcs : `~astropy.wcs.WCS`, optional
        Celestial WCS for images that carry none (a `~spectral_cube.Projection` has its own;
        the celestial part of a 3-D WCS is used). Without any WCS the axes are in pixels.
    figure : `matplotlib.figure.Figure`, optional
        Figure to draw in (cleared first); a new one if None.
    titles : sequence of str, optional
        Panel titles (default ``"dirty"``, ``"deconvolved"``, ``"residual"``, ``"true sky"``).
    cmap : str
        Colour map of the dirty, deconvolved and true images (the residual uses ``RdBu_r``).

    Returns
    -------
    figure : `matplotlib.figure.Figure`
        One axes per image (WCSAxes when a WCS is known), each with a colour bar labelled with
        the image's unit.

    Raises
    ------
    InvalidInputError
        If an image is not 2-D, the shapes differ or a WCS is not celestial.

    Examples
    --------
    The band-integrated images of the example cube shipped with deepfocus (2-D
    `~spectral_cube.Projection` objects, which carry their WCS and unit):

    >>> from importlib.resources import files
    >>> from deepfocus import Deconvolver
    >>> from deepfocus.visualization import plot_deconvolution
    >>> data = files("deepfocus.data")
    >>> result = Deconvolver()(data / "example_dirty.fits", psf=data / "example_psf.fits", residual=True)
    >>> figure = plot_deconvolution(result.dirty, result.sky, result.residual)

    Plain arrays need ``wcs=`` for sky axes (and ``truth=`` adds the true sky of a simulation):

    >>> images = [result.dirty.value, result.sky.value, result.residual.value]
    >>> figure = plot_deconvolution(*images, wcs=result.sky.wcs)
    """
    names = ["dirty", "deconvolved", "residual", "true sky"]
    given = [dirty, deconvolved, residual, truth]
    panels = []
    for name, image in zip(names, given, strict=True):
        if image is None:
            continue
        panels.append((name, *as_image(image, name, wcs)))
    shape = panels[0][1].shape
    for name, array, _, _ in panels[1:]:
        if array.shape != shape:
            raise InvalidInputError(f"the {name} image has shape {array.shape}, the dirty image {shape}")
    if titles is not None:
        titles = list(titles)
        if len(titles) != len(panels):
            raise InvalidInputError(f"titles: {len(panels)} expected (one per image), got {len(titles)}")
    else:
        titles = [name for name, *_ in panels]
    if figure is None:
        figure = new_figure((4.6 * len(panels), 4.3))
    else:
        figure.clear()
    deconvolved_norm = image_norm(panels[1][1], stretch="asinh")
    for k, (name, array, unit, image_wcs) in enumerate(panels):
        ax = sky_axes(figure, image_wcs, 1, len(panels), k + 1)
        if name == "residual":
            norm = image_norm(array, symmetric=True)
            colours = "RdBu_r"
            default_unit = "dirty image units"
        elif name in ("deconvolved", "true sky"):
            norm, colours = deconvolved_norm, cmap
            default_unit = "model units"
        else:
            norm, colours = image_norm(array, stretch="asinh"), cmap
            default_unit = "image units"
        shown = ax.imshow(array, origin="lower", cmap=colours, norm=norm)
        ax.set_title(titles[k])
        figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.03, label=unit_label(unit, default_unit))
        if image_wcs is not None:
            ax.coords[0].set_ticks(number=3)
        if k > 0 and image_wcs is not None:  # the images share their Dec axis
            ax.coords[1].set_axislabel(" ")
            ax.coords[1].set_ticklabel_visible(False)
    figure.subplots_adjust(wspace=0.3)
    return figure
