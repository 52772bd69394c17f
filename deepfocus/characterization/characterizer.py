"""`SourceCharacterizer`: sub-pixel position, intrinsic size, position angle and line flux."""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
import torch
from astropy.modeling import fitting, models
from astropy.table import QTable
from radio_beam import Beam
from scipy.ndimage import map_coordinates
from scipy.spatial import cKDTree

from ..detection.lines import bridge_blank_channels
from ..detection.matched_filter import blank_channels
from ..exceptions import DeepFocusWarning, InvalidInputError
from ..io.catalog import CATALOG_COLUMNS, SourceFlag
from ..training.samples import CHARACTERIZER_TARGETS, TRAINING_PIXELS_PER_BEAM, scale_cutouts
from .continuum import line_free_channels, significant_continuum
from .crowding import LINE_FREE_RADIUS, _line_profiles
from .forward import FIT_RADIUS, beam_image, refine_sources

__all__ = [
    "SourceCharacterizer",
    "CUTOUT_SIZE",
    "FORWARD_FIT_KERNELS",
    "fit_astray",
    "ASTRAY_FLUX_RATIO",
    "ASTRAY_SHIFT",
]

#: The ``forward_fit`` choices of `SourceCharacterizer`.
FORWARD_FIT_KERNELS = ("auto", "psf", "beam", None)

#: Side of the line-integrated cutouts the characterizer sees (pixels).
CUTOUT_SIZE = 32
#: Intrinsic sizes below this fraction of the beam are reported as 0 (unresolved, flag 8).
UNRESOLVED = 0.25
#: Pixels per beam major axis of the characterizer's training cubes. Cutouts of cubes sampled
#: more finely or more coarsely are resampled to the middle of this range first, so that the
#: network sees sources at the scale it learnt (sizes are in beam units and fluxes in Jy/beam
#: km/s over the noise, neither of which resampling changes).
TRAINED_PIXELS_PER_BEAM = TRAINING_PIXELS_PER_BEAM

#: A forward fit whose flux differs from the network's by more than this factor, or whose
#: position lies more than `ASTRAY_SHIFT` beams from the network's, is set aside for the
#: network's estimate (and the crowded refit starts from it): fitted alone, a source among
#: overlapping neighbours takes their flux for its own (on a test cube, three extended sources
#: 2-4 beams apart were fitted at 1.3-3.7 times their fluxes, two of them 0.7 beams off, and
#: the network measured all three within 3 % and 0.3 beams); the network saw such fields in
#: training. Chosen on two sets of validation cubes (seeds 10007 and 10008; a factor of 1.5
#: gave the same F1 and shares of fluxes and angles within 10 % and 10 deg on the first).
ASTRAY_FLUX_RATIO = 2.0
#: See `ASTRAY_FLUX_RATIO` (beam major axes; the evaluation's matching radius).
ASTRAY_SHIFT = 0.5

_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))


def fit_half_limit(beam_pix):
    """Largest half-side (pixels) of the forward fit's cutout around a source: the
    characterizer's cutout half-size plus two beams (``beam_pix``, major FWHM in pixels).
    `~deepfocus.detection.tiled.default_halo` gives every tile at least this around its
    sources, so that a tile fits what the single pass fits."""
    return CUTOUT_SIZE // 2 + int(np.ceil(2 * beam_pix))


def _cutout(image, cx, cy, size):
    """``size`` x ``size`` cutout centred on pixel ``(cx, cy)`` of the last two axes of ``image``
    (zero-padded, NaN set to 0); True if padded or if it held NaN."""
    half = size // 2
    out = np.zeros(image.shape[:-2] + (size, size), dtype=np.float32)
    ny, nx = image.shape[-2:]
    y0, x0 = cy - half, cx - half
    ys, xs = slice(max(0, y0), min(ny, y0 + size)), slice(max(0, x0), min(nx, x0 + size))
    part = image[..., ys, xs]
    out[
        ..., ys.start - y0 : ys.start - y0 + part.shape[-2], xs.start - x0 : xs.start - x0 + part.shape[-1]
    ] = part
    padded = part.shape[-2:] != (size, size) or not np.all(np.isfinite(part))
    return np.nan_to_num(out), padded


