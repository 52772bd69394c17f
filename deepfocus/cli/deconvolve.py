"""``deepfocus deconvolve``: the sky estimate of a cube (network or Högbom CLEAN) as FITS."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..exceptions import DeepFocusError
from ._common import check_fits_names, positive_int, refuse_existing

EXAMPLES = """\
examples:
  deepfocus deconvolve cube.fits --output sky.fits                  (integrated image, Jy/pixel km/s)
  deepfocus deconvolve cube.fits --output sky_cube.fits --mode cube (every channel, Jy/pixel)
  deepfocus deconvolve cube.fits --output sky.fits --psf cube.psf.fits --residual r.fits --restored s.fits
  deepfocus deconvolve cube.fits --output clean.fits --method clean --psf cube.psf.fits --threshold 3
"""


#: ``--gain``, ``--threshold`` and ``--niter`` of ``--method clean`` when not given.
CLEAN_DEFAULTS = {"gain": 0.1, "threshold": 3.0, "niter": 10_000}


def register(subparsers):
    """Add the ``deconvolve`` subcommand."""
    parser = subparsers.add_parser(
        "deconvolve",
        help="deconvolve a cube: sky estimate (and residual, restored) as FITS",
        description="Deconvolve a spectral cube (FITS in Jy/beam with beams, as CASA tclean writes it) "
        "with the shipped network (default) or Högbom CLEAN. Writes the sky estimate --output in the "
        "input's WCS: the band-integrated image in Jy/pixel km/s (--mode image) or every channel in "
        "Jy/pixel (--mode cube). The residual and restored images need the PSF (--psf, tclean's .psf "
        "exported to FITS); so does CLEAN.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("cube", metavar="CUBE", type=Path, help="input cube (FITS)")
    parser.add_argument(
        "--output",
        type=Path,
        required=True,
        help="FITS file of the sky estimate (.fits, .fit or .fts; a further .gz or .bz2 compresses it)",
    )
    parser.add_argument("--mode", choices=("image", "cube"), default="image", help="image (default) or cube")
    parser.add_argument(
        "--method", choices=("network", "clean"), default="network", help="network (default) or Högbom CLEAN"
    )
    parser.add_argument("--psf", type=Path, help="the cube's PSF (tclean .psf exported to FITS)")
    parser.add_argument("--residual", type=Path, metavar="FILE", help="also write the residual (needs --psf)")
    parser.add_argument(
        "--restored", type=Path, metavar="FILE", help="also write the restored image (needs --psf)"
    )
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="FILE",
        help="plot (.png, .pdf, ...) of dirty | deconvolved (| residual with --psf); cube mode: the "
        "brightest channel",
    )
    parser.add_argument(
        "--model",
        default="default",
        help="network: 'default', a .safetensors file with its model card, or a folder of "
        "'deepfocus train' weights",
    )
    parser.add_argument("--gain", type=float, help=f"CLEAN loop gain (default {CLEAN_DEFAULTS['gain']})")
    parser.add_argument(
        "--threshold",
        type=float,
        help=f"CLEAN threshold in noise units (default {CLEAN_DEFAULTS['threshold']})",
    )
    parser.add_argument(
        "--niter",
        type=positive_int,
        help=f"CLEAN maximum iterations per plane (default {CLEAN_DEFAULTS['niter']})",
    )
    parser.add_argument(
        "--threads", type=positive_int, help="torch threads for the network (default: torch's, the cores)"
    )
    parser.add_argument(
        "--memory-limit",
        metavar="SIZE",
        help="image mode: read the cube (and the PSF) in parts of at most SIZE (e.g. 2GiB) to build "
        "the band image, never the whole cube in memory",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no summary line (errors still shown)")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    from ..io.atomic import refuse_clobbering
    from ..visualization import figure_format

    images = {"--output": args.output, "--residual": args.residual, "--restored": args.restored}
    outputs = [p for p in (*images.values(), args.plot) if p is not None]
    refuse_clobbering({**images, "--plot": args.plot}, {"CUBE": args.cube, "--psf": args.psf})
    check_fits_names(images)  # astropy writes FITS whatever the name: refuse sky.png
    if args.plot is not None:
        figure_format(args.plot)
    refuse_existing({**images, "--plot": args.plot}, args.overwrite)
    if args.cube.is_dir():
        raise DeepFocusError(f"CUBE {args.cube} is a folder, not a FITS file")
    if not args.cube.is_file():
        raise DeepFocusError(f"{args.cube}: no such file")
    wants_psf = args.residual is not None or args.restored is not None or args.method == "clean"
    if args.psf is None and wants_psf:
        need = "--method clean needs" if args.method == "clean" else "--residual and --restored need"
        raise DeepFocusError(f"{need} the PSF: give --psf (tclean's .psf exported to FITS)")
    clean = {name: getattr(args, name) for name in CLEAN_DEFAULTS}
    if args.method != "clean" and any(value is not None for value in clean.values()):
        given = ", ".join(f"--{name}" for name, value in clean.items() if value is not None)
        raise DeepFocusError(f"{given} set CLEAN: give --method clean too (the network has no such settings)")
    if args.method == "clean":
        from ..deconvolution import HogbomClean

        clean = {name: CLEAN_DEFAULTS[name] if value is None else value for name, value in clean.items()}
        method = HogbomClean(
            mode=args.mode,
            gain=clean["gain"],
            threshold=clean["threshold"],
            max_iter=clean["niter"],
            memory_limit=args.memory_limit,
        )
    else:
        from ..deconvolution import Deconvolver

        method = Deconvolver(args.model, mode=args.mode, threads=args.threads, memory_limit=args.memory_limit)
    result = method(
        args.cube,
        psf=args.psf,
        residual=args.residual is not None or args.restored is not None or (args.plot and args.psf),
        restored=args.restored is not None,
    )
    result.write(args.output, residual=args.residual, restored=args.restored, overwrite=args.overwrite)
    if args.plot is not None:
        _plot(result, args.plot)
    if not args.quiet:
        print(
            f"deepfocus deconvolve: {args.cube} -> {', '.join(map(str, outputs))} "
            f"({args.method}, {args.mode}, {result.meta['seconds']:.1f} s)",
            file=sys.stderr,
        )
    return 0


def _plot(result, path):
    """Dirty | deconvolved (| residual) with `deepfocus.visualization.plot_deconvolution`."""
    import numpy as np

    from ..visualization import plot_deconvolution, save_figure

    images = [result.dirty, result.sky, result.residual]
    titles = ["dirty", f"deconvolved ({result.meta['method']})", "residual"]
    if result.mode == "cube":  # the channel where the sky estimate peaks
        k = int(np.nanargmax(np.nanmax(result.sky.filled_data[:].value, axis=(1, 2))))
        images = [None if c is None else c[k] for c in images]
        titles = [f"{t}, channel {k}" for t in titles]
    figure = plot_deconvolution(images[0], images[1], images[2], titles=titles[: 2 + (images[2] is not None)])
    save_figure(figure, path, dpi=110)
