"""Files cut short (an interrupted download or copy) are reported as truncated, wherever the cut.

A CASA cube keeps its per-channel beams in a BEAMS table after the image: a file cut inside
that table used to read as a cube without a beam ("no beam").
"""

import gzip
import warnings

import numpy as np
import pytest
from astropy.io import fits

from deepfocus.cli import main
from deepfocus.exceptions import InvalidInputError
from deepfocus.io import read_cube
from deepfocus.io.tiles import cube_layout

N_CHAN, NPIX = 16, 40
CELL = 0.1 / 3600  # deg


def _header(*, casambm=True):
    h = fits.Header()
    for key, value in (
        ("CTYPE1", "RA---SIN"), ("CRVAL1", 150.0), ("CDELT1", -CELL), ("CRPIX1", 21.0), ("CUNIT1", "deg"),
        ("CTYPE2", "DEC--SIN"), ("CRVAL2", 2.0), ("CDELT2", CELL), ("CRPIX2", 21.0), ("CUNIT2", "deg"),
        ("CTYPE3", "FREQ"), ("CRVAL3", 2.3e11), ("CDELT3", 1e7), ("CRPIX3", 1.0), ("CUNIT3", "Hz"),
        ("CTYPE4", "STOKES"), ("CRVAL4", 1.0), ("CDELT4", 1.0), ("CRPIX4", 1.0), ("CUNIT4", ""),
        ("BUNIT", "Jy/beam"), ("RESTFRQ", 2.3e11), ("SPECSYS", "LSRK"), ("RADESYS", "ICRS"),
    ):  # fmt: skip
        h[key] = value
    if casambm:
        h["CASAMBM"] = True  # what exportfits writes with a BEAMS table
    return h


def _beams():
    columns = [
        fits.Column(name="BMAJ", format="1E", unit="arcsec", array=np.linspace(0.40, 0.42, N_CHAN)),
        fits.Column(name="BMIN", format="1E", unit="arcsec", array=np.full(N_CHAN, 0.32)),
        fits.Column(name="BPA", format="1E", unit="deg", array=np.full(N_CHAN, 30.0)),
        fits.Column(name="CHAN", format="1J", array=np.arange(N_CHAN)),
        fits.Column(name="POL", format="1J", array=np.zeros(N_CHAN, dtype=int)),
    ]
    table = fits.BinTableHDU.from_columns(columns, name="BEAMS")
    table.header["NCHAN"], table.header["NPOL"] = N_CHAN, 1
    return table


def _data():
    return np.random.default_rng(3).normal(0, 1e-3, (1, N_CHAN, NPIX, NPIX)).astype(np.float32)


@pytest.fixture(scope="module")
def casa(tmp_path_factory):
    """A CASA-like cube (Stokes axis, BEAMS table after the image) and where its parts lie."""
    path = tmp_path_factory.mktemp("truncated") / "casa.fits"
    fits.HDUList([fits.PrimaryHDU(_data(), _header()), _beams()]).writeto(path)
    with fits.open(path) as hdul:
        image, table = hdul.fileinfo(0), hdul.fileinfo(1)
        image_end = image["datLoc"] + hdul[0].size
        table_end = table["datLoc"] + hdul[1].size
    assert table_end < path.stat().st_size  # the table's data are followed by block padding
    return {"path": path, "image_end": image_end, "table": table, "table_end": table_end}


def _cut(casa, tmp_path, size, name="cut.fits"):
    path = tmp_path / name
    path.write_bytes(casa["path"].read_bytes()[:size])
    return path


def _cuts(casa):
    """name -> (bytes kept, words the message must hold)."""
    table = casa["table"]
    return {
        "table data": (table["datLoc"] + 100, "its BEAMS table (HDU 1)"),
        "table header": (table["hdrLoc"] + 2400, "the header of its HDU 1 (BEAMS)"),
        "table header's first bytes": (table["hdrLoc"] + 3, "the header of its HDU 1"),
        "image data": (casa["image_end"] - 1000, "its image data"),
    }


