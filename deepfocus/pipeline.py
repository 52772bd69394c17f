"""`DeepFocus`: detection and characterisation in one call, with the shipped networks."""

from __future__ import annotations

import warnings

from .characterization import SourceCharacterizer
from .detection import CubeDetector
from .exceptions import NoDetectionsWarning

__all__ = ["DeepFocus"]


class DeepFocus:
    """Find and measure the sources of a spectral cube.

    `CubeDetector` followed by `SourceCharacterizer`, both with the same ``model``.

    Parameters
    ----------
    snr_threshold : float
        Matched-filter S/N threshold of the detector (see `CubeDetector`).
    model : str, path-like or None
        ``"default"``: the shipped networks; None: the classical stages only (matched filters,
        Gaussian line and source fits).
    **detector_options
        Further `CubeDetector` options.

    Examples
    --------
    >>> from deepfocus import DeepFocus
    >>> catalog = DeepFocus()("cube.fits")  # doctest: +SKIP
    """

    def __init__(self, snr_threshold=6.0, *, model="default", **detector_options):
        self.detector = CubeDetector(snr_threshold, model=model, **detector_options)
        self.characterizer = SourceCharacterizer(model=model)

    def __call__(self, cube, *, mask=None, psf=None):
        """Detect and characterise; returns a `~astropy.table.QTable` or None (with a
        `~deepfocus.exceptions.NoDetectionsWarning`)."""
        from .detection.detector import prepare

        prepared = prepare(cube, psf=psf)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoDetectionsWarning)
            catalog = self.detector(prepared, mask=mask)
        if catalog is None:
            warnings.warn("no sources detected", NoDetectionsWarning, stacklevel=2)
            return None
        return self.characterizer(prepared, catalog)