def _zoom(pixels_per_beam):
    """Cutout pixels per cube pixel that bring ``pixels_per_beam`` into the trained range."""
    lo, hi = TRAINED_PIXELS_PER_BEAM
    return 1.0 if lo <= pixels_per_beam <= hi else 0.5 * (lo + hi) / pixels_per_beam


def _native_size(zoom):
    """Side (pixels, even) of the cube cutout that a `CUTOUT_SIZE` cutout at ``zoom`` covers."""
    return CUTOUT_SIZE if zoom == 1.0 else 2 * int(np.ceil(0.5 * CUTOUT_SIZE / zoom)) + 4


def _resample(images, zoom):
    """`CUTOUT_SIZE` images sampled at ``1 / zoom`` cube pixels, centred like ``images``.

    ``images`` are ``(..., m, m)`` cutouts centred on pixel ``m // 2``; cubic-spline
    interpolation (the images are smooth on the beam scale, which spans at least 4 pixels of
    either grid).
    """
    if zoom == 1.0:
        return images
    m = images.shape[-1]
    grid = m // 2 + (np.arange(CUTOUT_SIZE) - CUTOUT_SIZE // 2) / zoom
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    flat = images.reshape((-1, m, m))
    out = [map_coordinates(image, [yy, xx], order=3, mode="nearest") for image in flat]
    return np.asarray(out, dtype=np.float32).reshape(images.shape[:-2] + (CUTOUT_SIZE, CUTOUT_SIZE))


def _detected_with_psf(catalog):
    """True if ``catalog``'s meta says its detector had the cube's PSF."""
    parameters = catalog.meta.get("parameters") if hasattr(catalog, "meta") else None
    return isinstance(parameters, dict) and parameters.get("psf") is True


