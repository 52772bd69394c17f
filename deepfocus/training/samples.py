"""Training samples for each network, cut from simulated observations.

Every input is normalised by its own noise (so networks see S/N units whatever the flux scale),
and every target is expressed in the same units, so that predictions times the stored noise give
physical quantities back (the original code min-max normalised each input and lost the flux
scale).

Layouts (numpy, float32):

- deconvolver: input ``(1, ny, nx)`` dirty moment-0 / its noise; target ``(1, ny, nx)`` sky
  moment-0 / the same noise (a point source of S/N s has a target of s in one pixel).
- spectral: input ``(1, n_chan)`` spectrum at a pixel / per-channel noise; targets ``(2, n_chan)``:
  the line mask (1 inside ``z_min..z_max`` of a source at that pixel) and the noise-free
  spectrum / noise.
- characterizer: input ``(1, size, size)`` line-integrated cutout / its noise (less a significant
  continuum), centred on the source's nearest pixel; target ``CHARACTERIZER_TARGETS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import astropy.units as u
import numpy as np

__all__ = [
    "CubeSimulation",
    "deconvolver_sample",
    "spectral_samples",
    "characterizer_samples",
    "CHARACTERIZER_TARGETS",
    "moment0",
    "TRAINING_PIXELS_PER_BEAM",
    "CUTOUT_SIZE",
    "SAMPLES_VERSION",
]

#: Version of the samples' layout and making: a cache of samples made by another version is not
#: used (2: the characterizer's cutouts lose a continuum significant at the source).
SAMPLES_VERSION = 2

#: Range of pixels per beam major axis of the simulated training cubes (the networks' scale).
TRAINING_PIXELS_PER_BEAM = (4.0, 6.0)

#: Side of the characterizer's cutouts (pixels): sources closer than half of it to an edge give
#: no characterizer sample.
CUTOUT_SIZE = 32

#: Outputs of the characterizer, in order.
CHARACTERIZER_TARGETS = (
    "dx",  # x_centroid - cutout centre x (pix)
    "dy",  # y_centroid - cutout centre y (pix)
    "major",  # intrinsic fwhm_major / beam major axis
    "minor",  # intrinsic fwhm_minor / beam major axis
    "sin2pa",  # sin(2 PA) weighted by ellipticity (1 - minor / major)
    "cos2pa",  # cos(2 PA) weighted by ellipticity
    "log_flux",  # ln(line flux / noise of the cutout's moment-0, both in Jy km/s [per beam])
)


@dataclass
class CubeSimulation:
    """The arrays of one simulation that training needs.

    Attributes
    ----------
    dirty : `numpy.ndarray`
        ``(n_chan, ny, nx)`` Jy/beam.
    signal : `numpy.ndarray`
        Noise-free dirty cube, same shape.
    sky : `numpy.ndarray`
        Sky-model cube in Jy/pixel.
    noise : `numpy.ndarray`
        ``(n_chan,)`` noise rms per channel, Jy/beam.
    truth : `~astropy.table.QTable`
        Truth catalogue (``deepfocus.simulation.simulate.TRUTH_COLUMNS``).
    beam_major_pix : float
        Restoring beam major axis in pixels.
    cell_arcsec : float
        Pixel size.
    dv : float
        Channel width in km/s.
    beam : `radio_beam.Beam`, optional
        Restoring beam of the middle channel.
    psf : `numpy.ndarray`, optional
        PSF of the middle channel, ``(ny, nx)``, peak 1 at the centre.
    """

    dirty: np.ndarray
    signal: np.ndarray
    sky: np.ndarray
    noise: np.ndarray
    truth: object
    beam_major_pix: float
    cell_arcsec: float
    dv: float
    beam: object = None
    psf: object = None


def moment0(cube, noise, dv, channels=None):
    """Moment-0 image of ``channels`` (Jy/beam km/s) and its noise (channels independent)."""
    channels = slice(None) if channels is None else channels
    image = np.nansum(cube[channels], axis=0) * dv
    sigma = float(np.sqrt(np.sum(np.asarray(noise)[channels] ** 2)) * dv)
    return image, sigma


def deconvolver_sample(sim: CubeSimulation):
    """``(input, target)`` for the deconvolver: moment-0 images over the whole band in S/N units."""
    image, sigma = moment0(sim.dirty, sim.noise, sim.dv)
    sky_image = sim.sky.sum(axis=0) * sim.dv
    return (image / sigma)[None].astype(np.float32), (sky_image / sigma)[None].astype(np.float32)


def spectral_samples(sim: CubeSimulation, rng, *, n_background=2, jitter=1):
    """Spectra at the sources (and at random empty places) with line masks and clean spectra.

    Parameters
    ----------
    rng : `numpy.random.Generator`
        Picks the pixel jitter and the background positions.
    n_background : int
        Spectra from pixels at least two beams from every source (all-zero masks).
    jitter : int
        The spectrum is taken up to this many pixels from the source's nearest pixel.

    Returns
    -------
    inputs : `numpy.ndarray`
        ``(n, 1, n_chan)``.
    targets : `numpy.ndarray`
        ``(n, 2, n_chan)``: mask, clean spectrum / noise.
    """
    n_chan, ny, nx = sim.dirty.shape
    truth = sim.truth
    xs = np.asarray(truth["x_centroid"].value)
    ys = np.asarray(truth["y_centroid"].value)
    pixels = []
    for x, y in zip(xs, ys, strict=True):
        jx, jy = rng.integers(-jitter, jitter + 1, 2)
        pixels.append((int(np.clip(round(x) + jx, 0, nx - 1)), int(np.clip(round(y) + jy, 0, ny - 1))))
    tries = 0
    while len(pixels) < len(xs) + n_background and tries < 100:
        tries += 1
        px, py = int(rng.integers(0, nx)), int(rng.integers(0, ny))
        if np.all(np.hypot(xs - px, ys - py) > 2 * sim.beam_major_pix):
            pixels.append((px, py))
    channels = np.arange(n_chan)
    inputs, targets = [], []
    for px, py in pixels:
        mask = np.zeros(n_chan, dtype=np.float32)
        # Every source whose beam covers this pixel marks its line channels.
        near = np.hypot(xs - px, ys - py) <= max(1.5, 0.5 * sim.beam_major_pix)
        for row in truth[near]:
            mask[(channels >= row["z_min"]) & (channels <= row["z_max"])] = 1
        inputs.append(sim.dirty[:, py, px] / sim.noise)
        targets.append(np.stack([mask, sim.signal[:, py, px] / sim.noise]))
    return np.asarray(inputs, np.float32)[:, None], np.asarray(targets, np.float32)


def characterizer_samples(sim: CubeSimulation, rng, *, size=CUTOUT_SIZE, jitter_channels=1):
    """Line-integrated cutouts around each source with its measured quantities as targets.

    Sources closer than ``size // 2`` pixels to the edge are skipped. A continuum significant
    at a source (`~deepfocus.characterization.continuum.significant_continuum`, measured in the
    channels outside the lines of the sources within
    `~deepfocus.characterization.crowding.LINE_FREE_RADIUS` beams) is subtracted from its line
    image, as `~deepfocus.characterization.SourceCharacterizer` does before it runs the network.

    Parameters
    ----------
    sim : `CubeSimulation`
        The cube and its truth.
    rng : `numpy.random.Generator`
        Draws the shifts of the line windows.
    size : int
        Side of the cutouts (pixels).
    jitter_channels : int
        Each end of the line window moves by up to this many channels.

    Returns
    -------
    inputs : `numpy.ndarray`
        ``(n, 1, size, size)`` cutout / its noise.
    targets : `numpy.ndarray`
        ``(n, 7)`` in the order of `CHARACTERIZER_TARGETS`.
    noise : `numpy.ndarray`
        ``(n,)`` noise of each cutout's moment-0 (Jy/beam km/s).
    """
    from ..characterization.continuum import line_free_channels, significant_continuum
    from ..characterization.crowding import LINE_FREE_RADIUS

    n_chan, ny, nx = sim.dirty.shape
    half = size // 2
    noise = np.asarray(sim.noise, dtype=float)
    xs = np.asarray(sim.truth["x_centroid"].value, dtype=float)
    ys = np.asarray(sim.truth["y_centroid"].value, dtype=float)
    windows = (
        np.column_stack([np.asarray(sim.truth["z_min"]), np.asarray(sim.truth["z_max"])])
        .astype(int)
        .reshape(-1, 2)
    )
    inputs, targets, sigmas = [], [], []
    for row in sim.truth:
        x, y = float(row["x_centroid"].value), float(row["y_centroid"].value)
        cx, cy = int(round(x)), int(round(y))
        if cx - half < 0 or cy - half < 0 or cx + half > nx or cy + half > ny:
            continue
        lo = int(np.clip(row["z_min"] + rng.integers(-jitter_channels, jitter_channels + 1), 0, n_chan - 1))
        hi = int(np.clip(row["z_max"] + rng.integers(-jitter_channels, jitter_channels + 1), lo, n_chan - 1))
        image, sigma = moment0(sim.dirty, sim.noise, sim.dv, slice(lo, hi + 1))
        cut = image[cy - half : cy + half, cx - half : cx + half] / sigma
        # As the characterizer does at work: a continuum significant at the source comes off,
        # measured outside the lines of the sources within `LINE_FREE_RADIUS` beams.
        block = sim.dirty[:, cy - half : cy + half, cx - half : cx + half]
        near = np.hypot(xs - x, ys - y) <= LINE_FREE_RADIUS * sim.beam_major_pix
        off = line_free_channels(
            np.ones(n_chan, bool), np.append(windows[near], [[lo, hi]], axis=0), slice(None)
        )
        continuum = significant_continuum(block, off, noise, half, sim.beam_major_pix)
        cut = cut - (hi - lo + 1) * continuum * sim.dv / sigma
        major = float(row["fwhm_major"].to_value(u.arcsec)) / sim.cell_arcsec / sim.beam_major_pix
        minor = float(row["fwhm_minor"].to_value(u.arcsec)) / sim.cell_arcsec / sim.beam_major_pix
        ellipticity = 1 - minor / major if major > 0 else 0.0
        pa = np.radians(float(row["position_angle"].to_value(u.deg)))
        flux = float(row["flux"].to_value(u.Jy * u.km / u.s))
        targets.append(
            [
                x - cx,
                y - cy,
                major,
                minor,
                ellipticity * np.sin(2 * pa),
                ellipticity * np.cos(2 * pa),
                np.log(max(flux, 1e-12) / sigma),
            ]
        )
        inputs.append(cut)
        sigmas.append(sigma)
    shape = (0, 1, size, size)
    if not inputs:
        return np.zeros(shape, np.float32), np.zeros((0, 7), np.float32), np.zeros(0)
    return (
        np.asarray(inputs, np.float32)[:, None],
        np.asarray(targets, np.float32),
        np.asarray(sigmas),
    )


def scale_cutouts(inputs):
    """Divide each cutout by the peak near its centre (at least 1, in S/N units).

    The networks' normalisation layers make them blind to the amplitude of their input, so
    the characterizer sees cutouts of unit peak and predicts the flux relative to that peak;
    ``log_flux`` targets are shifted by ``log(scale)`` and predictions shifted back.

    Parameters
    ----------
    inputs : `numpy.ndarray`
        ``(n, 1, size, size)`` cutouts in S/N units.

    Returns
    -------
    scaled : `numpy.ndarray`
        The cutouts divided by their scale.
    log_scale : `numpy.ndarray`
        ``(n,)`` natural logarithm of the scales.
    """
    c = inputs.shape[-1] // 2
    centre = inputs[:, 0, c - 2 : c + 3, c - 2 : c + 3]
    scale = np.maximum(centre.max(axis=(1, 2)), 1.0).astype(np.float32)
    return inputs / scale[:, None, None, None], np.log(scale)
