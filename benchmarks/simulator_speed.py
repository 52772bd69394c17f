"""Throughput of the fast simulation engine.

Times, on this machine, (1) setting up an observation (uv tracks, pixel size from a beam fit,
PSFs and beams of every channel group) and (2) each further cube of a set (sky model, dirty
signal, noise), for several cube sizes; writes ``benchmarks/results/simulator_speed.json`` and
``docs/_generated/simulator_speed.rst``.

Run: ``python benchmarks/simulator_speed.py [--repeats 5]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from deepfocus.simulation import Interferometer, Observation
from deepfocus.simulation.simulate import simulate_arrays

from _common import machine, rst_table, write_docs, write_json

SIZES = [(128, 32), (128, 64), (256, 128)]


def measure(npix, n_channels, repeats):
    obs = Observation(npix=npix, n_channels=n_channels)
    start = time.perf_counter()
    alma = Interferometer(obs)
    _ = alma.cell, alma.beams, alma.noise_rms
    setup = time.perf_counter() - start
    per_cube = []
    for seed in range(repeats):
        start = time.perf_counter()
        simulate_arrays(alma, seed=seed)
        per_cube.append(time.perf_counter() - start)
    cube = np.median(per_cube)
    voxels = npix * npix * n_channels
    return {
        "npix": npix,
        "n_channels": n_channels,
        "psf_groups": len(alma.anchor_frequencies),
        "setup_s": setup,
        "per_cube_s_median": cube,
        "first_cube_s": setup + per_cube[0],
        "cubes_per_hour": 3600 / cube,
        "voxels_per_s": voxels / cube,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    results = [measure(n, c, args.repeats) for n, c in SIZES]
    data = {
        "machine": machine(),
        "configuration": "alma.cycle10.3, 230 GHz, 1800 s",
        "results": results,
    }
    write_json("simulator_speed", data)
    rows = [
        (
            f"{r['npix']}x{r['npix']}x{r['n_channels']}",
            r["psf_groups"],
            f"{r['setup_s']:.2f}",
            f"{r['first_cube_s']:.2f}",
            f"{r['per_cube_s_median']:.3f}",
            f"{r['voxels_per_s'] / 1e6:.1f}",
        )
        for r in results
    ]
    table = rst_table(
        ["cube", "PSF groups", "setup (s)", "first cube (s)", "each further cube (s)", "Mvoxel/s"],
        rows,
    )
    m = data["machine"]
    text = (
        f"Fast engine throughput on {m['cores']} cores ({m['cpu']}), {m['date'][:10]}, "
        f"``python benchmarks/simulator_speed.py``:\n\n{table}\n"
    )
    write_docs("simulator_speed", text)
    print(text)


if __name__ == "__main__":
    main()