@pytest.mark.parametrize("where", ["table data", "table header", "table header's first bytes", "image data"])
@pytest.mark.parametrize("reader", [read_cube, cube_layout], ids=["read_cube", "cube_layout"])
def test_a_file_cut_short_says_so(casa, tmp_path, where, reader):
    size, words = _cuts(casa)[where]
    path = _cut(casa, tmp_path, size)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one message, not astropy's warnings as well
        with pytest.raises(InvalidInputError) as info:
            reader(path)
    message = str(info.value)
    assert message.startswith(f"{path}: cannot read this FITS file (truncated or corrupt?)")
    assert words in message and f"({size} bytes, at least " in message
    assert "no beam" not in message


@pytest.mark.parametrize("memory", [[], ["--memory-limit", "20MiB"]], ids=["whole", "tiled"])
@pytest.mark.parametrize("where", ["table data", "table header"])
def test_detect_says_a_cut_file_is_truncated_in_one_line(casa, tmp_path, capsys, where, memory):
    path = _cut(casa, tmp_path, _cuts(casa)[where][0])
    argv = ["detect", str(path), "--output", str(tmp_path / "x.ecsv"), "--model", "none", *memory]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"deepfocus detect: error: {path}: cannot read this FITS file (truncated or corrupt?)"
    )
    assert len(err.strip().splitlines()) == 1
    assert "BEAMS" in err and not (tmp_path / "x.ecsv").exists()


@pytest.mark.parametrize("reader", [read_cube, cube_layout], ids=["read_cube", "cube_layout"])
def test_intact_and_padding_only_cut_files_read(casa, tmp_path, reader):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reader(casa["path"])
    # Only the FITS block padding after the BEAMS table is lost: the data are whole (read_cube
    # warns that the file was truncated, the layout keeps quiet).
    path = _cut(casa, tmp_path, casa["table_end"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reader(path)
    assert all("truncated" in str(w.message) for w in caught)


def test_intact_file_is_detected_with_a_memory_limit(casa, tmp_path):
    argv = ["detect", str(casa["path"]), "--output", str(tmp_path / "x.ecsv"), "--model", "none", "--quiet"]
    assert main([*argv, "--memory-limit", "20MiB"]) == 0
    assert (tmp_path / "x.ecsv").exists()


@pytest.mark.parametrize("reader", [read_cube, cube_layout], ids=["read_cube", "cube_layout"])
def test_compressed_files_are_not_taken_for_truncated_ones(casa, tmp_path, reader):
    gz = tmp_path / "casa.fits.gz"
    gz.write_bytes(gzip.compress(casa["path"].read_bytes()))
    header = _header()
    for key in ("CTYPE4", "CRVAL4", "CDELT4", "CRPIX4", "CUNIT4"):
        del header[key]
    tiled = tmp_path / "tiled.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(_data()[0], header), _beams()]).writeto(tiled)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reader(gz)
        reader(tiled)
    # A tile-compressed cube cut inside its BEAMS table (real offsets there) is truncated.
    with fits.open(tiled) as hdul:
        inside = hdul.fileinfo(2)["datLoc"] + 100
    cut = tmp_path / "tiled_cut.fits"
    cut.write_bytes(tiled.read_bytes()[:inside])
    with pytest.raises(InvalidInputError, match=r"corrupt\?\): the file ends inside its BEAMS table"):
        reader(cut)


@pytest.mark.parametrize("reader", [read_cube, cube_layout], ids=["read_cube", "cube_layout"])
def test_a_cube_without_a_beam_still_says_no_beam(casa, tmp_path, reader):
    plain = tmp_path / "plain.fits"
    fits.PrimaryHDU(_data(), _header(casambm=False)).writeto(plain)
    with pytest.raises(InvalidInputError, match="no beam") as info:
        reader(plain)
    assert "truncated" not in str(info.value)
    # Cut exactly after the image: nothing in the file tells, but CASAMBM = T says a table follows.
    path = _cut(casa, tmp_path, casa["table"]["hdrLoc"])
    with pytest.raises(InvalidInputError, match="no beam") as info:
        reader(path)
    assert "CASAMBM = T says a BEAMS table follows the image: was the file truncated?" in str(info.value)
