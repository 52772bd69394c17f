"""The ``deepfocus`` command: one entry point, one subcommand per job.

The CLI only wires arguments to the Python API; every user error ends in a one-line message
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from .exceptions import DeepFocusError
from .version import __version__

__all__ = ["main", "build_parser"]

SIMULATE_EXAMPLES = """\
examples:
  deepfocus simulate --n 1 --output example
      one 128x128x64 cube (ALMA C-3 at 230 GHz) with random sources; prints its summary
  deepfocus simulate --n 100 --output train --seed 1 --config alma.cycle10.5 --pwv 0.8
  deepfocus simulate --n 5 --output paper --recipe paper --npix 256 --channels 128
  deepfocus simulate --n 2 --output casa --engine casa        (needs deepfocus[casa])
  deepfocus simulate --list-configurations
"""


TRAIN_EXAMPLES = """\
examples:
  deepfocus train --task all --preset default --output weights
      the recipe of the shipped weights (about 40 min on 2 CPU cores)
  deepfocus train --task characterizer --preset tiny --output /tmp/check
      a seconds-long run that checks a set-up end to end
  deepfocus train --task spectral --data casa_cubes --output mine
      train on cubes made elsewhere (deepfocus simulate --engine casa writes this layout)
"""


DETECT_EXAMPLES = """\
examples:
  deepfocus detect --example --output example.ecsv --regions example.reg --plot example.png
  deepfocus detect cube.fits --output cat.ecsv
  deepfocus detect cube.fits --output cat.xml --regions cat.reg --plot cat.png
  deepfocus detect cube.fits --output cat.fits --regions cat.crtf --snr-threshold 6 --psf cube.psf.fits
  deepfocus detect cube.fits --output cat.ecsv --model none        (classical stages only)
