"""`CubeDetector`: find line sources in a spectral cube."""

from __future__ import annotations

import numbers
import operator
import warnings
from datetime import datetime, timezone

import astropy.units as u
import numpy as np
from astropy.stats import mad_std
from astropy.table import QTable
from scipy.ndimage import map_coordinates, uniform_filter1d

from .._validation import check_bool
from ..deconvolution.normstats import ValidPixelNorm
from ..exceptions import InvalidInputError, NoDetectionsWarning
from ..version import __version__
from .candidates import filter_beam, find_candidates
from .lines import fit_line, mask_runs, network_lines, repeated_lines, split_at_valleys, split_shared_runs
from .matched_filter import DEFAULT_WIDTHS, blank_as_nan, blank_channels
from .sidelobes import FilteredPSF, sidelobe_rejected

__all__ = ["CubeDetector", "prepare", "DECONVOLVER_CUTOUT"]

#: Side (pixels) of the line image around a candidate that the deconvolver judges: the size of
#: its training images (the ``default`` preset's ``crop``).
DECONVOLVER_CUTOUT = 64
#: Cutouts per deconvolver call: about 50 MiB of activations (measured).
DECONVOLVER_BATCH = 16


def prepare(cube, *, psf=None):
    """A `~deepfocus.io.cube.PreparedCube` from a path, a SpectralCube or a prepared cube.

    ``psf`` is attached to a prepared cube that has none (one that has its own keeps it).
    """
    from dataclasses import replace

    from ..io.cube import PreparedCube, _prepare_psf, read_cube

    if isinstance(cube, PreparedCube):
        if psf is None or cube.psf is not None:
            return cube
        planes = _prepare_psf(psf, "the cube", cube.n_channels, cube.cell, cube.flipped, cube.spectral_axis)
        return replace(cube, psf=planes)
    return read_cube(cube, psf=psf)


