"""Catalogue to regions: conventions, DS9 / CRTF files and round trips through regions' readers."""

import importlib.util
import re

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable
from astropy.wcs import WCS
from regions import EllipseSkyRegion, PixCoord, Regions

from deepfocus.exceptions import DeepFocusWarning, InvalidInputError
from deepfocus.io.regions import catalog_to_regions, write_regions

HAS_CASA = all(importlib.util.find_spec(m) is not None for m in ("casatools", "casatasks", "casadata"))

SPECTRAL_AXIS = np.linspace(230.0, 230.6, 60) * u.GHz


def _wcs(rotation=0.0, center=(150.1, 2.2)):
    """Celestial SIN WCS, 0.05 arcsec pixels, north up and east left, optionally rotated (deg)."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    wcs.wcs.crval = list(center)
    wcs.wcs.crpix = [64, 64]
    wcs.wcs.cdelt = [-0.05 / 3600, 0.05 / 3600]
    c, s = np.cos(np.radians(rotation)), np.sin(np.radians(rotation))
    wcs.wcs.pc = [[c, -s], [s, c]]
    return wcs


def test_regions_from_catalog(catalog):
    regions = catalog_to_regions(catalog)
    assert isinstance(regions, Regions) and len(regions) == 3
    assert all(isinstance(region, EllipseSkyRegion) for region in regions)
    assert [region.meta["label"] for region in regions] == ["1", "2", "3"]
    assert regions[0].meta["text"] == "1: 230.5381 GHz S/N 25.3"
    assert regions[2].meta["text"] == "3: 230.2210 GHz S/N 4.2"
    for region, row in zip(regions[:2], catalog[:2], strict=True):
        assert region.center.separation(row["sky_centroid"]) < 1 * u.uas
        assert u.isclose(region.width, row["fwhm_major"])
        assert u.isclose(region.height, row["fwhm_minor"])
        assert u.isclose(region.angle, row["position_angle"] + 90 * u.deg)
    assert regions[0].visual["color"] == "green"
    assert regions[1].visual["color"] == "yellow"  # flagged (blended)


def test_unresolved_uses_beam_or_minimum(catalog):
    beam = catalog_to_regions(catalog)[2]
    assert u.isclose(beam.width, 0.62 * u.arcsec) and u.isclose(beam.height, 0.48 * u.arcsec)
    assert u.isclose(beam.angle, (-75 + 90) * u.deg)
    assert beam.visual["linestyle"] == "--"
    for key in ("beam_major_arcsec", "beam_minor_arcsec", "beam_pa_deg"):
        del catalog.meta[key]
    circle = catalog_to_regions(catalog)[2]
    assert u.isclose(circle.width, 0.5 * u.arcsec) and u.isclose(circle.height, 0.5 * u.arcsec)
    assert u.isclose(catalog_to_regions(catalog, unresolved_size=0.2 * u.arcsec)[2].width, 0.2 * u.arcsec)
    # Resolved along the major axis only: height falls back to the minimum, capped at the width.
    catalog["fwhm_minor"][0] = 0 * u.arcsec
    assert u.isclose(catalog_to_regions(catalog)[0].height, 0.5 * u.arcsec)
    catalog["fwhm_major"][0] = 0.3 * u.arcsec
    assert u.isclose(catalog_to_regions(catalog)[0].height, 0.3 * u.arcsec)


@pytest.mark.parametrize("rotation", [0.0, 37.0])
def test_major_axis_along_position_angle(catalog, rotation):
    """In pixels, the ellipse's major axis points at PA east of north; its minor axis across."""
    wcs = _wcs(rotation)
    for region, row in zip(catalog_to_regions(catalog)[:2], catalog[:2], strict=True):
        pix = region.to_pixel(wcs)
        center, pa, major = row["sky_centroid"], row["position_angle"], row["fwhm_major"]
        # Points 0.45 major from the centre: along PA (inside), across it (outside).
        along = PixCoord.from_sky(center.directional_offset_by(pa, 0.45 * major), wcs)
        across = PixCoord.from_sky(center.directional_offset_by(pa + 90 * u.deg, 0.45 * major), wcs)
        assert pix.contains(along)
        assert not pix.contains(across)
        # And the pixel width axis is parallel to the centre-to-'along' direction.
        d = np.array([along.x - pix.center.x, along.y - pix.center.y])
        axis = np.array([np.cos(pix.angle.to_value(u.rad)), np.sin(pix.angle.to_value(u.rad))])
        d /= np.hypot(*d)
        assert abs(axis[0] * d[1] - axis[1] * d[0]) < 1e-6
        assert pix.width > pix.height
        # Without the +90 deg the same test fails: the check can tell the conventions apart.
        wrong = EllipseSkyRegion(region.center, region.width, region.height, angle=pa).to_pixel(wcs)
        assert not wrong.contains(along)


