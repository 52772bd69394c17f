"""Characterisation at pixel scales outside the networks' training range (4-6 pixels per beam).

The same random sources (one seed per cube) are observed with ALMA C-3 at 230 GHz and imaged at
3, 5 and 10 pixels per beam (the field of view kept), then found and measured by `DeepFocus`
with the shipped networks. The characterizer resamples its cutouts to 5 pixels per beam when a
cube lies outside 4-6; ``--no-resample`` switches that off to show what it buys.

Writes ``benchmarks/results/pixel_scale.json`` and ``docs/_generated/pixel_scale.rst``.
Run: ``python benchmarks/pixel_scale.py [--cubes 12] [--no-resample]``
"""

from __future__ import annotations

import argparse
import warnings

import torch

from deepfocus.characterization import characterizer as characterizer_module
from deepfocus.evaluation import evaluate
from deepfocus.pipeline import DeepFocus
from deepfocus.simulation import Interferometer, Observation, simulate

from _common import machine, rst_table, write_docs, write_json

SCALES = (3.0, 5.0, 10.0)
#: Accuracy fractions pooled over cubes, each weighted by the number of sources it applies to.
ACCURACIES = (
    ("flux_within_10pct", "n_flux"),
    ("position_angle_within_10deg", "n_position_angle"),
    ("fwhm_within_10pct", "n_fwhm"),
)


def run_scale(pixels_per_beam, n_cubes, seed):
    """Pooled detection and accuracy scores at one pixel scale."""
    npix = 2 * int(round(128 * pixels_per_beam / 5 / 2))
    observation = Observation(
        configuration="alma.cycle10.3", npix=npix, n_channels=64, pixels_per_beam=pixels_per_beam
    )
    alma = Interferometer(observation)
    pipeline = DeepFocus()
    counts = {"n_truth": 0, "n_detected": 0, "n_matched": 0}
    pooled = {name: [0.0, 0] for name, _ in ACCURACIES}
    for index in range(n_cubes):
        sim = simulate(interferometer=alma, seed=[seed, index])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metrics = evaluate(sim.truth, pipeline(sim.dirty))
        for key in counts:
            counts[key] += metrics[key]
        for name, n_name in ACCURACIES:
            if metrics.get(n_name):
                pooled[name][0] += metrics[name] * metrics[n_name]
                pooled[name][1] += metrics[n_name]
    result = {"pixels_per_beam": pixels_per_beam, "npix": npix, **counts}
    result["f1"] = 2 * counts["n_matched"] / max(counts["n_truth"] + counts["n_detected"], 1)
    for name, (total, n) in pooled.items():
        result[name] = total / n if n else None
        result[f"n_{name}"] = n
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cubes", type=int, default=12)
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--no-resample", action="store_true", help="measure without resampling")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.no_resample:
        characterizer_module.TRAINED_PIXELS_PER_BEAM = (0.0, float("inf"))
    rows = [run_scale(scale, args.cubes, args.seed) for scale in SCALES]
    name = "pixel_scale_no_resample" if args.no_resample else "pixel_scale"
    write_json(name, {"machine": machine(), "cubes": args.cubes, "seed": args.seed, "results": rows})
    table = rst_table(
        ["pixels/beam", "F1", "flux within 10 %", "PA within 10 deg", "FWHM within 10 %", "S/N ≥ 5"],
        [
            [
                f"{r['pixels_per_beam']:g}",
                f"{r['f1']:.3f}",
                f"{r['flux_within_10pct']:.2f}",
                f"{r['position_angle_within_10deg']:.2f}",
                f"{r['fwhm_within_10pct']:.2f}",
                r["n_flux_within_10pct"],
            ]
            for r in rows
        ],
    )
    write_docs(name, table)
    print(table)


if __name__ == "__main__":
    main()