def _real(value, name):
    """``value`` as a finite float, or `InvalidInputError` (booleans and strings are refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.ndarray)):
        raise InvalidInputError(f"{name} must be a number, got {value!r}")
    if np.ndim(value) != 0 or not np.isfinite(value):
        raise InvalidInputError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _load(model, task):
    """The network of ``task`` for ``model`` and its ``meta`` entry
    (`~deepfocus.models.load_task_model`)."""
    from ..models.registry import load_task_model

    return load_task_model(model, task)


def _between_lines(pieces, lo, hi):
    """``(first, last)`` channels a fit of the line in ``lo..hi`` may use: up to halfway to the
    neighbouring ``pieces`` (sorted ``(lo, hi)`` runs of line channels of one spectrum)."""
    before = [p[1] for p in pieces if p[1] < lo]
    after = [p[0] for p in pieces if p[0] > hi]
    first = (max(before) + lo) / 2 if before else -np.inf
    last = (min(after) + hi) / 2 if after else np.inf
    return first, last


class CubeDetector:
    """Find line sources in a spectral cube (photutils conventions).

    The cube is normalised channel by channel by its robust noise, its continuum removed, and it
    is filtered with the beam in space and with boxcars of several line widths in frequency;
    3-D peaks of the resulting S/N above ``snr_threshold`` are candidates, duplicates along the
    spectral axis are merged with a window set by the line width, and each candidate's line is
    found in its spectrum (by the spectral network where weights are given, else by a Gaussian
    fit). With the deconvolver, candidates whose flux vanishes in the deconvolved image of their
    line (dirty-beam sidelobes of brighter sources) are rejected.

    Parameters
    ----------
    snr_threshold : float
        Minimum S/N of the matched filter (the S/N of the line integrated over its width and
        correlated with the beam; a line of per-channel peak S/N 3 reaches 6-10).
    min_separation : float
        Peaks closer than this many beam major axes (and within one line width in frequency)
        are one source.
    model : str, path-like or None
        ``"default"`` uses the shipped networks (``spectral-default`` and
        ``deconvolver-default``); ``None`` runs the classical stages only.
    widths : sequence of int
        Line widths (channels) of the spectral matched filters.
    deconvolved_fraction : float
        With the deconvolver: a candidate is kept when the deconvolved flux within a beam of it
        is at least this fraction of its dirty S/N.
    sidelobe_rejection : bool
        With the cube's PSF (``psf=`` in the call, e.g. the ``.psf`` that ``tclean`` writes): drop
        a candidate more than 1.5 beams from brighter ones whose lines overlap its own when,
        after subtracting the sidelobes the brighter candidates put at its position (their S/N
        times the beam-filtered PSF at the offset), less than half the threshold is left. Only
        candidates the deconvolver kept (all, without it) count, brighter or fainter.

    Examples
    --------
    >>> from importlib.resources import files
    >>> from deepfocus import CubeDetector
    >>> cube = files("deepfocus.data") / "example_dirty.fits"  # the example cube shipped with deepfocus
    >>> catalog = CubeDetector(snr_threshold=6)(cube)
    >>> candidates = catalog["id", "x_centroid", "y_centroid", "z_min", "z_max", "line_width", "snr"]
    >>> candidates.round(1)
    >>> print(candidates)
     id x_centroid y_centroid z_min z_max line_width snr
           pix        pix                   km / s
    --- ---------- ---------- ----- ----- ---------- ----
      1       48.9       47.5    22    36      136.8 27.4
      2       48.9       47.4     0    16      154.9  8.7
      3       90.1       50.6     4    16      131.3 13.6
      4       52.8       84.1     5    27      231.4 11.5
      5       90.8       46.6    19    22       20.3  3.1
    """

    def __init__(
        self,
        snr_threshold=6.0,
        *,
        min_separation=1.0,
        model="default",
        widths=DEFAULT_WIDTHS,
        deconvolved_fraction=0.3,
        sidelobe_rejection=True,
    ):
        snr_threshold = _real(snr_threshold, "snr_threshold")
        if snr_threshold <= 0:
            raise InvalidInputError(f"snr_threshold must be a positive number, got {snr_threshold!r}")
        min_separation = _real(min_separation, "min_separation")
        if min_separation <= 0:
            raise InvalidInputError(f"min_separation must be positive, got {min_separation!r}")
        try:
            widths = tuple(sorted({operator.index(w) for w in widths}))
        except TypeError:
            raise InvalidInputError(
                f"widths must be positive channel counts (integers), got {widths!r}"
            ) from None
        if not widths or widths[0] < 1:
            raise InvalidInputError(f"widths must be positive channel counts (integers), got {widths!r}")
        deconvolved_fraction = _real(deconvolved_fraction, "deconvolved_fraction")
        if not 0 <= deconvolved_fraction < 1:
            raise InvalidInputError(f"deconvolved_fraction must be in [0, 1), got {deconvolved_fraction!r}")
        self.snr_threshold = snr_threshold
        self.min_separation = min_separation
        self.model = model
        self.widths = widths
        self.deconvolved_fraction = deconvolved_fraction
        self.sidelobe_rejection = check_bool(sidelobe_rejection, "sidelobe_rejection")
        self._spectral, self._spectral_info = _load(model, "spectral")
        self._deconvolver, self._deconvolver_info = _load(model, "deconvolver")

    # -- stages ----------------------------------------------------------------------------
    def _lines(self, cube, mf, candidates):
        """Refine each candidate's line; split positions that hold two lines."""
        spectra = mf.channel_snr[(slice(None), *candidate_pixels(candidates, mf.snr.shape[1:]))].T
        noise = blank_as_nan(u.Quantity(cube.noise, u.Jy / u.beam).value)
        return self._find_lines(spectra, candidates, self.min_separation * cube.pixels_per_beam, noise)

    def _find_lines(self, spectra, candidates, beam_pix, noise=None):
        """The line rows ``(candidate, z_centroid, lo, hi, fwhm, peak)`` of the candidates,
        from their ``(n, n_chan)`` spectra of ``channel_snr`` (frequency ascending) and the
        per-channel ``noise`` they were divided by (for `~deepfocus.detection.lines.fit_line`);
        repeated lines (`~deepfocus.detection.lines.repeated_lines` within ``beam_pix``)
        dropped. Returns ``(rows, n_chan)``."""
        n_chan = spectra.shape[1]
        x = candidates["x_centroid"].value
        y = candidates["y_centroid"].value
        rows = []
        if self._spectral is not None and len(candidates):
            blank = None if noise is None else blank_channels(noise)
            probability, denoised = network_lines(spectra, self._spectral, blank=blank)
            smooth = uniform_filter1d(denoised.astype(float), 3, axis=1, mode="nearest")
        for k, cand in enumerate(candidates):
            z0, w = float(cand["z_centroid"]), int(cand["filter_width"])
            pieces, foreign = [], set()
            if self._spectral is not None:
                runs_k = mask_runs(probability[k] > 0.5)
                pieces = [piece for run in runs_k for piece in split_at_valleys(run, denoised[k])]
                near = np.flatnonzero(np.hypot(x - x[k], y - y[k]) <= beam_pix)
                pieces, foreign = split_shared_runs(pieces, smooth[k], [smooth[j] for j in near if j != k])
            runs = [p for p in pieces if p[0] - w <= z0 <= p[1] + w and p not in foreign]
            if runs:
                for lo, hi in runs[:2]:
                    weights = np.clip(denoised[k, lo : hi + 1], 0, None)
                    channels = np.arange(lo, hi + 1)
                    zc = float(np.sum(weights * channels) / max(weights.sum(), 1e-9))
                    # The fit stays off the spectrum's other lines: a second line at the
                    # position would otherwise give this one its width and peak.
                    limits = _between_lines(pieces, lo, hi)
                    fit = fit_line(spectra[k], zc, hi - lo + 1, noise, limits=limits)
                    rows.append((k, zc, lo, hi, fit["fwhm"], fit["peak"]))
            else:
                fit = fit_line(spectra[k], z0, w, noise)
                rows.append((k, fit["z_centroid"], fit["z_min"], fit["z_max"], fit["fwhm"], fit["peak"]))
        if rows:
            k = np.array([r[0] for r in rows])
            repeated = repeated_lines(
                x[k],
                y[k],
                [r[1] for r in rows],
                [r[4] for r in rows],
                np.asarray(candidates["filter_snr"])[k],
                beam_pix=beam_pix,
            )
            rows = [r for r, again in zip(rows, repeated, strict=True) if not again]
        return rows, n_chan

    def _deconvolved_scores(self, cube, mf, rows, candidates):
        """Deconvolved S/N within a beam of each candidate, in the image of its line.

        The deconvolver sees a `DECONVOLVER_CUTOUT`-pixel square of the line image centred on
        the candidate, the size it was trained on: its group normalisation then works on the
        statistics it learned, and the score depends only on the pixels around the candidate,
        not on the size of the image (or tile) the candidate was found in.
        """
        if self._deconvolver is None:
            return np.full(len(rows), np.inf)
        beam_pix = (cube.beams[len(cube.beams) // 2].major / cube.cell).to_value(u.one)
        inputs = np.zeros((len(rows), 1, DECONVOLVER_CUTOUT, DECONVOLVER_CUTOUT), dtype=np.float32)
        valid = np.zeros((len(rows), DECONVOLVER_CUTOUT, DECONVOLVER_CUTOUT), dtype=bool)
        centres = np.empty((len(rows), 2))
        for i, (k, _zc, lo, hi, _fwhm, _peak) in enumerate(rows):
            cx, cy = candidates["x_centroid"][k].value, candidates["y_centroid"][k].value
            y0, x0 = deconvolver_corner(cx, cy)
            inputs[i, 0], valid[i] = deconvolver_input(_LineImage(mf.channel_snr, lo, hi), cube.valid, y0, x0)
            centres[i] = cy - y0, cx - x0
        return self._scores(inputs, valid, centres, beam_pix)

    def _scores(self, inputs, valid, centres, beam_pix):
        """The deconvolved S/N within ``beam_pix`` of the ``centres`` (``(n, 2)`` ``(y, x)``,
        cutout pixels) of the deconvolver's ``inputs`` over their interpolated peak.

        ``valid`` (``(n, h, w)`` bool) marks the pixels with data: the zeros that stand for blank
        pixels, or for the area outside the image, stay out of the network's normalisation
        statistics (`~deepfocus.deconvolution.normstats.ValidPixelNorm`), as they do when the
        deconvolver makes the deconvolved image.
        """
        import torch

        yy, xx = np.mgrid[:DECONVOLVER_CUTOUT, :DECONVOLVER_CUTOUT]
        scores = np.empty(len(inputs))
        with torch.no_grad():
            for start in range(0, len(inputs), DECONVOLVER_BATCH):
                batch = inputs[start : start + DECONVOLVER_BATCH]
                out = self._deconvolve(torch.from_numpy(batch), valid[start : start + DECONVOLVER_BATCH])
                for j in range(len(batch)):
                    cy, cx = centres[start + j]
                    near = np.hypot(xx - cx, yy - cy) <= beam_pix
                    peak = map_coordinates(batch[j, 0], [[cy], [cx]], order=1)[0]
                    scores[start + j] = out[j][near].sum() / max(peak, 1e-6)
        return scores

    def _deconvolve(self, batch, valid):
        """The deconvolver's output for ``batch`` (``(n, 1, h, w)`` tensor), its normalisation
        over the ``valid`` pixels where some are not."""
        if valid.all():
            return self._deconvolver(batch).numpy()[:, 0]
        with ValidPixelNorm(self._deconvolver) as norm:
            norm.set_weights(valid)
            return self._deconvolver(batch).numpy()[:, 0]

    def _sidelobes(self, x, y, snr, lo, hi, *, filtered_psf, beam_pix):
        """Rows explained as dirty-beam sidelobes of brighter ones (see ``sidelobe_rejection``).

        A function of the rows alone (positions, matched-filter S/N, line channels ``lo``..``hi``
        in the PSF's channel order) and of ``filtered_psf`` (a
        `~deepfocus.detection.sidelobes.FilteredPSF`, or None without a PSF): a single pass
        applies it to the candidates the deconvolver kept, a tiled run to its stitched catalogue.
        """
        if not self.sidelobe_rejection or filtered_psf is None:
            return np.zeros(len(x), dtype=bool)
        return sidelobe_rejected(
            x, y, snr, lo, hi, filtered_psf=filtered_psf, beam_pix=beam_pix, threshold=self.snr_threshold
        )

    # -- main --------------------------------------------------------------------------------
    def __call__(self, cube, *, mask=None, psf=None, continuum=None, plane_noise=None):
        """Detect sources.

        Parameters
        ----------
        cube : `~spectral_cube.SpectralCube`, str or path-like
            The cube (Jy/beam or K, with beams), or a FITS file.
        mask : `numpy.ndarray` of bool, optional
            ``(ny, nx)`` or ``(n_chan, ny, nx)``; True marks pixels to ignore.
        psf : str or path-like, optional
            The cube's PSF (``tclean`` ``.psf`` exported to FITS).
        continuum : `numpy.ndarray`, optional
            For a part of a larger cube (a tile): the whole cube's continuum over the part's
            pixels, ``(ny, nx)`` Jy/beam (`~deepfocus.detection.matched_filter.estimate_continuum`).
            Default: estimated from ``cube``.
        plane_noise : `numpy.ndarray`, optional
            For a part of a larger cube: the robust noise of the matched filter's planes over the
            whole image, ``(len(widths), n_chan)`` in frequency-ascending channel order
            (`~deepfocus.detection.matched_filter.filtered_plane_noise`). Default: measured on
            ``cube``.

        Returns
        -------
        catalog : `~astropy.table.QTable` or None
            Position and spectral columns (see the package's catalogue contract); None, with a
            `~deepfocus.exceptions.NoDetectionsWarning`, when nothing is found.
        """
        prepared = prepare(cube, psf=psf)
        view = masked_view(prepared, mask)
        if not view.valid.any():
            warnings.warn(
                "no sources detected: the mask covers every pixel", NoDetectionsWarning, stacklevel=2
            )
            return None
        candidates, mf = find_candidates(
            view,
            threshold=self.snr_threshold,
            widths=self.widths,
            beam_scale=self.min_separation,
            continuum=continuum,
            plane_noise=plane_noise,
        )
        rows, n_chan = self._lines(view, mf, candidates)
        scores = self._deconvolved_scores(view, mf, rows, candidates)
        rows = [r for r, score in zip(rows, scores, strict=True) if score >= self.deconvolved_fraction]
        # Only the candidates the deconvolver kept cast sidelobes: the rule a tiled run applies to
        # its stitched catalogue.
        k = np.array([r[0] for r in rows], dtype=int)
        psf = None if prepared.psf is None else FilteredPSF(prepared.psf, prepared.beams, prepared.cell)
        rejected = self._sidelobes(
            candidates["x_centroid"].value[k],
            candidates["y_centroid"].value[k],
            np.asarray(candidates["filter_snr"])[k],
            np.array([r[2] for r in rows], dtype=int),
            np.array([r[3] for r in rows], dtype=int),
            filtered_psf=psf,
            beam_pix=filter_beam(prepared)[0],
        )
        rows = [r for r, bad in zip(rows, rejected, strict=True) if not bad]
        table = self._catalog(prepared, candidates, rows, mf)
        if table is None:
            warnings.warn("no sources detected", NoDetectionsWarning, stacklevel=2)
        return table

    def _catalog(self, cube, candidates, rows, mf):
        if not rows:
            return None
        n_chan = cube.data.shape[0]
        dv = cube.channel_velocity_width.to_value(u.km / u.s)
        k = np.array([r[0] for r in rows])
        x = candidates["x_centroid"].value[k]
        y = candidates["y_centroid"].value[k]
        z = np.array([r[1] for r in rows])
        # Line windows end at the band's first and last channels with data (blank channels
        # hold no line); a line that reaches them, or blank channels inside it, is truncated.
        blank = np.isnan(blank_as_nan(u.Quantity(cube.noise, u.Jy / u.beam).value))
        first, last = (np.flatnonzero(~blank)[[0, -1]]) if (~blank).any() else (0, n_chan - 1)
        lo = np.clip([r[2] for r in rows], first, last)
        hi = np.clip([r[3] for r in rows], first, last)
        fwhm = np.array([r[4] for r in rows])
        truncated = (
            (lo <= first)
            | (hi >= last)
            | [blank[a : b + 1].any() for a, b in zip(lo, hi, strict=True)]
            | _fills_band(z, fwhm, first, last)
        )
        peak = np.array([r[5] for r in rows])
        # Channel indices of the user's cube (its frequency axis may descend).
        z_in = np.array([cube.to_input_channel(v) for v in z])
        lo_in = np.array([cube.to_input_channel(v) for v in lo])
        hi_in = np.array([cube.to_input_channel(v) for v in hi])
        table = QTable()
        table["id"] = np.arange(1, len(rows) + 1)
        table["x_centroid"] = x * u.pix
        table["y_centroid"] = y * u.pix
        table["z_centroid"] = z_in
        table["sky_centroid"] = cube.pixel_to_world(x, y)
        table["spectral_centroid"] = _in_input_units(cube, cube.channel_to_frequency(z))
        table["z_min"] = np.minimum(lo_in, hi_in).astype(int)
        table["z_max"] = np.maximum(lo_in, hi_in).astype(int)
        table["line_width"] = fwhm * dv * u.km / u.s
        table["snr"] = peak
        table["filter_snr"] = candidates["filter_snr"][k]
        flags = np.zeros(len(rows), dtype=np.int32)
        flags |= np.where(truncated, 4, 0).astype(np.int32)
        table["flags"] = flags
        table.meta.update(self._meta(cube))
        return table

    def _settings_meta(self):
        """The part of the catalogue ``meta`` that does not depend on the cube: version, date,
        detection parameters and networks (`_meta` adds whether the cube came with a PSF)."""
        return {
            "version": __version__,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "parameters": {
                "snr_threshold": self.snr_threshold,
                "min_separation_beams": self.min_separation,
                "widths_channels": list(self.widths),
                "deconvolved_fraction": self.deconvolved_fraction,
                "sidelobe_rejection": self.sidelobe_rejection,
            },
            "models": {"spectral": self._spectral_info, "deconvolver": self._deconvolver_info},
        }

    def _meta(self, cube):
        """The catalogue ``meta`` of a run on the prepared ``cube`` (DESIGN section 4)."""
        n_chan = cube.data.shape[0]
        beam = cube.beams[n_chan // 2]
        # East of ICRS north, as the catalogue's angles (the header's is of the cube's frame).
        beam_pa = beam.pa.to_value(u.deg) + cube.north_angle(*(cube.wcs.celestial.wcs.crpix - 1))
        meta = self._settings_meta()
        # The sidelobe test runs with the cube's PSF only (a tiled run, whose tiles have none,
        # records the whole cube's).
        meta["parameters"]["psf"] = cube.psf is not None
        return {
            **meta,
            "source": str(cube.source_path) if cube.source_path else "in-memory cube",
            "rest_frequency_ghz": float(cube.rest_frequency.to_value(u.GHz)),
            "rest_frequency_from_header": bool(cube.rest_frequency_from_header),
            "velocity_convention": _velocity_convention(cube),
            "beam_major_arcsec": float(beam.major.to_value(u.arcsec)),
            "beam_minor_arcsec": float(beam.minor.to_value(u.arcsec)),
            "beam_pa_deg": float(beam_pa),
            "cell_arcsec": float(cube.cell.to_value(u.arcsec)),
            "spectral_frame": cube.wcs.wcs.specsys.strip() or "not given",
            "channel_velocity_width_kms": float(cube.channel_velocity_width.to_value(u.km / u.s)),
        }


#: A line whose centre +- this many FWHMs leaves the band at both ends fills it (`_fills_band`).
BAND_FILL_FWHM = 1.5


def _fills_band(z, fwhm, first, last):
    """Which lines (centres ``z`` and FWHMs in channels) reach beyond both ends of the band
    ``first``..``last`` by `BAND_FILL_FWHM` of their FWHM: their wings fill it, so no channel is
    free of them to measure the continuum under them, which then eats into their flux (a line of
    FWHM 14 channels in a 32-channel band came out at 0.56 of its flux, and its window stopped
    short of the band's ends). Lines of 64-channel validation and test cubes never do."""
    reach = BAND_FILL_FWHM * np.asarray(fwhm, dtype=float)
    return (np.asarray(z, dtype=float) - reach < first) & (np.asarray(z, dtype=float) + reach > last)


def candidate_pixels(candidates, shape):
    """``(y, x)`` integer pixels of the candidates' centroids, clipped to an image of ``shape``."""
    return (
        np.clip(np.rint(candidates["y_centroid"].value).astype(int), 0, shape[0] - 1),
        np.clip(np.rint(candidates["x_centroid"].value).astype(int), 0, shape[1] - 1),
    )


def deconvolver_corner(cx, cy):
    """``(y0, x0)``: the corner of the `DECONVOLVER_CUTOUT` square centred on ``(cx, cy)``."""
    half = DECONVOLVER_CUTOUT // 2
    return int(round(cy)) - half, int(round(cx)) - half


def deconvolver_input(line_image, valid, y0, x0):
    """The deconvolver's input: the `DECONVOLVER_CUTOUT` square at ``(y0, x0)`` of the line
    image (``channel_snr`` summed over the line over the square root of its channels: unit noise
    where channels are independent, as the training inputs' moment 0 / sigma), over its robust
    noise; ``valid`` (2-D bool) marks the pixels with data.

    Returns
    -------
    cutout : `numpy.ndarray`
        The normalised square (float32), 0 where it has no data.
    ok : `numpy.ndarray` of bool
        Which of its pixels have data.
    """
    cutout, ok = _cutout(line_image, valid, y0, x0, DECONVOLVER_CUTOUT)
    sigma = float(mad_std(cutout[ok])) if ok.sum() > 16 else 0.0
    return cutout / (sigma if sigma > 0 else 1.0), ok


class _LineImage:
    """``channel_snr[lo:hi + 1].sum(axis=0) / sqrt(hi - lo + 1)``, summed only where sliced."""

    def __init__(self, channel_snr, lo, hi):
        self.channels, self.shape = channel_snr[lo : hi + 1], channel_snr.shape[1:]

    def __getitem__(self, key):
        return self.channels[(slice(None), *key)].sum(axis=0) / np.sqrt(len(self.channels))


def _cutout(image, valid, y0, x0, size):
    """The ``size`` square of ``image`` (and of the bool ``valid``) at corner ``(y0, x0)``,
    zero (invalid) where it leaves the image."""
    out = np.zeros((size, size), dtype=np.float32)
    ok = np.zeros((size, size), dtype=bool)
    ny, nx = image.shape
    ys, xs = slice(max(y0, 0), min(y0 + size, ny)), slice(max(x0, 0), min(x0 + size, nx))
    if ys.start < ys.stop and xs.start < xs.stop:
        target = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
        out[target] = image[ys, xs]
        ok[target] = valid[ys, xs]
    return out, ok


def masked_view(prepared, mask=None):
    """``prepared`` as the detection stages see it, with the user's ``mask`` applied.

    Parameters
    ----------
    prepared : `~deepfocus.io.cube.PreparedCube`
    mask : `numpy.ndarray` of bool, optional
        ``(ny, nx)`` or ``(n_chan, ny, nx)`` in the input's channel order; True marks pixels to
        ignore.

    Returns
    -------
    view : `_View`
        ``valid`` (2-D) is False wherever the mask covers a pixel (in every channel, for a 3-D
        mask), and ``data`` is blank where a 3-D mask covers a voxel.

    Raises
    ------
    InvalidInputError
        If the mask's shape matches neither the image nor the cube.
    """
    valid = prepared.valid.any(axis=0) if prepared.valid.ndim == 3 else prepared.valid.copy()
    blank = None
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape == prepared.data.shape:
            # The user's channel order -> the prepared cube's (frequency ascending).
            blank = mask[::-1] if prepared.flipped else mask
            mask = mask.all(axis=0)
        if mask.shape != valid.shape:
            raise InvalidInputError(
                f"mask shape {mask.shape} matches neither the image {valid.shape} nor the cube"
            )
        valid &= ~mask
    return _View(prepared, valid, blank)


class _View:
    """A prepared cube as the detection stages see it: a 2-D valid-pixel mask (with the user's
    mask applied), the data blanked where a 3-D user mask says so, and the noise as plain
    numbers (Jy/beam)."""

    def __init__(self, prepared, valid, blank=None):
        self._prepared = prepared
        self.valid = valid
        self.noise = np.asarray(u.Quantity(prepared.noise, u.Jy / u.beam).value, dtype=float)
        if blank is not None and blank.any():
            self.data = np.where(blank, np.float32(np.nan), prepared.data)

    def __getattr__(self, name):
        return getattr(self._prepared, name)


#: Velocity convention of each kind of velocity axis: the first four characters of its CTYPE as
#: astropy's WCS reads it (AIPS ``VELO-LSR`` and the like become ``VRAD`` or ``VOPT`` by their
#: ``VELREF``, ``FELO`` becomes ``VOPT-F2W``; what stays ``VELO`` is relativistic).
_VELOCITY_CONVENTIONS = {"VRAD": "radio", "VOPT": "optical", "VELO": "relativistic"}


def _input_spectral_axis(cube):
    """``(kind, wcs, unit)`` of the input cube's spectral axis, from its header: the first four
    characters of its CTYPE as astropy's WCS reads it, its 1-D WCS (in SI units) and the
    header's CUNIT; None if the header has no spectral axis."""
    from astropy.wcs import WCS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wcs = WCS(cube.header)
    spec = wcs.wcs.spec
    if spec < 0:
        return None
    return wcs.wcs.ctype[spec][:4].upper(), wcs.spectral, cube.header.get(f"CUNIT{spec + 1}", "")


def _velocity_convention(cube):
    """The velocity convention of the input cube's spectral axis (that of ``spectral_centroid``);
    "radio" (that of ``line_width``) for an axis that is no velocity."""
    try:
        axis = _input_spectral_axis(cube)
    except Exception:  # a header astropy cannot read
        axis = None
    return _VELOCITY_CONVENTIONS.get(axis[0], "radio") if axis is not None else "radio"


def _in_input_units(cube, frequency):
    """Line centres in the kind of spectral axis the input cube has (DESIGN: the cube's unit).

    Frequency axes give GHz; velocity axes (radio ``VRAD``, optical ``VOPT``, relativistic
    ``VELO``) give km/s and wavelength axes (vacuum ``WAVE``, air ``AWAV``) the header's unit,
    each the axis's own value: the header's WCS maps the frequency to its (fractional) channel
    and the channel to the axis, the inverse of how `~deepfocus.io.cube.read_cube` reads it.
    Other axes (energy, wavenumber, ...) and anything unexpected give GHz.
    """
    try:
        kind, spectral, unit = _input_spectral_axis(cube)  # TypeError if None: GHz
        if kind in _VELOCITY_CONVENTIONS:
            unit = u.km / u.s
        elif kind in ("WAVE", "AWAV"):
            unit = u.Unit(unit or "m")
        else:
            return frequency.to(u.GHz)
        as_frequency = spectral.deepcopy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            as_frequency.wcs.sptr("FREQ-???")  # as read_cube converts it
            as_frequency.wcs.set()
            channel = as_frequency.world_to_pixel_values(frequency.to_value(u.Hz))
            value = spectral.pixel_to_world_values(channel) * u.Unit(spectral.wcs.cunit[0])
        if np.all(np.isfinite(value) | ~np.isfinite(frequency)):  # a row without a centre stays NaN
            return value.to(unit)
    except Exception:  # no spectral axis, a header wcslib reads differently from read_cube: GHz
        pass
    return frequency.to(u.GHz)
