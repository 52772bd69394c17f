"""``deepfocus detect``: catalogue, regions and plot of a cube, or of many cubes on a cluster."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from ..exceptions import DeepFocusError
from ._common import refuse_existing

DETECT_EXAMPLES = """\
examples:
  deepfocus detect --example --output example.ecsv --regions example.reg --plot example.png
  deepfocus detect cube.fits --output cat.ecsv
  deepfocus detect cube.fits --output cat.xml --regions cat.reg --plot cat.png
  deepfocus detect cube.fits --output cat.fits --regions cat.crtf --snr-threshold 6 --psf cube.psf.fits
  deepfocus detect cube.fits --output cat.ecsv --model none        (classical stages only)

many cubes (one task per cube; failed cubes are reported, finished ones skipped on a re-run):
  deepfocus detect 'survey/*.fits' --output-dir catalogs --regions
  deepfocus detect a.fits b.fits c.fits --output-dir catalogs --workers 2     (local cluster)
  deepfocus detect 'survey/*.fits' --output-dir catalogs --scheduler tcp://head:8786
  deepfocus detect 'obs/*.image.fits' --output-dir catalogs --psf auto     (obs/NAME.psf.fits each)
"""

#: ``--regions``/``--plot`` given without a file name.
_AUTO = "auto"


def _workers(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (this process) or a positive integer, got {text}")
    return value


def register(subparsers):
    """Add the ``detect`` subcommand."""
    det = subparsers.add_parser(
        "detect",
        help="find and characterise the sources of cubes: catalogues, regions, plots",
        description="Find and measure line sources in spectral cubes (FITS, Jy/beam or K, with "
        "beams, as CASA tclean writes them). One cube: writes the catalogue --output (ECSV, FITS "
        "or VOTable by its suffix) and optionally DS9/CRTF regions and a plot (PNG, PDF, SVG, ...). "
        "Many cubes (files or quoted glob patterns) with --output-dir: writes DIR/<stem>.ecsv "
        "(and .reg, .png) per cube, in this process or as tasks on a dask cluster (--workers, "
        "--scheduler); a cube that fails is reported and the others go on, and a re-run skips "
        "finished cubes.",
        epilog=DETECT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    det.add_argument("cubes", nargs="*", metavar="CUBE", help="input cube(s) (FITS) or glob patterns")
    det.add_argument(
        "--example",
        action="store_true",
        help="use the example cube shipped with deepfocus (a simulated ALMA cube with 5 sources) and, "
        "unless --psf is given, its PSF",
    )
    det.add_argument("--output", type=Path, help="catalogue of one cube: .ecsv, .fits or .xml (VOTable)")
    det.add_argument("--output-dir", type=Path, help="folder of the outputs of many cubes (<stem>.ecsv, ...)")
    det.add_argument(
        "--format",
        dest="catalog_format",
        choices=("ecsv", "fits", "votable"),
        default="ecsv",
        help="catalogue format with --output-dir (default ecsv)",
    )
    det.add_argument(
        "--regions",
        nargs="?",
        const=_AUTO,
        metavar="FILE",
        help="region file to write; without FILE, the catalogue's name with .reg (or .crtf with "
        "--region-format crtf), and with --output-dir DIR/<stem>.reg or .crtf",
    )
    det.add_argument(
        "--region-format", choices=("ds9", "crtf"), help="default: from the suffix (.reg, .crtf), or ds9"
    )
    det.add_argument(
        "--plot",
        nargs="?",
        const=_AUTO,
        metavar="FILE",
        help="plot of the integrated image with the detections, in the format of FILE's suffix "
        "(.png, .pdf, .svg, ...); without FILE, the catalogue's name with .png, and with "
        "--output-dir DIR/<stem>.png",
    )
    det.add_argument(
        "--plot-sources",
        type=Path,
        metavar="DIR",
        help="one cube: a PNG per source in DIR (source_<id>.png: line image with its ellipse, spectrum "
        "with its line window and the denoised spectrum)",
    )
    det.add_argument("--snr-threshold", type=float, default=6.0, help="matched-filter S/N threshold (6)")
    det.add_argument(
        "--psf",
        metavar="FILE|auto|PATTERN",
        help="the cube's PSF (tclean .psf exported to FITS), 'auto' (CASA's naming beside the cube: "
        "NAME.image.fits -> NAME.psf.fits; deepfocus simulate's: NAME_dirty.fits -> NAME_psf.fits) "
        "or a pattern with {stem} (the cube's name without .fits), e.g. 'psfs/{stem}.psf.fits'; with "
        "--output-dir only 'auto' or a pattern",
    )
    det.add_argument(
        "--pb",
        metavar="FILE|auto|PATTERN",
        help="the cube's primary-beam gain (tclean .pb exported to FITS), 'auto' (NAME.image.fits -> "
        "NAME.pb.fits, NAME_dirty.fits -> NAME_pb.fits) or a pattern with {stem}: fluxes are divided "
        "by the gain at each source (detect on the flat-noise .image, not the .image.pbcor); with "
        "--output-dir only 'auto' or a pattern",
    )
    det.add_argument(
        "--forward-fit",
        choices=("auto", "psf", "beam", "none"),
        default="auto",
        help="refine sizes, angles and fluxes by fitting each source seen through the PSF: 'auto' "
        "with --psf (a dirty cube), 'beam' with the restoring beam (a CLEANed cube), 'none' "
        "(default auto)",
    )
    det.add_argument(
        "--memory-limit",
        metavar="SIZE",
        help="process each cube out of core in overlapping tiles whose working memory stays within "
        "SIZE (e.g. 2GiB); no --plot/--plot-sources",
    )
    det.add_argument(
        "--model",
        default="default",
        help="'default' (shipped networks), 'none' (classical) or a folder of 'deepfocus train' weights "
        "(<task>-default.safetensors, or its one <task>-*.safetensors per task)",
    )
    det.add_argument(
        "--workers",
        type=_workers,
        default=0,
        help="with --output-dir: run on a local dask cluster of N worker processes (default 0: this process)",
    )
    det.add_argument("--scheduler", metavar="ADDRESS", help="with --output-dir: a dask scheduler to run on")
    det.add_argument(
        "--threads", type=int, default=1, help="torch threads per cube with --output-dir (default 1)"
    )
    det.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs (and re-run finished cubes)"
    )
    det.add_argument("--quiet", action="store_true", help="no progress bar, no summary (errors still shown)")
    det.add_argument("-v", "--verbose", action="count", default=0, help="log each cube (-vv: debug)")
    det.set_defaults(func=_run_detect)


def _run_detect(args) -> int:
    if args.example:
        from importlib import resources

        if args.cubes and args.output_dir is None:
            raise DeepFocusError("give --example or a CUBE, not both (or --output-dir DIR for several)")
        data = resources.files("deepfocus.data")
        args.cubes = [*args.cubes, str(data / "example_dirty.fits")]
        if args.psf is None and len(args.cubes) == 1:  # its PSF beside it, example_psf.fits
            args.psf = "auto"
    if not args.cubes:
        raise DeepFocusError("give a CUBE (or several with --output-dir), or --example")
    if (args.output is None) == (args.output_dir is None):
        raise DeepFocusError("give --output FILE for one cube or --output-dir DIR for many")
    _configure_logging(args)
    if args.output_dir is not None:
        return _run_batch(args)
    if len(args.cubes) != 1:
        raise DeepFocusError(f"{len(args.cubes)} cubes given: use --output-dir DIR for several")
    if args.workers or args.scheduler:
        raise DeepFocusError("--workers and --scheduler run batches: use --output-dir DIR")
    if args.plot_sources is not None:
        folder = args.plot_sources
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise DeepFocusError(f"--plot-sources {folder}: {blocker} is a file, not a folder")
    return _run_single(args, Path(args.cubes[0]))


def _configure_logging(args):
    level = (
        logging.ERROR if args.quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    )
    logger = logging.getLogger("deepfocus")
    logger.setLevel(level)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("deepfocus: %(message)s"))
        logger.addHandler(handler)


def _run_single(args, cube) -> int:
    from ..batch import detect_cube
    from ..io.atomic import refuse_clobbering
    from ..io.catalog import _resolve_format
    from ..pipeline import DeepFocus
    from ..visualization import figure_format

    if args.regions == _AUTO:
        args.regions = args.output.with_suffix(".crtf" if args.region_format == "crtf" else ".reg")
    if args.plot == _AUTO:
        args.plot = args.output.with_suffix(".png")
    regions = Path(args.regions) if args.regions else None
    plot = Path(args.plot) if args.plot else None
    refuse_clobbering(
        {"--output": args.output, "--regions": regions, "--plot": plot},
        {"CUBE": cube, "--psf": _plain_path(args.psf), "--pb": _plain_path(args.pb)},
    )
    if regions is not None and args.region_format is None and regions.suffix.lower() not in (".reg", ".crtf"):
        raise DeepFocusError(
            f"--regions {regions}: use a .reg (DS9) or .crtf (CRTF) name, or give --region-format ds9|crtf"
        )
    _resolve_format(args.output, None)  # a name without a catalogue suffix is refused before the run
    if plot is not None:
        figure_format(plot)
    outputs = [("--output", args.output), ("--regions", regions), ("--plot", plot)]
    if args.plot_sources is not None:  # a folder: none of the files may be it or hold it
        folder = args.plot_sources.resolve()
        files = {"--output": args.output, "--regions": regions, "--plot": plot, "CUBE": cube}
        for label, path in files.items():
            if path is not None and Path(path).resolve() in (folder, *folder.parents):
                raise DeepFocusError(f"--plot-sources {args.plot_sources} is the {label} file {path}")
    if args.plot_sources is not None:
        outputs += [("--plot-sources", p) for p in _source_plot_files(args.plot_sources)]
    refuse_existing(outputs, args.overwrite)
    if not cube.exists():
        raise DeepFocusError(f"no such file: {cube}")
    if args.memory_limit is not None and (plot is not None or args.plot_sources is not None):
        raise DeepFocusError(
            "--plot and --plot-sources need the whole cube in memory: not with --memory-limit"
        )
    psf = _product_file(cube, args.psf, "psf", "PSF")
    if psf is None and not args.quiet:
        _note_unused_psf(cube)
    pb = _product_file(cube, args.pb, "pb", "primary-beam")
    model = None if args.model.lower() == "none" else args.model
    pipeline = DeepFocus(
        args.snr_threshold, model=model, memory_limit=args.memory_limit, forward_fit=_forward_fit(args)
    )
    catalog = detect_cube(
        cube,
        args.output,
        pipeline=pipeline,
        regions=regions,
        region_format=args.region_format,
        plot=plot,
        psf=psf,
        pb=pb,
        progress=not args.quiet,
    )
    if not len(catalog):
        print(f"deepfocus detect: no sources found in {cube}", file=sys.stderr)
    if args.plot_sources is not None:
        _plot_sources(cube, catalog, args.plot_sources, model, remove_stale=args.overwrite)
    if not args.quiet:
        print(f"{len(catalog)} sources -> {args.output}{_out_of_range_note(catalog)}")
    return 0


def _out_of_range_note(catalog):
    """`` (N outside the networks' training range: flag 16)`` for a catalogue with such rows,
    else an empty string."""
    import numpy as np

    from ..io.catalog import SourceFlag

    n = int(np.count_nonzero(np.asarray(catalog["flags"]) & int(SourceFlag.OUT_OF_RANGE)))
    return f" ({n} outside the networks' training range: flag 16)" if n else ""


def _plain_path(spec):
    """``--psf``/``--pb`` as a path, or None for 'auto', a ``{stem}`` pattern or no option."""
    return None if spec is None or spec == "auto" or "{stem}" in spec else Path(spec)


def _product_file(cube, spec, product, what):
    """The file of ``--psf``/``--pb`` for one cube (a path, ``auto`` or a ``{stem}`` pattern),
    checked to exist; None if the option is not given."""
    from ..batch import product_path, refuse_corrected_with_pb

    if spec is None:
        return None
    if product == "pb":
        refuse_corrected_with_pb(cube)
    path = product_path(cube, spec, product) if spec == "auto" or "{stem}" in spec else Path(spec)
    if not path.is_file():
        raise DeepFocusError(f"no {what} file {path}")
    return path


def _note_unused_psf(cube):
    """Say so when the PSF that ``--psf auto`` would take lies beside a cube run without it: a
    dirty cube's fluxes are then measured through the restoring beam (12 % low for the brightest
    source of the example cube) and no candidate is tested as a sidelobe."""
    from ..batch import product_path

    found = product_path(cube, "auto", "psf")
    if found.is_file():
        print(
            f"deepfocus detect: note: {found.name} lies beside the cube but is not used: give --psf auto "
            "(sidelobe rejection, fits through the PSF)",
            file=sys.stderr,
        )


def _forward_fit(args):
    return None if args.forward_fit == "none" else args.forward_fit


#: The name of a per-source plot, ``source_<id>.png`` (the id in plain decimal, as written).
_SOURCE_PLOT = re.compile(r"source_(0|[1-9][0-9]*)\.png")


def _source_plot_files(folder):
    """The per-source plots (`_SOURCE_PLOT` names, not folders) in ``folder``, sorted; none if
    ``folder`` is not a folder."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _SOURCE_PLOT.fullmatch(p.name) and not p.is_dir())


