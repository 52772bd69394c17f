"""``deepfocus simulate``: ALMA observations of random sources."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..exceptions import DeepFocusError
from ._common import non_negative_int, positive_int, spectral_channels

SIMULATE_EXAMPLES = """\
examples:
  deepfocus simulate --n 1 --output example
      one 128x128x64 cube (ALMA C-3 at 230 GHz) with random sources; prints its summary
  deepfocus simulate --n 100 --output train --seed 1 --config alma.cycle10.5 --pwv 0.8
  deepfocus simulate --n 5 --output paper --recipe paper --npix 256 --channels 128
  deepfocus simulate --n 2 --output casa --engine casa        (needs deepfocus[casa])
  deepfocus simulate --list-configurations
"""


def register(subparsers):
    """Add the ``simulate`` subcommand."""
    sim = subparsers.add_parser(
        "simulate",
        help="simulate ALMA observations: dirty cube, sky model and truth catalogue",
        description="Simulate ALMA spectral-line observations of random sources. Each cube is "
        "written as NAME_dirty.fits (Jy/beam), NAME_sky.fits (Jy/pixel) and NAME_truth.ecsv.",
        epilog=SIMULATE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim.add_argument("--n", type=positive_int, default=1, help="number of cubes (default 1)")
    sim.add_argument("--output", type=Path, help="output folder (required unless --list-configurations)")
    # Checked by check_seed, as train and optimize check theirs: a one-line error, exit status 1.
    sim.add_argument("--seed", type=int, default=0, help="random seed of the set, >= 0 (default 0)")
    sim.add_argument(
        "--config",
        default="alma.cycle10.3",
        help="antenna configuration: a shipped name, C-1..C-10, ACA, or a CASA .cfg path (default "
        "alma.cycle10.3)",
    )
    sim.add_argument(
        "--engine",
        choices=("fast", "casa"),
        default="fast",
        help="fast (numpy, default) or casa (simobserve + tclean, needs deepfocus[casa])",
    )
    sim.add_argument(
        "--recipe", choices=("wide", "paper"), default="wide", help="source recipe (default wide)"
    )
    sim.add_argument(
        "--n-sources",
        type=non_negative_int,
        help="sources per cube (default: random; 0: noise only, for false-detection rates)",
    )
    sim.add_argument("--npix", type=positive_int, default=128, help="image size in pixels (128)")
    sim.add_argument("--channels", type=spectral_channels, default=64, help="number of channels (64)")
    sim.add_argument("--frequency", type=float, default=230.0, help="first channel frequency, GHz (230)")
    sim.add_argument("--channel-width", type=float, default=15.625, help="channel width, MHz (15.625)")
    sim.add_argument("--ra", type=float, default=150.0, help="field RA, deg (150)")
    sim.add_argument("--dec", type=float, default=-23.0, help="field Dec, deg (-23)")
    sim.add_argument("--total-time", type=float, default=1800.0, help="track length, s (1800)")
    sim.add_argument(
        "--integration",
        type=float,
        default=10.0,
        help="integration time, s; the track observes whole ones, --total-time rounded up (10)",
    )
    sim.add_argument("--pwv", type=float, default=1.0, help="precipitable water vapour, mm (1.0)")
    sim.add_argument(
        "--cell",
        type=float,
        help="pixel size, arcsec (default: beam / pixels-per-beam); must be small enough for the "
        "longest baseline",
    )
    sim.add_argument("--pixels-per-beam", type=float, default=5.0, help="pixels per beam major axis, > 1 (5)")
    sim.add_argument("--no-noise", action="store_true", help="noise-free cubes")
    sim.add_argument(
        "--psf-file", type=Path, help="use this PSF FITS (a tclean .psf) instead of the simulated one"
    )
    sim.add_argument("--psf", action="store_true", help="also write NAME_psf.fits")
    sim.add_argument("--overwrite", action="store_true", help="replace existing files")
    sim.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    sim.add_argument("--list-configurations", action="store_true", help="list shipped configurations")
    sim.set_defaults(func=_run_simulate)


def _run_simulate(args) -> int:
    import warnings

    import astropy.units as u
    from tqdm.auto import tqdm

    from .._validation import check_seed
    from ..exceptions import DeepFocusWarning
    from ..simulation import Interferometer, Observation, available_configurations
    from ..simulation.simulate import simulate, warn_line_widths

    if args.list_configurations:
        print("\n".join(available_configurations()))
        return 0
    if args.output is None:
        raise DeepFocusError("simulate needs --output DIR")
    check_seed(args.seed)
    width = len(str(args.n - 1))
    names = [f"sim{index:0{width}d}" for index in range(args.n)]
    if not args.overwrite:
        _refuse_existing(Path(args.output), names)
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
    # Lines too wide for the band: warned once here, for every cube and either engine.
    too_wide = warn_line_widths(observation, recipe=args.recipe)
    with warnings.catch_warnings():
        if too_wide:
            warnings.filterwarnings("ignore", "the .* recipe draws line FWHMs", DeepFocusWarning)
        for index in tqdm(range(args.n), desc="simulate", unit="cube", disable=args.quiet or args.n == 1):
            seed = [args.seed, index]
            if args.engine == "casa":
                from ..simulation.casa_engine import simulate_casa_observation

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
            paths = result.write(args.output, names[index], overwrite=args.overwrite, psf=args.psf)
            if args.n == 1 and not args.quiet:
                print(result.summary())
                print("written: " + ", ".join(str(p) for p in paths.values()))
    if args.n > 1 and not args.quiet:
        print(f"wrote {args.n} cubes to {args.output}")
    return 0


def _refuse_existing(folder, names):
    """Refuse, before any cube is simulated, a run that would overwrite files of an earlier one:
    every file `~deepfocus.simulation.SimulatedObservation.write` would count as its output
    under one of ``names`` (a PSF or primary beam of an earlier run included)."""
    from ..simulation.simulate import output_paths

    existing = [path for name in names for path in output_paths(folder, name).values() if path.exists()]
    if existing:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise DeepFocusError(
            f"output exists: {existing[0]}{more} (pass --overwrite to replace, or choose another --output)"
        )