def test_north_up_pa_zero_is_vertical():
    """PA 0 (north) on a north-up image: a tall ellipse, pixel angle 90 deg, as DS9 draws it."""
    from astropy.table import QTable

    table = QTable(
        {
            "id": [1],
            "sky_centroid": _wcs().pixel_to_world([63], [63]),
            "fwhm_major": [2.0] * u.arcsec,
            "fwhm_minor": [0.5] * u.arcsec,
            "position_angle": [0.0] * u.deg,
        }
    )
    pix = catalog_to_regions(table)[0].to_pixel(_wcs())
    assert u.isclose(pix.angle % (180 * u.deg), 90 * u.deg, atol=1e-6 * u.deg)
    assert pix.width == pytest.approx(40.0, rel=1e-6)  # 2 arcsec / 0.05 arcsec per pixel


def test_ds9_round_trip(catalog, tmp_path):
    path = tmp_path / "src.reg"
    write_regions(catalog, path)
    text = path.read_text()
    assert text.splitlines()[1] == "icrs"
    assert "text={1: 230.5381 GHz S/N 25.3}" in text
    # On a north-up image DS9's sky angle is the pixel angle from +x (here at the tangent point,
    # where north is exactly +y): it must be the angle regions projects to pixels.
    ds9_angles = [
        float(line.rsplit(",", 1)[1].split(")")[0])
        for line in text.splitlines()
        if line.startswith("ellipse")
    ]
    pixel_angles = [
        region.to_pixel(_wcs(center=(region.center.ra.deg, region.center.dec.deg))).angle
        for region in catalog_to_regions(catalog)
    ]
    np.testing.assert_allclose(
        np.mod(ds9_angles, 180), np.mod(u.Quantity(pixel_angles).to_value(u.deg), 180), atol=1e-6
    )
    original = catalog_to_regions(catalog)
    read = Regions.read(path, format="ds9")
    assert len(read) == len(original)
    for new, old in zip(read, original, strict=True):
        assert new.center.separation(old.center) < 1 * u.mas
        assert u.isclose(new.width, old.width, rtol=1e-6)
        assert u.isclose(new.height, old.height, rtol=1e-6)
        assert u.isclose(new.angle, old.angle, atol=1e-9 * u.deg)
        assert new.meta["text"] == old.meta["text"]


def _major_minor_pa(region):
    """(major, minor, PA mod 180) of a regions sky ellipse, whatever its parametrisation."""
    if region.width >= region.height:
        return region.width, region.height, (region.angle - 90 * u.deg) % (180 * u.deg)
    return region.height, region.width, region.angle % (180 * u.deg)


def test_crtf_round_trip_and_spectral_range(catalog, tmp_path):
    path = tmp_path / "src.crtf"
    write_regions(catalog, path, spectral_axis=SPECTRAL_AXIS)
    text = path.read_text()
    assert text.startswith("#CRTFv0\nglobal coord=ICRS\n")
    lines = [line for line in text.splitlines() if line.startswith("ellipse")]
    assert len(lines) == 3
    # First source: channels 9..16 of a 60-channel 230.0-230.6 GHz axis, a quarter channel
    # beyond the centres of the first and last (CASA selects exactly these, see below).
    step = (SPECTRAL_AXIS[1] - SPECTRAL_AXIS[0]).to_value(u.GHz)
    low, high = SPECTRAL_AXIS[9].value - step / 4, SPECTRAL_AXIS[16].value + step / 4
    found = re.search(r"range=\[([0-9.]+)GHz, ([0-9.]+)GHz\]", lines[0])
    assert found is not None
    assert float(found.group(1)) == pytest.approx(low, abs=1e-6)
    assert float(found.group(2)) == pytest.approx(high, abs=1e-6)
    assert "label='1: 230.5381 GHz S/N 25.3'" in lines[0]
    # CASA order: [semi-major, semi-minor], PA of the major axis.
    numbers = [float(x) for x in re.findall(r"([-0-9.]+)deg", lines[0])]
    assert numbers[2] > numbers[3]
    assert numbers[2] == pytest.approx((0.6 * u.arcsec).to_value(u.deg), rel=1e-6)
    assert numbers[4] == pytest.approx(30.0)

    original = catalog_to_regions(catalog)
    read = Regions.read(path, format="crtf")
    assert len(read) == len(original)
    for new, old in zip(read, original, strict=True):
        assert new.center.separation(old.center) < 1 * u.mas
        for a, b in zip(_major_minor_pa(new), _major_minor_pa(old), strict=True):
            assert u.isclose(a, b, rtol=1e-6, atol=1e-9 * u.deg)
    assert u.isclose(read[0].meta["range"][0], low * u.GHz, atol=1 * u.kHz)