def _plot_sources(cube, catalog, folder, model, *, remove_stale=False):
    """Write ``folder/source_<id>.png`` for every source of ``catalog``.

    Parameters
    ----------
    cube : path-like
        The cube the catalogue was measured on.
    catalog : `~astropy.table.QTable`
        The catalogue (its ``id`` column names the files).
    folder : `~pathlib.Path`
        Folder of the plots (created if needed).
    model : str or None
        Networks for the denoised spectrum (``--model``), None for none.
    remove_stale : bool
        Once every plot is written, remove the other ``source_<id>.png`` files in ``folder``
        (plots of sources an earlier run found), so that the folder matches the catalogue
        (``--overwrite``). Other files are never touched.
    """
    import matplotlib

    matplotlib.use("Agg")
    from ..detection.detector import prepare
    from ..visualization import plot_source, save_figure

    prepared = prepare(cube)
    written = set()
    for source in catalog["id"]:
        figure = plot_source(prepared, catalog, int(source), model=model)
        path = folder / f"source_{int(source)}.png"
        save_figure(figure, path)  # atomic: a failure leaves the old plot or none
        written.add(path.name)
    if remove_stale:  # only after every plot is written: a failed run removes nothing
        for path in _source_plot_files(folder):
            if path.name not in written:
                path.unlink(missing_ok=True)


