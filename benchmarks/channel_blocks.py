"""Cubes with many channels: tiles read a block of channels at a time, peak memory and speed.

1. A simulated 256 x 256 x 4096 float32 cube (1 GiB) is written to ``benchmarks/_work/``
   patch by patch (`scale.make_cube`: independent 128 x 128 simulations of one ALMA set-up).
   A tile of all 4096 channels needs about 1.9 GB even at the smallest core, so a budget below
   that can only be met with blocks of channels.
2. ``DeepFocus()`` (the shipped networks) runs on it through `TiledPipeline` with budgets of
   512 MiB and 1 GiB, each in a fresh subprocess whose peak RSS is measured
   (``/usr/bin/time -v`` and psutil polling); the plan (tiles, blocks of channels) is recorded.
3. Equivalence: a 192 x 192 x 1024 cube small enough for one pass in memory is processed in
   one pass and in blocks of channels (a budget too small for tiles of all channels); the
   catalogues are matched one-to-one and compared.

Writes ``benchmarks/results/channel_blocks.json`` and ``docs/_generated/channel_blocks.rst``;
deletes the cubes. Run: ``python benchmarks/channel_blocks.py [--channels 4096] [--npix 256]``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scale import WORK, load, make_cube, run_child

from _common import machine, rst_table, write_docs, write_json

GiB = 2**30


def compare(single_path, blocked_path):
    """Counts, one-to-one matches and the largest differences of two catalogue files."""
    import astropy.units as u

    from deepfocus.evaluation import match_catalogs, read_catalog

    a, b = read_catalog(single_path), read_catalog(blocked_path)
    match = match_catalogs(a, b)
    ia, ib = match.truth_index, match.catalog_index
    flux_a = a["flux"][ia].to_value(u.Jy * u.km / u.s)
    flux_b = b["flux"][ib].to_value(u.Jy * u.km / u.s)
    ratio = np.abs(flux_b / flux_a - 1)
    return {
        "n_single": len(a),
        "n_blocked": len(b),
        "n_matched": len(ia),
        "n_identical": int(np.sum((match.separation < 0.01) & (ratio < 1e-3))),
        "max_position_difference_pix": float(np.max(match.separation)) if len(ia) else None,
        "max_flux_relative_difference": float(np.max(ratio)) if len(ia) else None,
    }


def equivalence(n_channels):
    from deepfocus.detection.tiled import TiledPipeline
    from deepfocus.io.tiles import BYTES_PER_VOXEL
    from deepfocus.pipeline import DeepFocus

    cube = WORK / "blocks_small.fits"
    make_cube(cube, npix=192, n_channels=n_channels, patch=96, sources_per_patch=8, seed=100)
    single = run_child(cube, catalog=WORK / "blocks_single.ecsv")
    # Below the smallest tile of all channels (a 16-pixel core plus the halo): blocks only.
    halo = TiledPipeline(DeepFocus(), memory_limit=GiB).plan(cube).halo
    limit = int(0.8 * BYTES_PER_VOXEL * n_channels * (16 + 2 * halo) ** 2)
    blocked = run_child(cube, memory_limit=limit, catalog=WORK / "blocks_blocked.ecsv")
    out = compare(WORK / "blocks_single.ecsv", WORK / "blocks_blocked.ecsv")
    out.update(
        shape=[n_channels, 192, 192],
        memory_limit_bytes=limit,
        plan={k: blocked[k] for k in ("n_tiles", "grid", "n_channel_blocks", "channel_halo")},
        single_wall_s=single["wall_s"],
        blocked_wall_s=blocked["wall_s"],
        single_peak_rss_bytes=single["peak_rss_bytes"],
        blocked_peak_rss_bytes=blocked["peak_rss_bytes"],
    )
    cube.unlink(missing_ok=True)
    return out


def report(results):
    write_json("channel_blocks", results)
    text = []
    cube = results.get("cube")
    if cube is not None and results.get("runs"):
        n_chan, ny, nx = cube["shape"]
        rows = [
            (
                r["memory_limit"],
                f"{r['n_tiles']} ({r['grid'][0]} x {r['grid'][1]}) x {r['n_channel_blocks']} blocks",
                f"{r['wall_s']:.0f}",
                f"{r['voxels_per_s'] / 1e6:.2f}",
                f"{max(r['peak_rss_bytes'], r['polled_peak_rss_bytes']) / GiB:.2f}",
                f"{r['setup_rss_bytes'] / GiB:.2f}",
                r["n_sources"],
            )
            for r in results["runs"]
        ]
        text += [
            f"{n_chan} x {ny} x {nx} float32 cube ({cube['file_bytes'] / GiB:.2f} GiB on disk); a tile of "
            f"all channels needs {cube['smallest_tile_bytes'] / GiB:.2f} GiB at the smallest core. "
            f"``DeepFocus()`` with the shipped networks, one torch thread, on {results['machine']['cores']} "
            f"CPU cores ({results['machine']['cpu']}). Peak RSS includes the process's footprint "
            "(Python, torch, the networks) measured before the run in the next column.",
            "",
            rst_table(
                [
                    "budget",
                    "tiles x blocks",
                    "wall (s)",
                    "Mvoxel/s",
                    "peak RSS (GiB)",
                    "footprint (GiB)",
                    "sources",
                ],
                rows,
            ),
            "",
        ]
    eq = results.get("equivalence")
    if eq is not None:
        plan = eq["plan"]
        text.append(
            f"Single pass vs blocks of channels on a {' x '.join(map(str, eq['shape']))} cube "
            f"({plan['n_tiles']} tiles x {plan['n_channel_blocks']} blocks, budget "
            f"{eq['memory_limit_bytes'] / 2**20:.0f} MiB): {eq['n_single']} and {eq['n_blocked']} sources, "
            f"{eq['n_matched']} matched one-to-one, {eq['n_identical']} identical (position within 0.01 pix, "
            f"flux within 0.1 %); largest position difference {eq['max_position_difference_pix']:.2g} pix, "
            f"largest flux difference {100 * eq['max_flux_relative_difference']:.2g} %. Peak RSS "
            f"{eq['single_peak_rss_bytes'] / GiB:.2f} GiB in one pass, "
            f"{eq['blocked_peak_rss_bytes'] / GiB:.2f} GiB in blocks."
        )
    write_docs("channel_blocks", "\n".join(text))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--npix", type=int, default=256)
    parser.add_argument("--channels", type=int, default=4096)
    parser.add_argument("--limits", default="512MiB,1GiB", help="budgets, in this order")
    parser.add_argument("--equivalence-channels", type=int, default=1024)
    parser.add_argument("--skip-equivalence", action="store_true")
    args = parser.parse_args()
    from deepfocus.detection.tiled import TiledPipeline
    from deepfocus.io.tiles import BYTES_PER_VOXEL
    from deepfocus.pipeline import DeepFocus

    WORK.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine(), "load_before": load()}
    if not args.skip_equivalence:
        print("equivalence ...", flush=True)
        results["equivalence"] = equivalence(args.equivalence_channels)
        print(json.dumps(results["equivalence"], indent=1), flush=True)
        report(results)
    big = WORK / "blocks_cube.fits"
    start = time.perf_counter()
    truth = make_cube(big, npix=args.npix, n_channels=args.channels, patch=128, sources_per_patch=8)
    halo = TiledPipeline(DeepFocus(), memory_limit=GiB).plan(big).halo
    results["cube"] = {
        "shape": [args.channels, args.npix, args.npix],
        "file_bytes": big.stat().st_size,
        "n_true_sources": len(truth),
        "write_s": time.perf_counter() - start,
        "smallest_tile_bytes": int(BYTES_PER_VOXEL * args.channels * (16 + 2 * halo) ** 2),
    }
    voxels = args.channels * args.npix * args.npix
    results["runs"] = []
    try:
        for limit in args.limits.split(","):
            print(f"budget {limit} ...", flush=True)
            r = run_child(big, memory_limit=limit)
            r.update(memory_limit=limit, voxels_per_s=voxels / r["wall_s"])
            print(json.dumps(r), flush=True)
            results["runs"].append(r)
            report(results)
    finally:
        big.unlink(missing_ok=True)
    print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
