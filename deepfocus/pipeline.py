"""`DeepFocus`: detection and characterisation in one call, with the shipped networks."""

from __future__ import annotations

import os
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
    memory_limit : int or str, optional
        Tile budget (bytes, or a size such as ``"2 GiB"``). A FITS cube whose working memory
        would exceed it is processed out of core, in overlapping spatial tiles read from the
        file (`~deepfocus.detection.tiled.TiledPipeline`), with the same catalogue
        as a single pass. None (default): always one pass in memory.
    max_in_flight : int
        With ``memory_limit``: tiles processed at once (they share the budget).
    executor : object, optional
        With ``memory_limit``: where tiles run, anything with a ``concurrent.futures``-style
        ``submit`` (a thread pool, a ``dask.distributed.Client``); default threads.
    forward_fit : {'auto', 'psf', 'beam', None}
        The characterizer's forward model (see `SourceCharacterizer`): ``'auto'`` refines the
        measurements with the cube's PSF when one is given; ``'beam'`` with the restoring beam
        (CLEANed cubes).
    **detector_options
        Further `CubeDetector` options.

    Examples
    --------
    The example cube shipped with deepfocus (a simulated ALMA cube with five sources):

    >>> from importlib.resources import files
    >>> from deepfocus import DeepFocus
    >>> cube = files("deepfocus.data") / "example_dirty.fits"
    >>> catalog = DeepFocus()(cube)
    >>> sources = catalog["id", "x_centroid", "y_centroid", "z_centroid", "flux", "snr"]
    >>> sources.round(2)
    >>> print(sources)
     id x_centroid y_centroid z_centroid    flux    snr
           pix        pix                Jy km / s
    --- ---------- ---------- ---------- --------- -----
      1      49.02      47.65      28.41      2.85 27.42
      2       49.2      47.48        8.1      0.71  8.71
      3      89.98      50.44      10.34      1.26 13.61
      4      52.61      83.97      16.47       1.2 11.49
      5      91.09      47.15      20.42      0.28  3.05

    A cube larger than memory (a file of your own), in tiles of at most 2 GiB:

    >>> catalog = DeepFocus(memory_limit="2 GiB")("big_cube.fits")  # doctest: +SKIP
    """

    def __init__(
        self,
        snr_threshold=6.0,
        *,
        model="default",
        memory_limit=None,
        max_in_flight=1,
        executor=None,
        forward_fit="auto",
        **detector_options,
    ):
        from ._validation import check_positive_int
        from .io.tiles import parse_memory

        self.memory_limit = None if memory_limit is None else parse_memory(memory_limit)
        self.max_in_flight = check_positive_int(max_in_flight, "max_in_flight")
        if executor is not None and not callable(getattr(executor, "submit", None)):
            raise TypeError(f"executor must have a submit(fn, *args) method, got {executor!r}")
        self.executor = executor
        self.detector = CubeDetector(snr_threshold, model=model, **detector_options)
        self.characterizer = SourceCharacterizer(model=model, forward_fit=forward_fit)

    def __call__(self, cube, *, mask=None, psf=None, pb=None):
        """Detect and characterise the sources of ``cube``.

        With ``memory_limit``, a FITS path whose working memory exceeds it is processed in tiles
        (and blocks of channels; ``meta["tiling"]`` records the plan).

        Parameters
        ----------
        cube : str, path-like, `~spectral_cube.SpectralCube` or `~deepfocus.io.cube.PreparedCube`
            The dirty (or CLEANed) cube in Jy/beam or K, as CASA writes it.
        mask : `numpy.ndarray` of bool, optional
            ``(ny, nx)`` or ``(n_chan, ny, nx)``; True marks pixels (voxels) to ignore.
        psf : str, path-like or array-like, optional
            The cube's PSF (``tclean``'s ``.psf``): sidelobes of brighter sources are rejected
            and every source is fitted through it (``forward_fit='auto'``).
        pb : str, path-like or array-like, optional
            The primary-beam gain (``tclean``'s ``.pb`` beside a flat-noise ``.image``): fluxes
            are divided by its value at each source
            (`~deepfocus.characterization.primary_beam.primary_beam_correct`);
            ``meta["primary_beam_corrected"]`` records whether it was given.

        Returns
        -------
        catalog : `~astropy.table.QTable` or None
            The catalogue (DESIGN section 4's columns, with units), or None with a
            `~deepfocus.exceptions.NoDetectionsWarning` when nothing is found.

        Raises
        ------
        deepfocus.exceptions.InvalidInputError
            Input that is not a usable cube (see `~deepfocus.io.read_cube`), a ``pb`` for a
            cube file named ``.pbcor`` (already corrected), or
            ``forward_fit='psf'`` without a PSF (``psf``, or one that a prepared ``cube``
            carries), before the cube is read, whether or not it holds sources.
        """
        from .detection.detector import prepare

        self.check_forward_fit(cube, psf)
        if pb is not None and isinstance(cube, (str, os.PathLike)):
            from .batch import refuse_corrected_with_pb

            refuse_corrected_with_pb(cube)
        if self.memory_limit is not None and isinstance(cube, (str, os.PathLike)):
            from .detection.tiled import TiledPipeline

            tiled = TiledPipeline(
                self, memory_limit=self.memory_limit, max_in_flight=self.max_in_flight, executor=self.executor
            )
            plan = tiled.plan(cube)
            if len(plan) > 1 or plan.channel_blocks:
                return with_primary_beam(tiled(cube, mask=mask, psf=psf, plan=plan), pb, plan.shape)
        prepared = prepare(cube, psf=psf)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoDetectionsWarning)
            catalog = self.detector(prepared, mask=mask)
        if catalog is None:
            warnings.warn("no sources detected", NoDetectionsWarning, stacklevel=2)
            return None
        return with_primary_beam(self.characterizer(prepared, catalog), pb, prepared.data.shape)

    def check_forward_fit(self, cube, psf=None):
        """Refuse ``forward_fit='psf'`` for a cube without a PSF before anything is read.

        Parameters
        ----------
        cube : cube, path-like or `~deepfocus.io.cube.PreparedCube`
            The cube (a prepared one may carry its PSF).
        psf : path-like or array-like, optional
            The PSF given with it.

        Raises
        ------
        InvalidInputError
            ``forward_fit='psf'`` and no PSF.
        """
        from .io.cube import PreparedCube

        own_psf = isinstance(cube, PreparedCube) and cube.psf is not None
        self.characterizer.kernel_for(psf=psf is not None or own_psf)


def with_primary_beam(catalog, pb, shape):
    """``catalog`` with its fluxes corrected by the primary beam ``pb`` (if given) of a cube of
    ``shape``; None stays None. Without ``pb``, ``meta["primary_beam_corrected"]`` is set to
    False (a batch's re-run compares it)."""
    if catalog is None:
        return None
    if pb is None:
        catalog.meta["primary_beam_corrected"] = False
        return catalog
    from .characterization.primary_beam import primary_beam_correct

    return primary_beam_correct(catalog, pb, shape=shape)