"""


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``deepfocus`` command."""
    parser = argparse.ArgumentParser(
        prog="deepfocus",
        description="Find and characterise sources in radio-interferometric spectral cubes.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'deepfocus COMMAND --help' for the options and examples of a command.",
    )
    parser.add_argument("--version", action="version", version=f"deepfocus {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sim = sub.add_parser(
        "simulate",
        help="simulate ALMA observations: dirty cube, sky model and truth catalogue",
        description="Simulate ALMA spectral-line observations of random sources. Each cube is "
        "written as NAME_dirty.fits (Jy/beam), NAME_sky.fits (Jy/pixel) and NAME_truth.ecsv.",
        epilog=SIMULATE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim.add_argument("--n", type=_positive_int, default=1, help="number of cubes (default 1)")
    sim.add_argument("--output", type=Path, help="output folder")
    sim.add_argument("--seed", type=int, default=0, help="random seed of the set (default 0)")
    sim.add_argument(
        "--config",
        default="alma.cycle10.3",
        help="antenna configuration: a shipped name, C-1..C-10, ACA, or a CASA .cfg path",
    )
    sim.add_argument(
        "--engine",
        choices=("fast", "casa"),
        default="fast",
        help="fast (numpy, default) or casa (simobserve + tclean, needs deepfocus[casa])",
    )
    sim.add_argument("--recipe", choices=("wide", "paper"), default="wide", help="source recipe")
    sim.add_argument("--n-sources", type=_positive_int, help="sources per cube (default: random)")
    sim.add_argument("--npix", type=_positive_int, default=128, help="image size in pixels (128)")
    sim.add_argument("--channels", type=_positive_int, default=64, help="number of channels (64)")
    sim.add_argument("--frequency", type=float, default=230.0, help="first channel frequency, GHz (230)")
    sim.add_argument("--channel-width", type=float, default=15.625, help="channel width, MHz (15.625)")
    sim.add_argument("--ra", type=float, default=150.0, help="field RA, deg (150)")
    sim.add_argument("--dec", type=float, default=-23.0, help="field Dec, deg (-23)")
    sim.add_argument("--total-time", type=float, default=1800.0, help="track length, s (1800)")
    sim.add_argument("--integration", type=float, default=10.0, help="integration time, s (10)")
    sim.add_argument("--pwv", type=float, default=1.0, help="precipitable water vapour, mm (1.0)")
    sim.add_argument("--cell", type=float, help="pixel size, arcsec (default: beam / pixels-per-beam)")
    sim.add_argument("--pixels-per-beam", type=float, default=5.0, help="pixels per beam major axis (5)")
    sim.add_argument("--no-noise", action="store_true", help="noise-free cubes")
    sim.add_argument(
        "--psf-file", type=Path, help="use this PSF FITS (a tclean .psf) instead of the simulated one"
    )
    sim.add_argument("--psf", action="store_true", help="also write NAME_psf.fits")
    sim.add_argument("--overwrite", action="store_true", help="replace existing files")
    sim.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    sim.add_argument("--list-configurations", action="store_true", help="list shipped configurations")
    sim.set_defaults(func=_run_simulate)

    tr = sub.add_parser(
        "train",
        help="train the networks on simulated data (or FITS triplets made elsewhere)",
        description="Train deepfocus's networks. Writes OUTPUT/<task>-<preset>.safetensors with a JSON "
        "model card (config, data recipe, seeds, metrics, sha256) and a CSV log per task.",
        epilog=TRAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tr.add_argument(
        "--task",
        default="all",
        choices=("deconvolver", "spectral", "characterizer", "all"),
        help="network to train (default: all three, from one simulated data set)",
    )
    tr.add_argument("--preset", default="default", help="data and optimisation recipe: default or tiny")
    tr.add_argument("--output", type=Path, required=True, help="output folder")
    tr.add_argument("--data", type=Path, help="train on NAME_dirty.fits/_sky.fits/_truth.ecsv files here")
    tr.add_argument("--config", type=Path, help="network config JSON (e.g. from deepfocus optimize)")
    tr.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    tr.add_argument("--threads", type=_positive_int, help="torch CPU threads")
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    tr.set_defaults(func=_run_train)

    det = sub.add_parser(
        "detect",
        help="find and characterise the sources of a cube: catalogue, regions, plot",
        description="Find and measure line sources in a spectral cube (FITS, Jy/beam or K, with "
        "beams, as CASA tclean writes it). Writes a catalogue (ECSV, FITS or VOTable by the "
        "suffix of --output) and optionally DS9/CRTF regions and a PNG.",
        epilog=DETECT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    det.add_argument("cube", type=Path, nargs="?", help="input cube (FITS)")
    det.add_argument(
        "--example",
        action="store_true",
        help="use the example cube shipped with deepfocus (a simulated ALMA cube with 5 sources)",
    )
    det.add_argument("--output", type=Path, required=True, help="catalogue: .ecsv, .fits or .xml (VOTable)")
    det.add_argument("--regions", type=Path, help="region file to write")
    det.add_argument(
        "--region-format", choices=("ds9", "crtf"), help="default: from the suffix (.reg, .crtf)"
    )
    det.add_argument("--plot", type=Path, help="PNG of the integrated image with the detections")
    det.add_argument("--snr-threshold", type=float, default=6.0, help="matched-filter S/N threshold (6)")
    det.add_argument("--psf", type=Path, help="the cube's PSF (tclean .psf exported to FITS)")
    det.add_argument(
        "--model",
        default="default",
        help="'default' (shipped networks), 'none' (classical) or a folder with <task>-default.safetensors",
    )
    det.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    det.add_argument("--quiet", action="store_true", help="no summary")
    det.set_defaults(func=_run_detect)

    ev = sub.add_parser(
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
    return parser


def _run_simulate(args) -> int:
    import astropy.units as u
    from tqdm.auto import tqdm

    from .simulation import Interferometer, Observation, available_configurations
    from .simulation.simulate import simulate

    if args.list_configurations:
        print("\n".join(available_configurations()))
        return 0
    if args.output is None:
        raise DeepFocusError("simulate needs --output DIR")
    observation = Observation(
        configuration=args.config,
        ra=args.ra * u.deg,
        dec=args.dec * u.deg,
        total_time=args.total_time * u.s,
        integration=args.integration * u.s,
        frequency=args.frequency * u.GHz,
        channel_width=args.channel_width * u.MHz,
        n_channels=args.channels,
        npix=args.npix,
        cell=None if args.cell is None else args.cell * u.arcsec,
        pixels_per_beam=args.pixels_per_beam,
        pwv=args.pwv * u.mm,
        noise=not args.no_noise,
    )
    interferometer = Interferometer(observation, psf=args.psf_file)
    width = len(str(args.n - 1))
    for index in tqdm(range(args.n), desc="simulate", unit="cube", disable=args.quiet or args.n == 1):
        seed = [args.seed, index]
        if args.engine == "casa":
            from .simulation.casa_engine import simulate_casa_observation

            result = simulate_casa_observation(
                interferometer, seed=seed, recipe=args.recipe, n_sources=args.n_sources
            )
        else:
            result = simulate(
                interferometer=interferometer,
                seed=seed,
                recipe=args.recipe,
                n_sources=args.n_sources,
            )
        paths = result.write(args.output, f"sim{index:0{width}d}", overwrite=args.overwrite, psf=args.psf)
        if args.n == 1 and not args.quiet:
            print(result.summary())
            print("written: " + ", ".join(str(p) for p in paths.values()))
    if args.n > 1 and not args.quiet:
        print(f"wrote {args.n} cubes to {args.output}")
    return 0


def _run_train(args) -> int:
    import torch

    from .training import train

    if args.threads:
        torch.set_num_threads(args.threads)
    command = " ".join(["deepfocus", *sys.argv[1:]]) if sys.argv[1:2] == ["train"] else None
    cards = train(
        args.task,
        args.output,
        preset=args.preset,
        seed=args.seed,
        data_dir=args.data,
        config=args.config,
        progress=not args.quiet,
        command=command,
    )
    if not args.quiet:
        for task, card in cards.items():
            metrics = ", ".join(f"{k[4:]}={v:.4g}" for k, v in card["metrics"].items())
            print(f"{task}: {card['training']['training_seconds']:.0f} s, {metrics}")
    return 0


def _run_detect(args) -> int:
    import warnings

    from .exceptions import NoDetectionsWarning
    from .io.catalog import write_catalog
    from .io.regions import write_regions
    from .pipeline import DeepFocus

    if args.example == (args.cube is not None):
        raise DeepFocusError("give either a CUBE or --example")
    if args.example:
        from importlib import resources

        args.cube = Path(str(resources.files("deepfocus.data") / "example_dirty.fits"))
    outputs = [p for p in (args.output, args.regions, args.plot) if p is not None]
    if not args.overwrite:
        existing = [str(p) for p in outputs if p.exists()]
        if existing:
            raise DeepFocusError(f"output exists: {', '.join(existing)} (use --overwrite)")
    if not args.cube.exists():
        raise DeepFocusError(f"no such file: {args.cube}")
    model = None if args.model.lower() == "none" else args.model
    pipeline = DeepFocus(args.snr_threshold, model=model)
    from .detection.detector import prepare

    prepared = prepare(args.cube, psf=args.psf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        catalog = pipeline(prepared)
    if catalog is None:
        catalog = _empty_catalog()
        catalog.meta.update(pipeline.detector._meta(prepared))
        catalog.meta["models"]["characterizer"] = pipeline.characterizer._info or {"name": "gaussian fit"}
        print(f"deepfocus detect: no sources found in {args.cube}", file=sys.stderr)
    write_catalog(catalog, args.output, overwrite=True)
    if args.regions is not None:
        write_regions(
            catalog,
            args.regions,
            format=args.region_format,
            overwrite=True,
            spectral_axis=prepared.spectral_axis if not prepared.flipped else prepared.spectral_axis[::-1],
        )
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .io.atomic import atomic_path
        from .visualization import plot_detections

        figure = plot_detections(prepared, catalog if len(catalog) else None)
        try:
            with atomic_path(args.plot) as tmp:
                figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        finally:
            plt.close(figure)
    if not args.quiet:
        print(f"{len(catalog)} sources -> {args.output}")
    return 0


def _empty_catalog():
    """A catalogue with the contract's columns (and units) and no rows."""
    import astropy.units as u
    import numpy as np
    from astropy.coordinates import SkyCoord
    from astropy.table import QTable

    from .io.catalog import CATALOG_COLUMNS

    table = QTable()
    for name, spec in CATALOG_COLUMNS.items():
        if name == "sky_centroid":
            table[name] = SkyCoord([], [], unit=u.deg, frame="icrs")
        elif name in ("id", "z_min", "z_max", "flags"):
            table[name] = np.zeros(0, dtype=np.int32 if name == "flags" else np.int64)
        elif spec.unit is None:
            table[name] = np.zeros(0)
        else:
            table[name] = np.zeros(0) * spec.unit
    return table


def _run_evaluate(args) -> int:
    from .evaluation import evaluate_files, format_report

    metrics = evaluate_files(args.truth, args.catalog, json_path=args.json)
    if not args.quiet:
        print(format_report(metrics))
    return 0


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
