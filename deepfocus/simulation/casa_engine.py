"""Optional simulation engine that observes a sky model with real CASA.

The sky model is written as a FITS image, observed with ``simobserve`` (uv coverage, primary
beam of the antennas and, optionally, thermal noise from CASA's ATM atmosphere) and imaged with
``tclean`` (``niter=0``: the dirty cube and its PSF). This is the reference the fast
`~deepfocus.simulation.Interferometer` is measured against, and the engine behind
``deepfocus simulate --engine casa``.

Needs the ``casa`` extra (``pip install "deepfocus[casa]"``: casatools, casatasks, casadata).
CASA runs offline: when the user has no ``CASASITECONFIG`` of their own, a temporary site
configuration points CASA's data and measures at the ``casadata`` package and turns automatic
updates off.

.. note::

   casatools reads its configuration once, when it is first imported. The offline
   configuration therefore only takes effect when deepfocus performs that first import (in
   `simulate_with_casa` or `import_casa`); a process that imported casatools before, without
   a usable configuration of its own, keeps whatever CASA found then.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np

from ..exceptions import DeepFocusError, InvalidInputError
from .noise import T_GROUND
from .uvcoverage import _n_integrations

__all__ = [
    "attenuate_truth_snr",
    "CasaResult",
    "simulate_with_casa",
    "simulate_casa_observation",
    "casa_offline_config",
    "import_casa",
]

_INSTALL_HINT = 'the CASA engine needs casatools, casatasks and casadata: pip install "deepfocus[casa]"'

#: simobserve's observing date when the observation gives none (the hour angle fixes the time).
REFDATE = "2024/06/01"

#: Options of ``simulate_with_casa(..., clean=...)`` (tclean's Högbom CLEAN).
CLEAN_OPTIONS = frozenset({"threshold", "niter", "gain", "cycleniter"})

_LEAP_SECOND_MESSAGES = [
    "Leap second table TAI_UTC seems out-of-date",
    "Until the table is updated (see the CASA documentation",
    "times and coordinates derived from UTC could be wrong",
    "Restoring with an empty model image",  # tclean at niter=0: expected, not a problem
]

_SITE_CONFIG = """\
# Temporary CASA site configuration written by deepfocus: offline, no automatic updates.
import casadata
datapath = [casadata.datapath]
measurespath = casadata.datapath
measures_auto_update = False
data_auto_update = False
nologfile = True
# casatools 6.7 ignores nologfile and would write casa-<date>.log into the working directory.
logfile = {devnull!r}
"""


@contextlib.contextmanager
def casa_offline_config():
    """Make CASA use the data bundled in ``casadata``, with no network access.

    If ``CASASITECONFIG`` is not set, writes a site configuration to a temporary file (never
    in the user's home) that points ``datapath`` and ``measurespath`` at
    ``casadata.datapath``, turns automatic data and measures updates off and disables the
    ``casa-*.log`` file, and sets ``CASASITECONFIG`` to it for the duration of the block. A
    user's own ``CASASITECONFIG`` is left untouched.

    casatools reads the configuration at its first import in the process, so import
    casatools (and casatasks) inside this block; importing them earlier makes it ineffective.

    Raises
    ------
    DeepFocusError
        If ``casadata`` is not installed.
    """
    if os.environ.get("CASASITECONFIG"):
        yield
        return
    try:
        import casadata  # noqa: F401
    except ImportError as exc:
        raise DeepFocusError(_INSTALL_HINT) from exc
    folder = tempfile.mkdtemp(prefix="deepfocus-casaconfig-")
    path = os.path.join(folder, "casasiteconfig.py")
    with open(path, "w") as fh:
        fh.write(_SITE_CONFIG.format(devnull=os.devnull))
    os.environ["CASASITECONFIG"] = path
    try:
        yield
    finally:
        os.environ.pop("CASASITECONFIG", None)
        shutil.rmtree(folder, ignore_errors=True)


def import_casa():
    """Import casatools and casatasks with the offline configuration.

    With deepfocus's temporary configuration CASA writes no ``casa-*.log`` file; with a
    user's own ``CASASITECONFIG`` (or ``~/.casa/config.py``) CASA's logging follows it.

    Returns
    -------
    casatools, casatasks : module
        The imported modules.

    Raises
    ------
    DeepFocusError
        If casatools, casatasks or casadata is missing, with the command that installs them.
    """
    casatools, casatasks = sys.modules.get("casatools"), sys.modules.get("casatasks")
    if casatools is not None and casatasks is not None:  # already imported: config is fixed
        casatasks.casalog.filterMsg(_LEAP_SECOND_MESSAGES)
        return casatools, casatasks
    # casaconfig parses sys.argv when CASA is first imported (and would take, e.g., the
    # deepfocus option --n for its own --noconfig): hide the host program's arguments.
    argv = sys.argv
    with casa_offline_config():
        try:
            sys.argv = argv[:1]
            import casatasks
            import casatools
        except ImportError as exc:
            raise DeepFocusError(_INSTALL_HINT) from exc
        except Exception as exc:  # casaconfig refuses to start (e.g. no usable data path)
            raise DeepFocusError(
                f"CASA failed to start ({type(exc).__name__}: {exc}); check CASASITECONFIG"
                " or unset it to let deepfocus use the data bundled in casadata"
            ) from exc
        finally:
            sys.argv = argv
    # casadata's leap-second table ends before today's date: CASA then posts a SEVERE
    # message on every run. Times of day are irrelevant to a simulated track; drop it.
    casatasks.casalog.filterMsg(_LEAP_SECOND_MESSAGES)
    return casatools, casatasks


@dataclass
class CasaResult:
    """What CASA made of a sky model.

    Attributes
    ----------
    dirty : `numpy.ndarray`
        Dirty cube ``(n_chan, npix, npix)``, float32, Jy/beam (``tclean`` ``.image`` at
        ``niter=0``). Pixels CASA masks (primary beam below ``pblimit``) are NaN.
    psf : `numpy.ndarray`
        ``tclean`` PSF, same shape, peak 1 in every channel.
    beams : list of tuple
        Per channel ``(bmaj, bmin, bpa)``: fitted beam FWHMs in arcsec and PA in deg (east
        of north), as CASA records them in the image.
    frequencies : `~astropy.units.Quantity`
        Channel frequencies of the CASA image (LSRK), checked against the observation's.
    seconds : float
        Wall-clock time of the whole run (simobserve + tclean + export), in s.
    casa_version : str
        casatools version.
    settings : dict
        The simobserve and tclean arguments used.
    clean : dict or None
        With ``simulate_with_casa(..., clean=...)``: ``tclean`` Högbom CLEAN of the same
        measurement set: ``model`` (Jy/pixel), ``residual`` and ``image`` (restored, Jy/beam),
        each ``(n_chan, npix, npix)``; ``seconds`` (that ``tclean`` call alone),
        ``threshold_jy``, ``iterations`` and ``settings``.
    primary_beam : `numpy.ndarray` or None
        ``tclean``'s primary-beam gain (``.pb``), same shape, 1 at the field centre and NaN where
        CASA masks it; None if ``tclean`` wrote none.
    """

    dirty: np.ndarray
    psf: np.ndarray
    beams: list
    frequencies: u.Quantity
    seconds: float
    casa_version: str = ""
    settings: dict = field(default_factory=dict)
    clean: dict | None = None
    primary_beam: np.ndarray | None = None


def _config_path(name: str) -> Path:
    """The ``.cfg`` file of a configuration name (shipped name, ``C-3`` alias or path)."""
    from .antennas import AntennaConfiguration, _shipped_files

    conf = AntennaConfiguration.from_name(name)  # validates and resolves aliases
    files = _shipped_files()
    if conf.name in files:
        return files[conf.name]
    return Path(name).resolve()


def _hourangle_string(hour_angle: u.Quantity) -> str:
    ha = float(hour_angle.to_value(u.hourangle))
    return "transit" if ha == 0 else f"{ha:.6f}h"


def _track_seconds(obs):
    """The seconds the track observes: whole integrations (`_n_integrations`)."""
    return _n_integrations(obs.total_time, obs.integration) * obs.integration.to_value(u.s)


def _refdate(observation) -> str:
    """simobserve's ``refdate`` (``YYYY/MM/DD``) from ``observation.date`` (ISO) if it has one."""
    date = getattr(observation, "date", None)
    if date is None:
        return REFDATE
    from astropy.time import Time

    return Time(date).strftime("%Y/%m/%d")


def _direction_string(ra: u.Quantity, dec: u.Quantity) -> str:
    return f"ICRS {ra.to_value(u.deg):.10f}deg {dec.to_value(u.deg):.10f}deg"


def _seed_int(seed) -> int:
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(1, 2**31 - 1))
    if seed is None:
        return int(np.random.default_rng().integers(1, 2**31 - 1))
    return int(seed)


