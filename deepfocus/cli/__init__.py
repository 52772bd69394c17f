"""The ``deepfocus`` command: one entry point, one subcommand per job.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``func``. The CLI only wires arguments to the Python API; every user error ends
in a one-line message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap

from ..exceptions import DeepFocusError
from ..version import __version__

__all__ = ["main", "build_parser", "SUBCOMMANDS"]

#: Subcommand modules of this package, in the order ``deepfocus --help`` lists them.
SUBCOMMANDS = ("simulate", "train", "optimize", "detect", "deconvolve", "evaluate")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``deepfocus`` command."""
    parser = argparse.ArgumentParser(
        prog="deepfocus",
        description="Find and characterise sources in radio-interferometric spectral cubes.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'deepfocus COMMAND --help' for the options and examples of a command.",
    )
    parser.add_argument("--version", action="version", version=f"deepfocus {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv=None) -> int:
    """Run the ``deepfocus`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 1
    try:
        return args.func(args)
    except (DeepFocusError, FileExistsError, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"deepfocus {args.command}: error: {textwrap.shorten(message, 300)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("deepfocus: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
