#!/usr/bin/env python3
"""Make ``docs/_static/simulation_example.png``: a simulated cube in three panels.

1. the sky model's moment-0 (Jy/pixel km/s),
2. the dirty cube's moment-0 (Jy/beam km/s) with the restoring beam and the true positions,
3. the central part of the PSF of the middle channel.

The simulation is seeded, so the figure is reproducible; it takes a few seconds::

    python docs/_scripts/make_simulation_figure.py [--output PATH]
"""

import argparse
import time
from pathlib import Path

import astropy.units as u
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from astropy.visualization import simple_norm  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

from deepfocus.simulation import Interferometer, Observation, simulate  # noqa: E402

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "_static" / "simulation_example.png"

#: The simulated observation (ALMA C-3 at 230 GHz, the CLI defaults, on a smaller cube).
OBSERVATION = Observation(configuration="alma.cycle10.3", npix=128, n_channels=32)
SEED = 3
RECIPE = "paper"
#: Half-width of the PSF panel, in pixels.
PSF_HALF = 32
#: Colour range of the PSF panel (the main lobe saturates, to show the sidelobes).
PSF_CLIP = 0.15


def make_figure(output=DEFAULT_OUTPUT):
    start = time.perf_counter()
    alma = Interferometer(OBSERVATION)
    sim = simulate(interferometer=alma, seed=SEED, recipe=RECIPE)
    obs = sim.observation
    dv = obs.channel_velocity_width.to_value(u.km / u.s)
    sky_m0 = sim.sky.unmasked_data[:].value.sum(axis=0) * dv
    dirty_m0 = sim.dirty.unmasked_data[:].value.sum(axis=0) * dv
    middle = obs.n_channels // 2
    psf = sim.psf[middle]
    beam = sim.dirty.beams[middle]
    cell = alma.cell.to_value(u.arcsec)
    wcs = sim.dirty.wcs.celestial

    fig = plt.figure(figsize=(14, 4.6))
    panels = []
    for k, (image, title, unit, stretch) in enumerate(
        (
            (sky_m0, "sky model, moment 0 (sqrt stretch)", "Jy/pixel km/s", "sqrt"),
            (dirty_m0, "dirty cube, moment 0", "Jy/beam km/s", "linear"),
        )
    ):
        ax = fig.add_subplot(1, 3, k + 1, projection=wcs)
        vmax = float(image.max() if stretch == "sqrt" else np.percentile(image, 99.9))
        norm = simple_norm(image, stretch, vmin=min(0.0, float(image.min())), vmax=vmax)
        im = ax.imshow(image, origin="lower", cmap="inferno", norm=norm)
        ax.set_title(title)
        ax.coords[0].set_axislabel("RA (ICRS)")
        ax.coords[1].set_axislabel("Dec (ICRS)")
        ax.coords[0].set_major_formatter("hh:mm:ss.ss")
        ax.coords[0].set_ticks(number=3)
        ax.coords[1].set_ticks(number=4)
        if k == 1:
            ax.coords[1].set_axislabel(" ")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label=unit)
        panels.append(ax)

    # True positions on the dirty map, and the restoring beam in the lower-left corner.
    truth = sim.truth
    panels[1].scatter(
        truth["x_centroid"].value,
        truth["y_centroid"].value,
        s=60,
        facecolors="none",
        edgecolors="cyan",
        linewidths=1.0,
        label="true positions",
    )
    panels[1].legend(loc="upper right", fontsize=8, framealpha=0.6)
    bx, by = 8, 8
    panels[1].add_patch(
        Ellipse(
            (bx, by),
            beam.major.to_value(u.arcsec) / cell,
            beam.minor.to_value(u.arcsec) / cell,
            # PA is east of north and x increases to the west (east is -x), so the major axis
            # lies at 90 deg + PA counter-clockwise from +x.
            angle=90.0 + beam.pa.to_value(u.deg),
            edgecolor="white",
            facecolor="none",
            lw=1.2,
        )
    )

    ax = fig.add_subplot(1, 3, 3)
    c = psf.shape[0] // 2
    cut = psf[c - PSF_HALF : c + PSF_HALF + 1, c - PSF_HALF : c + PSF_HALF + 1]
    extent = np.array([PSF_HALF + 0.5, -PSF_HALF - 0.5, -PSF_HALF - 0.5, PSF_HALF + 0.5]) * cell
    im = ax.imshow(cut, origin="lower", cmap="RdBu_r", vmin=-PSF_CLIP, vmax=PSF_CLIP, extent=extent)
    ax.set_title(f"PSF, channel {middle} (colours clipped at ±{PSF_CLIP})")
    ax.set_xlabel("ΔRA (arcsec)")
    ax.set_ylabel("ΔDec (arcsec)")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="fraction of peak")
    fig.suptitle(
        f"{obs.configuration}, {obs.frequency:.0f}, {obs.n_channels} channels × "
        f"{obs.npix}² pixels of {cell:.3g}″; beam {beam.major.to_value(u.arcsec):.2f}″ × "
        f"{beam.minor.to_value(u.arcsec):.2f}″; recipe '{RECIPE}', seed {SEED}",
        fontsize=10,
        y=0.98,
    )
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return output, time.perf_counter() - start, sim


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="PNG to write")
    args = parser.parse_args()
    output, seconds, sim = make_figure(args.output)
    print(sim.summary())
    print(f"wrote {output} in {seconds:.1f} s")


if __name__ == "__main__":
    main()
