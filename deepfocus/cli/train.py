"""``deepfocus train``: train the networks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import positive_int

TRAIN_EXAMPLES = """\
examples:
  deepfocus train --task all --preset default --output weights
      the recipe of the shipped weights (about an hour on 2 CPU cores: 52 min of training and 7
      of simulation)
  deepfocus train --task characterizer --preset tiny --output /tmp/check
      a seconds-long run that checks a set-up end to end
  deepfocus train --task characterizer --output weights --overwrite
      retrain one network into a folder that holds weights (the others are kept)
  deepfocus train --task spectral --data casa_cubes --output mine
      train on cubes made elsewhere (deepfocus simulate --engine casa writes this layout)
  deepfocus train --task spectral --preset tiny --output /tmp/check --plot
      also draw the training curves as /tmp/check/spectral-tiny.png
  torchrun --standalone --nproc-per-node 2 -m deepfocus train --task deconvolver --output weights
      data-parallel training in 2 processes (DDP over gloo; the training runs on CPUs); rank 0 writes
"""


def register(subparsers):
    """Add the ``train`` subcommand."""
    tr = subparsers.add_parser(
        "train",
        help="train the networks on simulated data (or FITS triplets made elsewhere)",
        description="Train deepfocus's networks. Writes OUTPUT/<task>-<preset>.safetensors with a JSON "
        "model card (config, data recipe, seeds, metrics, sha256) and a CSV log per task, and adds "
        "their metrics to OUTPUT/training-<preset>.json. Existing weights are replaced only with "
        "--overwrite.",
        epilog=TRAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tr.add_argument(
        "--task",
        default="all",
        choices=("deconvolver", "spectral", "characterizer", "all"),
        help="network to train (default: all three, from one simulated data set)",
    )
    tr.add_argument(
        "--preset",
        default="default",
        help="data and optimisation recipe: default (the shipped weights', about an hour on 2 cores; "
        "the default), tune (fewer cubes, fewer epochs) or tiny (seconds, to check a set-up)",
    )
    tr.add_argument("--output", type=Path, required=True, help="output folder")
    tr.add_argument(
        "--data",
        type=Path,
        help="train on NAME_dirty.fits/_sky.fits/_truth.ecsv files here (the last 15 %% by name validate)",
    )
    tr.add_argument("--config", type=Path, help="network config JSON (e.g. from deepfocus optimize)")
    tr.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    tr.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's, the cores)")
    tr.add_argument(
        "--plot",
        action="store_true",
        help="also draw each task's training curves (losses, validation metrics, learning rate) as "
        "OUTPUT/<task>-<preset>.png",
    )
    tr.add_argument(
        "--overwrite", action="store_true", help="replace existing weights of the tasks in --output"
    )
    tr.add_argument(
        "--quiet", action="store_true", help="no progress bars, no metrics summary (errors still shown)"
    )
    tr.set_defaults(func=_run_train)


def _run_train(args) -> int:
    import torch

    from ..training import ddp, train

    if args.threads:
        torch.set_num_threads(args.threads)
    command = " ".join(["deepfocus", *sys.argv[1:]]) if sys.argv[1:2] == ["train"] else None
    distributed = ddp.init_from_env()  # under torchrun: one of WORLD_SIZE data-parallel processes
    main = ddp.is_main_process()
    try:
        cards = train(
            args.task,
            args.output,
            preset=args.preset,
            seed=args.seed,
            data_dir=args.data,
            config=args.config,
            overwrite=args.overwrite,
            progress=not args.quiet,
            command=command,
        )
    except BaseException:
        if distributed:
            ddp.shutdown(wait=False)  # the other ranks may never reach a barrier
        raise
    if distributed:
        ddp.shutdown()
    if not main:  # rank 0 wrote the files and reports
        return 0
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        from ..visualization import plot_training_log, save_figure

        for task in cards:
            weights = args.output / f"{task}-{args.preset}.safetensors"  # as train() names them
            save_figure(plot_training_log(weights.with_suffix(".csv")), weights.with_suffix(".png"))
    if not args.quiet:
        for task, card in cards.items():
            metrics = ", ".join(f"{k[4:]}={v:.4g}" for k, v in card["metrics"].items())
            print(f"{task}: {card['training']['training_seconds']:.0f} s, {metrics}")
    return 0
