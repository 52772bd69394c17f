"""Out-of-core detection: peak memory and throughput on a cube larger than the tile budget.

1. A simulated 1024 x 1024 x 512 float32 cube (2 GiB) is written to ``benchmarks/_work/`` without
   holding it in memory: 16 independent 256 x 256 x 512 simulations (one ALMA set-up, seeds
   0..15, a few random sources each) are written one at a time into a FITS file opened as a
   memory map; the header has the WCS of the whole mosaic and the set-up's beam.
2. ``DeepFocus()`` (the shipped networks) runs on it through `TiledPipeline` with a 2 GiB tile
   budget, with 1, 2 and 4 tiles in flight (threads; the budget is shared, so more tiles in
   flight means smaller tiles), each in a fresh subprocess whose peak RSS is measured (psutil
   polling, and ``/usr/bin/time -v``).
3. Equivalence: a 384 x 384 x 128 cube small enough for both is processed in one pass in memory
   and in tiles (a budget that forces many tiles); the catalogues are matched one-to-one
   (`deepfocus.evaluation.match_catalogs`) and their positions and fluxes compared.

Writes ``benchmarks/results/scale.json`` and ``docs/_generated/scale.rst``; deletes the 2 GiB cube.
Run: ``python benchmarks/scale.py [--npix 1024] [--channels 512] [--memory-limit "2 GiB"]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from _common import ROOT, machine, rst_table, write_docs, write_json

WORK = ROOT / "benchmarks" / "_work"
GiB = 2**30


def observation(npix, n_channels):
    import astropy.units as u

    from deepfocus.simulation import Observation

    return Observation(npix=npix, n_channels=n_channels, tsys=60 * u.K)


def make_cube(path, *, npix=1024, n_channels=512, patch=256, sources_per_patch=6, seed=0):
    """Write a ``(n_channels, npix, npix)`` float32 FITS cube patch by patch; return the truth.

    Each ``patch x patch`` block is an independent simulation with the same observation set-up;
    only one block is in memory at a time.
    """
    import astropy.units as u
    from astropy.io import fits
    from astropy.table import vstack

    from deepfocus.simulation import Interferometer
    from deepfocus.simulation.simulate import cube_wcs, simulate_arrays

    itf = Interferometer(observation(patch, n_channels))
    full = observation(npix, n_channels)
    header = cube_wcs(full, itf.cell).to_header()
    header["BUNIT"] = "Jy/beam"
    header["BMAJ"] = itf.beam.major.to_value(u.deg)
    header["BMIN"] = itf.beam.minor.to_value(u.deg)
    header["BPA"] = itf.beam.pa.to_value(u.deg)
    hdu = fits.PrimaryHDU(header=header)
    hdu.header["BITPIX"] = -32
    hdu.header["NAXIS"] = 3
    for i, n in enumerate((npix, npix, n_channels), start=1):
        hdu.header[f"NAXIS{i}"] = n
    # Write the header, then grow the file to its full size (FITS pads data to 2880 bytes).
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = hdu.header.tostring()
    nbytes = 4 * npix * npix * n_channels
    with open(path, "wb") as f:
        f.write(text.encode("ascii"))
        f.seek(len(text) + nbytes + (-nbytes % 2880) - 1)
        f.write(b"\0")
    truths = []
    k = 0
    with fits.open(path, mode="update", memmap=True) as hdul:
        data = hdul[0].data
        for y0 in range(0, npix, patch):
            for x0 in range(0, npix, patch):
                dirty, _, truth = simulate_arrays(itf, seed=seed + k, n_sources=sources_per_patch)
                data[:, y0 : y0 + patch, x0 : x0 + patch] = dirty
                truth["x_centroid"] += x0 * u.pix
                truth["y_centroid"] += y0 * u.pix
                truths.append(truth[["x_centroid", "y_centroid", "z_centroid", "line_width", "flux"]])
                k += 1
                del dirty
        hdul.flush()
    return vstack(truths)


def make_small_cube(path, *, npix=384, n_channels=128, n_sources=40, seed=7):
    """A cube small enough for one in-memory pass (written with the simulator's writer)."""
    from deepfocus.simulation import Interferometer, simulate

    sim = simulate(
        interferometer=Interferometer(observation(npix, n_channels)), seed=seed, n_sources=n_sources
    )
    return sim.write(Path(path).parent, Path(path).stem, overwrite=True)["dirty"]


# ------------------------------------------------------------------------------------------
# child: one run in a fresh process


def child(args):
    """Run detection once and print a JSON line (wall time, peak RSS, sources)."""
    import psutil
    import torch

    torch.set_num_threads(1)
    from deepfocus import DeepFocus
    from deepfocus.detection.tiled import TiledPipeline
    from deepfocus.io.catalog import write_catalog

    pipeline = DeepFocus()
    setup_rss = psutil.Process().memory_info().rss
    start = time.perf_counter()
    if args.memory_limit is None:
        catalog = pipeline(args.child)
        plan = None
    else:
        tiled = TiledPipeline(
            pipeline, memory_limit=args.memory_limit, max_in_flight=args.in_flight, progress=False
        )
        plan = tiled.plan(args.child)
        catalog = tiled(args.child)
    wall = time.perf_counter() - start
    if args.catalog:
        write_catalog(catalog, args.catalog, overwrite=True)
    out = {
        "wall_s": wall,
        "setup_rss_bytes": setup_rss,
        "n_sources": 0 if catalog is None else len(catalog),
    }
    if plan is not None:
        out.update(
            n_tiles=len(plan),
            grid=list(plan.grid),
            halo_pix=plan.halo,
            largest_tile_voxels=int(max(np.prod(t.shape) for t in plan.tiles) * plan.shape[0]),
            tile_bytes_estimate=plan.tile_bytes,
            n_channel_blocks=len(plan.channel_blocks),
            channel_halo=plan.channel_halo,
        )
    print("RESULT " + json.dumps(out), flush=True)


def run_child(cube, *, memory_limit=None, in_flight=1, catalog=None):
    """Run `child` in a subprocess, polling its RSS; its JSON result plus ``polled_peak_rss_bytes``."""
    import psutil

    # /usr/bin/time -v reports the child's own peak RSS (ru_maxrss of a process forked from this
    # big one would start from this one's).
    cmd = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        __file__,
        "--child",
        str(cube),
        "--in-flight",
        str(in_flight),
    ]
    if memory_limit is not None:
        cmd += ["--memory-limit", str(memory_limit)]
    if catalog is not None:
        cmd += ["--catalog", str(catalog)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0]

    def poll():
        p = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
            except psutil.Error:
                break
            peak[0] = max(peak[0], rss)
            time.sleep(0.05)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    watcher.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    result["polled_peak_rss_bytes"] = peak[0]
    line = next(x for x in err.splitlines() if "Maximum resident set size" in x)
    result["peak_rss_bytes"] = int(line.split(":")[1]) * 1024
    return result


