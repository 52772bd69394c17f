"""Many cubes on a dask.distributed cluster: one process vs a LocalCluster of worker processes.

Simulates ``--n`` cubes (128 x 128 x 64 by default, one interferometer set-up, different sky
and noise seeds), runs `deepfocus.batch.detect_many` on them in this process and on a
`~distributed.LocalCluster` of ``--workers`` single-threaded worker processes (one torch thread
per task in both), and checks that every catalogue is identical. Writes
``benchmarks/results/cluster.json`` and ``docs/_generated/cluster.rst``.

The machine's load average is recorded before and after: the speed-up is only meaningful when
nothing else competes for the cores.

Run: ``python benchmarks/cluster.py [--n 20] [--workers 2] [--model default]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from deepfocus.batch import detect_many, local_client, output_paths
from deepfocus.io import read_catalog
from deepfocus.simulation import Interferometer, Observation, simulate

from _common import machine, rst_table, write_docs, write_json


def make_cubes(folder, n, npix, n_channels):
    """Write ``n`` simulated dirty cubes; returns their paths."""
    itf = Interferometer(Observation(npix=npix, n_channels=n_channels))
    paths = []
    for seed in range(n):
        files = simulate(seed=1000 + seed, interferometer=itf).write(folder, f"cube{seed:02d}")
        for key in ("sky", "truth"):
            Path(files[key]).unlink()
        paths.append(Path(files["dirty"]))
    return paths


def identical(a, b):
    """Whether two catalogue files hold the same table (values, units, meta but the date)."""
    ta, tb = read_catalog(a), read_catalog(b)
    if ta.colnames != tb.colnames or len(ta) != len(tb):
        return False
    for name in ta.colnames:
        if name == "sky_centroid":
            same = np.array_equal(ta[name].ra.deg, tb[name].ra.deg) and np.array_equal(
                ta[name].dec.deg, tb[name].dec.deg
            )
        else:
            same = np.array_equal(np.asarray(ta[name]), np.asarray(tb[name]))
        if not same:
            return False
    strip = lambda meta: {k: v for k, v in meta.items() if k != "date"}  # noqa: E731
    return strip(ta.meta) == strip(tb.meta)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="number of cubes")
    parser.add_argument("--npix", type=int, default=128)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default="default", help="'default' or 'none' (classical)")
    args = parser.parse_args()
    model = None if args.model == "none" else args.model
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cubes = make_cubes(tmp / "cubes", args.n, args.npix, args.channels)

        start = time.perf_counter()
        alone = detect_many(cubes, tmp / "alone", model=model, progress=False)
        t_alone_first = time.perf_counter() - start

        start = time.perf_counter()
        with local_client(args.workers) as client:
            t_startup = time.perf_counter() - start
            begin = time.perf_counter()
            spread = detect_many(cubes, tmp / "cluster", model=model, client=client, progress=False)
            t_batch = time.perf_counter() - begin
        t_cluster = time.perf_counter() - start
        # One process again: with the first run it brackets the cluster run in time, so a
        # change of the machine's load shows as a difference between the two.
        start = time.perf_counter()
        again = detect_many(cubes, tmp / "again", model=model, progress=False)
        t_alone_second = time.perf_counter() - start
        t_alone = 0.5 * (t_alone_first + t_alone_second)
        load_after = os.getloadavg()
        assert alone.success and spread.success and again.success, (str(alone), str(spread))
        same = [
            identical(output_paths(c, tmp / "alone")["catalog"], output_paths(c, tmp / "cluster")["catalog"])
            for c in cubes
        ]
        n_sources = [r.n_sources for r in alone.results]

    data = {
        "machine": machine(),
        "command": f"python benchmarks/cluster.py --n {args.n} --npix {args.npix} --channels "
        f"{args.channels} --workers {args.workers} --model {args.model}",
        "cubes": {"n": args.n, "shape": [args.channels, args.npix, args.npix], "sources": sum(n_sources)},
        "model": args.model,
        "threads_per_task": 1,
        "one_process_s": t_alone,
        "one_process_runs_s": [t_alone_first, t_alone_second],
        "median_cube_s_one_process": float(np.median([r.seconds for r in alone.results + again.results])),
        "median_cube_s_cluster": float(np.median([r.seconds for r in spread.results])),
        "cluster_workers": args.workers,
        "cluster_startup_s": t_startup,
        "cluster_batch_s": t_batch,
        "cluster_total_s": t_cluster,
        "speedup_batch": t_alone / t_batch,
        "speedup_total": t_alone / t_cluster,
        "identical_catalogues": int(sum(same)),
        "all_identical": all(same),
        "load_average_before": load_before,
        "load_average_after": load_after,
    }
    write_json("cluster", data)
    rows = [
        ["one process (before)", "1", f"{t_alone_first:.1f}", "—", "", "—"],
        ["one process (after)", "1", f"{t_alone_second:.1f}", "—", "", "—"],
        [
            f"LocalCluster, {args.workers} workers",
            str(args.workers),
            f"{t_batch:.1f}",
            f"{t_startup:.1f}",
            f"{t_alone / t_batch:.2f} ({t_alone / t_cluster:.2f} with start-up)",
            f"{sum(same)}/{args.n}",
        ],
    ]
    table = rst_table(
        ["run", "processes", "seconds", "start-up (s)", "speed-up", "identical catalogues"], rows
    )
    text = (
        f"{args.n} simulated cubes of {args.channels} x {args.npix} x {args.npix} "
        f"({sum(n_sources)} sources found in all), model ``{args.model}``, one torch thread per task, "
        f"on {data['machine']['cores']} cores ({data['machine']['cpu']}); load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (other jobs share the machine). "
        f"The one-process runs before and after the cluster run bracket it; the speed-up is over "
        f"their mean. Median time per cube: {data['median_cube_s_one_process']:.2f} s in one "
        f"process, {data['median_cube_s_cluster']:.2f} s on a worker. "
        f"Measured {data['machine']['date'][:10]} with ``{data['command']}``.\n\n" + table
    )
    write_docs("cluster", text)
    print(text)


if __name__ == "__main__":
    main()
