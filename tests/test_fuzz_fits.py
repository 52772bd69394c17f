"""Fuzzing the reader and the pipeline with mutated FITS cubes.

Every mutation of a small, valid, CASA-like cube (odd or missing WCS keywords, wrong BUNIT, odd
beams, NaN/Inf planes, zero-length axes, huge values, corrupt bytes) must end in a catalogue
(possibly empty) or a `~deepfocus.exceptions.DeepFocusError` with a message: never another
exception, never a hang.
"""

import contextlib
import signal
import sys
import warnings

import numpy as np
import pytest
from astropy.io import fits

from deepfocus.batch import detect_cube
from deepfocus.exceptions import DeepFocusError
from deepfocus.pipeline import DeepFocus

N_CASES = 300
#: Seconds one case may take before it counts as a hang.
CASE_TIMEOUT = 10

NY = NX = 20
NCHAN = 10


def base_cube(rng):
    """A valid 10 x 20 x 20 cube as CASA exports it: Stokes axis, Jy/beam, one source, noise."""
    yy, xx = np.mgrid[:NY, :NX]
    spectrum = np.exp(-0.5 * ((np.arange(NCHAN) - 5) / 1.5) ** 2)
    data = rng.normal(0, 1e-3, (NCHAN, NY, NX)) + 2e-2 * spectrum[:, None, None] * np.exp(
        -0.5 * ((xx - 9.3) ** 2 + (yy - 10.6) ** 2) / 2.0**2
    )
    header = fits.Header()
    for key, value in (
        ("CTYPE1", "RA---SIN"), ("CRVAL1", 150.0), ("CDELT1", -1e-4), ("CRPIX1", 11.0), ("CUNIT1", "deg"),
        ("CTYPE2", "DEC--SIN"), ("CRVAL2", 2.0), ("CDELT2", 1e-4), ("CRPIX2", 11.0), ("CUNIT2", "deg"),
        ("CTYPE3", "FREQ"), ("CRVAL3", 2.3e11), ("CDELT3", 1e7), ("CRPIX3", 1.0), ("CUNIT3", "Hz"),
        ("CTYPE4", "STOKES"), ("CRVAL4", 1.0), ("CDELT4", 1.0), ("CRPIX4", 1.0), ("CUNIT4", ""),
        ("BUNIT", "Jy/beam"), ("BMAJ", 5e-4), ("BMIN", 4e-4), ("BPA", 30.0),
        ("RESTFRQ", 2.3e11), ("SPECSYS", "LSRK"), ("RADESYS", "ICRS"), ("EQUINOX", 2000.0),
    ):  # fmt: skip
        header[key] = value
    return data.astype(np.float32)[None], header


def _wcs_key(rng):
    return f"{rng.choice(['CTYPE', 'CRVAL', 'CDELT', 'CRPIX', 'CUNIT'])}{rng.integers(1, 5)}"


ODD_VALUES = [
    0.0,
    -1.0,
    1e300,
    -1e-300,
    "nonsense",
    "",
    "NaN",
    1,
    True,
    "RA---TAN",
    "VRAD",
    "FELO-HEL",
    "WAVE",
]
BUNITS = [
    "Jy/beam",
    "JY/BEAM",
    "mJy/beam",
    "K",
    "Jy/pixel",
    "erg/s",
    "",
    "Jy",
    "Jy/sr",
    "beam-1 Jy",
    "?!",
    "1e3",
]