def load():
    return os.getloadavg()


def equivalence(workdir):
    """Single pass vs tiles on a small cube: counts, matches, position and flux differences."""
    import astropy.units as u

    from deepfocus.evaluation import match_catalogs, read_catalog
    from deepfocus.io.tiles import BYTES_PER_VOXEL

    cube = make_small_cube(workdir / "small.fits")
    single = run_child(cube, catalog=workdir / "small_single.ecsv")
    # A budget that forces many tiles (the grid is recorded): about 400 MB, of which each tile
    # keeps room for the networks' batches.
    limit = int(BYTES_PER_VOXEL * 128 * (128 + 2 * 33) ** 2 * 1.05)
    tiled = run_child(cube, memory_limit=limit, catalog=workdir / "small_tiled.ecsv")
    a = read_catalog(workdir / "small_single.ecsv")
    b = read_catalog(workdir / "small_tiled.ecsv")
    match = match_catalogs(a, b)
    ia, ib = match.truth_index, match.catalog_index
    flux_a = a["flux"][ia].to_value(u.Jy * u.km / u.s)
    flux_b = b["flux"][ib].to_value(u.Jy * u.km / u.s)
    identical = (match.separation < 0.01) & (np.abs(flux_b / flux_a - 1) < 1e-3)
    return {
        "n_identical": int(identical.sum()),
        "shape": [128, 384, 384],
        "memory_limit_bytes": limit,
        "n_tiles": tiled["n_tiles"],
        "grid": tiled["grid"],
        "n_single": len(a),
        "n_tiled": len(b),
        "n_matched": len(ia),
        "max_position_difference_pix": float(np.max(match.separation)) if len(ia) else None,
        "max_flux_relative_difference": float(np.max(np.abs(flux_b / flux_a - 1))) if len(ia) else None,
        "single_wall_s": single["wall_s"],
        "tiled_wall_s": tiled["wall_s"],
        "single_peak_rss_bytes": single["peak_rss_bytes"],
        "tiled_peak_rss_bytes": tiled["peak_rss_bytes"],
    }