def _write_model(path, sky_cube, observation, cell):
    """Write the sky model as a CASA-readable FITS image (Jy/pixel)."""
    from astropy.io import fits

    n_chan, ny, nx = sky_cube.shape
    header = fits.Header()
    header["BUNIT"] = "Jy/pixel"
    # Pixel (nx//2, ny//2) (0-based) is the field centre: FITS CRPIX is 1-based.
    for axis, ctype, crval, cdelt, crpix, cunit in (
        (1, "RA---SIN", observation.ra.to_value(u.deg), -cell / 3600.0, nx // 2 + 1, "deg"),
        (2, "DEC--SIN", observation.dec.to_value(u.deg), cell / 3600.0, ny // 2 + 1, "deg"),
        (
            3,
            "FREQ",
            observation.frequency.to_value(u.Hz),
            observation.channel_width.to_value(u.Hz),
            1,
            "Hz",
        ),
        (4, "STOKES", 1.0, 1.0, 1, ""),
    ):
        header[f"CTYPE{axis}"] = ctype
        header[f"CRVAL{axis}"] = crval
        header[f"CDELT{axis}"] = cdelt
        header[f"CRPIX{axis}"] = crpix
        if cunit:
            header[f"CUNIT{axis}"] = cunit
    header["RADESYS"] = "ICRS"
    header["SPECSYS"] = "LSRK"
    header["RESTFRQ"] = observation.restfreq.to_value(u.Hz)
    data = np.asarray(sky_cube, dtype=np.float32)[None]  # (stokes, freq, dec, ra)
    fits.writeto(path, data, header, overwrite=True)


def _read_image(path):
    """Read an exported CASA cube: data ``(n_chan, ny, nx)``, frequencies (Hz) and beams."""
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(path) as hdul:
        head = hdul[0].header
        data = np.asarray(hdul[0].data, dtype=np.float32)
        beams = None
        if "BEAMS" in hdul:
            table = hdul["BEAMS"].data
            order = np.argsort(table["CHAN"][table["POL"] == 0])
            sel = table[table["POL"] == 0][order]
            scale = {"arcsec": 1.0, "deg": 3600.0}[hdul["BEAMS"].header.get("TUNIT1", "arcsec")]
            beams = [(float(r["BMAJ"]) * scale, float(r["BMIN"]) * scale, float(r["BPA"])) for r in sel]
        elif "BMAJ" in head:
            beams = [(head["BMAJ"] * 3600.0, head["BMIN"] * 3600.0, head["BPA"])]
    with warnings.catch_warnings():  # astropy's notes on CASA's DATE-OBS/OBSGEO keywords
        warnings.simplefilter("ignore")
        wcs = WCS(head)
    spectral = wcs.sub(["spectral"])
    # The cube is stored (stokes, freq, dec, ra) after exportfits(stokeslast=True).
    if data.ndim != 4 or head["CTYPE3"] != "FREQ" or not head["CTYPE4"].startswith("STOKES"):
        raise DeepFocusError(f"unexpected axes in CASA image {path}: {data.shape}")
    n_chan = data.shape[1]
    freqs = spectral.pixel_to_world_values(np.arange(n_chan))
    freqs = np.asarray(freqs, dtype=float) * u.Unit(spectral.wcs.cunit[0]).to(u.Hz)
    if beams is not None and len(beams) == 1 and n_chan > 1:
        beams = beams * n_chan
    return data[0], freqs, beams


def simulate_with_casa(sky_cube, observation, *, seed=None, workdir=None, clean=None) -> CasaResult:
    """Observe a sky-model cube with CASA ``simobserve`` and image it with ``tclean``.

    Parameters
    ----------
    sky_cube : array-like
        Sky model ``(n_chan, ny, nx)`` in Jy/pixel, on pixels of ``observation.cell`` with the
        field centre (``observation.ra``, ``observation.dec``) at pixel ``(ny // 2, nx // 2)``
        (0-based), channel 0 at ``observation.frequency``, RA increasing to the left (east),
        i.e. the orientation of the output images. ``n_chan`` must equal
        ``observation.n_channels``.
    observation : `~deepfocus.simulation.Observation`
        Array, field, track, spectral set-up and image. ``cell`` must be set (resolve it
        first). ``noise=True`` adds thermal noise with ``thermalnoise='tsys-atm'`` at
        ``observation.pwv``; a fixed ``tsys`` is not supported by simobserve.
        CASA always attenuates the sky by the antennas' primary beam (single pointing at the
        field centre), whatever ``observation.primary_beam`` says.
    seed : int or `numpy.random.Generator`, optional
        Seed of simobserve's noise; a Generator draws one. ``None`` draws a fresh seed.
    workdir : path-like, optional
        Directory in which a scratch folder is created for CASA's measurement sets and
        images (about 0.5 GB for a 128 x 128 x 32 cube, 30-min track, with noise: a
        noiseless and a noisy measurement set); default the system temporary directory. The
        scratch folder is removed afterwards, also on error.
    clean : dict, optional
        Also CLEAN the observation with ``tclean`` (``deconvolver='hogbom'``, same image
        settings) and return the products in ``result.clean``. Keys: ``threshold`` (in units
        of the dirty cube's median robust channel noise, default 3), ``niter`` (default
        10000), ``gain`` (default 0.1), ``cycleniter`` (default -1: CASA's choice).

    Returns
    -------
    result : `CasaResult`
        Dirty cube and PSF ``(n_chan, npix, npix)``, per-channel beams, frequencies, timing.

    Raises
    ------
    DeepFocusError
        If casatools/casatasks/casadata are not installed, or CASA fails (the message says
        which step).
    InvalidInputError
        If the cube or the observation cannot be simulated.

    Notes
    -----
    CASA's tasks write into the current directory, so the working directory is changed to
    the scratch folder while they run (and restored): do not call this from several threads
    of one process at once; use processes.

    Time on two CPU cores with CASA 6.7: about 3 s for 64 x 64 x 4 pixels and a 10-min
    track, about 17-22 s for 128 x 128 x 32 pixels, a 30-min track and noise (simobserve
    about two thirds of it).
    """
    cube = np.asarray(sky_cube, dtype=float)
    obs = observation
    if cube.ndim != 3:
        raise InvalidInputError(f"sky_cube must be (n_chan, ny, nx), got shape {cube.shape}")
    if cube.shape[0] != obs.n_channels:
        raise InvalidInputError(f"sky_cube has {cube.shape[0]} channels but the observation {obs.n_channels}")
    if not np.all(np.isfinite(cube)):
        raise InvalidInputError("sky_cube contains NaN or infinite values")
    if obs.cell is None:
        raise InvalidInputError("observation.cell is None: resolve the pixel size before calling CASA")
    if obs.noise and obs.tsys is not None:
        raise InvalidInputError(
            "the CASA engine computes Tsys from the atmosphere (thermalnoise='tsys-atm'); "
            "a fixed observation.tsys is not supported"
        )
    unknown = set(clean or {}) - CLEAN_OPTIONS
    if unknown:  # before the (minutes-long) simulation
        raise InvalidInputError(f"unknown clean options {sorted(unknown)}; known: {sorted(CLEAN_OPTIONS)}")
    cfg = _config_path(obs.configuration)
    casatools, casatasks = import_casa()

    t0 = time.perf_counter()
    cell = float(obs.cell.to_value(u.arcsec))
    direction = _direction_string(obs.ra, obs.dec)
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    run_dir = tempfile.mkdtemp(prefix="deepfocus-casa-", dir=workdir)
    cwd = os.getcwd()
    project = "sim"
    simobserve_args = dict(
        project=project,
        skymodel="model.fits",
        # Empty in* parameters: take position, cell, frequencies and Jy/pixel from the header.
        inbright="",
        indirection="",
        incell="",
        incenter="",
        inwidth="",
        setpointings=True,
        direction=direction,
        # A map smaller than the primary beam: one pointing at the field centre, no mosaic.
        mapsize=["0arcsec", "0arcsec"],
        integration=f"{obs.integration.to_value(u.s):.10g}s",
        obsmode="int",
        antennalist=str(cfg),
        refdate=_refdate(obs),
        hourangle=_hourangle_string(obs.hour_angle),
        # The fast engine's whole integrations, written in full: simobserve adds integrations
        # while under totaltime, so it observes the same track.
        totaltime=f"{_track_seconds(obs):.10g}s",
        outframe="LSRK",
        thermalnoise="tsys-atm" if obs.noise else "",
        user_pwv=float(obs.pwv.to_value(u.mm)),
        # Explicit: simobserve's Python default (270 K) differs from its XML default (269 K);
        # use the value of the fast model's atmosphere table.
        t_ground=T_GROUND,
        seed=_seed_int(seed),
        graphics="none",
        verbose=False,
        overwrite=True,
    )
    tclean_args = dict(
        imagename="img",
        specmode="cube" if obs.specmode == "cube" else "mfs",
        # Channel 0 at obs.frequency, the width's sign sets the axis direction; same frame
        # as simobserve's spectral window, so no regridding happens.
        nchan=obs.n_channels,
        start=f"{obs.frequency.to_value(u.Hz):.3f}Hz",
        width=f"{obs.channel_width.to_value(u.Hz):.3f}Hz",
        outframe="LSRK",
        veltype="radio",
        restfreq=f"{obs.restfreq.to_value(u.Hz):.3f}Hz",
        interpolation="nearest",
        gridder="standard",
        imsize=[obs.npix, obs.npix],
        cell=f"{cell:.8g}arcsec",
        phasecenter=direction,
        stokes="I",
        weighting=obs.weighting,
        robust=float(obs.robust),
        niter=0,
        pbcor=False,
        restoringbeam="",
    )
    try:
        os.chdir(run_dir)
        _write_model("model.fits", cube, obs, cell)
        casatasks.simobserve(**simobserve_args)
        # sim/sim.<cfg>.ms, and sim/sim.<cfg>.noisy.ms with thermal noise.
        suffix = ".noisy.ms" if obs.noise else ".ms"
        ms = [p for p in Path(project).glob("*" + suffix) if obs.noise or ".noisy" not in p.name]
        if not ms:
            raise DeepFocusError(f"CASA simobserve made no measurement set (looked for *{suffix})")
        vis = str(sorted(ms)[0])
        casatasks.tclean(vis=vis, **tclean_args)
        # The .pb of tclean's standard gridder: the attenuation simobserve applied.
        extensions = ("image", "psf", "pb") if Path("img.pb").exists() else ("image", "psf")
        images = _export(casatasks, "img", extensions)
        dirty, freqs, beams = images["image"]
        psf = images["psf"][0]
        primary_beam = images["pb"][0] if "pb" in images else None
        cleaned = None if clean is None else _tclean_hogbom(casatasks, vis, tclean_args, dirty, clean)
    except DeepFocusError:
        raise
    except Exception as exc:  # CASA raises RuntimeError/AssertionError/... with its own text
        raise DeepFocusError(f"CASA run failed: {type(exc).__name__}: {exc}") from exc
    finally:
        os.chdir(cwd)
        shutil.rmtree(run_dir, ignore_errors=True)

    expected = obs.frequencies.to_value(u.Hz)
    tol = 1e-3 * abs(obs.channel_width.to_value(u.Hz))
    if freqs.shape != expected.shape or np.max(np.abs(freqs - expected)) > tol:
        raise DeepFocusError(
            "CASA's image channels do not match the observation's: "
            f"{freqs[:3]} ... Hz vs {expected[:3]} ... Hz"
        )
    if beams is None:
        beams = [(np.nan, np.nan, np.nan)] * obs.n_channels
    return CasaResult(
        dirty=dirty,
        psf=psf,
        beams=beams,
        frequencies=freqs * u.Hz,
        seconds=time.perf_counter() - t0,
        casa_version=casatools.version_string(),
        settings={"simobserve": simobserve_args, "tclean": tclean_args},
        clean=cleaned,
        primary_beam=primary_beam,
    )


def _export(casatasks, prefix, extensions):
    """``{ext: _read_image(...)}`` of tclean's ``PREFIX.EXT`` images, exported to FITS."""
    out = {}
    for ext in extensions:
        if not Path(f"{prefix}.{ext}").exists():
            raise DeepFocusError(f"CASA tclean made no {prefix}.{ext}")
        casatasks.exportfits(
            imagename=f"{prefix}.{ext}",
            fitsimage=f"{prefix}.{ext}.fits",
            dropdeg=False,
            stokeslast=True,
            overwrite=True,
        )
        out[ext] = _read_image(f"{prefix}.{ext}.fits")
    return out


def _tclean_hogbom(casatasks, vis, imaging_args, dirty, options):
    """Run ``tclean`` with Högbom CLEAN in the current (scratch) directory; read its products."""
    from ..io.cube import robust_channel_noise

    noise = float(np.nanmedian(robust_channel_noise(dirty, np.isfinite(dirty))))
    threshold = float(options.get("threshold", 3.0)) * noise
    args = dict(imaging_args)
    args.update(
        imagename="cln",
        deconvolver="hogbom",
        niter=int(options.get("niter", 10_000)),
        gain=float(options.get("gain", 0.1)),
        cycleniter=int(options.get("cycleniter", -1)),
        threshold=f"{threshold:.6g}Jy",
        interactive=False,
    )
    start = time.perf_counter()
    summary = casatasks.tclean(vis=vis, **args)
    seconds = time.perf_counter() - start
    exported = _export(casatasks, "cln", ("model", "residual", "image"))
    products = {ext: image[0] for ext, image in exported.items()}
    iterations = summary.get("iterdone") if isinstance(summary, dict) else None
    return {
        **products,
        "seconds": seconds,
        "threshold_jy": threshold,
        "iterations": None if iterations is None else int(iterations),
        "settings": args,
    }


def simulate_casa_observation(
    interferometer, catalog=None, *, seed=None, recipe="wide", n_sources=None, workdir=None
):
    """Simulate one observation with CASA, in the same layout as `~deepfocus.simulation.simulate`.

    The sources are drawn exactly as the fast engine draws them for the same seed (so both
    engines can be compared cube for cube); the dirty cube, PSF and beams are CASA's.

    Parameters
    ----------
    interferometer : `~deepfocus.simulation.Interferometer`
        Settings (its observation) and the pixel size (``interferometer.cell``).
    catalog, seed, recipe, n_sources
        As for `~deepfocus.simulation.simulate`.
    workdir : path-like, optional
        Where CASA's scratch folder is made (removed afterwards).

    Returns
    -------
    result : `~deepfocus.simulation.SimulatedObservation`

    Warns
    -----
    deepfocus.exceptions.DeepFocusWarning
        If lines are wider than half the band, as `~deepfocus.simulation.simulate` does.
    """
    from radio_beam import Beam

    from .simulate import _check_entropy, assemble, sky_model_for, warn_line_widths

    seed = _check_entropy(seed)  # plain ints, also in the truth's metadata
    given = catalog is not None
    sky, catalog, noise_rng = sky_model_for(
        interferometer, catalog, seed=seed, recipe=recipe, n_sources=n_sources
    )
    warn_line_widths(interferometer.observation, catalog if given else None, recipe=recipe, stacklevel=3)
    obs = interferometer.observation.replace(cell=interferometer.cell, tsys=None)
    casa = simulate_with_casa(sky.cube(), obs, seed=noise_rng, workdir=workdir)
    beams = [Beam(major=b[0] * u.arcsec, minor=b[1] * u.arcsec, pa=b[2] * u.deg) for b in casa.beams]
    result = assemble(
        interferometer,
        casa.dirty,
        sky,
        catalog,
        psf=casa.psf,
        beams=beams,
        seed=seed,
        engine="casa",
    )
    result.truth.meta["casa_version"] = casa.casa_version
    if casa.primary_beam is not None:
        attenuate_truth_snr(result.truth, casa.primary_beam)
        result.primary_beam = np.asarray(casa.primary_beam, np.float32)
    return result


def attenuate_truth_snr(truth, primary_beam):
    """Scale the truth's ``snr`` by the primary-beam gain at each source, in place.

    The truth's S/N is that of the unattenuated sky; CASA's dirty cube holds the sky times the
    primary beam, with noise that is flat across the field (no ``pbcor``). The S/N a finder can
    reach is therefore the gain times the truth's, and zero where CASA blanks the image (gain
    below ``pblimit``). Fluxes stay intrinsic. ``meta["snr_primary_beam"]`` records the scaling.

    Parameters
    ----------
    truth : `~astropy.table.QTable`
        Truth catalogue with ``x_centroid``, ``y_centroid`` (pix), ``z_centroid`` and ``snr``.
    primary_beam : `numpy.ndarray`
        ``(n_chan, ny, nx)`` gain, NaN where masked.
    """
    if not len(truth):
        truth.meta["snr_primary_beam"] = True
        return
    n_chan, ny, nx = primary_beam.shape
    z = np.clip(np.rint(np.asarray(truth["z_centroid"], dtype=float)).astype(int), 0, n_chan - 1)
    y = np.rint(truth["y_centroid"].to_value(u.pix)).astype(int)
    x = np.rint(truth["x_centroid"].to_value(u.pix)).astype(int)
    inside = (y >= 0) & (y < ny) & (x >= 0) & (x < nx)
    gain = np.zeros(len(truth))
    gain[inside] = primary_beam[z[inside], y[inside], x[inside]]
    gain = np.where(np.isfinite(gain), np.clip(gain, 0.0, 1.0), 0.0)
    truth["snr"] = np.asarray(truth["snr"], dtype=float) * gain
    truth.meta["snr_primary_beam"] = True
