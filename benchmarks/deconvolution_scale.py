"""Out-of-core deconvolution: peak memory of ``deepfocus deconvolve`` with and without a budget.

A simulated 512 x 512 x 512 float32 cube (512 MiB; ``benchmarks/scale.py``'s mosaic of
independent 256 x 256 x 512 simulations) is deconvolved in image mode by the shipped network,
once read whole and once with ``--memory-limit`` (the band image summed over parts), each in a
fresh ``/usr/bin/time -v`` subprocess with one torch thread; the two sky images are compared.

Writes ``benchmarks/results/deconvolution_scale.json`` and
``docs/_generated/deconvolution_scale.rst``; deletes the cube.
Run: ``python benchmarks/deconvolution_scale.py [--npix 512] [--channels 512] [--memory-limit 256MiB]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
from scale import WORK, make_cube

from _common import machine, rst_table, write_docs, write_json


def run(cube, output, memory_limit=None):
    """``deepfocus deconvolve`` in a subprocess: wall time and peak RSS (bytes)."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "deepfocus", "deconvolve", str(cube)]
    cmd += ["--output", str(output), "--threads", "1", "--overwrite", "--quiet"]
    if memory_limit is not None:
        cmd += ["--memory-limit", memory_limit]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stderr.splitlines() if "Maximum resident set size" in x)
    return {"memory_limit": memory_limit, "wall_s": wall, "peak_rss_bytes": int(line.split(":")[1]) * 1024}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--npix", type=int, default=512)
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--memory-limit", default="256MiB")
    args = parser.parse_args()
    from astropy.io import fits

    WORK.mkdir(parents=True, exist_ok=True)
    cube = WORK / "deconvolution_scale_cube.fits"
    make_cube(cube, npix=args.npix, n_channels=args.channels)
    try:
        runs = []
        for limit in (None, args.memory_limit):
            output = WORK / f"sky_{'parts' if limit else 'whole'}.fits"
            runs.append(run(cube, output, limit))
            runs[-1]["sky"] = fits.getdata(output)
            print(
                runs[-1]["memory_limit"],
                f"{runs[-1]['wall_s']:.1f} s",
                runs[-1]["peak_rss_bytes"],
                flush=True,
            )
        whole, parts = (r.pop("sky") for r in runs)
        same = bool(np.array_equal(whole, parts, equal_nan=True))
        largest = float(np.nanmax(np.abs(whole - parts)))
        results = {
            "machine": machine(),
            "shape": [args.channels, args.npix, args.npix],
            "file_bytes": cube.stat().st_size,
            "runs": runs,
            "identical_sky": same,
            "max_abs_difference": largest,
        }
    finally:
        cube.unlink(missing_ok=True)
        for name in ("sky_whole.fits", "sky_parts.fits"):
            (WORK / name).unlink(missing_ok=True)
    write_json("deconvolution_scale", results)
    rows = [
        [r["memory_limit"] or "none (read whole)", f"{r['wall_s']:.1f}", f"{r['peak_rss_bytes'] / 2**30:.2f}"]
        for r in runs
    ]
    header = (
        f"{args.channels} x {args.npix} x {args.npix} float32 cube "
        f"({results['file_bytes'] / 2**20:.0f} MiB on disk), ``deepfocus deconvolve`` (image mode, shipped "
        f"network, one torch thread) in a fresh process on {results['machine']['cores']} CPU cores "
        f"({results['machine']['cpu']}); "
        f"the two sky images are {'identical' if same else f'within {largest:.2g}'}. "
        "``python benchmarks/deconvolution_scale.py``."
    )
    write_docs(
        "deconvolution_scale",
        header + "\n\n" + rst_table(["memory limit", "wall (s, with start-up)", "peak RSS (GiB)"], rows),
    )


if __name__ == "__main__":
    main()