def report(results, limit):
    """Write ``benchmarks/results/scale.json`` and ``docs/_generated/scale.rst`` (what is done so far)."""
    write_json("scale", results)
    runs = results.get("runs", [])
    rows = [
        (
            r["in_flight"],
            f"{r['n_tiles']} ({r['grid'][0]} x {r['grid'][1]})",
            f"{r['wall_s']:.0f}",
            f"{r['voxels_per_s'] / 1e6:.3f}",
            f"{max(r['peak_rss_bytes'], r['polled_peak_rss_bytes']) / GiB:.2f}",
            r["n_sources"],
            f"{r['load_before'][0]:.1f}",
        )
        for r in runs
    ]
    text = []
    cube = results.get("cube")
    if cube is not None:
        n_chan, ny, nx = cube["shape"]
        text += [
            f"{n_chan} x {ny} x {nx} float32 cube ({cube['file_bytes'] / GiB:.2f} GiB on disk), tile budget "
            f"{limit}, ``DeepFocus()`` with the shipped networks, one torch thread per tile, on "
            f"{results['machine']['cores']} CPU cores ({results['machine']['cpu']}) shared with other "
            "jobs (load average when each run started in the last column: throughputs are lower bounds).",
            "",
            rst_table(
                ["tiles in flight", "tiles", "wall (s)", "Mvoxel/s", "peak RSS (GiB)", "sources", "load avg"],
                rows,
            )
            if rows
            else "(no run finished)",
            "",
        ]
    eq = results.get("equivalence")
    if eq is not None:
        text.append(
            f"Single pass vs tiles on a {' x '.join(map(str, eq['shape']))} cube ({eq['n_tiles']} tiles, "
            f"{eq['grid'][0]} x {eq['grid'][1]}): {eq['n_single']} and {eq['n_tiled']} sources, "
            f"{eq['n_matched']} matched one-to-one; {eq['n_identical']} identical (position within "
            f"0.01 pix, flux within 0.1 %); largest position difference "
            f"{eq['max_position_difference_pix']:.2g} pix, largest flux difference "
            f"{100 * eq['max_flux_relative_difference']:.2g} %."
        )
    write_docs("scale", "\n".join(text))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--catalog", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--in-flight", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--npix", type=int, default=1024)
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--memory-limit", default=None, help="tile budget (default 2 GiB)")
    parser.add_argument("--in-flight-list", default="1,2,4", help="runs, in this order (default 1,2,4)")
    parser.add_argument("--keep", action="store_true", help="keep the big cube in benchmarks/_work/")
    parser.add_argument("--skip-equivalence", action="store_true", help="only the big cube (calibration)")
    parser.add_argument("--no-results", action="store_true", help="print, do not write results or docs")
    args = parser.parse_args()
    if args.child is not None:
        return child(args)
    limit = args.memory_limit or "2 GiB"
    WORK.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine(), "load_before": load(), "memory_limit": limit}
    save = (lambda: None) if args.no_results else (lambda: report(results, limit))
    if not args.skip_equivalence:
        print("equivalence on a small cube ...", flush=True)
        results["equivalence"] = equivalence(WORK)
        print(json.dumps(results["equivalence"], indent=1), flush=True)
        save()
    big = WORK / "scale_cube.fits"
    start = time.perf_counter()
    truth = make_cube(big, npix=args.npix, n_channels=args.channels)
    results["cube"] = {
        "shape": [args.channels, args.npix, args.npix],
        "file_bytes": big.stat().st_size,
        "n_true_sources": len(truth),
        "write_s": time.perf_counter() - start,
        "how": "16 independent 256 x 256 x 512 fast-engine simulations (Observation(npix=256, "
        "n_channels=512, tsys=60 K), seeds 0..15, 6 random sources each) written into a memory-mapped FITS",
    }
    voxels = args.channels * args.npix * args.npix
    results["runs"] = []
    try:
        for n in (int(v) for v in args.in_flight_list.split(",")):
            print(f"{n} tile(s) in flight ...", flush=True)
            before = load()
            r = run_child(big, memory_limit=limit, in_flight=n)
            r.update(in_flight=n, load_before=before, load_after=load(), voxels_per_s=voxels / r["wall_s"])
            r["bytes_per_voxel_measured"] = (r["peak_rss_bytes"] - r["setup_rss_bytes"]) / (
                n * r["largest_tile_voxels"]
            )
            print(json.dumps(r), flush=True)
            results["runs"].append(r)
            save()
    finally:
        if not args.keep:
            big.unlink(missing_ok=True)
    print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