def test_crtf_velocity_range(catalog, tmp_path):
    path = tmp_path / "src.crtf"
    write_regions(catalog, path, spectral_axis=np.linspace(-300, 300, 60) * u.km / u.s)
    assert re.search(r"range=\[[-0-9.]+km/s, [-0-9.]+km/s\]", path.read_text())


def test_regions_input_and_errors(catalog, tmp_path, monkeypatch):
    regions = catalog_to_regions(catalog)
    write_regions(regions, tmp_path / "a.reg")
    write_regions(regions[0], tmp_path / "b.txt", format="crtf")
    assert len(Regions.read(tmp_path / "b.txt", format="crtf")) == 1
    with pytest.raises(FileExistsError):
        write_regions(regions, tmp_path / "a.reg")
    write_regions(regions[:1], tmp_path / "a.reg", overwrite=True)
    assert len(Regions.read(tmp_path / "a.reg", format="ds9")) == 1
    with pytest.raises(InvalidInputError, match="suffix|format"):
        write_regions(regions, tmp_path / "a.txt")
    with pytest.raises(InvalidInputError, match="catalogue"):
        write_regions(regions, tmp_path / "c.crtf", spectral_axis=SPECTRAL_AXIS)
    with pytest.raises(InvalidInputError, match="missing"):
        catalog_to_regions(catalog["id", "sky_centroid"])

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Regions, "write", fail)
    with pytest.raises(OSError, match="disk full"):
        write_regions(catalog, tmp_path / "d.reg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.reg", "b.txt"]


def test_non_finite_position_skipped(catalog):
    catalog["sky_centroid"][1] = catalog["sky_centroid"][1].__class__(np.nan * u.deg, np.nan * u.deg)
    with pytest.warns(DeepFocusWarning, match="source 2"):
        regions = catalog_to_regions(catalog)
    assert [region.meta["label"] for region in regions] == ["1", "3"]


@pytest.mark.casa
@pytest.mark.skipif(not HAS_CASA, reason="needs casatools, casatasks and casadata")
def test_casa_selects_the_line_channels_of_a_crtf_range(tmp_path):
    # CASA's region manager turns each CRTF range into exactly the channels z_min..z_max of the
    # catalogue (a range ending on a channel edge took one channel more), in ascending and
    # descending frequency.
    from importlib.resources import files

    from astropy.io import fits

    from deepfocus.detection.tiled import input_spectral_axis
    from deepfocus.simulation.casa_engine import import_casa

    casatools, _ = import_casa()
    example = files("deepfocus.data") / "example_dirty.fits"
    truth = QTable.read(files("deepfocus.data") / "example_truth.ecsv")
    descending = tmp_path / "descending.fits"
    with fits.open(example) as hdul:
        header = hdul[0].header
        n = header["NAXIS3"]
        header["CRVAL3"] += (n - 1) * header["CDELT3"]
        header["CDELT3"] = -header["CDELT3"]
        hdul[0].data = hdul[0].data[::-1]
        hdul.writeto(descending)
    for cube in (example, descending):
        rows = truth.copy()
        if cube == descending:  # the same channels, numbered in the file's order
            rows["z_min"], rows["z_max"] = n - 1 - truth["z_max"], n - 1 - truth["z_min"]
        path = tmp_path / "lines.crtf"
        write_regions(rows, path, spectral_axis=input_spectral_axis(cube), overwrite=True)
        image, manager = casatools.image(), casatools.regionmanager()
        image.fromfits(outfile=str(tmp_path / "cube.image"), infile=str(cube), overwrite=True)
        text = path.read_text().splitlines()
        head, lines = text[:2], [line for line in text if line.startswith("ellipse")]
        try:
            for row, line in zip(rows, lines, strict=True):
                one = tmp_path / "one.crtf"
                one.write_text("\n".join([*head, line]) + "\n")
                region = manager.fromtextfile(
                    filename=str(one), shape=image.shape(), csys=image.coordsys().torecord()
                )
                box = image.boundingbox(region=region)
                assert (box["blc"][-1], box["trc"][-1]) == (row["z_min"], row["z_max"])
        finally:
            image.done()
            manager.done()
