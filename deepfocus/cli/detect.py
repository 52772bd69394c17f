"""``deepfocus detect``: catalogue, regions and plot of a cube."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..exceptions import DeepFocusError

DETECT_EXAMPLES = """\
examples:
  deepfocus detect --example --output example.ecsv --regions example.reg --plot example.png
  deepfocus detect cube.fits --output cat.ecsv
  deepfocus detect cube.fits --output cat.xml --regions cat.reg --plot cat.png
  deepfocus detect cube.fits --output cat.fits --regions cat.crtf --snr-threshold 6 --psf cube.psf.fits
  deepfocus detect cube.fits --output cat.ecsv --model none        (classical stages only)
"""


def register(subparsers):
    """Add the ``detect`` subcommand."""
    det = subparsers.add_parser(
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


def _run_detect(args) -> int:
    import warnings

    from ..exceptions import NoDetectionsWarning
    from ..io.catalog import write_catalog
    from ..io.regions import write_regions
    from ..pipeline import DeepFocus

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
    from ..detection.detector import prepare

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

        from ..io.atomic import atomic_path
        from ..visualization import plot_detections

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

    from ..io.catalog import CATALOG_COLUMNS

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