def _header_mutations(header, rng):
    kind = rng.integers(0, 9)
    if kind == 0:
        header.remove(_wcs_key(rng), ignore_missing=True)
        return "delete a WCS keyword"
    if kind == 1:
        key, value = _wcs_key(rng), ODD_VALUES[rng.integers(len(ODD_VALUES))]
        header[key] = value
        return f"{key} = {value!r}"
    if kind == 2:
        header["BUNIT"] = BUNITS[rng.integers(len(BUNITS))]
        return f"BUNIT = {header['BUNIT']!r}"
    if kind == 3:
        key = ["BMAJ", "BMIN", "BPA"][rng.integers(3)]
        value = [None, 0.0, -1e-4, 10.0, 1e-12, "big", 1e30][rng.integers(7)]
        if value is None:
            header.remove(key, ignore_missing=True)
        else:
            header[key] = value
        return f"{key} = {value!r}"
    if kind == 4:
        value = [None, 0.0, -2.3e11, 1.0, "x"][rng.integers(5)]
        if value is None:
            header.remove("RESTFRQ", ignore_missing=True)
        else:
            header["RESTFRQ"] = value
        return f"RESTFRQ = {value!r}"
    if kind == 5:
        header["CRVAL4"] = float(rng.choice([2, -5, 0, 4]))
        return f"Stokes {header['CRVAL4']}"
    if kind == 6:
        header["PC1_2"], header["PC2_1"] = float(rng.normal()), float(rng.normal())
        return "rotated/sheared PC matrix"
    if kind == 7:
        header["CD1_1"], header["CD2_2"], header["CD1_2"] = 0.0, 0.0, 0.0
        return "singular CD matrix"
    header["CTYPE3"] = str(
        rng.choice(["VRAD", "VOPT", "ZOPT", "FREQ-LSR", "VELO-LSR", "WAVE", "AWAV", "BETA"])
    )
    header["CUNIT3"] = str(rng.choice(["m/s", "km/s", "Hz", "GHz", "m", "um", "furlong"]))
    header["CDELT3"] = float(rng.choice([1e3, -1e3, 1e-6, 1e7]))
    header["CRVAL3"] = float(rng.choice([0.0, 1e5, 2.3e11, 1.3e-3, -1e5]))
    return f"spectral axis {header['CTYPE3']} {header['CUNIT3']}"


def _data_mutations(data, rng):
    kind = rng.integers(0, 15)
    if data.ndim != 4 or data.size == 0:  # an earlier mutation made it 2-D or empty: leave it
        return data, "(no further data change)"
    _, n, ny, nx = data.shape
    if kind == 0:
        data[:, rng.integers(n)] = np.nan
        return data, "NaN plane"
    if kind == 1:
        data[:, rng.integers(n)] = [np.inf, -np.inf][rng.integers(2)]
        return data, "Inf plane"
    if kind == 2:
        return np.full_like(data, [np.nan, 0.0, 1.0][rng.integers(3)]), "constant cube"
    if kind == 3:
        with np.errstate(over="ignore"):
            return data * np.float32([1e30, -1e30, 1e-30, 3e38][rng.integers(4)]), "huge or tiny values"
    if kind == 4:
        data[:, :, rng.integers(ny)] = np.float32(3e38)
        return data, "a row of 3e38"
    if kind == 5:
        shape = list(data.shape)
        shape[rng.integers(1, 4)] = 0
        return np.zeros(shape, np.float32), f"zero-length axis {shape}"
    if kind == 6:
        keep = [slice(None), slice(0, 1), slice(0, rng.integers(1, 4)), slice(None)]
        return data[tuple(keep)].copy(), "one channel, few rows"
    if kind == 7:
        return data[0, 0], "2-D image"
    if kind == 10:
        return np.round(data, 2), "quantised to 0.01 (mostly exact zeros: no measurable noise)"
    if kind == 11:
        return data[:, : int(rng.integers(2, 5))].copy(), "2-4 channels"
    if kind == 12:
        data[0, rng.integers(n), rng.integers(ny), rng.integers(nx)] = np.float32(rng.choice([1e30, -1e30]))
        return data, "one hot pixel"
    if kind == 13:
        return -data, "negated"
    if kind == 14:
        return data[:, :, :: int(rng.integers(2, 4))].copy(), "every 2nd or 3rd row (non-square image)"
    if kind == 8:
        data[0, :, : rng.integers(1, ny), :] = np.nan
        mask = rng.random(data.shape) < rng.random()
        data[mask] = np.nan
        return data, "random NaNs"
    return data.astype(np.float64)[..., ::-1].copy(), "float64, mirrored"