class SourceCharacterizer:
    """Measure the sources of a catalogue in their line-integrated images.

    For each source, the cube is integrated over the source's line channels (``z_min`` to
    ``z_max``) and a cutout around it is measured, by the characterizer network where weights are
    given (sub-pixel offset, intrinsic FWHMs in beam units, position angle as sin 2θ and cos 2θ,
    and the logarithm of the line flux over the cutout's noise, so that the flux scale is kept),
    else by a least-squares elliptical Gaussian fit with the beam deconvolved.

    The first estimates are then refined by a forward model
    (`~deepfocus.characterization.forward`): an elliptical Gaussian convolved with the point
    spread function, fitted to the line image by least squares, with the position held for a
    compact source and fitted (within half a beam) for a resolved one. With the
    cube's PSF this measures fluxes, sizes and angles as the instrument saw them (sidelobes
    included); it roughly doubles the share of fluxes within 10 % on simulated ALMA cubes.
    Where a fit ends far from the network's estimate (`fit_astray`: a flux off by more than a
    factor `ASTRAY_FLUX_RATIO`, or a position more than `ASTRAY_SHIFT` beams away), as a source
    fitted alone among overlapping neighbours does, the network's estimate is kept.

    Parameters
    ----------
    model : str, path-like, `torch.nn.Module` or None
        ``"default"`` (the shipped ``characterizer-default``), a weights file, or None for the
        Gaussian fit.
    forward_fit : {'auto', 'psf', 'beam', None}
        The kernel of the forward model. ``'auto'``: the cube's PSF when one is given (a dirty
        cube), else no refinement; ``'psf'``: the PSF, which must be given; ``'beam'``: the
        restoring beam of each line (a CLEANed cube, whose sources are the CLEAN model
        convolved with it), even if a PSF is given; None: no refinement.

    Examples
    --------
    >>> from importlib.resources import files
    >>> from deepfocus import CubeDetector, SourceCharacterizer
    >>> cube = files("deepfocus.data") / "example_dirty.fits"  # the example cube shipped with deepfocus
    >>> catalog = CubeDetector()(cube)
    >>> catalog = SourceCharacterizer()(cube, catalog)
    >>> sources = catalog["id", "fwhm_major", "fwhm_minor", "position_angle", "flux"]
    >>> for name in sources.colnames[1:]:
    ...     sources[name].info.format = ".2f"
    >>> print(sources)
     id fwhm_major fwhm_minor position_angle    flux
          arcsec     arcsec        deg       Jy km / s
    --- ---------- ---------- -------------- ---------
      1       0.36       0.25          87.89      2.85
      2       0.11       0.08          43.35      0.71
      3       0.43       0.22         114.50      1.26
      4       0.00       0.00           0.00      1.20
      5       0.78       0.50         109.89      0.28
    """

    def __init__(self, *, model="default", forward_fit="auto"):
        from ..detection.detector import _load

        if forward_fit not in FORWARD_FIT_KERNELS:
            raise InvalidInputError(
                f"forward_fit must be one of {', '.join(map(repr, FORWARD_FIT_KERNELS))}, got {forward_fit!r}"
            )
        self.model = model
        self.forward_fit = forward_fit
        self._network, self._info = _load(model, "characterizer")

    def __call__(self, cube, catalog, *, psf=None, crowded=True):
        """Add or refine the measured columns of ``catalog``.

        Parameters
        ----------
        cube : `~spectral_cube.SpectralCube`, str or path-like
            The cube the catalogue was made from.
        catalog : `~astropy.table.QTable`
            With ``x_centroid``, ``y_centroid``, ``z_min`` and ``z_max`` at least.
        psf : str, path-like or array-like, optional
            The cube's PSF (``tclean``'s ``.psf``), for the forward-model fit.
        crowded : bool
            With the forward-model fit, measure the sources with neighbours again, among them
            (`~deepfocus.characterization.crowding.refit_crowded`). A tiled run turns this off
            for each tile and does it once on the stitched catalogue.

        Returns
        -------
        catalog : `~astropy.table.QTable`
            A copy with ``x_centroid``, ``y_centroid`` (refined), ``sky_centroid``,
            ``fwhm_major``, ``fwhm_minor``, ``position_angle``, ``flux``, ``continuum_flux`` and
            ``flags`` filled in.
        """
        from ..detection.detector import prepare

        if catalog is None or len(catalog) == 0:
            raise InvalidInputError("the catalogue is empty: nothing to characterise")
        missing = [c for c in ("x_centroid", "y_centroid", "z_min", "z_max") if c not in catalog.colnames]
        if missing:
            raise InvalidInputError(f"the catalogue lacks column(s) {', '.join(missing)}")
        prepared = prepare(cube, psf=psf)
        if prepared.psf is None and self.forward_fit == "auto" and _detected_with_psf(catalog):
            warnings.warn(
                "the detections were made with the cube's PSF but none is given here, so sizes "
                "and fluxes are not fitted through it: pass psf= to the characterizer too (or use "
                "DeepFocus, which passes it on)",
                DeepFocusWarning,
                stacklevel=2,
            )
        n_chan = prepared.data.shape[0]
        noise = np.asarray(u.Quantity(prepared.noise, u.Jy / u.beam).value, dtype=float)
        blank = blank_channels(noise)  # the whole cube's, also in a tile or a block of channels
        noise = np.where(np.isfinite(noise), noise, np.nanmedian(noise))
        dv = prepared.channel_velocity_width.to_value(u.km / u.s)
        beam = prepared.beams[n_chan // 2]
        cell = prepared.cell.to_value(u.arcsec)
        beam_major_pix = beam.major.to_value(u.arcsec) / cell
        data = np.nan_to_num(prepared.data)
        channel_has_data = prepared.valid.any(axis=(1, 2))
        # A blank channel inside a line would take its share out of the line image.
        data = bridge_blank_channels(data, blank, axis=0, copy=False)
        table = QTable(catalog, copy=True)
        n = len(table)
        inputs, raw, sigmas, centres, edge, continua = [], [], [], [], [], []
        n_off, n_line, beams, zooms = [], [], [], []
        # Every row's line window (the frame's channels) and, where given, centre and FWHM.
        profiles = _line_profiles(table, prepared, dv)
        windows = profiles[0].astype(int).reshape(-1, 2)
        nearby = _rows_nearby(table, LINE_FREE_RADIUS * beam_major_pix)
        for i, row in enumerate(table):
            lo, hi = windows[i]
            beams.append(prepared.beams[(lo + hi) // 2])  # the beam of the line (beams vary with channel)
            zooms.append(_zoom(beams[-1].major.to_value(u.arcsec) / cell))
            sigma = float(np.sqrt(np.sum(noise[lo : hi + 1] ** 2)) * dv)
            cx, cy = int(round(row["x_centroid"].value)), int(round(row["y_centroid"].value))
            size = _native_size(zooms[-1])
            block, _ = _cutout(data, cx, cy, size)
            # Near the edge: the cutout leaves the image or reaches pixels blank in every line channel.
            blank = np.where(prepared.valid[lo : hi + 1].any(axis=0), 0.0, np.nan)
            _, padded = _cutout(blank, cx, cy, size)
            # The continuum: per-pixel median over the channels outside the lines at the position.
            off = line_free_channels(channel_has_data, windows, nearby[i])
            continuum = np.median(block[off], axis=0) if off.sum() >= 3 else np.zeros(block.shape[1:])
            line_sum = block[lo : hi + 1].sum(axis=0)
            raw.append(_resample(line_sum * dv / sigma, zooms[-1]))
            # The network sees the line alone where a continuum is significant, as in its
            # training samples (`~deepfocus.training.samples.characterizer_samples`): left in, a
            # continuum of 12 sigma under a line was taken for line flux (twice to four times
            # the line's). An insignificant one stays: subtracting it would only add the noise
            # of the median.
            beam_pix = beams[-1].major.to_value(u.arcsec) / cell
            significant = significant_continuum(block, off, noise, size // 2, beam_pix, continuum)
            inputs.append(_resample((line_sum - (hi - lo + 1) * significant) * dv / sigma, zooms[-1]))
            continua.append(_resample(continuum, zooms[-1]))
            n_off.append(int(off.sum()))
            n_line.append(hi - lo + 1)
            sigmas.append(sigma)
            centres.append((cx, cy))
            edge.append(padded)
        inputs, raw = np.asarray(inputs, np.float32)[:, None], np.asarray(raw, np.float32)
        continua, n_line = np.asarray(continua, np.float32), np.asarray(n_line)
        sigmas, centres = np.asarray(sigmas), np.asarray(centres, dtype=float)
        beam_major = np.array([b.major.to_value(u.arcsec) for b in beams])
        zooms = np.asarray(zooms)
        if self._network is not None:
            scaled, log_scale = scale_cutouts(inputs)
            # One cutout per call: a cutout's outputs then do not depend on which others share
            # its batch (they moved by 1e-6, which a faint source's forward fit magnified into
            # another minimum: 6 % in flux between a tiled run and a single pass). 2.7 ms per
            # cutout against 1.6 ms in batches of 64 (measured).
            with torch.no_grad():
                p = np.concatenate(
                    [self._network(torch.from_numpy(scaled[k : k + 1])).numpy() for k in range(len(scaled))]
                )
            p[:, 6] += log_scale
            measured = {
                "dx": p[:, 0],
                "dy": p[:, 1],
                "major": np.clip(p[:, 2], 0, None) * beam_major,
                "minor": np.clip(p[:, 3], 0, None) * beam_major,
                "pa": np.degrees(0.5 * np.arctan2(p[:, 4], p[:, 5])) % 180,
                "flux": np.exp(p[:, 6]) * sigmas,
            }
        else:
            # The fit measures the line alone: the continuum comes off the line-integrated image.
            line_only = raw * sigmas[:, None, None] - continua * (n_line * dv)[:, None, None]
            measured = _gaussian_fits(line_only, beams, cell / zooms)
        kernel = self._kernel(prepared)
        fallback = np.zeros(n, dtype=bool)  # forward fits that failed or were set aside (flag 32)
        if kernel is not None:
            refined = self._refine(
                prepared, profiles, data, centres, measured, zooms, beams, dv, kernel, noise, nearby
            )
            use = refined["ok"]
            if self._network is not None:
                use = use & ~fit_astray(refined, measured, zooms, beam_major_pix)
            for key in ("dx", "dy", "major", "minor", "pa", "flux"):
                measured[key] = np.where(use, refined[key], measured[key])
            fallback = ~use
        major = np.maximum(measured["major"], measured["minor"])
        minor = np.minimum(measured["major"], measured["minor"])
        unresolved = major < UNRESOLVED * beam_major
        major = np.where(unresolved, 0.0, major)
        minor = np.where(unresolved, 0.0, minor)
        # Offsets are in cutout pixels: 1 / zoom cube pixels each.
        x = centres[:, 0] + measured["dx"] / zooms
        y = centres[:, 1] + measured["dy"] / zooms
        table["x_centroid"] = x * u.pix
        table["y_centroid"] = y * u.pix
        table["sky_centroid"] = prepared.pixel_to_world(x, y)
        table["fwhm_major"] = major * u.arcsec
        table["fwhm_minor"] = minor * u.arcsec
        # Angles are measured on the pixel grid: east of ICRS north, as sky_centroid is ICRS.
        sky_pa = (measured["pa"] + prepared.north_angle(x, y)) % 180
        table["position_angle"] = np.where(unresolved, 0.0, sky_pa) * u.deg
        table["flux"] = measured["flux"] * u.Jy * u.km / u.s
        table["continuum_flux"] = self._continuum(
            continua,
            CUTOUT_SIZE // 2 + measured["dx"],
            CUTOUT_SIZE // 2 + measured["dy"],
            major,
            minor,
            measured["pa"],
            beams,
            noise,
            np.asarray(n_off),
        )
        flags = (
            np.asarray(table["flags"], dtype=np.int32) if "flags" in table.colnames else np.zeros(n, np.int32)
        )
        flags = flags | np.where(edge, 1, 0) | np.where(unresolved, 8, 0)
        flags = flags | np.where(_blended(table, beam_major_pix), 2, 0)
        flags = (flags & ~int(SourceFlag.FIT_FALLBACK)) | np.where(fallback, int(SourceFlag.FIT_FALLBACK), 0)
        table["flags"] = flags.astype(np.int32)
        if crowded and kernel is not None:
            from .crowding import refit_crowded

            table = refit_crowded(table, prepared, kernel=kernel)
        if self._network is not None:
            from .training_range import flag_out_of_range

            flag_out_of_range(table, prepared)
        table.meta.setdefault("models", {})["characterizer"] = self.model_info
        # What the sizes and fluxes were fitted through: 'psf', 'beam' or 'none'.
        table.meta["forward_fit"] = kernel or "none"
        order = [c for c in CATALOG_COLUMNS if c in table.colnames]
        return table[order + [c for c in table.colnames if c not in order]]

    @property
    def model_info(self):
        """What the catalogue's ``meta["models"]["characterizer"]`` records: the network's
        ``{"name", "sha256"}`` (from its model card), or ``{"name": "gaussian fit"}`` without one."""
        return self._info or {"name": "gaussian fit"}

    def _kernel(self, prepared):
        """``'psf'``, ``'beam'`` or None: the forward model's kernel for ``prepared``."""
        return self.kernel_for(psf=prepared.psf is not None)

    def kernel_for(self, *, psf):
        """``'psf'``, ``'beam'`` or None: the forward model's kernel for a cube with (``psf``
        True) or without a PSF, as the catalogue's ``meta["forward_fit"]`` records it (None as
        ``'none'``).

        Raises
        ------
        InvalidInputError
            ``forward_fit='psf'`` and no PSF.
        """
        if self.forward_fit is None:
            return None
        if self.forward_fit == "beam":
            return "beam"
        if self.forward_fit == "psf" and not psf:
            raise InvalidInputError(
                "forward_fit='psf' (--forward-fit psf) needs the cube's PSF: give psf "
                "(--psf FILE, or --psf auto for CASA's file names), or use forward_fit='auto'"
            )
        return "psf" if psf else None

    @staticmethod
    def _refine(prepared, profiles, data, centres, measured, zooms, beams, dv, kernel, noise, nearby):
        """Sizes, angles, fluxes and (of resolved sources) positions from a Gaussian convolved
        with ``kernel`` (``'psf'``: the cube's PSF; ``'beam'``: the line's restoring beam) fitted
        to each line image (`~deepfocus.characterization.forward.refine_sources`), started from
        ``measured``; ``profiles`` are the rows' line windows, centres and widths
        (`~deepfocus.characterization.crowding._line_profiles`), and each continuum is measured
        outside the lines of the rows ``nearby``.

        Returns the fit's ``major``, ``minor`` (arcsec), ``pa`` (deg), ``flux`` (Jy km/s),
        ``dx``, ``dy`` (offsets from ``centres`` in cutout pixels, as ``measured`` has them) and
        ``ok``.
        """
        from .crowding import flux_window, line_image

        cell = prepared.cell.to_value(u.arcsec)
        channel_has_data = prepared.valid.any(axis=(1, 2))
        windows, line_centres, line_widths = profiles
        images, valid, kernels, xs, ys, sigmas = [], [], [], [], [], []
        for i in range(len(windows)):
            full = (int(windows[i][0]), int(windows[i][1]))
            # The flux from the line's core channels; its whole window stays out of the continuum.
            line = () if line_centres is None else (line_centres[i], line_widths[i])
            lo, hi, share = flux_window(full, *line)
            beam_pix = beams[i].major.to_value(u.arcsec) / cell
            observed = np.hypot(measured["major"][i] / cell, beam_pix)
            # Bounded: a first estimate can be far too large.
            half = min(int(np.ceil(FIT_RADIUS * observed)) + 3, fit_half_limit(beam_pix))
            cx, cy = (int(v) for v in centres[i])
            block, _ = _cutout(data, cx, cy, 2 * half)
            off = line_free_channels(channel_has_data, windows, nearby[i])
            continuum = significant_continuum(block, off, noise, half, beam_pix)
            image, sigma = line_image(block, noise, lo, hi, share, continuum, dv)
            images.append(image)
            sigmas.append(sigma)
            blank = np.where(prepared.valid[lo : hi + 1].any(axis=0), 1.0, 0.0)
            valid.append(_cutout(blank, cx, cy, 2 * half)[0] > 0)
            if kernel == "psf":
                kernels.append(np.asarray(prepared.psf[(lo + hi) // 2], dtype=float))
            else:
                kernels.append(beam_image(beams[i], cell, 2 * half))
            xs.append(half + measured["dx"][i] / zooms[i])
            ys.append(half + measured["dy"][i] / zooms[i])
        fit = refine_sources(
            images,
            valid,
            kernels,
            xs,
            ys,
            measured["major"] / cell,
            measured["minor"] / cell,
            measured["pa"],
            measured["flux"],
            noise=sigmas,
            beam_area=[float((b.sr / (cell * u.arcsec) ** 2).to_value(u.one)) for b in beams],
        )
        fit["major"] = fit["major"] * cell
        fit["minor"] = fit["minor"] * cell
        # The fit moves resolved sources: offsets from the cutout centres, in cutout pixels.
        fit["dx"] = measured["dx"] + (fit["x"] - np.asarray(xs)) * zooms
        fit["dy"] = measured["dy"] + (fit["y"] - np.asarray(ys)) * zooms
        return fit

    @staticmethod
    def _continuum(continua, x, y, major, minor, pa, beams, noise, n_off):
        """Spatially integrated continuum (Jy): peak continuum over the beam dilution.

        ``continua`` are the sources' continuum cutouts (Jy/beam), ``x``, ``y`` the sources'
        positions in them, ``beams`` their beams and ``n_off`` the number of channels each
        continuum is the median of.
        """
        size = continua.shape[-1]
        ix = np.clip(np.rint(x).astype(int), 0, size - 1)
        iy = np.clip(np.rint(y).astype(int), 0, size - 1)
        peak = continua[np.arange(len(continua)), iy, ix]
        # Only a continuum above 3 sigma of its own noise (median over n_off channels) counts.
        sigma = np.sqrt(np.pi / 2) * np.median(noise) / np.sqrt(np.maximum(n_off, 1))
        values = []
        for p, s, a, b, angle, beam in zip(peak, sigma, major, minor, pa, beams, strict=True):
            if p < 3 * s:
                values.append(0.0)
                continue
            if a > 0:
                source = Beam(major=a * u.arcsec, minor=max(b, 1e-4) * u.arcsec, pa=angle * u.deg)
                dilution = float(beam.convolve(source).sr / beam.sr)
            else:
                dilution = 1.0
            values.append(p * dilution)
        return np.asarray(values) * u.Jy


def fit_astray(fit, network, zooms, beam_pix):
    """Where a source's forward fit has left the network's estimate: a flux more than
    `ASTRAY_FLUX_RATIO` times larger or smaller, or a position more than `ASTRAY_SHIFT` beams
    away.

    Parameters
    ----------
    fit, network : dict
        The fit's and the network's ``dx``, ``dy`` (cutout pixels) and ``flux`` (Jy km/s).
    zooms : `numpy.ndarray`
        Cutout pixels per cube pixel of each source.
    beam_pix : float
        Beam major axis (FWHM, cube pixels).

    Returns
    -------
    astray : `numpy.ndarray`
        Boolean, one per source.
    """
    ratio = np.maximum(fit["flux"], 1e-30) / np.maximum(network["flux"], 1e-30)
    shift = np.hypot(fit["dx"] - network["dx"], fit["dy"] - network["dy"]) / zooms / beam_pix
    return (np.abs(np.log(ratio)) > np.log(ASTRAY_FLUX_RATIO)) | (shift > ASTRAY_SHIFT)


def _rows_nearby(table, radius):
    """For every row, itself and the rows within ``radius`` pixels (sorted indices)."""
    if len(table) == 0:
        return []
    xy = np.column_stack([table["x_centroid"].to_value(u.pix), table["y_centroid"].to_value(u.pix)])
    return [sorted(rows) for rows in cKDTree(xy).query_ball_point(xy, radius)]


def _blended(table, beam_major_pix):
    """Sources with a neighbour within 1.5 beams whose line overlaps theirs."""
    x, y = table["x_centroid"].value, table["y_centroid"].value
    lo, hi = np.asarray(table["z_min"]), np.asarray(table["z_max"])
    near = np.hypot(x[:, None] - x[None], y[:, None] - y[None]) < 1.5 * beam_major_pix
    overlap = (lo[:, None] <= hi[None]) & (lo[None] <= hi[:, None])
    both = near & overlap
    np.fill_diagonal(both, False)
    return both.any(axis=1)


def _gaussian_fits(cutouts, beams, cell):
    """Elliptical Gaussian fits (astropy.modeling) of cutouts in Jy/beam km/s, each with its
    beam (one per cutout) deconvolved; ``cell`` is the cutouts' pixel size in arcsec (one value,
    or one per cutout)."""
    n = cutouts.shape[-1]
    yy, xx = np.mgrid[:n, :n]
    out = {k: np.zeros(len(cutouts)) for k in ("dx", "dy", "major", "minor", "pa", "flux")}
    cells = np.broadcast_to(np.asarray(cell, dtype=float), (len(cutouts),))
    for i, (image, beam, pixel) in enumerate(zip(cutouts, beams, cells, strict=True)):
        beam_area_pix = float((beam.sr / (pixel * u.arcsec) ** 2).to_value(u.one))
        s0 = beam.major.to_value(u.arcsec) / pixel / _FWHM
        init = models.Gaussian2D(
            amplitude=max(image[n // 2, n // 2], 1e-9),
            x_mean=n // 2,
            y_mean=n // 2,
            x_stddev=1.2 * s0,
            y_stddev=s0,
            theta=0.0,
        )
        init.x_mean.bounds = (n // 2 - 3, n // 2 + 3)
        init.y_mean.bounds = (n // 2 - 3, n // 2 + 3)
        # A source wider than the cutout is not measured in it (the fit of a faint one can run away).
        init.x_stddev.bounds = init.y_stddev.bounds = (0.1, n)
        init.amplitude.bounds = (0.0, None)  # an emission line: a negative fit is a failed one
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = fitting.TRFLSQFitter()(init, xx, yy, image, maxiter=200)
        except Exception:
            fit = init
        sx, sy, theta = abs(fit.x_stddev.value), abs(fit.y_stddev.value), fit.theta.value
        if sx < sy:
            sx, sy, theta = sy, sx, theta + np.pi / 2
        pa = np.degrees(np.pi / 2 + theta) % 180
        observed = Beam(
            major=_FWHM * sx * pixel * u.arcsec, minor=_FWHM * sy * pixel * u.arcsec, pa=pa * u.deg
        )
        try:
            intrinsic = observed.deconvolve(beam, failure_returns_pointlike=True)
            major, minor = intrinsic.major.to_value(u.arcsec), intrinsic.minor.to_value(u.arcsec)
            pa = float(intrinsic.pa.to_value(u.deg) % 180)
        except Exception:
            major = minor = 0.0
        out["dx"][i], out["dy"][i] = fit.x_mean.value - n // 2, fit.y_mean.value - n // 2
        out["major"][i], out["minor"][i], out["pa"][i] = major, minor, pa
        # A fit at the amplitude's bound of 0 measured nothing: no flux (NaN), not zero.
        found = fit.amplitude.value > 1e-6 * np.max(np.abs(image))
        out["flux"][i] = 2 * np.pi * fit.amplitude.value * sx * sy / beam_area_pix if found else np.nan
    return out


assert len(CHARACTERIZER_TARGETS) == 7  # the network's outputs, in the order used above
