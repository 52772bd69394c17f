"""``deepfocus optimize``: tune a network's hyper-parameters with Optuna."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import positive_float, positive_int

OPTIMIZE_EXAMPLES = """\
examples:
  deepfocus optimize --task characterizer --trials 20 --output tuning
      20 trials on the 'tune' preset (a tenth of the default data) in sqlite:///deepfocus-study.db;
      writes tuning/best-characterizer.json and tuning/trials-characterizer.csv
  deepfocus train --task characterizer --preset default --config tuning/best-characterizer.json --output tuned
      retrain the best trial's config on the full data
  deepfocus optimize --task spectral --trials 50 --storage postgresql://user@db-host/studies
      run this same command on several machines: they share the 50 trials of one study
  deepfocus optimize --task spectral --trials 50 --plot tuning/spectral
      also write tuning/spectral-history.png, -importances.png and -intermediate.png (on a
      finished study, only the outputs and plots are written again)

A killed run, or one stopped with Ctrl-C, continues where it stopped when the same command is
run again, starting with the trial it was running. A study with trials refuses another
--preset, --seed, --data or --space: give a new --storage or --study.
"""


def register(subparsers):
    """Add the ``optimize`` subcommand."""
    op = subparsers.add_parser(
        "optimize",
        help="tune a network's hyper-parameters (Optuna; resumable, shared by several workers)",
        description="Search a task's hyper-parameters (architecture, optimisation, loss weights) with "
        "Optuna's TPE sampler and median pruning, maximising the task's validation metric. The study "
        "is kept in a database: re-running the command continues it, and several workers (processes or "
        "machines) running the same command share its trials.",
        epilog=OPTIMIZE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    op.add_argument(
        "--task", required=True, choices=("deconvolver", "spectral", "characterizer"), help="network to tune"
    )
    op.add_argument(
        "--trials", type=positive_int, required=True, help="finished trials the study must have (all workers)"
    )
    op.add_argument(
        "--storage",
        default="sqlite:///deepfocus-study.db",
        help="SQLAlchemy URL of the study database (default sqlite:///deepfocus-study.db)",
    )
    op.add_argument("--study", help="study name (default deepfocus-TASK)")
    op.add_argument("--timeout", type=positive_float, help="start no new trial after this many seconds")
    op.add_argument(
        "--preset", default="tune", help="data and epochs of a trial (default tune; tiny for checks)"
    )
    op.add_argument("--space", type=Path, help="search space JSON (default: the task's shipped one)")
    op.add_argument("--output", type=Path, default=Path("."), help="folder for outputs and the data cache")
    op.add_argument("--data", type=Path, help="use NAME_dirty.fits/_sky.fits/_truth.ecsv files here")
    op.add_argument(
        "--seed", type=int, default=0, help="seed of data, weights and sampler (0 to 2**32 - 1, default 0)"
    )
    op.add_argument(
        "--heartbeat", type=positive_int, default=30, help="seconds between a trial's heartbeats (default 30)"
    )
    op.add_argument(
        "--plot", metavar="PREFIX", help="write PREFIX-history.png, -importances.png, -intermediate.png"
    )
    op.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's, the cores)")
    op.add_argument("--quiet", action="store_true", help="no progress output")
    op.set_defaults(func=_run_optimize)


def _run_optimize(args) -> int:
    import torch

    from ..training.optimize import OBJECTIVES, optimize

    if args.threads:
        torch.set_num_threads(args.threads)
    study = optimize(
        args.task,
        args.trials,
        storage=args.storage,
        study_name=args.study,
        timeout=args.timeout,
        preset=args.preset,
        seed=args.seed,
        output_dir=args.output,
        space=args.space,
        data_dir=args.data,
        heartbeat=args.heartbeat,
        progress=not args.quiet,
        log=None if args.quiet else lambda line: print(line, flush=True),
    )
    if args.plot:
        from ..visualization.optimization import save_study_plots

        paths = save_study_plots(study, args.plot, log=None if args.quiet else print)
        if not args.quiet:
            print("plots: " + ", ".join(str(p) for p in paths))
    if not args.quiet:
        try:
            best = study.best_trial
        except ValueError:
            print("no complete trial yet")
        else:
            print(
                f"best trial {best.number}: {OBJECTIVES[args.task]}={best.value:.4g}; "
                f"config {args.output / f'best-{args.task}.json'}"
            )
    return 0
