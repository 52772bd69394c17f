"""One simulated observation: sky model, dirty cube and truth catalogue, in memory or on disk."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import QTable
from astropy.wcs import WCS
from radio_beam import Beams
from spectral_cube import SpectralCube, VaryingResolutionSpectralCube

from .._validation import check_seed
from ..exceptions import InvalidInputError
from ..io.atomic import atomic_path
from ..version import __version__
from .catalog import check_line_widths, peak_snr, random_catalog
from .interferometer import Interferometer
from .observation import Observation
from .skymodel import SkyModel, _as_quantity

__all__ = ["SimulatedObservation", "simulate", "simulate_arrays", "cube_wcs", "output_paths", "TRUTH_COLUMNS"]

#: Columns of a truth catalogue, in order (DESIGN section 4).
TRUTH_COLUMNS = (
    "id",
    "x_centroid",
    "y_centroid",
    "z_centroid",
    "sky_centroid",
    "spectral_centroid",
    "z_min",
    "z_max",
    "fwhm_major",
    "fwhm_minor",
    "position_angle",
    "line_width",
    "flux",
    "continuum_flux",
    "snr",
    "flags",
)


def cube_wcs(observation: Observation, cell) -> WCS:
    """The RA/Dec/frequency WCS of a simulated cube (SIN projection, centre pixel npix // 2)."""
    obs = observation
    w = WCS(naxis=3)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN", "FREQ"]
    w.wcs.cunit = ["deg", "deg", "Hz"]
    w.wcs.crpix = [obs.npix // 2 + 1, obs.npix // 2 + 1, 1]
    cdelt = u.Quantity(cell, u.deg).value
    w.wcs.cdelt = [-cdelt, cdelt, obs.channel_width.to_value(u.Hz)]
    w.wcs.crval = [obs.ra.to_value(u.deg), obs.dec.to_value(u.deg), obs.frequency.to_value(u.Hz)]
    w.wcs.radesys = "ICRS"
    w.wcs.specsys = "LSRK"
    w.wcs.restfrq = obs.restfreq.to_value(u.Hz)
    return w


@dataclass
class SimulatedObservation:
    """A simulated observation.

    Attributes
    ----------
    dirty : `~spectral_cube.SpectralCube`
        Dirty cube in Jy/beam with the beam of every channel.
    sky : `~spectral_cube.SpectralCube`
        Sky-model cube in Jy/pixel (no primary-beam attenuation).
    truth : `~astropy.table.QTable`
        Truth catalogue in the columns of `TRUTH_COLUMNS`.
    observation : `Observation`
        Settings.
    psf : `numpy.ndarray`
        PSF of every channel, ``(n_chan, npix, npix)``.
    seed : int or None
        Seed of the random catalogue and noise.
    primary_beam : `numpy.ndarray` or None
        The primary-beam gain the dirty cube was attenuated by, ``(n_chan, npix, npix)``, NaN
        where the image is blank (the CASA engine's ``tclean`` ``.pb``); None when no primary
        beam was applied (the fast engine's default).
    """

    dirty: SpectralCube
    sky: SpectralCube
    truth: QTable
    observation: Observation
    psf: np.ndarray
    seed: int | None = None
    primary_beam: np.ndarray | None = None

    def summary(self) -> str:
        """A few lines describing the cube and its sources."""
        d = self.dirty
        beam = d.beams[len(d.beams) // 2] if hasattr(d, "beams") else d.beam
        noise = self.truth.meta.get("noise_rms_jy_per_beam", float("nan"))
        lines = [
            f"dirty cube  : {d.shape[0]} channels x {d.shape[1]} x {d.shape[2]} pixels, "
            f"{d.spectral_axis[0].to(u.GHz):.4f} .. {d.spectral_axis[-1].to(u.GHz):.4f}",
            f"array       : {self.observation.configuration}, "
            f"cell {abs(d.wcs.wcs.cdelt[1]) * 3600:.4g} arcsec",
            f"beam        : {beam.major.to(u.arcsec):.3f} x {beam.minor.to(u.arcsec):.3f}, "
            f"PA {beam.pa.to(u.deg):.1f}",
            f"noise       : {noise * 1e3:.3f} mJy/beam per channel",
            f"sources     : {len(self.truth)}",
        ]
        for row in self.truth:
            lines.append(
                f"  #{row['id']:<3d} x={row['x_centroid'].value:7.2f} y={row['y_centroid'].value:7.2f} "
                f"z={row['z_centroid']:6.2f}  flux={row['flux'].value:8.4f} Jy km/s  "
                f'S/N={row["snr"]:6.1f}  FWHM={row["fwhm_major"].value:.3f}"'
            )
        return "\n".join(lines)

    def write(self, directory, name="sim", *, overwrite=False, psf=False, pb=False) -> dict:
        """Write ``{name}_dirty.fits``, ``{name}_sky.fits`` and ``{name}_truth.ecsv``.

        Parameters
        ----------
        directory : str or path-like
            Output folder (created if needed).
        name : str
            File name stem.
        overwrite : bool
            Replace existing files (and remove ``{name}_psf.fits`` and ``{name}_pb.fits`` of an
            earlier simulation that this one does not write).
        psf : bool
            Also write ``{name}_psf.fits``.
        pb : bool
            Also write ``{name}_pb.fits`` (the primary-beam gain; only if the simulation has one).

        Returns
        -------
        paths : dict
            The written paths by kind.
        """
        every = output_paths(directory, name)
        wanted = {"dirty", "sky", "truth"} | ({"psf"} if psf else set())
        wanted |= {"pb"} if pb and self.primary_beam is not None else set()
        paths = {kind: path for kind, path in every.items() if kind in wanted}
        # A PSF or primary beam of an earlier simulation under this name would be taken for
        # this one's (``--psf auto`` finds NAME_psf.fits): it counts as an existing output.
        stale = [path for kind, path in every.items() if kind not in paths]
        stale = [path for path in stale if path.exists()]
        if not overwrite:
            existing = [str(p) for p in [*paths.values(), *stale] if p.exists()]
            if existing:
                more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
                raise FileExistsError(
                    f"output exists: {existing[0]}{more} (pass overwrite=True, or --overwrite on the "
                    "command line, to replace it)"
                )
        for kind in ("dirty", "sky"):
            with atomic_path(paths[kind]) as tmp:
                getattr(self, kind).hdulist.writeto(tmp)
        for kind, array in (("psf", self.psf), ("pb", self.primary_beam)):
            if kind in paths:
                header = self.sky.header.copy()
                header["BUNIT"] = ""
                with atomic_path(paths[kind]) as tmp:
                    fits.PrimaryHDU(np.asarray(array, np.float32), header=header).writeto(tmp)
        with atomic_path(paths["truth"]) as tmp:
            self.truth.write(tmp, format="ascii.ecsv")
        for path in stale:
            path.unlink()
        return paths


def output_paths(directory, name):
    """Every file `SimulatedObservation.write` may write, or count as its output, under ``name``
    in ``directory``: kind (``dirty``, ``sky``, ``truth``, ``psf``, ``pb``) -> path."""
    directory = Path(directory)
    paths = {kind: directory / f"{name}_{kind}.fits" for kind in ("dirty", "sky")}
    paths["truth"] = directory / f"{name}_truth.ecsv"
    paths.update({kind: directory / f"{name}_{kind}.fits" for kind in ("psf", "pb")})
    return paths


def _truth_table(sources: QTable, sky: SkyModel, interferometer: Interferometer, wcs: WCS) -> QTable:
    obs = interferometer.observation
    n = len(sources)
    truth = QTable(meta={})
    truth["id"] = np.arange(1, n + 1)
    for name in ("x_centroid", "y_centroid"):
        truth[name] = u.Quantity(sources[name], u.pix)
    truth["z_centroid"] = np.asarray(u.Quantity(sources["z_centroid"]).value, dtype=float)
    x, y, z = truth["x_centroid"].value, truth["y_centroid"].value, truth["z_centroid"]
    ra, dec = wcs.celestial.pixel_to_world_values(x, y)
    truth["sky_centroid"] = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")
    truth["spectral_centroid"] = (wcs.spectral.pixel_to_world_values(z) * u.Hz).to(u.GHz)
    width_chan = u.Quantity(sources["line_width"], u.km / u.s) / obs.channel_velocity_width
    truth["z_min"] = np.clip(np.floor(z - width_chan.value), 0, obs.n_channels - 1).astype(int)
    truth["z_max"] = np.clip(np.ceil(z + width_chan.value), 0, obs.n_channels - 1).astype(int)
    truth["fwhm_major"] = u.Quantity(sources["fwhm_major"], u.arcsec)
    truth["fwhm_minor"] = u.Quantity(sources["fwhm_minor"], u.arcsec)
    truth["position_angle"] = u.Quantity(sources["position_angle"], u.deg) % (180 * u.deg)
    truth["line_width"] = u.Quantity(sources["line_width"], u.km / u.s)
    truth["flux"] = u.Quantity(sources["flux"], u.Jy * u.km / u.s)
    cont = sources["continuum_flux"] if "continuum_flux" in sources.colnames else np.zeros(n)
    truth["continuum_flux"] = u.Quantity(cont, u.Jy)
    ref_noise = interferometer.noise_rms[obs.n_channels // 2]
    truth["snr"] = (
        peak_snr(
            truth,
            beam=interferometer.beam,
            noise_rms=ref_noise,
            channel_velocity_width=obs.channel_velocity_width,
            n_channels=obs.n_channels,
        )
        if n
        else np.zeros(0)
    )
    truth["flags"] = np.zeros(n, dtype=np.int32)
    truth.meta.update(
        {
            "deepfocus_version": __version__,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "observation": obs.to_dict(),
            "cell_arcsec": float(interferometer.cell.to_value(u.arcsec)),
            "beam_major_arcsec": float(interferometer.beam.major.to_value(u.arcsec)),
            "beam_minor_arcsec": float(interferometer.beam.minor.to_value(u.arcsec)),
            "beam_pa_deg": float(interferometer.beam.pa.to_value(u.deg)),
            "channel_velocity_width_kms": float(obs.channel_velocity_width.to_value(u.km / u.s)),
            "noise_rms_jy_per_beam": float(ref_noise.value),
            "restfreq_hz": float(obs.restfreq.to_value(u.Hz)),
            "velocity_convention": "radio",
        }
    )
    return truth


def _beams_hdu_cube(data, wcs, beams, unit):
    """A cube with one beam (all channels alike) or a beam per channel."""
    major = u.Quantity([b.major for b in beams])
    header = wcs.to_header()
    header["BUNIT"] = unit
    if np.allclose(major.value, major[0].value, rtol=1e-6):
        cube = SpectralCube(data=data, wcs=wcs, header=header, meta={"BUNIT": unit})
        return cube.with_beam(beams[0], raise_error_jybm=False)
    beams = Beams(
        major=major,
        minor=u.Quantity([b.minor for b in beams]),
        pa=u.Quantity([b.pa for b in beams]),
    )
    return VaryingResolutionSpectralCube(data=data, wcs=wcs, header=header, beams=beams, meta={"BUNIT": unit})


def simulate_arrays(
    interferometer: Interferometer, catalog=None, *, seed=None, recipe="wide", n_sources=None
):
    """The arrays of one simulation, without building cubes (fast path for training).

    Returns
    -------
    dirty : `numpy.ndarray`
        ``(n_chan, npix, npix)`` dirty cube in Jy/beam.
    sky : `SkyModel`
        The sky model (``sky.cube()`` gives Jy/pixel).
    catalog : `~astropy.table.QTable`
        The sources (drawn at random when ``catalog`` is None).
    """
    sky, catalog, noise_rng = sky_model_for(
        interferometer, catalog, seed=seed, recipe=recipe, n_sources=n_sources
    )
    return interferometer.observe(sky, seed=noise_rng), sky, catalog


def _check_entropy(seed):
    """``seed`` as plain ints: None, a non-negative integer or a sequence of them (`check_seed`)."""
    if seed is None:
        return None
    try:
        if isinstance(seed, (Sequence, np.ndarray)) and not isinstance(seed, (str, bytes)):
            return [check_seed(s) for s in seed]
        return check_seed(seed)
    except InvalidInputError:
        raise InvalidInputError(
            f"seed must be a non-negative integer or a sequence of them, got {seed!r}"
        ) from None


def sky_model_for(interferometer: Interferometer, catalog=None, *, seed=None, recipe="wide", n_sources=None):
    """The sky model of one simulation and the noise generator, from one seed.

    The seed is split into two independent streams, one for the random catalogue and one for
    the noise, so that every engine draws the same sources for the same seed.

    Returns
    -------
    sky : `SkyModel`
    catalog : `~astropy.table.QTable`
    noise_rng : `numpy.random.Generator`
    """
    obs = interferometer.observation
    sequence = np.random.SeedSequence(_check_entropy(seed))
    cat_rng, noise_rng = (np.random.default_rng(s) for s in sequence.spawn(2))
    shape = (obs.n_channels, obs.npix, obs.npix)
    if catalog is None:
        catalog = random_catalog(
            cat_rng,
            shape=shape,
            cell=interferometer.cell,
            beam=interferometer.beam,
            noise_rms=interferometer.noise_rms[obs.n_channels // 2],
            channel_velocity_width=obs.channel_velocity_width,
            recipe=recipe,
            n_sources=n_sources,
        )
    sky = SkyModel(
        catalog, shape, cell=interferometer.cell, channel_velocity_width=obs.channel_velocity_width
    )
    return sky, catalog, noise_rng


def simulate(
    observation: Observation | None = None,
    catalog: QTable | None = None,
    *,
    seed=None,
    recipe: str = "wide",
    n_sources: int | None = None,
    interferometer: Interferometer | None = None,
) -> SimulatedObservation:
    """Simulate one ALMA observation with the fast engine.

    Parameters
    ----------
    observation : `Observation`, optional
        Settings (defaults: `Observation()`).
    catalog : `~astropy.table.QTable`, optional
        Sources (columns of `~deepfocus.simulation.skymodel.REQUIRED_COLUMNS`); if None a
        random catalogue is drawn with ``recipe``.
    seed : int or sequence of int, optional
        Seed of the random catalogue and of the noise (non-negative integers).
    recipe : {'wide', 'paper'}
        Catalogue recipe when ``catalog`` is None.
    n_sources : int, optional
        Number of random sources.
    interferometer : `Interferometer`, optional
        Reuse an interferometer (and its cached PSFs) across many simulations; its observation
        is used.

    Returns
    -------
    result : `SimulatedObservation`

    Warns
    -----
    deepfocus.exceptions.DeepFocusWarning
        If the widest line (of ``catalog``, or that ``recipe`` can draw) has a FWHM over half the
        band's velocity span: the band edges cut such lines (`~.catalog.check_line_widths`).

    Examples
    --------
    >>> from deepfocus.simulation import Observation, simulate
    >>> sim = simulate(Observation(npix=64, n_channels=40), seed=1)
    >>> print(sim.summary())
    dirty cube  : 40 channels x 64 x 64 pixels, 230.0000 GHz .. 230.6094 GHz
    array       : alma.cycle10.3, cell 0.135 arcsec
    beam        : 0.676 arcsec x 0.558 arcsec, PA 85.4 deg
    noise       : 0.408 mJy/beam per channel
    sources     : 1
      #1   x=  39.19 y=  21.97 z= 18.82  flux=  0.5381 Jy km/s  S/N=   3.5  FWHM=0.000"
    """
    if interferometer is None:
        interferometer = Interferometer(observation)
    elif observation is not None and observation != interferometer.observation:
        raise InvalidInputError("pass either an observation or an interferometer, not both differing")
    obs = interferometer.observation
    seed = _check_entropy(seed)  # plain ints, also in the truth's metadata
    given = catalog is not None
    dirty, sky, catalog = simulate_arrays(
        interferometer, catalog, seed=seed, recipe=recipe, n_sources=n_sources
    )
    warn_line_widths(obs, catalog if given else None, recipe=recipe, stacklevel=3)
    psf = np.stack([interferometer.psf(k) for k in range(obs.n_channels)])
    return assemble(interferometer, dirty, sky, catalog, psf=psf, beams=interferometer.beams, seed=seed)


def warn_line_widths(observation, catalog=None, *, recipe="wide", stacklevel=2):
    """`~.catalog.check_line_widths` for an observation and a catalogue (validated, as
    `SkyModel` takes it) or, without one, a recipe; True if it warned."""
    width = None if catalog is None else _as_quantity(catalog["line_width"], u.km / u.s, "line_width")
    return check_line_widths(
        n_channels=observation.n_channels,
        channel_velocity_width=observation.channel_velocity_width,
        line_width=width,
        recipe=recipe,
        stacklevel=stacklevel + 1,
    )


def assemble(interferometer, dirty, sky, catalog, *, psf, beams, seed=None, engine="fast"):
    """Wrap the arrays of a simulation into cubes with WCS and a truth table."""
    obs = interferometer.observation
    wcs = cube_wcs(obs, interferometer.cell)
    dirty_cube = _beams_hdu_cube(np.asarray(dirty, np.float32) * u.Jy / u.beam, wcs, beams, "Jy/beam")
    sky_cube = SpectralCube(data=sky.cube() * u.Jy / u.pix, wcs=wcs, meta={"BUNIT": "Jy/pixel"})
    truth = _truth_table(catalog, sky, interferometer, wcs)
    truth.meta["seed"] = seed
    truth.meta["engine"] = engine
    return SimulatedObservation(dirty_cube, sky_cube, truth, obs, np.asarray(psf, np.float32), seed)
