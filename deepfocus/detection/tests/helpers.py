"""Test cubes with sources we control, shared by the detection, characterisation and CLI tests.

Everything here is small (96 x 96 pixels, 48 channels) so that a whole cube goes through the
pipeline in a fraction of a second; the expensive pieces (simulations, tiny trained weights)
are cached per test session.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable

from deepfocus.evaluation import match_catalogs
from deepfocus.simulation import Interferometer, Observation, simulate
from deepfocus.simulation.catalog import flux_for_snr

NPIX = 96
N_CHANNELS = 48
#: A small observation with a fixed system temperature (noise independent of the weather model).
OBSERVATION = Observation(npix=NPIX, n_channels=N_CHANNELS, tsys=60 * u.K)

#: Bright, isolated sources: (x, y, z, fwhm_major / beam, fwhm_minor / beam, PA deg,
#: line FWHM in channels, per-channel peak S/N, continuum Jy). All lie within 30 pixels of
#: the centre (inside the NaN border of `casa_style`) and more than 4 beams apart.
BRIGHT_SOURCES = (
    (25.0, 30.0, 12.0, 0.0, 0.0, 0.0, 6.0, 20.0, 0.0),
    (70.3, 28.7, 30.4, 1.5, 0.7, 30.0, 8.0, 20.0, 0.0),
    (48.6, 70.2, 22.0, 1.0, 0.5, 120.0, 5.0, 25.0, 3e-3),
    (30.2, 72.5, 35.0, 0.0, 0.0, 0.0, 7.0, 15.0, 0.0),
    (52.4, 47.8, 16.5, 0.8, 0.6, 75.0, 6.0, 30.0, 0.0),
)


@functools.lru_cache(maxsize=1)
def interferometer():
    """The (cached) interferometer of `OBSERVATION`."""
    return Interferometer(OBSERVATION)


def noise_rms():
    """Per-channel noise (Jy/beam) that the simulated S/N refers to."""
    itf = interferometer()
    return itf.noise_rms[N_CHANNELS // 2]


def source_table(rows):
    """A simulator source table from ``(x, y, z, major, minor, pa, width, snr, continuum)`` rows
    (sizes in beam major axes, line widths in channels, fluxes set for the peak S/N)."""
    itf = interferometer()
    rows = np.asarray(rows, dtype=float).reshape(-1, 9)
    beam_major = itf.beam.major.to(u.arcsec)
    dv = OBSERVATION.channel_velocity_width
    table = QTable()
    table["x_centroid"] = rows[:, 0] * u.pix
    table["y_centroid"] = rows[:, 1] * u.pix
    table["z_centroid"] = rows[:, 2]
    table["fwhm_major"] = rows[:, 3] * beam_major
    table["fwhm_minor"] = rows[:, 4] * beam_major
    table["position_angle"] = rows[:, 5] * u.deg
    table["line_width"] = rows[:, 6] * dv
    table["continuum_flux"] = rows[:, 8] * u.Jy
    if len(table):
        table["flux"] = flux_for_snr(
            rows[:, 7],
            table,
            beam=itf.beam,
            noise_rms=noise_rms(),
            channel_velocity_width=dv,
            n_channels=N_CHANNELS,
        )
    else:
        table["flux"] = np.zeros(0) * u.Jy * u.km / u.s
    return table


@functools.lru_cache(maxsize=8)
def simulation(rows=BRIGHT_SOURCES, seed=4):
    """A simulated observation of ``rows`` (a tuple of tuples, see `source_table`); cached: do
    not modify it."""
    return simulate(catalog=source_table(rows), seed=seed, interferometer=interferometer())


def write_simulation(sim, folder, name="c"):
    """Write ``{name}_dirty.fits``, ``_sky.fits``, ``_truth.ecsv`` into ``folder``; the paths."""
    return sim.write(folder, name)


def casa_style(source, target, *, nan_fraction=0.3):
    """Rewrite a simulated FITS cube as CASA ``tclean`` + ``exportfits`` writes it.

    A degenerate Stokes axis, a BEAMS table (beams growing slightly with channel), a circular NaN
    border covering ``nan_fraction`` of the image, BUNIT 'Jy/beam', and a descending frequency
    axis (the channels reversed, CDELT3 negative, CRVAL3 the highest frequency).
    """
    with fits.open(source) as hdul:
        data = np.array(hdul[0].data, dtype=np.float32)
        header = hdul[0].header.copy()
        beams = hdul["BEAMS"].data
        bmaj, bmin, bpa = (np.array(beams[c], dtype=float) for c in ("BMAJ", "BMIN", "BPA"))
    n, ny, nx = data.shape
    first = header["CRVAL3"] + (1 - header["CRPIX3"]) * header["CDELT3"]
    step = header["CDELT3"]
    assert step > 0
    data = data[::-1].copy()
    yy, xx = np.mgrid[:ny, :nx]
    radius = np.hypot(xx - (nx - 1) / 2, yy - (ny - 1) / 2)
    data[:, radius > np.sqrt((1 - nan_fraction) * nx * ny / np.pi)] = np.nan
    header["NAXIS"] = 4
    header["NAXIS4"] = 1
    header["WCSAXES"] = 4
    header["CRPIX3"] = 1.0
    header["CRVAL3"] = first + (n - 1) * step
    header["CDELT3"] = -step
    header["CTYPE4"], header["CRVAL4"], header["CDELT4"], header["CRPIX4"] = "STOKES", 1.0, 1.0, 1.0
    header["CUNIT4"] = ""
    header["BUNIT"] = "Jy/beam"
    grow = 1 + 0.0005 * np.arange(n)
    columns = [
        fits.Column(name="BMAJ", format="1E", unit="arcsec", array=bmaj[::-1] * grow),
        fits.Column(name="BMIN", format="1E", unit="arcsec", array=bmin[::-1] * grow),
        fits.Column(name="BPA", format="1E", unit="deg", array=bpa[::-1]),
        fits.Column(name="CHAN", format="1J", array=np.arange(n)),
        fits.Column(name="POL", format="1J", array=np.zeros(n, dtype=int)),
    ]
    table = fits.BinTableHDU.from_columns(columns, name="BEAMS")
    table.header["NCHAN"] = n
    table.header["NPOL"] = 1
    fits.HDUList([fits.PrimaryHDU(data[None], header), table]).writeto(target)
    return Path(target)


_WEIGHTS = {}


def tiny_weights(tmp_path_factory):
    """A folder with ``<task>-default.safetensors`` (+ card) of the three tiny-trained networks.

    Trained once per test session (a few seconds); the model-card hashes are of the weights
    bytes, so renaming the files keeps them valid.
    """
    if "folder" not in _WEIGHTS:
        from deepfocus.training import train

        trained = tmp_path_factory.mktemp("tiny-weights")
        train("all", trained, preset="tiny", seed=0, progress=False)
        folder = tmp_path_factory.mktemp("weights")
        for task in ("deconvolver", "spectral", "characterizer"):
            for suffix in (".safetensors", ".json"):
                shutil.copyfile(trained / f"{task}-tiny{suffix}", folder / f"{task}-default{suffix}")
        _WEIGHTS["folder"] = folder
    return _WEIGHTS["folder"]


def assert_same_catalog(a, b):
    """Two catalogues are identical, column by column and value by value (``meta['date']`` aside)."""
    assert a.colnames == b.colnames
    assert len(a) == len(b)
    for name in a.colnames:
        if name == "sky_centroid":
            assert np.array_equal(a[name].ra.deg, b[name].ra.deg), name
            assert np.array_equal(a[name].dec.deg, b[name].dec.deg), name
            continue
        assert getattr(a[name], "unit", None) == getattr(b[name], "unit", None), name
        assert np.array_equal(np.asarray(a[name]), np.asarray(b[name])), name
    meta_a = {k: v for k, v in a.meta.items() if k != "date"}
    meta_b = {k: v for k, v in b.meta.items() if k != "date"}
    assert meta_a == meta_b


def write_rows_cube(folder, sources, seed, *, npix, n_channels, name, psf=False):
    """`simulate_rows` of a ``npix`` x ``npix`` x ``n_channels`` observation (Tsys 60 K) written
    into ``folder``: ``(paths, truth)``."""
    itf = Interferometer(Observation(npix=npix, n_channels=n_channels, tsys=60 * u.K))
    sim = simulate_rows(sources, seed, itf)
    return sim.write(folder, name, psf=psf), sim.truth


def simulate_rows(sources, seed, itf):
    """A simulation of ``(x, y, z, major / beam, minor / beam, PA, line FWHM channels, peak S/N)``
    rows (no continuum) by the interferometer ``itf``."""
    rows = np.array(sources, dtype=float).reshape(-1, 8)
    beam = itf.beam.major.to(u.arcsec)
    dv = itf.observation.channel_velocity_width
    table = QTable()
    table["x_centroid"] = rows[:, 0] * u.pix
    table["y_centroid"] = rows[:, 1] * u.pix
    table["z_centroid"] = rows[:, 2]
    table["fwhm_major"] = rows[:, 3] * beam
    table["fwhm_minor"] = rows[:, 4] * beam
    table["position_angle"] = rows[:, 5] * u.deg
    table["line_width"] = rows[:, 6] * dv
    table["continuum_flux"] = np.zeros(len(rows)) * u.Jy
    table["flux"] = flux_for_snr(
        rows[:, 7],
        table,
        beam=itf.beam,
        noise_rms=itf.noise_rms[itf.observation.n_channels // 2],
        channel_velocity_width=dv,
        n_channels=itf.observation.n_channels,
    )
    return simulate(catalog=table, seed=seed, interferometer=itf)


def assert_same_rows(single, tiled):
    """The same rows, columns equal to float tolerance (the order may differ among equal S/N)."""
    assert len(tiled) == len(single)
    match = match_catalogs(single, tiled)
    assert len(match.truth_index) == len(single)
    a, b = single[match.truth_index], tiled[match.catalog_index]
    assert a.colnames == b.colnames
    for name in a.colnames:
        if name == "id":
            continue
        if name == "sky_centroid":
            assert np.all(b[name].separation(a[name]).arcsec < 1e-5)
        elif np.issubdtype(np.asarray(a[name]).dtype, np.integer):
            np.testing.assert_array_equal(np.asarray(b[name]), np.asarray(a[name]), err_msg=name)
        else:
            value = getattr(a[name], "value", np.asarray(a[name]))
            np.testing.assert_allclose(
                getattr(b[name], "value", np.asarray(b[name])), value, rtol=1e-4, atol=1e-5, err_msg=name
            )
