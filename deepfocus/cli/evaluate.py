"""``deepfocus evaluate``: score a catalogue against the truth."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from ._common import refuse_existing


def register(subparsers):
    """Add the ``evaluate`` subcommand."""
    ev = subparsers.add_parser(
        "evaluate",
        help="score a catalogue against a truth catalogue",
        description="Match a catalogue to the truth one to one (within half a beam and the line "
        "width) and report completeness per S/N bin, purity, F1 and measurement accuracy.",
        epilog="examples:\n"
        "  deepfocus evaluate --truth sim0_truth.ecsv --catalog cat.ecsv --json scores.json\n"
        "  deepfocus evaluate --truth sim0_truth.ecsv --catalog cat.ecsv --plot diagnostics.png\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument(
        "--truth", type=Path, required=True, help="truth catalogue (as deepfocus simulate writes)"
    )
    ev.add_argument("--catalog", type=Path, required=True, help="catalogue to score")
    ev.add_argument("--json", type=Path, help="also write the metrics as JSON")
    ev.add_argument(
        "--plot",
        type=Path,
        help="plot of completeness and purity against S/N and measured against true flux, FWHM, PA "
        "(format from the suffix: .png, .pdf, .svg, ...)",
    )
    ev.add_argument("--overwrite", action="store_true", help="replace existing --json and --plot files")
    ev.add_argument("--quiet", action="store_true", help="no printed table")
    ev.set_defaults(func=_run_evaluate)


def _run_evaluate(args) -> int:
    from ..evaluation import evaluate_files, format_report
    from ..exceptions import DeepFocusWarning
    from ..io.atomic import refuse_clobbering
    from ..visualization import figure_format

    outputs = {"--json": args.json, "--plot": args.plot}
    refuse_clobbering(outputs, {"--truth": args.truth, "--catalog": args.catalog})
    if args.plot is not None:
        figure_format(args.plot)
    refuse_existing(outputs, args.overwrite)  # before any work: nothing is replaced by surprise
    with warnings.catch_warnings(record=True) as caught:
        try:
            metrics = evaluate_files(args.truth, args.catalog, json_path=args.json)
        finally:  # the notes explain a failure too
            for warning in caught:  # deepfocus's own as one-line notes, the others as Python shows them
                if issubclass(warning.category, DeepFocusWarning):
                    print(f"deepfocus evaluate: note: {warning.message}", file=sys.stderr)
                else:
                    warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    if args.plot is not None:
        _plot(args.truth, args.catalog, args.plot)
    if not args.quiet:
        print(format_report(metrics))
    if metrics["n_matched"] == 0 and metrics["n_truth"] and metrics["n_detected"]:
        print(
            f"deepfocus evaluate: note: none of the {metrics['n_detected']} detections matches any of the "
            f"{metrics['n_truth']} true sources: are the catalogue and the truth of the same cube?",
            file=sys.stderr,
        )
    return 0


def _plot(truth_path, catalog_path, output):
    """Write the diagnostics figure of a catalogue against the truth."""
    import matplotlib

    matplotlib.use("Agg")
    from ..evaluation import read_catalog
    from ..evaluation.report import TRUTH_REQUIRED
    from ..visualization import plot_diagnostics, save_figure

    truth = read_catalog(truth_path, what="truth catalogue", required=TRUTH_REQUIRED)
    catalog = read_catalog(catalog_path, what="detected catalogue", allow_empty=True)
    save_figure(plot_diagnostics(truth, catalog), output)