def _run_batch(args) -> int:
    import contextlib

    from tqdm.contrib.logging import logging_redirect_tqdm

    from ..batch import detect_many, local_client

    for name in ("regions", "plot"):
        if getattr(args, name) not in (None, _AUTO):
            raise DeepFocusError(
                f"with --output-dir, give --{name} without a file name (written as DIR/<stem>.<suffix>)"
            )
    if args.memory_limit is not None and args.plot:
        raise DeepFocusError("--plot needs the whole cube in memory: not with --memory-limit")
    if args.plot_sources is not None:
        raise DeepFocusError("--plot-sources applies to one cube: use --output FILE")
    if args.workers and args.scheduler:
        raise DeepFocusError("give --workers N (a local cluster) or --scheduler ADDRESS, not both")
    if args.threads < 1:
        raise DeepFocusError(f"--threads must be a positive integer, got {args.threads}")
    if args.output_dir.exists() and not args.output_dir.is_dir():
        raise DeepFocusError(f"--output-dir {args.output_dir} is a file, not a folder")
    model = None if args.model.lower() == "none" else args.model
    with contextlib.ExitStack() as stack:
        client = None
        if args.workers:
            client = stack.enter_context(local_client(args.workers))
        elif args.scheduler:
            client = stack.enter_context(_connect(args.scheduler))
        stack.enter_context(logging_redirect_tqdm([logging.getLogger("deepfocus")]))
        summary = detect_many(
            args.cubes,
            args.output_dir,
            client=client,
            overwrite=args.overwrite,
            snr_threshold=args.snr_threshold,
            model=model,
            catalog_format=args.catalog_format,
            regions=(args.region_format or "ds9") if args.regions else None,
            plot=bool(args.plot),
            threads=args.threads,
            memory_limit=args.memory_limit,
            psf=args.psf,
            pb=args.pb,
            progress=not args.quiet,
            forward_fit=_forward_fit(args),
        )
    if not args.quiet:
        print(str(summary).splitlines()[0])
    if summary.failed:
        for result in summary.failed:
            # Most errors name their file already (not twice on the line).
            error = result.error.removeprefix(f"{result.cube}: ")
            print(f"deepfocus detect: failed: {result.cube}: {error}", file=sys.stderr)
        names = ", ".join(r.cube for r in summary.failed)
        print(f"deepfocus detect: error: {len(summary.failed)} cube(s) failed: {names}", file=sys.stderr)
        return 1
    return 0


def _connect(address):
    from distributed import Client

    try:
        return Client(address, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise DeepFocusError(f"cannot reach the dask scheduler at {address}: {exc}") from None