def _write(case, folder):
    """Write case ``case``'s mutated cube; returns its path and a description."""
    rng = np.random.default_rng(case)
    data, header = base_cube(rng)
    notes = []
    for _ in range(rng.integers(1, 4)):
        if rng.random() < 0.5:
            notes.append(_header_mutations(header, rng))
        else:
            data, note = _data_mutations(data, rng)
            notes.append(note)
    path = folder / f"case{case:03d}.fits"
    hdus = [fits.PrimaryHDU(data, header)]
    if rng.random() < 0.25:  # a CASA BEAMS table, sometimes of the wrong length or with odd values
        nchan = data.shape[-3] if data.ndim >= 3 else 1
        length = nchan + int(rng.choice([0, 0, 1, -1]))
        major = np.full(max(length, 0), 1.8) * float(rng.choice([1, 1, 0, -1, np.nan]))
        columns = [
            fits.Column(name="BMAJ", format="1E", unit="arcsec", array=major),
            fits.Column(name="BMIN", format="1E", unit="arcsec", array=np.full(max(length, 0), 1.4)),
            fits.Column(name="BPA", format="1E", unit="deg", array=np.zeros(max(length, 0))),
            fits.Column(name="CHAN", format="1J", array=np.arange(max(length, 0))),
            fits.Column(name="POL", format="1J", array=np.zeros(max(length, 0), dtype=int)),
        ]
        hdus.append(fits.BinTableHDU.from_columns(columns, name="BEAMS"))
        notes.append(f"BEAMS table of {length} rows, BMAJ x {major[:1]}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits.HDUList(hdus).writeto(path, output_verify="silentfix+ignore")
    if rng.random() < 0.08:
        raw = bytearray(path.read_bytes())
        cut = int(rng.integers(0, len(raw)))
        if rng.random() < 0.5:
            raw = raw[:cut]
            notes.append(f"truncated at {cut} bytes")
        else:
            raw[cut : cut + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
            notes.append(f"8 random bytes at {cut}")
        path.write_bytes(bytes(raw))
    return path, "; ".join(notes)


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds):
    """Raise `Hang` if the block runs longer than ``seconds`` (SIGALRM; main thread, POSIX)."""

    def alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(sys.platform == "win32", reason="the hang guard uses SIGALRM")
def test_mutated_cubes_end_in_a_catalogue_or_a_clear_error(tmp_path):
    pipeline = DeepFocus(model=None)
    outcomes = {"catalogue": 0, "error": 0}
    crashes = []
    for case in range(N_CASES):
        path, description = _write(case, tmp_path)
        try:
            with time_limit(CASE_TIMEOUT), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                detect_cube(path, tmp_path / f"case{case:03d}.ecsv", pipeline=pipeline)
            outcomes["catalogue"] += 1
        except DeepFocusError as exc:
            assert str(exc).strip(), f"case {case} ({description}): an error without a message"
            outcomes["error"] += 1
        except Exception as exc:  # noqa: BLE001 - what the test hunts for
            crashes.append(f"case {case} ({description}): {type(exc).__name__}: {exc}")
    assert not crashes, f"{len(crashes)} of {N_CASES} cases crashed:\n" + "\n".join(crashes)
    # The mutations must exercise both outcomes, or the test proves nothing.
    assert outcomes["catalogue"] > 20 and outcomes["error"] > 20, outcomes


# Crashes the fuzzing found, fixed in the reader: each now a clear outcome.


def test_bmin_larger_than_bmaj_is_the_same_ellipse(tmp_path):
    from deepfocus.exceptions import DeepFocusWarning
    from deepfocus.io.cube import read_cube

    data, header = base_cube(np.random.default_rng(1))
    header["BMAJ"], header["BMIN"], header["BPA"] = 4e-4, 5e-4, 30.0
    fits.PrimaryHDU(data, header).writeto(tmp_path / "swapped.fits")
    with pytest.warns(DeepFocusWarning, match="BMIN > BMAJ"):
        cube = read_cube(tmp_path / "swapped.fits")
    assert np.allclose(cube.beams.major.to_value("deg"), 5e-4)
    assert np.allclose(cube.beams.minor.to_value("deg"), 4e-4)
    assert np.allclose(cube.beams.pa.to_value("deg"), 120.0)


def test_beam_wider_than_the_image_is_refused(tmp_path):
    from deepfocus.io.cube import read_cube

    data, header = base_cube(np.random.default_rng(1))
    header["BMAJ"] = header["BMIN"] = 10.0  # arcsec written where degrees belong
    fits.PrimaryHDU(data, header).writeto(tmp_path / "wide.fits")
    with pytest.raises(DeepFocusError, match="beam .* is wider than the image"):
        read_cube(tmp_path / "wide.fits")
