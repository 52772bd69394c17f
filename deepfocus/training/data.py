"""Training data: simulated cubes (or FITS triplets made elsewhere) turned into task samples."""

from __future__ import annotations

import contextlib
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import QTable
from scipy.signal import fftconvolve
from tqdm.auto import tqdm

from ..exceptions import InvalidInputError
from ..simulation import Interferometer, Observation
from ..simulation.simulate import _truth_table, cube_wcs, sky_model_for
from . import samples as S

__all__ = [
    "training_observations",
    "simulate_cubes",
    "cube_names",
    "read_cube_triplets",
    "task_arrays",
    "TASKS",
]

TASKS = ("deconvolver", "spectral", "characterizer")


def training_observations(n, *, seed, npix=128, n_channels=64):
    """``n`` observations spread over ALMA's configurations, bands, declinations and weather.

    Configurations C-1 to C-7, frequencies in bands 3, 6 and 7, declinations -70 to +20 deg,
    PWV 0.5-2.5 mm, 4-6 pixels per beam; all share ``npix`` and ``n_channels``.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(11,)))
    observations = []
    for _ in range(n):
        observations.append(
            Observation(
                configuration=f"alma.cycle10.{int(rng.integers(1, 8))}",
                frequency=float(rng.choice([95.0, 110.0, 220.0, 240.0, 335.0, 345.0])) * u.GHz,
                dec=float(rng.uniform(-70, 20)) * u.deg,
                pwv=float(rng.uniform(0.5, 2.5)) * u.mm,
                pixels_per_beam=float(rng.uniform(*S.TRAINING_PIXELS_PER_BEAM)),
                npix=npix,
                n_channels=n_channels,
            )
        )
    return observations


def _restored_signal(sky, beams, cell_arcsec):
    """Sky cube (Jy/pixel) convolved with each channel's restoring beam: Jy/beam, no sidelobes."""
    out = np.empty_like(sky)
    kernels = {}
    for k, beam in enumerate(beams):
        key = (round(beam.major.to_value(u.arcsec), 6), round(beam.minor.to_value(u.arcsec), 6))
        if key not in kernels:
            kernel = beam.as_kernel(cell_arcsec * u.arcsec).array
            kernels[key] = kernel / kernel.max()
        out[k] = fftconvolve(sky[k], kernels[key], mode="same")
    return out


