"""``deepfocus evaluate``: score a catalogue against the truth."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers):
    """Add the ``evaluate`` subcommand."""
    ev = subparsers.add_parser(
        "evaluate",
        help="score a catalogue against a truth catalogue",
        description="Match a catalogue to the truth one to one (within half a beam and the line "
        "width) and report completeness per S/N bin, purity, F1 and measurement accuracy.",
        epilog="examples:\n"
        "  deepfocus evaluate --truth sim0_truth.ecsv --catalog cat.ecsv --json scores.json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument(
        "--truth", type=Path, required=True, help="truth catalogue (as deepfocus simulate writes)"
    )
    ev.add_argument("--catalog", type=Path, required=True, help="catalogue to score")
    ev.add_argument("--json", type=Path, help="also write the metrics as JSON")
    ev.add_argument("--quiet", action="store_true", help="no printed table")
    ev.set_defaults(func=_run_evaluate)


def _run_evaluate(args) -> int:
    from ..evaluation import evaluate_files, format_report

    metrics = evaluate_files(args.truth, args.catalog, json_path=args.json)
    if not args.quiet:
        print(format_report(metrics))
    return 0
