"""Catalogue columns, validation and ECSV / FITS / VOTable round trips."""

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.io.votable import parse
from astropy.io.votable.ucd import check_ucd

from deepfocus.exceptions import InvalidInputError
from deepfocus.io import catalog as catalog_module
from deepfocus.io.catalog import (
    CATALOG_COLUMNS,
    FLAG_BITS,
    SourceFlag,
    read_catalog,
    validate_catalog,
    write_catalog,
)

SUFFIXES = [".ecsv", ".fits", ".xml"]


def test_columns_and_flags_documented():
    assert list(CATALOG_COLUMNS)[:4] == ["id", "x_centroid", "y_centroid", "z_centroid"]
    assert len(CATALOG_COLUMNS) == 16
    for name, spec in CATALOG_COLUMNS.items():
        assert spec.description, name
        assert check_ucd(spec.ucd, check_controlled_vocabulary=True), (name, spec.ucd)
    assert sorted(FLAG_BITS) == [1, 2, 4, 8, 16, 32]
    assert [int(flag) for flag in SourceFlag] == sorted(FLAG_BITS)
    for bit in FLAG_BITS:
        assert str(bit) in catalog_module.__doc__


def test_validate_accepts_design_table(catalog):
    validate_catalog(catalog)
    catalog["fwhm_major"] = catalog["fwhm_major"].to(u.mas)  # convertible units are fine
    catalog["spectral_centroid"] = [10.0, 20.0, 30.0] * u.km / u.s  # any spectral unit
    validate_catalog(catalog)


def test_validate_names_missing_and_wrong_columns(catalog):
    catalog.remove_columns(["snr", "flags"])
    catalog["flux"] = catalog["flux"].value * u.Jy
    catalog["spectral_centroid"] = catalog["spectral_centroid"].value * u.arcsec
    catalog["sky_centroid"] = np.zeros(3)
    with pytest.raises(InvalidInputError) as err:
        validate_catalog(catalog)
    message = str(err.value)
    for word in ("'snr'", "'flags'", "'flux'", "Jy km / s", "'spectral_centroid'", "SkyCoord"):
        assert word in message
    with pytest.raises(InvalidInputError, match="QTable"):
        validate_catalog({"id": [1]})


def _assert_same(read, catalog):
    assert read.colnames == catalog.colnames
    assert isinstance(read["sky_centroid"], SkyCoord)
    assert read["sky_centroid"].frame.name == "icrs"
    assert np.all(read["sky_centroid"].separation(catalog["sky_centroid"]) < 1 * u.uas)
    for name in catalog.colnames:
        if name == "sky_centroid":
            continue
        unit = getattr(catalog[name], "unit", None)
        assert getattr(read[name], "unit", None) == unit, name
        np.testing.assert_allclose(
            u.Quantity(read[name]).value, u.Quantity(catalog[name]).value, rtol=1e-12, err_msg=name
        )
    assert read.meta == catalog.meta
    assert read["flux"].info.description == CATALOG_COLUMNS["flux"].description


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip(catalog, tmp_path, suffix):
    catalog.meta["cell"] = 0.05 * u.arcsec  # a Quantity in meta survives too
    path = tmp_path / f"cat{suffix}"
    write_catalog(catalog, path)
    _assert_same(read_catalog(path), catalog)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("fmt", ["ecsv", "fits", "votable"])
def test_explicit_format(catalog, tmp_path, fmt):
    path = tmp_path / "catalog.out"
    write_catalog(catalog, path, format=fmt)
    _assert_same(read_catalog(path, format=fmt), catalog)


def test_fits_header_cards(catalog, tmp_path):
    path = tmp_path / "cat.fits"
    write_catalog(catalog, path)
    header = fits.getheader(path, 1)
    assert header["VERSION"] == "0.1.dev"
    assert header["beam_major_arcsec"] == pytest.approx(0.62)
    assert "DFMETA" in header  # full meta, nested dicts included, as JSON


