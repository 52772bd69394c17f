#!/usr/bin/env python3
"""Make the figures of ``docs/plots.rst`` in ``docs/_static/`` with `deepfocus.visualization`.

- ``plot_detections.png`` and ``plot_source.png``: the bundled example cube
  (``deepfocus/data/example_dirty.fits``) and the catalogue the shipped networks give for it
  with its PSF, as ``deepfocus detect --example`` makes it;
- ``plot_deconvolution.png``: a seeded simulated cube, its band-integrated dirty image cleaned
  with `~deepfocus.deconvolution.hogbom_clean`, and the true sky;
- ``plot_diagnostics.png``: the shipped pipeline on seeded simulated cubes against their truth;
- ``plot_training.png``: the training log of the shipped ``spectral-default`` weights
  (``docs/_scripts/spectral-default-training.csv``, checked against the weights' model card).

Everything is seeded, so the figures are reproducible; it takes about a minute on 2 CPU cores::

    python docs/_scripts/make_plot_figures.py [--output-dir DIR] [--cubes N]
"""

import argparse
import json
import time
from importlib import resources
from pathlib import Path

import astropy.units as u
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from astropy.table import QTable, vstack  # noqa: E402

from deepfocus import DeepFocus  # noqa: E402
from deepfocus.deconvolution import hogbom_clean  # noqa: E402
from deepfocus.detection.detector import prepare  # noqa: E402
from deepfocus.simulation import Interferometer, Observation, simulate  # noqa: E402
from deepfocus.visualization import (  # noqa: E402
    plot_deconvolution,
    plot_detections,
    plot_diagnostics,
    plot_source,
    plot_training_log,
    save_figure,
)

SCRIPTS = Path(__file__).resolve().parent
DEFAULT_OUTPUT = SCRIPTS.parent / "_static"
TRAINING_LOG = SCRIPTS / "spectral-default-training.csv"
#: The simulated observations of the deconvolution and diagnostics figures (CLI defaults).
OBSERVATION = Observation(configuration="alma.cycle10.3", npix=128, n_channels=64)
SEED = 2026
#: Source of the example cube shown in ``plot_source.png`` (the brightest).
EXAMPLE_SOURCE = 1


def example_figures(output):
    """Detections and one source of the bundled example cube."""
    data = resources.files("deepfocus.data")
    cube = prepare(str(data / "example_dirty.fits"), psf=str(data / "example_psf.fits"))
    catalog = DeepFocus()(cube)
    save_figure(plot_detections(cube, catalog), output / "plot_detections.png", dpi=100)
    save_figure(plot_source(cube, catalog, EXAMPLE_SOURCE), output / "plot_source.png", dpi=100)
    return len(catalog)


def deconvolution_figure(output):
    """Dirty | CLEAN model | residual | true sky of a simulated cube, integrated over the band."""
    sim = simulate(interferometer=Interferometer(OBSERVATION), seed=SEED, recipe="paper")
    dv = sim.observation.channel_velocity_width.to_value(u.km / u.s)
    dirty = sim.dirty.unmasked_data[:].value.sum(axis=0) * dv
    sky = sim.sky.unmasked_data[:].value.sum(axis=0) * dv
    psf = sim.psf[OBSERVATION.n_channels // 2]
    # The band-integrated noise: the dirty image's robust rms away from the sources.
    noise = 1.4826 * np.median(np.abs(dirty - np.median(dirty)))
    clean = hogbom_clean(dirty, psf, gain=0.1, threshold=3 * noise, max_iter=5000)
    flux = u.Jy * u.km / u.s
    figure = plot_deconvolution(
        dirty * flux / u.beam,
        clean.model * flux / u.pix,
        clean.residual * flux / u.beam,
        truth=sky * flux / u.pix,
        wcs=sim.dirty.wcs,
        titles=["dirty", f"CLEAN model ({clean.iterations} components)", "residual", "true sky"],
    )
    save_figure(figure, output / "plot_deconvolution.png", dpi=80)


def diagnostics_figure(output, n_cubes):
    """The shipped pipeline against the truth of ``n_cubes`` simulated cubes, pooled.

    Matching works on pixel positions, so cube ``k``'s truth and catalogue are shifted by
    ``k * 10 npix`` pixels in x before stacking: sources of different cubes can never match.
    """
    alma = Interferometer(OBSERVATION)
    pipeline = DeepFocus()
    truths, catalogs = [], []
    for k in range(n_cubes):
        sim = simulate(interferometer=alma, seed=[SEED, k], recipe="wide")
        catalog = pipeline(sim.dirty)
        shift = k * 10 * OBSERVATION.npix * u.pix
        truth = sim.truth.copy()
        truth["x_centroid"] += shift
        truths.append(truth)
        if catalog is not None:
            catalog["x_centroid"] += shift
            catalogs.append(catalog)
    truth = vstack(truths, metadata_conflicts="silent")
    truth.meta = truths[0].meta
    catalog = vstack(catalogs, metadata_conflicts="silent") if catalogs else None
    figure = plot_diagnostics(truth, catalog)
    save_figure(figure, output / "plot_diagnostics.png", dpi=90)
    return len(truth), 0 if catalog is None else len(catalog)


def training_figure(output):
    """Training curves of the shipped spectral network (its log checked against its card)."""
    card = json.loads((resources.files("deepfocus.data") / "weights" / "spectral-default.json").read_text())
    log = QTable.read(TRAINING_LOG, format="ascii.csv")
    if not np.isclose(np.min(log["val_loss"]), card["metrics"]["val_loss"], rtol=1e-9):
        raise SystemExit(f"{TRAINING_LOG} is not the log of the shipped spectral-default weights")
    figure = plot_training_log(TRAINING_LOG, title="spectral-default (deepfocus train --preset default)")
    save_figure(figure, output / "plot_training.png", dpi=90)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT, help="folder of the PNGs")
    parser.add_argument("--cubes", type=int, default=6, help="simulated cubes of the diagnostics (6)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    n_example = example_figures(args.output_dir)
    deconvolution_figure(args.output_dir)
    n_truth, n_detected = diagnostics_figure(args.output_dir, args.cubes)
    training_figure(args.output_dir)
    print(
        f"example cube: {n_example} detections; diagnostics: {n_truth} true sources, {n_detected} "
        f"detections in {args.cubes} cubes; wrote 5 figures to {args.output_dir} in "
        f"{time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
