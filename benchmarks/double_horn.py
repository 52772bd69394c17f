"""Double-horned lines (rotating discs): are they kept as one source?

The simulator's lines are Gaussian. A rotating disc's line has two horns and a dip between them,
which the detector's cut of a run of line channels at a deep valley of its denoised spectrum
(`deepfocus.detection.lines.VALLEY_DEPTH`) could take for two lines. Two Gaussian horns at one
position, of several separations (dips), are simulated in a 64 x 64 x 64 cube with 3 noise
seeds each, and `CubeDetector` is run with the valley depth shipped and with the one before it
(0.5): the table counts the runs that give more than one source at the position.

Writes ``benchmarks/results/double_horn.json`` and ``docs/_generated/double_horn.rst``.
Run: ``python benchmarks/double_horn.py`` (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
from astropy.table import QTable

from deepfocus import CubeDetector
from deepfocus.detection import lines
from deepfocus.simulation import Interferometer, Observation, simulate

from _common import machine, rst_table, write_docs, write_json

#: (horn FWHM in channels, flux of each horn in Jy km/s, horn separations in channels).
CASES = ((8.0, 2.0, (8.0, 10.0, 12.0)), (12.0, 0.7, (14.0, 16.0, 18.0)))
SEEDS = (1, 2, 3)
DEPTHS = (0.5, lines.VALLEY_DEPTH)


def horns(fwhm, flux, separation, channel_width):
    """A source table of two Gaussian horns at the image centre, ``separation`` channels apart."""
    n = 2
    return QTable(
        {
            "x_centroid": [32.0] * n * u.pix,
            "y_centroid": [32.0] * n * u.pix,
            "z_centroid": [32 - separation / 2, 32 + separation / 2],
            "fwhm_major": [0.0] * n * u.arcsec,
            "fwhm_minor": [0.0] * n * u.arcsec,
            "position_angle": [0.0] * n * u.deg,
            "line_width": [fwhm] * n * channel_width,
            "flux": [flux] * n * u.Jy * u.km / u.s,
            "continuum_flux": [0.0] * n * u.Jy,
        }
    )


def dip(fwhm, separation):
    """The noise-free profile's value midway between the horns over its maximum."""
    z = np.linspace(-3 * separation, 3 * separation, 2001)
    sigma = fwhm / 2.3548
    profile = np.exp(-0.5 * ((z - separation / 2) / sigma) ** 2) + np.exp(
        -0.5 * ((z + separation / 2) / sigma) ** 2
    )
    return float(profile[len(z) // 2] / profile.max())


def main():
    interferometer = Interferometer(Observation(npix=64, n_channels=64))
    width = interferometer.observation.channel_velocity_width
    rows = []
    default = lines.split_at_valleys.__kwdefaults__["depth"]
    try:
        for fwhm, flux, separations in CASES:
            for separation in separations:
                split = dict.fromkeys(DEPTHS, 0)
                for seed in SEEDS:
                    sim = simulate(
                        interferometer=interferometer, catalog=horns(fwhm, flux, separation, width), seed=seed
                    )
                    for depth in DEPTHS:
                        lines.split_at_valleys.__kwdefaults__["depth"] = depth
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            found = CubeDetector()(sim.dirty, psf=sim.psf)
                        near = (
                            0
                            if found is None
                            else int(
                                np.sum(
                                    np.hypot(found["x_centroid"].value - 32, found["y_centroid"].value - 32)
                                    < 3
                                )
                            )
                        )
                        split[depth] += near > 1
                rows.append(
                    {
                        "horn_fwhm_channels": fwhm,
                        "horn_flux_jy_kms": flux,
                        "separation_channels": separation,
                        "dip": dip(fwhm, separation),
                        "runs": len(SEEDS),
                        "split": {str(d): int(n) for d, n in split.items()},
                    }
                )
    finally:
        lines.split_at_valleys.__kwdefaults__["depth"] = default
    m = machine()
    write_json("double_horn", {"machine": m, "rows": rows})
    headers = [
        "horn FWHM (ch)",
        "flux per horn",
        "separation (ch)",
        "dip",
        *(f"cut in two, depth {d:g}" for d in DEPTHS),
    ]
    table = [
        (
            f"{r['horn_fwhm_channels']:g}",
            f"{r['horn_flux_jy_kms']:g} Jy km/s",
            f"{r['separation_channels']:g}",
            f"{r['dip']:.2f}",
            *(f"{r['split'][str(d)]} of {r['runs']}" for d in DEPTHS),
        )
        for r in rows
    ]
    text = (
        f"Two Gaussian horns at one position in a 64 x 64 x 64 simulated cube, {len(SEEDS)} noise seeds "
        f"each; {m['cores']} cores, {m['date'][:10]}; ``python benchmarks/double_horn.py``. The dip is "
        "the noise-free profile's value midway between the horns over its maximum; a run is cut in "
        "two when the detector gives more than one source at the position.\n\n"
        + rst_table(headers, table)
        + "\n"
    )
    write_docs("double_horn", text)
    print(text)


if __name__ == "__main__":
    main()