def simulate_cubes(n_cubes, *, seed, observations=None, recipe_mix=0.25, progress=True):
    """Yield `~deepfocus.training.samples.CubeSimulation` of ``n_cubes`` seeded simulations.

    Parameters
    ----------
    n_cubes : int
        Number of cubes.
    seed : int
        Seed of the set (cube ``i`` uses ``[seed, i]``); use distinct seeds for training,
        validation and test sets.
    observations : list of `~deepfocus.simulation.Observation`, optional
        Settings to draw from (default: 8 from `training_observations`).
    recipe_mix : float
        Fraction of cubes drawn with the ``paper`` recipe (the rest ``wide``).
    """
    observations = observations or training_observations(8, seed=seed)
    interferometers = {}
    for index in tqdm(range(n_cubes), desc="simulate", unit="cube", disable=not progress):
        entropy = [seed, index]
        picker = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(5,)))
        which = int(picker.integers(len(observations)))
        recipe = "paper" if picker.random() < recipe_mix else "wide"
        if which not in interferometers:
            interferometers[which] = Interferometer(observations[which])
        alma = interferometers[which]
        obs = alma.observation
        sky, catalog, noise_rng = sky_model_for(alma, seed=entropy, recipe=recipe)
        dirty = alma.dirty_signal(sky) + alma.noise(noise_rng)
        sky_cube = sky.cube()
        truth = _truth_table(catalog, sky, alma, cube_wcs(obs, alma.cell))
        cell = float(alma.cell.to_value(u.arcsec))
        yield S.CubeSimulation(
            dirty=dirty,
            signal=_restored_signal(sky_cube, alma.beams, cell),
            sky=sky_cube,
            noise=alma.noise_rms.to_value(u.Jy / u.beam).astype(np.float32),
            truth=truth,
            beam_major_pix=float((alma.beam.major / alma.cell).to_value(u.one)),
            cell_arcsec=cell,
            dv=float(obs.channel_velocity_width.to_value(u.km / u.s)),
            beam=alma.beam,
            psf=alma.psf(obs.n_channels // 2),
        )


def cube_names(directory):
    """Sorted names ``NAME`` of the ``NAME_dirty.fits`` files in ``directory``.

    Raises `InvalidInputError` when ``directory`` is not a folder or holds no such file.
    """
    directory = Path(directory)
    if not directory.is_dir():
        problem = "is not a folder" if directory.exists() else "does not exist"
        raise InvalidInputError(f"data folder {directory} {problem}")
    names = sorted(path.name[: -len("_dirty.fits")] for path in directory.glob("*_dirty.fits"))
    if not names:
        raise InvalidInputError(f"no *_dirty.fits files in {directory}")
    return names


@contextlib.contextmanager
def _reading(path):
    """Turn the errors of reading ``path`` into a one-line `InvalidInputError` naming it."""
    from astropy.io.registry import IORegistryError
    from spectral_cube.utils import FITSReadError

    try:
        yield
    except (OSError, ValueError, TypeError, KeyError, IndexError, FITSReadError, IORegistryError) as exc:
        text = str(exc).strip()
        reason = text.splitlines()[0].split(". ")[0] if text else type(exc).__name__  # its first sentence
        raise InvalidInputError(f"cannot read {path}: {reason}") from None


def _shape_text(shape):
    """``(n_chan, ny, nx)`` in words, for error messages."""
    return f"{shape[0]} channels of {shape[1]} x {shape[2]} pixels" if len(shape) == 3 else str(shape)


def read_cube_triplets(directory, *, progress=True):
    """Yield `~deepfocus.training.samples.CubeSimulation` from ``NAME_dirty.fits``,
    ``NAME_sky.fits`` and ``NAME_truth.ecsv`` files (as ``deepfocus simulate`` writes them, with
    either engine, or made elsewhere in the same layout).

    The per-channel noise is estimated robustly from the dirty cube (1.4826 x MAD).

    Raises `InvalidInputError` naming the file when a partner file is missing, a file cannot
    be read, or a sky cube's shape differs from its dirty cube's.
    """
    from spectral_cube import SpectralCube
    from spectral_cube.utils import BeamUnitsError, NoBeamError

    directory = Path(directory)
    for stem in tqdm(cube_names(directory), desc="read", unit="cube", disable=not progress):
        path = directory / f"{stem}_dirty.fits"
        sky_path, truth_path = directory / f"{stem}_sky.fits", directory / f"{stem}_truth.ecsv"
        missing = [p.name for p in (sky_path, truth_path) if not p.exists()]
        if missing:
            raise InvalidInputError(f"{path.name} has no matching {' and '.join(missing)}")
        with _reading(path):
            dirty_cube = SpectralCube.read(path, format="fits")
            dirty = np.asarray(dirty_cube.unmasked_data[:].value, dtype=np.float32)
        with _reading(sky_path):
            sky = np.asarray(
                SpectralCube.read(sky_path, format="fits").unmasked_data[:].value, dtype=np.float32
            )
        if sky.shape != dirty.shape:
            raise InvalidInputError(
                f"{sky_path.name} has {_shape_text(sky.shape)} but {path.name} {_shape_text(dirty.shape)}"
            )
        with _reading(truth_path):
            truth = QTable.read(truth_path, format="ascii.ecsv")
        with _reading(path):  # the beams, cell and channel width of its header
            n_chan = dirty.shape[0]
            try:
                beams = dirty_cube.beams if hasattr(dirty_cube, "beams") else [dirty_cube.beam] * n_chan
            except (NoBeamError, BeamUnitsError):
                raise InvalidInputError(f"{path.name} has no beam (BMAJ/BMIN or a BEAMS table)") from None
            cell = float(abs(dirty_cube.wcs.wcs.cdelt[1]) * 3600)
            restfreq = truth.meta.get("restfreq_hz", dirty_cube.header.get("RESTFRQ"))
            if restfreq is None:
                raise InvalidInputError(
                    f"{path.name} has no rest frequency: RESTFRQ in its header or restfreq_hz in the "
                    f"meta of {truth_path.name}"
                )
            dv = abs(dirty_cube.header["CDELT3"]) / float(restfreq) * 299792.458
        med = np.nanmedian(dirty, axis=(1, 2), keepdims=True)
        noise = 1.4826 * np.nanmedian(np.abs(dirty - med), axis=(1, 2))
        yield S.CubeSimulation(
            dirty=np.nan_to_num(dirty),
            signal=_restored_signal(sky, beams, cell),
            sky=sky,
            noise=noise.astype(np.float32),
            truth=truth,
            beam_major_pix=float(beams[len(beams) // 2].major.to_value(u.arcsec) / cell),
            cell_arcsec=cell,
            dv=dv,
            beam=beams[len(beams) // 2],
        )


def task_arrays(tasks, cubes, *, seed, names=None):
    """Cut the samples of several tasks from one pass over cube simulations.

    Parameters
    ----------
    tasks : str or sequence of str
        Task names (`TASKS`).
    cubes : iterable of `~deepfocus.training.samples.CubeSimulation`
        The cubes (consumed once, so a generator keeps memory bounded).
    seed : int
        Seed of the sample jitter; each task draws from its own stream, so a task's samples
        do not depend on which other tasks are cut in the same pass.
    names : sequence of str, optional
        Names of the cubes (e.g. their files) for error messages; default ``cube 0``, ...

    Returns
    -------
    arrays : dict
        Per task, a dict of `numpy.ndarray`: ``inputs``, ``targets`` and (characterizer)
        ``noise``. With a single task name, that task's dict.

    Raises
    ------
    deepfocus.exceptions.InvalidInputError
        An unknown task, no cubes, or cubes whose samples for a task differ in size (the
        deconvolver needs one image size, the spectral network one channel count).
    """
    single = isinstance(tasks, str)
    tasks = [tasks] if single else list(tasks)
    for task in tasks:
        if task not in TASKS:
            raise InvalidInputError(f"task must be one of {TASKS}, got {task!r}")
    rngs = {
        task: np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(13, TASKS.index(task))))
        for task in tasks
    }
    parts = {task: {"inputs": [], "targets": [], "noise": []} for task in tasks}
    first = {}  # per task: (cube index, cube shape, sample shape) of the first cube
    for index, sim in enumerate(cubes):
        for task in tasks:
            if task == "deconvolver":
                x, y = S.deconvolver_sample(sim)
                x, y = x[None], y[None]
            elif task == "spectral":
                x, y = S.spectral_samples(sim, rngs[task])
            else:
                x, y, sigma = S.characterizer_samples(sim, rngs[task])
                parts[task]["noise"].append(sigma)
            i, shape, sample_shape = first.setdefault(task, (index, sim.dirty.shape, x.shape[1:]))
            if x.shape[1:] != sample_shape:
                a, b = (names[k] if names is not None else f"cube {k}" for k in (i, index))
                raise InvalidInputError(
                    f"all cubes must share a size for task {task!r}: {a} has {_shape_text(shape)}, "
                    f"{b} {_shape_text(sim.dirty.shape)}"
                )
            parts[task]["inputs"].append(x)
            parts[task]["targets"].append(y)
    arrays = {}
    for task, p in parts.items():
        if not p["inputs"]:
            raise InvalidInputError("no cubes to cut samples from")
        arrays[task] = {"inputs": np.concatenate(p["inputs"]), "targets": np.concatenate(p["targets"])}
        if p["noise"]:
            arrays[task]["noise"] = np.concatenate(p["noise"])
    return arrays[tasks[0]] if single else arrays
