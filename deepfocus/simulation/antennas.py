"""Antenna configurations: the shipped ALMA/ACA layouts and a parser for CASA ``.cfg`` files.

A CASA configuration file (as in ``casadata``'s ``alma/simmos``) is plain text: ``#`` header
lines with ``key=value`` pairs (``observatory``, ``coordsys``, and for UTM files ``datum`` and
``zone``), then one antenna per line as ``x y z diameter name``, in metres.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ..exceptions import InvalidInputError

__all__ = ["AntennaConfiguration", "available_configurations", "ALMA_SITE"]

#: ALMA array reference position (geodetic): longitude, latitude in degrees, height in metres.
#: CASA's reference position for "ALMA" (Llano de Chajnantor), WGS84.
ALMA_SITE = {"lon_deg": -67.754929, "lat_deg": -23.022886, "height_m": 5056.8}

_DATA = "deepfocus.data"
_CONFIG_DIR = "antenna_configs"


def _shipped_files() -> dict[str, Path]:
    folder = resources.files(_DATA) / _CONFIG_DIR
    return {p.name[: -len(".cfg")]: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".cfg")}


def available_configurations() -> list[str]:
    """Names of the shipped antenna configurations (e.g. ``"alma.cycle10.3"``, ``"aca.cycle10"``).

    Returns
    -------
    names : list of str
        Sorted configuration names; each is accepted by `AntennaConfiguration.from_name`.
    """

    def key(name):
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]

    return sorted(_shipped_files(), key=key)


@dataclass(frozen=True)
class AntennaConfiguration:
    """Positions and diameters of the antennas of an array.

    Parameters
    ----------
    name : str
        Label of the configuration.
    east, north, up : `numpy.ndarray`
        Antenna positions in metres in the local tangent plane of the array centre (east, north,
        up), as CASA's ``LOC`` coordinate system.
    diameter : `numpy.ndarray`
        Dish diameters in metres.
    pads : tuple of str
        Pad or antenna names.
    observatory : str
        Observatory name from the file header (e.g. ``"ALMA"``).
    """

    name: str
    east: np.ndarray
    north: np.ndarray
    up: np.ndarray
    diameter: np.ndarray
    pads: tuple = field(default=())
    observatory: str = "ALMA"

    def __post_init__(self):
        n = len(self.east)
        if n < 2:
            raise InvalidInputError(f"configuration {self.name!r} has {n} antenna(s); need at least 2")
        for label in ("north", "up", "diameter"):
            if len(getattr(self, label)) != n:
                raise InvalidInputError(f"configuration {self.name!r}: {label} has a different length")
        if np.any(~np.isfinite(self.enu)) or np.any(self.diameter <= 0):
            raise InvalidInputError(
                f"configuration {self.name!r} has non-finite positions or non-positive diameters"
            )

    @property
    def n_antennas(self) -> int:
        """Number of antennas."""
        return len(self.east)

    @property
    def enu(self) -> np.ndarray:
        """Positions as an ``(n_antennas, 3)`` array of east, north, up in metres."""
        return np.column_stack([self.east, self.north, self.up])

    @property
    def baselines(self) -> np.ndarray:
        """Baseline vectors ``(n_baselines, 3)`` in metres (east, north, up).

        Antenna i minus antenna j for i < j, the sign convention of CASA measurement sets.
        """
        i, j = np.triu_indices(self.n_antennas, k=1)
        return self.enu[i] - self.enu[j]

    @property
    def max_baseline(self) -> float:
        """Longest baseline in metres."""
        return float(np.max(np.linalg.norm(self.baselines, axis=1)))

    @property
    def min_baseline(self) -> float:
        """Shortest baseline in metres."""
        return float(np.min(np.linalg.norm(self.baselines, axis=1)))

    @classmethod
    def from_name(cls, name: str) -> AntennaConfiguration:
        """Load a shipped configuration by name (see `available_configurations`).

        Also accepts the short forms ``"C-3"`` / ``"c3"`` (ALMA cycle 10 12-m configuration 3) and
        ``"ACA"`` / ``"7m"`` (cycle 10 7-m array), or a path to a ``.cfg`` file.
        """
        files = _shipped_files()
        key = name[:-4] if name.endswith(".cfg") else name
        alias = re.fullmatch(r"[cC]-?(\d{1,2})", key)
        if alias:
            key = f"alma.cycle10.{int(alias.group(1))}"
        elif key.lower() in ("aca", "7m", "7-m"):
            key = "aca.cycle10"
        if key in files:
            return cls.read(files[key], name=key)
        if Path(name).is_file():
            return cls.read(name)
        raise InvalidInputError(
            f"unknown antenna configuration {name!r}; available: {', '.join(available_configurations())}"
            " (or give the path of a CASA .cfg file)"
        )

    @classmethod
    def read(cls, path, *, name: str | None = None) -> AntennaConfiguration:
        """Read a CASA antenna configuration (``.cfg``) file.

        Parameters
        ----------
        path : str or path-like
            The file. ``coordsys=LOC`` (local tangent plane, metres) is supported, and ``XYZ``
            (ITRF/geocentric, metres), which is rotated to the local frame of its centroid.
        name : str, optional
            Label; defaults to the file name without extension.
        """
        path = Path(path)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"cannot read antenna configuration {str(path)!r}: {exc}") from exc
        header = {}
        rows = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if not stripped:
                continue
            if stripped.startswith("#"):
                match = re.match(r"#\s*(\w+)\s*=\s*(\S+)", stripped)
                if match:
                    header[match.group(1).lower()] = match.group(2)
                continue
            parts = stripped.split()
            if len(parts) < 4:
                raise InvalidInputError(
                    f"{path.name}, line {lineno}: expected 'x y z diameter [name]', got {stripped!r}"
                )
            try:
                values = [float(v) for v in parts[:4]]
            except ValueError as exc:
                raise InvalidInputError(
                    f"{path.name}, line {lineno}: non-numeric position or diameter in {stripped!r}"
                ) from exc
            rows.append((*values, parts[4] if len(parts) > 4 else f"A{len(rows):03d}"))
        if not rows:
            raise InvalidInputError(f"{path.name}: no antenna lines found")
        xyz = np.array([r[:3] for r in rows], dtype=float)
        diameter = np.array([r[3] for r in rows], dtype=float)
        pads = tuple(r[4] for r in rows)
        coordsys = header.get("coordsys", "LOC").upper()
        if coordsys.startswith("XYZ"):
            xyz = _geocentric_to_local(xyz)
        elif not coordsys.startswith("LOC"):
            raise InvalidInputError(f"{path.name}: coordsys={coordsys} is not supported (use LOC or XYZ)")
        return cls(
            name=name or path.stem,
            east=xyz[:, 0],
            north=xyz[:, 1],
            up=xyz[:, 2],
            diameter=diameter,
            pads=pads,
            observatory=header.get("observatory", "unknown"),
        )


def _geocentric_to_local(xyz: np.ndarray) -> np.ndarray:
    """Rotate geocentric XYZ positions (m) to east/north/up about their centroid."""
    centre = xyz.mean(axis=0)
    lon = np.arctan2(centre[1], centre[0])
    lat = np.arctan2(centre[2], np.hypot(centre[0], centre[1]))
    d = xyz - centre
    east = -np.sin(lon) * d[:, 0] + np.cos(lon) * d[:, 1]
    north = -np.sin(lat) * np.cos(lon) * d[:, 0] - np.sin(lat) * np.sin(lon) * d[:, 1] + np.cos(lat) * d[:, 2]
    up = np.cos(lat) * np.cos(lon) * d[:, 0] + np.cos(lat) * np.sin(lon) * d[:, 1] + np.sin(lat) * d[:, 2]
    return np.column_stack([east, north, up])
