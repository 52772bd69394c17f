import numpy as np
import pytest

from deepfocus.exceptions import InvalidInputError
from deepfocus.simulation import AntennaConfiguration, available_configurations


def test_shipped_alma_and_aca_configurations():
    names = available_configurations()
    for k in range(1, 11):
        assert f"alma.cycle10.{k}" in names
    assert "aca.cycle10" in names
    c3 = AntennaConfiguration.from_name("alma.cycle10.3")
    assert c3.n_antennas == 43
    assert np.all(c3.diameter == 12.0)
    aca = AntennaConfiguration.from_name("ACA")
    assert aca.n_antennas == 10 and np.all(aca.diameter == 7.0)
    # Configurations grow: C-1 is compact, C-10 spans kilometres.
    assert AntennaConfiguration.from_name("C-1").max_baseline < 200
    assert AntennaConfiguration.from_name("C-10").max_baseline > 10000


def test_aliases_and_paths(tmp_path):
    assert AntennaConfiguration.from_name("c3").name == "alma.cycle10.3"
    assert AntennaConfiguration.from_name("alma.cycle10.3.cfg").name == "alma.cycle10.3"
    path = tmp_path / "mine.cfg"
    path.write_text("# observatory=ALMA\n# coordsys=LOC\n0 0 0 12 A\n100 0 0 12 B\n0 50 1 12 C\n")
    cfg = AntennaConfiguration.from_name(str(path))
    assert cfg.n_antennas == 3 and cfg.pads == ("A", "B", "C")
    assert cfg.max_baseline == pytest.approx(np.hypot(100, 50), rel=1e-3)


def test_unknown_name_lists_choices():
    with pytest.raises(InvalidInputError, match="unknown antenna configuration 'C-42'.*alma.cycle10.3"):
        AntennaConfiguration.from_name("C-42")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# coordsys=LOC\n0 0 0 12 A\n1 2 x 12 B\n", "line 3: non-numeric"),
        ("# coordsys=LOC\n0 0 0\n", "line 2: expected"),
        ("# only a header\n", "no antenna lines"),
        ("# coordsys=UTM\n0 0 0 12 A\n5 0 0 12 B\n", "coordsys=UTM is not supported"),
        ("# coordsys=LOC\n0 0 0 12 A\n", "need at least 2"),
        ("# coordsys=LOC\n0 0 0 12 A\n5 0 0 -1 B\n", "non-positive diameters"),
    ],
)
def test_malformed_cfg(tmp_path, text, message):
    path = tmp_path / "bad.cfg"
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=message):
        AntennaConfiguration.read(path)


def test_geocentric_file_matches_local_baselines(tmp_path):
    local = AntennaConfiguration.from_name("C-3")
    lat, lon, radius = np.radians(-23.02), np.radians(-67.75), 6.378e6
    # Local ENU -> geocentric XYZ around the site.
    e, n, up = local.enu.T
    x0 = radius * np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    xyz = (
        np.column_stack(
            [
                -np.sin(lon) * e - np.sin(lat) * np.cos(lon) * n + np.cos(lat) * np.cos(lon) * up,
                np.cos(lon) * e - np.sin(lat) * np.sin(lon) * n + np.cos(lat) * np.sin(lon) * up,
                np.cos(lat) * n + np.sin(lat) * up,
            ]
        )
        + x0
    )
    path = tmp_path / "xyz.cfg"
    path.write_text("# coordsys=XYZ\n" + "\n".join(f"{a} {b} {c} 12 P{i}" for i, (a, b, c) in enumerate(xyz)))
    geo = AntennaConfiguration.read(path)
    np.testing.assert_allclose(
        np.linalg.norm(geo.baselines, axis=1), np.linalg.norm(local.baselines, axis=1), rtol=1e-6
    )
    # The horizontal layout survives (up to the tilt of the centroid's tangent plane).
    np.testing.assert_allclose(geo.baselines[:, :2], local.baselines[:, :2], atol=1.0)