def test_votable_fields(catalog, tmp_path):
    catalog["filter_snr"] = [7.0, 8.0, 9.0]  # a run's own columns are described too
    path = tmp_path / "cat.vot"
    write_catalog(catalog, path)
    vot = parse(str(path))
    fields = {field.name: field for field in vot.get_first_table().fields}
    assert "sky_centroid" not in fields
    assert fields["ra"].ucd == "pos.eq.ra;meta.main"
    assert fields["dec"].ucd == "pos.eq.dec;meta.main"
    assert str(fields["ra"].unit) == "deg" and str(fields["dec"].unit) == "deg"
    assert list(fields)[4:6] == ["ra", "dec"]  # where sky_centroid was
    assert vot.resources[0].coordinate_systems[0].system == "ICRS"
    for name, field in fields.items():
        assert field.ucd, name
        assert field.description, name
    assert fields["flux"].ucd == "phot.flux;spect.line"
    assert u.Unit(fields["flux"].unit) == u.Jy * u.km / u.s
    assert fields["filter_snr"].description.startswith("Matched-filter S/N")


@pytest.mark.parametrize(
    ("convention", "ucd"),
    [
        (None, "spect.dopplerVeloc.radio;spect.line"),  # a catalogue without the meta key
        ("radio", "spect.dopplerVeloc.radio;spect.line"),
        ("optical", "spect.dopplerVeloc.opt;spect.line"),
        ("relativistic", "spect.dopplerVeloc;spect.line"),
    ],
)
def test_votable_velocity_ucd(catalog, tmp_path, convention, ucd):
    # A velocity spectral_centroid's UCD follows the cube's convention (meta velocity_convention).
    catalog["spectral_centroid"] = [10.0, 20.0, 30.0] * u.km / u.s
    if convention is not None:
        catalog.meta["velocity_convention"] = convention
    path = tmp_path / "cat.xml"
    write_catalog(catalog, path)
    fields = {field.name: field for field in parse(str(path)).get_first_table().fields}
    assert fields["spectral_centroid"].ucd == ucd
    assert check_ucd(ucd, check_controlled_vocabulary=True)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_overwrite(catalog, tmp_path, suffix):
    path = tmp_path / f"cat{suffix}"
    write_catalog(catalog, path)
    with pytest.raises(FileExistsError):
        write_catalog(catalog, path)
    catalog["snr"][0] = 99.0
    write_catalog(catalog, path, overwrite=True)
    assert read_catalog(path)["snr"][0] == 99.0


@pytest.mark.parametrize("suffix", [".ecsv", ".fits"])
def test_failed_write_leaves_nothing(catalog, tmp_path, suffix):
    catalog["junk"] = np.array([object(), object(), object()], dtype=object)
    path = tmp_path / f"cat{suffix}"
    with pytest.raises(Exception):  # noqa: B017 - astropy's own error type differs per format
        write_catalog(catalog, path)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_old_file(catalog, tmp_path, monkeypatch):
    path = tmp_path / "cat.fits"
    write_catalog(catalog, path)
    before = path.read_bytes()

    def half_then_fail(table, tmp):
        tmp.write_bytes(b"SIMPLE  =                    T")
        raise OSError("disk full")

    monkeypatch.setattr(catalog_module, "_write_fits", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_catalog(catalog, path, overwrite=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cat.fits"]


def test_bad_format_and_table(catalog, tmp_path):
    with pytest.raises(InvalidInputError, match="suffix"):
        write_catalog(catalog, tmp_path / "cat.txt")
    with pytest.raises(InvalidInputError, match="unknown catalogue format"):
        write_catalog(catalog, tmp_path / "cat.ecsv", format="hdf5")
    catalog.remove_column("flux")
    with pytest.raises(InvalidInputError, match="'flux'"):
        write_catalog(catalog, tmp_path / "cat.ecsv")
    write_catalog(catalog, tmp_path / "partial.ecsv", validate=False)
    assert "flux" not in read_catalog(tmp_path / "partial.ecsv").colnames
    with pytest.raises(FileNotFoundError):
        read_catalog(tmp_path / "absent.ecsv")
    assert not list(tmp_path.glob("*.part"))
