"""Many cubes at once: each cube a task, in this process or on a `dask.distributed` cluster.

`detect_many` runs `~deepfocus.DeepFocus` on every cube of a list (or glob) and writes
``OUTPUT_DIR/<stem>.ecsv`` (and optionally ``<stem>.reg``/``.crtf`` and ``<stem>.png``) for
each. A cube that fails (unreadable, corrupt, unsuitable) is reported in the returned
`BatchSummary` and the others go on; outputs are written atomically, so a crash never leaves a
partial file under a final name, and a re-run skips the cubes whose outputs all exist (made
with the same settings and weights, as their catalogue's ``meta`` records: see `detect_many`).

The same call runs in the current process (``client=None``), on a laptop's
`~distributed.LocalCluster` or on an HPC cluster through dask-jobqueue: pass a
`distributed.Client`. Workers load the networks once each and keep them (`_pipeline`).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import logging
import os
import signal
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .exceptions import DeepFocusError, InvalidInputError, NoDetectionsWarning

__all__ = [
    "CubeResult",
    "BatchSummary",
    "detect_cube",
    "detect_many",
    "expand_cubes",
    "output_paths",
    "psf_path",
    "product_path",
    "refuse_corrected_with_pb",
    "local_client",
]

log = logging.getLogger(__name__)

#: Catalogue formats of a batch and the suffix of their files.
CATALOG_SUFFIXES = {"ecsv": ".ecsv", "fits": ".fits", "votable": ".xml"}
#: Region formats and the suffix of their files.
REGION_SUFFIXES = {"ds9": ".reg", "crtf": ".crtf"}
#: Suffixes dropped from a cube's file name to make the stem of its outputs.
_CUBE_SUFFIXES = (".gz", ".fz", ".fits", ".fit", ".fts")
_GLOB_CHARS = frozenset("*?[")
#: Image products of CASA ``tclean`` whose PSF is ``<name>.psf`` (``exportfits`` adds ``.fits``).
_CASA_PRODUCTS = (".image.pbcor", ".image", ".residual", ".pbcor")
#: The end of the stem of a dirty cube that ``deepfocus simulate`` writes (``NAME_dirty.fits``,
#: beside ``NAME_psf.fits`` and ``NAME_pb.fits``).
_SIMULATED_DIRTY = "_dirty"


@dataclass
class CubeResult:
    """What happened to one cube of a batch.

    Attributes
    ----------
    cube : str
        The input file.
    status : {'ok', 'skipped', 'failed'}
        ``skipped``: all its outputs existed, made with this run's settings (and ``overwrite``
        was False).
    outputs : list of str
        The files written (or found, when skipped).
    n_sources : int or None
        Sources in the catalogue (None unless ``ok``).
    seconds : float
        Wall-clock time of the task (s).
    error : str or None
        One-line reason of a failure.
    warning : str or None
        One-line caveat of a skip: its catalogue records none, or only some, of the settings
        compared with this run's (made by another program or an older deepfocus); those it
        records matched.
    """

    cube: str
    status: str
    outputs: list = field(default_factory=list)
    n_sources: int | None = None
    seconds: float = 0.0
    error: str | None = None
    warning: str | None = None


@dataclass
class BatchSummary:
    """The outcome of `detect_many`: one `CubeResult` per cube, in input order.

    Attributes
    ----------
    results : list of `CubeResult`
    seconds : float
        Wall-clock time of the whole batch (s).
    """

    results: list
    seconds: float = 0.0

    def _with(self, status):
        return [r for r in self.results if r.status == status]

    @property
    def ok(self):
        """Results of the cubes processed (list of `CubeResult`)."""
        return self._with("ok")

    @property
    def skipped(self):
        """Results of the cubes skipped because their outputs existed."""
        return self._with("skipped")

    @property
    def failed(self):
        """Results of the cubes that failed."""
        return self._with("failed")

    @property
    def success(self):
        """True if no cube failed."""
        return not self.failed

    def to_dict(self):
        """A JSON-ready dict: counts, seconds and the per-cube results."""
        return {
            "n_cubes": len(self.results),
            "ok": len(self.ok),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "seconds": self.seconds,
            "results": [asdict(r) for r in self.results],
        }

    def __str__(self):
        lines = [
            f"{len(self.results)} cube{'s' if len(self.results) != 1 else ''} in {self.seconds:.1f} s: "
            f"{len(self.ok)} done, "
            f"{len(self.skipped)} skipped (outputs exist), {len(self.failed)} failed"
        ]
        lines += [f"  failed: {r.cube}: {r.error}" for r in self.failed]
        lines += [f"  skipped: {r.cube}: {r.warning}" for r in self.skipped if r.warning]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# inputs and outputs


def expand_cubes(items):
    """File names and glob patterns to a list of cube paths (sorted within a pattern, no repeats).

    A name that exists is taken as is (even with glob characters in it); a pattern that matches
    nothing raises. Names that do not exist and are no pattern are kept: they fail as cubes
    (``no such file``) so that the rest of a batch still runs. Of a pattern's matches, the files
    made with another match are left out, with a warning in the log: the other ``tclean``
    products beside ``NAME.image.fits`` (``NAME.psf``, ``.pb``, ``.residual``, ``.model``,
    ``.mask``, ``.sumwt``, ``.weight``, ``.image.pbcor``, as FITS files, compressed or not), the
    PSF, primary beam and sky model beside ``deepfocus simulate``'s ``NAME_dirty.fits``
    (``NAME_psf``, ``_pb``, ``_sky``) and the PSF and primary beam of any other cube
    (``NAME.psf``, ``NAME.pb``): ``'obs/*.fits'`` gives the cubes of a folder of ``tclean``
    products.

    Parameters
    ----------
    items : str, path-like or sequence of them

    Returns
    -------
    paths : list of `~pathlib.Path`

    Raises
    ------
    InvalidInputError
        A pattern matches no file, or no cube is given.
    """
    if isinstance(items, (str, Path)):
        items = [items]
    paths = []
    for item in items:
        text = str(item)
        if not Path(text).exists() and _GLOB_CHARS & set(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise InvalidInputError(f"no file matches {text}")
            paths.extend(_without_products([Path(m) for m in matches], text))
        else:
            paths.append(Path(text))
    paths = list(dict.fromkeys(paths))
    if not paths:
        raise InvalidInputError("no cube given")
    return paths


#: The other products of a ``tclean`` run beside its ``NAME.image`` (and of a deepfocus simulation
#: beside its ``NAME_dirty``): not cubes to search (`expand_cubes` leaves them out of a pattern's
#: matches).
_CASA_COMPANIONS = (".psf", ".pb", ".residual", ".model", ".mask", ".sumwt", ".weight", ".image.pbcor")
_SIMULATED_COMPANIONS = ("_psf", "_pb", "_sky")


def _companion_stems(cube):
    """The stems of the files made with ``cube``: the other ``tclean`` products of ``NAME.image``,
    the PSF, primary beam and sky model of ``NAME_dirty``, the PSF and primary beam of another
    cube (`product_path`'s ``auto``)."""
    stem = _stem(cube)
    if stem.endswith(".image"):
        return {stem[: -len(".image")] + end for end in _CASA_COMPANIONS}
    if stem.endswith(_SIMULATED_DIRTY):
        return {stem[: -len(_SIMULATED_DIRTY)] + end for end in _SIMULATED_COMPANIONS}
    return {_stem(_product_path(stem, cube.parent, "auto", product)) for product in ("psf", "pb")}


def _without_products(matches, pattern):
    """``matches`` of ``pattern`` less the files made with other matches (logged)."""
    companions = {}
    for cube in matches:
        for stem in _companion_stems(cube):
            companions.setdefault((cube.parent, stem), cube)
    kept = []
    for path in matches:
        cube = companions.get((path.parent, _stem(path)))
        if cube is not None and cube != path:
            log.warning("left out %s (matched by %s): a product made with %s", path, pattern, cube)
        else:
            kept.append(path)
    return kept


def _stem(cube):
    name = Path(cube).name
    for suffix in _CUBE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def psf_path(cube, psf):
    """The PSF file of ``cube`` in a batch, from ``"auto"`` or a ``{stem}`` pattern.

    Parameters
    ----------
    cube : path-like
        The cube.
    psf : str
        ``"auto"``: CASA's naming beside the cube (``src1.image.fits``, ``src1.image.pbcor.fits``
        or ``src1.residual.fits`` -> ``src1.psf.fits``), or ``deepfocus simulate``'s where that
        file exists (``sim0_dirty.fits`` -> ``sim0_psf.fits``); or a pattern in which ``{stem}`` is the
        cube's file name without ``.fits`` (``"psfs/{stem}.psf.fits"``), relative to the
        current folder unless absolute.

    Returns
    -------
    path : `~pathlib.Path`
        The PSF file (not checked for existence: a missing one fails its cube).

    Raises
    ------
    InvalidInputError
        ``psf`` is neither ``"auto"`` nor a pattern with ``{stem}``.
    """
    return product_path(cube, psf, "psf")


def refuse_corrected_with_pb(cube):
    """Refuse a primary beam for a cube that ``tclean`` already corrected for it.

    ``NAME.image.pbcor.fits`` (or ``NAME.pbcor.fits``) holds fluxes divided by the primary beam:
    dividing them again would raise them by its inverse, silently.

    Raises
    ------
    InvalidInputError
        ``cube``'s file name ends in ``.pbcor`` (before ``.fits``).
    """
    if _stem(cube).lower().endswith(".pbcor"):
        raise InvalidInputError(
            f"{Path(cube).name} is already primary-beam corrected (.pbcor): a primary beam would "
            "correct it twice; detect on the flat-noise .image with the primary beam, or on this "
            "cube without one"
        )


def product_path(cube, spec, product):
    """Another ``tclean`` product of ``cube`` (``product``: ``"psf"`` or ``"pb"``), from
    ``"auto"`` (``NAME.image.fits`` -> ``NAME.<product>.fits`` beside it; ``NAME_dirty.fits`` ->
    ``NAME_<product>.fits``) or a ``{stem}`` pattern; see `psf_path`. A primary beam for a
    ``.pbcor`` cube is refused (`refuse_corrected_with_pb`)."""
    if product == "pb":
        refuse_corrected_with_pb(cube)
    return _product_path(_stem(cube), Path(cube).parent, spec, product)


def _product_path(stem, folder, spec, product):
    """`product_path` of the cube ``folder/stem.fits``, not checked for ``.pbcor``."""
    what = {"psf": "PSF", "pb": "primary beam"}[product]
    if spec == "auto":
        if stem.endswith(_SIMULATED_DIRTY):  # deepfocus simulate's NAME_dirty.fits -> NAME_psf.fits
            simulated = folder / f"{stem[: -len(_SIMULATED_DIRTY)]}_{product}.fits"
            if simulated.is_file():  # else CASA's naming, as before (NAME_dirty.psf.fits)
                return simulated
        for suffix in _CASA_PRODUCTS:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        return folder / f"{stem}.{product}.fits"
    if "{stem}" not in str(spec):
        raise InvalidInputError(
            f"the {what} of many cubes must be 'auto' or a pattern with {{stem}}, got {spec!r} "
            f"(one {what} cannot serve cubes observed differently)"
        )
    try:
        return Path(str(spec).format(stem=stem))
    except (KeyError, IndexError, ValueError) as exc:
        raise InvalidInputError(f"bad {what} pattern {spec!r}: only {{stem}} may be used ({exc})") from None


def output_paths(cube, output_dir, *, catalog_format="ecsv", regions=None, plot=False):
    """The output files of ``cube`` in a batch: ``OUTPUT_DIR/<stem>.<suffix>``.

    The stem is the file name without ``.fits`` (``.fit``, ``.fts``, ``.gz``, ``.fz``):
    ``obs/src1.image.fits`` gives ``src1.image.ecsv``.

    Parameters
    ----------
    cube : path-like
        Input cube.
    output_dir : path-like
        Output folder.
    catalog_format : {'ecsv', 'fits', 'votable'}
        Catalogue format.
    regions : {'ds9', 'crtf'} or None
        Region file format (None: no region file).
    plot : bool
        Also a PNG.

    Returns
    -------
    paths : dict
        ``{"catalog": Path, "regions": Path or None, "plot": Path or None}``.
    """
    if catalog_format not in CATALOG_SUFFIXES:
        raise InvalidInputError(
            f"catalog_format must be one of {', '.join(CATALOG_SUFFIXES)}, got {catalog_format!r}"
        )
    if regions is not None and regions not in REGION_SUFFIXES:
        raise InvalidInputError(f"regions must be 'ds9', 'crtf' or None, got {regions!r}")
    base = Path(output_dir) / _stem(cube)
    return {
        "catalog": base.with_name(base.name + CATALOG_SUFFIXES[catalog_format]),
        "regions": base.with_name(base.name + REGION_SUFFIXES[regions]) if regions else None,
        "plot": base.with_name(base.name + ".png") if plot else None,
    }


# --------------------------------------------------------------------------------------------
# one cube


def empty_catalog(*, primary_beam=False):
    """A catalogue with no rows and the columns (and units) of one with sources: the contract's,
    ``filter_snr`` and, with ``primary_beam``, ``primary_beam_gain`` (so that the catalogues of
    many cubes stack)."""
    import astropy.units as u
    import numpy as np
    from astropy.coordinates import SkyCoord
    from astropy.table import QTable

    from .io.catalog import CATALOG_COLUMNS, OPTIONAL_COLUMNS

    columns = {**CATALOG_COLUMNS, "filter_snr": OPTIONAL_COLUMNS["filter_snr"]}
    if primary_beam:
        columns["primary_beam_gain"] = OPTIONAL_COLUMNS["primary_beam_gain"]
    table = QTable()
    for name, spec in columns.items():
        if name == "sky_centroid":
            table[name] = SkyCoord([], [], unit=u.deg, frame="icrs")
        elif name in ("id", "z_min", "z_max", "flags"):
            table[name] = np.zeros(0, dtype=np.int32 if name == "flags" else np.int64)
        elif spec.unit is None:
            table[name] = np.zeros(0)
        else:
            table[name] = np.zeros(0) * spec.unit
    return table


def detect_cube(
    cube,
    catalog,
    *,
    pipeline,
    regions=None,
    region_format=None,
    plot=None,
    psf=None,
    pb=None,
    catalog_format=None,
    progress=True,
):
    """Run ``pipeline`` on one cube and write its catalogue (and regions, plot) atomically.

    Existing outputs are replaced: the caller decides whether to run at all. No detection gives
    an empty catalogue (with the run's ``meta``), not a missing file.

    Parameters
    ----------
    cube : path-like or `~deepfocus.io.cube.PreparedCube`
        The cube (opened read-only).
    catalog : path-like
        Catalogue file (format from the suffix unless ``catalog_format``).
    pipeline : `~deepfocus.DeepFocus`
        The configured pipeline; with a ``memory_limit``, a FITS cube is processed out of core
        (`~deepfocus.detection.tiled.detect_cube_tiled`, which draws no plot).
    regions, plot : path-like, optional
        Region file (DS9/CRTF) and plot (format from its suffix: ``.png``, ``.pdf``, ...) to write.
    region_format : {'ds9', 'crtf'}, optional
        Overrides the suffix of ``regions``.
    psf : path-like or array-like, optional
        The cube's PSF (see `~deepfocus.io.cube.read_cube`).
    pb : path-like or array-like, optional
        The cube's primary-beam gain (``tclean`` ``.pb``): fluxes are divided by it
        (`~deepfocus.characterization.primary_beam.primary_beam_correct`).
    catalog_format : {'ecsv', 'fits', 'votable'}, optional
        Overrides the suffix of ``catalog``.
    progress : bool
        On a terminal, the step a single pass is at; progress bars over the passes and tiles of
        an out-of-core run.

    Returns
    -------
    catalog : `~astropy.table.QTable`
        What was written (possibly with no rows).
    """
    from .detection.detector import prepare
    from .io.atomic import refuse_clobbering
    from .io.catalog import write_catalog
    from .io.regions import write_regions

    # forward_fit='psf' without a PSF fails here, whether or not the cube holds sources.
    pipeline.check_forward_fit(cube, psf)
    refuse_clobbering(
        {"catalogue": catalog, "region file": regions, "plot": plot},
        {"cube": cube, "PSF": psf, "primary beam": pb},
    )
    if plot is not None:
        from .visualization import figure_format

        figure_format(plot)
    if getattr(pipeline, "memory_limit", None) is not None and isinstance(cube, (str, os.PathLike)):
        from .detection.tiled import detect_cube_tiled

        if plot is not None:
            raise InvalidInputError("a plot needs the whole cube in memory: not with a memory limit")
        return detect_cube_tiled(
            cube,
            catalog,
            pipeline=pipeline,
            regions=regions,
            region_format=region_format,
            psf=psf,
            pb=pb,
            catalog_format=catalog_format,
            progress=progress,
        )
    from tqdm.auto import tqdm

    # The steps of a single pass (a terminal only: None disables it elsewhere).
    name = Path(cube).name if isinstance(cube, (str, os.PathLike)) else "cube"
    steps = tqdm(
        total=2, desc=name, disable=None if progress else True, leave=False, bar_format="{desc}: {postfix}"
    )
    with steps:
        steps.set_postfix_str("reading", refresh=True)
        prepared = prepare(cube, psf=psf)
        steps.update()
        steps.set_postfix_str("finding and measuring sources", refresh=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoDetectionsWarning)
            table = pipeline(prepared, pb=pb)
        steps.update()
    if table is None:
        table = empty_catalog(primary_beam=pb is not None)
        table.meta.update(pipeline.detector._meta(prepared))
        record_settings(table.meta, pipeline, psf=prepared.psf is not None, pb=pb is not None)
    # Regions and plot first, the catalogue last: a catalogue under its final name marks a
    # finished cube.
    if regions is not None:
        axis = prepared.spectral_axis if not prepared.flipped else prepared.spectral_axis[::-1]
        write_regions(table, regions, format=region_format, overwrite=True, spectral_axis=axis)
    if plot is not None:
        _write_plot(prepared, table, plot)
    write_catalog(table, catalog, format=catalog_format, overwrite=True)
    return table


def record_settings(meta, pipeline, *, psf, pb):
    """Record in ``meta`` (an empty catalogue's) what a catalogue with sources records of the
    run besides the detector's settings: whether the cube came with a PSF, the characterizer's
    network, the forward fit's kernel and the primary-beam correction. A batch's re-run compares
    them (`_check_finished`), and takes what it expects from this function too (`_run_settings`).

    Parameters
    ----------
    meta : dict
        The catalogue's ``meta``, holding the detector's settings (``CubeDetector._meta`` or
        ``_settings_meta``); changed in place.
    pipeline : `~deepfocus.DeepFocus`
        The run's pipeline.
    psf, pb : bool
        Whether the cube came with a PSF and a primary beam.

    Raises
    ------
    InvalidInputError
        ``forward_fit='psf'`` and no PSF.
    """
    characterizer = pipeline.characterizer
    meta.setdefault("parameters", {})["psf"] = bool(psf)
    meta.setdefault("models", {})["characterizer"] = characterizer.model_info
    meta["forward_fit"] = characterizer.kernel_for(psf=psf) or "none"
    meta["primary_beam_corrected"] = bool(pb)  # as with_primary_beam records it


def _write_plot(prepared, table, path):
    import matplotlib

    matplotlib.use("Agg")
    from .visualization import plot_detections, save_figure

    save_figure(plot_detections(prepared, table if len(table) else None), path, dpi=120)


# --------------------------------------------------------------------------------------------
# the settings a finished cube was made with

#: The detector parameters in a catalogue's ``meta["parameters"]`` that a re-run compares
#: (``CubeDetector._settings_meta``).
_PARAMETERS = ("snr_threshold", "min_separation_beams", "widths_channels", "deconvolved_fraction")
#: The networks in a catalogue's ``meta["models"]``.
_NETWORKS = ("spectral", "deconvolver", "characterizer")
#: Further entries of ``meta["parameters"]`` a re-run compares: whether the cube came with a PSF
#: (the detector's sidelobe test uses it, whatever the forward fit) and whether that test ran.
_SIDELOBE_PARAMETERS = ("psf", "sidelobe_rejection")


def _run_settings(pipeline, *, psf, pb):
    """What determines the catalogues of ``pipeline``, as their ``meta`` records it: the
    settings part of the ``meta`` a run records (`record_settings` on the detector's), read as a
    finished cube's catalogue is read (`_recorded_settings`), so that the two cannot differ.

    Parameters
    ----------
    pipeline : `~deepfocus.DeepFocus`
        The batch's pipeline. The networks' ``name`` and ``sha256`` are those read from their
        model cards when it was built: nothing is loaded or hashed again.
    psf, pb : bool
        Whether the cubes come with a PSF and a primary beam.

    Returns
    -------
    settings : dict
        ``{label: value}``: the detector parameters (``snr_threshold``, ...), ``<task> model``
        (``{"name", "sha256"}`` or None), ``forward_fit`` (``'psf'``, ``'beam'`` or ``'none'``),
        ``psf``, ``sidelobe_rejection`` and ``primary_beam_corrected``.

    Raises
    ------
    InvalidInputError
        ``forward_fit='psf'`` and no PSF (`detect_many` refuses it first).
    """
    meta = pipeline.detector._settings_meta()
    record_settings(meta, pipeline, psf=psf, pb=pb)
    return _recorded_settings(meta)


def _recorded_settings(meta):
    """The `_run_settings` a catalogue's ``meta`` records (those it lacks are left out), or None
    if it records no detector parameters or networks (another program's table)."""
    if not isinstance(meta, dict):
        return None
    parameters, models = meta.get("parameters"), meta.get("models")
    if not isinstance(parameters, dict) or not isinstance(models, dict):
        return None
    settings = {name: parameters[name] for name in _PARAMETERS if name in parameters}
    settings.update({f"{task} model": models[task] for task in _NETWORKS if task in models})
    if "forward_fit" in meta:
        settings["forward_fit"] = meta["forward_fit"]
    settings.update({name: parameters[name] for name in _SIDELOBE_PARAMETERS if name in parameters})
    # Older versions wrote it only when True, and not at all in some empty catalogues: a missing
    # entry is not recorded, not False.
    if "primary_beam_corrected" in meta:
        settings["primary_beam_corrected"] = bool(meta["primary_beam_corrected"])
    return settings


def _catalog_meta(path, catalog_format):
    """The ``meta`` of a catalogue written by `~deepfocus.io.write_catalog`, read without its
    rows: the ECSV header, the FITS table's header or the VOTable's ``INFO``."""
    from .io.catalog import _FITS_META_CARD, _VOTABLE_META_INFO, _meta_from_json

    if catalog_format == "fits":
        from astropy.io import fits

        header = fits.getheader(path, 1)
        return _meta_from_json(header[_FITS_META_CARD]) if _FITS_META_CARD in header else {}
    if catalog_format == "votable":
        from xml.etree.ElementTree import iterparse

        for _, element in iterparse(path):
            if element.tag.rpartition("}")[2] == "INFO" and element.get("name") == _VOTABLE_META_INFO:
                return _meta_from_json(element.get("value"))
        return {}
    from astropy.io import ascii

    lines = []  # the YAML header and the line of column names
    with open(path, encoding="utf-8") as file:
        for line in file:
            lines.append(line)
            if not line.startswith("#"):
                break
    return dict(ascii.read(lines, format="ecsv").meta)


def _same(label, recorded, current):
    """Whether a recorded setting is the current one (weights by their sha256 where both have one)."""
    if label.endswith(" model") and isinstance(recorded, dict) and isinstance(current, dict):
        if recorded.get("sha256") and current.get("sha256"):  # the same weights under any name
            return recorded["sha256"] == current["sha256"]
        return recorded.get("name") == current.get("name")
    return recorded == current


def _shown(label, value, other):
    """``label=value`` for a message; weights by name, with their hash where ``other`` has the
    same name."""
    if not label.endswith(" model"):
        return f"{label}={value}"
    if not isinstance(value, dict):
        return f"{label}=none"
    name = value.get("name")
    if isinstance(other, dict) and other.get("name") == name and value.get("sha256"):
        return f"{label}={name} (sha256 {str(value['sha256'])[:12]})"
    return f"{label}={name}"


def _check_finished(catalog, settings):
    """Whether the existing ``catalog`` was made with this run's settings and weights.

    Returns
    -------
    error : str or None
        Why the cube must not be skipped: its catalogue cannot be read, or records other settings
        (naming them). None: skip it.
    warning : str or None
        With no error: the settings the catalogue does not record (made by another program or an
        older deepfocus), which could not be compared.
    """
    redo = "use --overwrite to redo it"
    try:
        meta = _catalog_meta(catalog, settings["catalog_format"])
    except Exception as exc:  # anything unreadable is no finished run's output
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"cannot read the settings {catalog} was made with ({reason}): {redo}", None
    current = settings["made_with"]
    recorded = _recorded_settings(meta)
    if recorded is None:
        return None, f"cannot tell which settings made {catalog} (it records none): kept; {redo}"
    differ = [k for k in current if k in recorded and not _same(k, recorded[k], current[k])]
    if differ:
        was = _listed([_shown(k, recorded[k], current[k]) for k in differ])
        now = _listed([_shown(k, current[k], recorded[k]) for k in differ])
        return f"{catalog} was made with {was}, this run uses {now}: {redo}", None
    unknown = [k for k in current if k not in recorded]
    if unknown:
        return None, f"cannot tell which {_listed(unknown)} made {catalog} (not recorded): kept; {redo}"
    return None, None


def _listed(items):
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


@functools.lru_cache(maxsize=4)
def _pipeline(snr_threshold, model, options):
    """The `DeepFocus` of these settings, built once per process (each dask worker keeps its own,
    so the networks are loaded once per worker, not once per cube)."""
    from .pipeline import DeepFocus

    return DeepFocus(snr_threshold, model=model, **dict(options))


def _run_cube(cube, paths, settings):
    """Worker side: one cube, never raising for a bad cube (the failure is the result)."""
    from .io.atomic import refuse_clobbering

    begin = time.perf_counter()
    wanted = [p for p in paths.values() if p is not None]
    try:  # before the skip test: an output that is the cube itself exists already
        refuse_clobbering(paths, {"cube": cube})
    except DeepFocusError as exc:
        return _failed(cube, exc, begin)
    if not settings["overwrite"] and all(Path(p).exists() for p in wanted):
        # Finished: skipped if its catalogue was made with this run's settings and weights.
        error, warning = _check_finished(paths["catalog"], settings)
        if error is not None:
            return _failed(cube, InvalidInputError(error), begin)
        return CubeResult(str(cube), "skipped", [str(p) for p in wanted], seconds=0.0, warning=warning)
    if not settings["overwrite"] and Path(paths["catalog"]).exists():
        # A finished cube (its catalogue is written last) asked for other outputs: running it
        # again would replace its catalogue and leave the old products beside it.
        missing = ", ".join(str(p) for p in wanted if not Path(p).exists())
        error = InvalidInputError(
            f"{paths['catalog']} exists but {missing} does not (another run's outputs): "
            "use --overwrite to run this cube again"
        )
        return _failed(cube, error, begin)
    threads = settings["threads"]
    previous = None
    try:
        if threads:
            import torch

            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
        pipeline = _pipeline(settings["snr_threshold"], settings["model"], settings["options"])
        products = {}
        for product, what in (("psf", "PSF"), ("pb", "primary-beam")):
            if settings[product] is not None:
                products[product] = product_path(cube, settings[product], product)
                if not products[product].is_file():
                    raise InvalidInputError(f"no {what} file {products[product]} for this cube")
        table = detect_cube(
            cube,
            paths["catalog"],
            pipeline=pipeline,
            regions=paths["regions"],
            plot=paths["plot"],
            catalog_format=settings["catalog_format"],
            progress=False,  # the batch has its own bar
            **products,
        )
    except DeepFocusError as exc:
        return _failed(cube, exc, begin)
    except Exception as exc:  # a bug or a library's crash on odd data: report it, keep the batch going
        log.debug("%s: %s", cube, traceback.format_exc())
        return _failed(cube, exc, begin, prefix=f"{type(exc).__name__}: ")
    finally:
        if previous is not None:
            torch.set_num_threads(previous)
    return CubeResult(str(cube), "ok", [str(p) for p in wanted], len(table), time.perf_counter() - begin)


def _failed(cube, exc, begin, prefix=""):
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return CubeResult(str(cube), "failed", seconds=time.perf_counter() - begin, error=prefix + message)


# --------------------------------------------------------------------------------------------
# many cubes


def detect_many(
    cubes,
    output_dir,
    *,
    client=None,
    overwrite=False,
    snr_threshold=6.0,
    model="default",
    catalog_format="ecsv",
    regions=None,
    plot=False,
    threads=1,
    memory_limit=None,
    psf=None,
    pb=None,
    progress=True,
    **pipeline_options,
):
    """Detect and characterise the sources of many cubes, one task per cube.

    Writes ``OUTPUT_DIR/<stem>.<ecsv|fits|xml>`` per cube (see `output_paths`), plus region
    files and PNGs if asked. A cube that fails is reported and the others go on; a cube whose
    outputs all exist is skipped unless ``overwrite``, and a finished cube (its catalogue exists)
    that lacks another output fails unless ``overwrite``.

    A finished cube is skipped only if its catalogue's ``meta`` records this run's settings, named
    in messages as the ``meta`` records them: the detector parameters (``snr_threshold``,
    ``min_separation_beams``, ``widths_channels`` and ``deconvolved_fraction``, from the options
    ``min_separation``, ``widths`` ...), the networks (by the sha256 of their weights, whatever
    their file names), ``forward_fit`` (the forward fit's kernel: ``psf``, ``beam`` or
    ``none``), ``psf`` (whether the cube came with a PSF, which the detector's sidelobe test
    uses whatever the forward fit), ``sidelobe_rejection`` and ``primary_beam_corrected``
    (whether fluxes were divided by a primary beam). Where they differ, or the catalogue cannot
    be read, the cube fails, naming them, unless ``overwrite``. Not compared: the deepfocus
    version and the date (an upgrade mid-survey does not redo the finished cubes: ``overwrite``
    does), the cube's path and ``memory_limit`` (tiles give the catalogue of a single pass). A
    catalogue that records none of these settings (made by another program), or only some (an
    older deepfocus), is skipped if those it records match, with a warning naming what it could
    not compare (`CubeResult.warning`).

    Parameters
    ----------
    cubes : str, path-like or sequence of them
        FITS files or glob patterns (``"obs/*.fits"``), see `expand_cubes`. With a cluster, the
        workers must see the same paths (a shared file system).
    output_dir : path-like
        Output folder (created if needed).
    client : `distributed.Client`, optional
        Run the cubes as tasks on this cluster (`~distributed.LocalCluster`, dask-jobqueue's
        ``SLURMCluster``, ...). None: one after the other in this process.
    overwrite : bool
        Re-process cubes whose outputs exist (made with any settings).
    snr_threshold : float
        Detection threshold (see `~deepfocus.CubeDetector`).
    model : str or path-like or None
        Networks (``"default"``, a folder of weights, or None for the classical stages). Loaded
        once per worker.
    catalog_format : {'ecsv', 'fits', 'votable'}
        Catalogue format.
    regions : {'ds9', 'crtf'} or None
        Also write region files.
    plot : bool
        Also write a PNG per cube.
    threads : int or None
        Torch threads per task (default 1: the parallelism is over cubes, and the same thread
        count keeps catalogues bit-identical between one process and a cluster). None: leave
        as is.
    memory_limit : int or str, optional
        Process each cube out of core, in tiles whose working memory stays within this many
        bytes (or a size such as ``"2 GiB"``); see `~deepfocus.DeepFocus`. Not with ``plot``.
    psf : str, optional
        Each cube's PSF: ``"auto"`` (CASA's naming beside the cube) or a pattern with
        ``{stem}`` (see `psf_path`). A cube without its PSF file fails. Needed by
        ``forward_fit='psf'``.
    pb : str, optional
        Each cube's primary-beam gain (``tclean``'s ``.pb``), by which its fluxes are divided:
        ``"auto"`` (``NAME.image.fits`` -> ``NAME.pb.fits``) or a pattern with ``{stem}``. A
        cube without its file fails.
    progress : bool
        A progress bar over the cubes.
    **pipeline_options
        Further `~deepfocus.DeepFocus` options (must be hashable values).

    Returns
    -------
    summary : `BatchSummary`

    Raises
    ------
    InvalidInputError
        Bad options (``forward_fit='psf'`` without ``psf`` among them), a pattern that matches
        nothing, or two cubes with the same output stem.

    Examples
    --------
    A survey of your own on a local dask cluster of two worker processes:

    >>> from distributed import Client, LocalCluster
    >>> with LocalCluster(n_workers=2) as cluster, Client(cluster) as client:  # doctest: +SKIP
    ...     summary = detect_many("obs/*.fits", "catalogs", client=client)
    >>> print(summary)  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    begin = time.perf_counter()
    cubes = expand_cubes(cubes)
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise InvalidInputError(f"threads must be a positive integer or None, got {threads!r}")
    if pipeline_options.get("forward_fit") == "psf" and psf is None:
        # Refused before any task: every cube would fail (deepfocus.DeepFocus refuses it too).
        raise InvalidInputError(
            "forward_fit='psf' (--forward-fit psf) needs each cube's PSF: give psf ('auto' or a "
            "pattern with {stem}; --psf), or use forward_fit='auto', which fits through the PSF "
            "where one is given"
        )
    # Absolute paths: workers of a remote cluster do not share this process's directory.
    output_dir = Path(output_dir).absolute()
    if model is not None:
        model = str(Path(model).absolute()) if Path(str(model)).is_dir() else str(model)
    paths = {
        c: output_paths(c, output_dir, catalog_format=catalog_format, regions=regions, plot=plot)
        for c in cubes
    }
    by_stem = {}
    for cube, p in paths.items():
        by_stem.setdefault(p["catalog"].name, []).append(str(cube))
    clashes = [names for names in by_stem.values() if len(names) > 1]
    if clashes:
        raise InvalidInputError(
            f"cubes with the same output name in one folder: {', '.join(clashes[0])} "
            "(rename them or split the batch)"
        )
    products = {"psf": psf, "pb": pb}
    for product, spec in products.items():
        if spec is not None:
            # A bad pattern fails before any task is sent (a .pbcor cube fails on its own).
            _product_path(_stem(cubes[0]), Path(cubes[0]).parent, spec, product)
            if spec != "auto" and not Path(str(spec)).is_absolute():
                # Workers of a remote cluster have other folders.
                products[product] = str(Path.cwd() / str(spec))
    if memory_limit is not None:
        if plot:
            raise InvalidInputError("plots need the whole cube in memory: not with memory_limit")
        pipeline_options["memory_limit"] = memory_limit
    try:
        options = tuple(sorted(pipeline_options.items()))
        hash(options)
    except TypeError:
        raise InvalidInputError("pipeline options must be hashable (numbers, strings, tuples)") from None
    # Built here first: bad options or weights fail before any task is sent (and the
    # in-process run reuses it).
    pipeline = _pipeline(snr_threshold, model, options)
    output_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "overwrite": bool(overwrite),
        "snr_threshold": snr_threshold,
        "model": model,
        "options": options,
        "catalog_format": catalog_format,
        "threads": threads,
        # What a finished cube's catalogue must record to be skipped.
        "made_with": _run_settings(pipeline, psf=psf is not None, pb=pb is not None),
        **products,
    }
    results = {}
    bar = tqdm(total=len(cubes), unit="cube", desc="deepfocus detect", disable=not progress)
    with bar:
        if client is None:
            for cube in cubes:
                results[cube] = _record(_run_cube(cube, paths[cube], settings), bar)
        else:
            results = _run_on_cluster(client, cubes, paths, settings, bar)
    return BatchSummary([results[c] for c in cubes], time.perf_counter() - begin)


def _record(result, bar):
    level = logging.WARNING if result.status == "failed" or result.warning else logging.INFO
    detail = result.error if result.status == "failed" else f"{result.n_sources} sources"
    if result.status == "skipped":
        detail = result.warning or "outputs exist"
    log.log(level, "%s: %s (%s, %.1f s)", result.cube, result.status, detail, result.seconds)
    bar.update(1)
    return result


def _run_on_cluster(client, cubes, paths, settings, bar):
    from distributed import as_completed

    futures = {}
    for cube in cubes:
        future = client.submit(_run_cube, str(Path(cube).absolute()), paths[cube], settings, pure=False)
        futures[future] = cube
    results = {}
    try:
        for future in as_completed(futures):
            cube = futures[future]
            try:
                result = future.result()
                result.cube = str(cube)
            except Exception as exc:  # the worker died (KilledWorker) or the task could not run
                result = CubeResult(str(cube), "failed", error=f"{type(exc).__name__}: {exc}")
            results[cube] = _record(result, bar)
    finally:
        client.cancel(list(futures))
    return results


@contextlib.contextmanager
def local_client(n_workers, *, threads_per_worker=1, processes=True, **cluster_options):
    """A `distributed.Client` of a new `~distributed.LocalCluster`, closed on exit.

    Parameters
    ----------
    n_workers : int
        Worker processes (each with its own copy of the networks).
    threads_per_worker : int
        Tasks each worker runs at once.
    processes : bool
        Workers in separate processes (True) or threads of this one.
    **cluster_options
        Passed to `~distributed.LocalCluster` (e.g. ``memory_limit``). With ``processes``, the
        workers' preloads (``preload``, else dask's ``distributed.worker.preload``) are run
        with deepfocus's own after them (`WORKER_PRELOAD`: the workers leave Ctrl-C to this
        process, which closes the cluster).
    """
    import dask
    from distributed import Client, LocalCluster

    cluster_options.setdefault("dashboard_address", None)
    # distributed starts workers with MALLOC_TRIM_THRESHOLD_=65536, which fixes glibc's mmap
    # threshold: every large temporary array is then mapped and unmapped afresh, and a cube took
    # 1.3-1.8x as long (measured on a loaded machine). Unset it (glibc's adaptive default).
    no_trim = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    if processes:  # each worker process leaves Ctrl-C to this one, also when started again
        cluster_options.update(_with_worker_preload(cluster_options))
    with warnings.catch_warnings(), dask.config.set(no_trim), _workers_ignore_ctrl_c(), _quiet_tracker():
        # The scheduler's HTTP server moves to a free port when 8787 is taken: not worth a warning.
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=threads_per_worker, processes=processes, **cluster_options
        )
    with _logger_levels() as loggers, _terminate_as_exit(), cluster, Client(cluster) as client:
        with _silenced_on_interrupt(loggers):
            yield client


#: The dask preload of the workers `local_client` starts.
WORKER_PRELOAD = "deepfocus._dask_worker"


def _with_worker_preload(cluster_options):
    """``preload`` and ``preload_argv`` with `WORKER_PRELOAD` after the user's: those given to
    `local_client`, else dask's configuration (``distributed.worker.preload``), which a
    ``preload`` argument would otherwise override."""
    import dask

    if cluster_options.get("preload") is not None:
        preload, argv = cluster_options["preload"], cluster_options.get("preload_argv") or []
    else:
        preload = dask.config.get("distributed.worker.preload", default=[]) or []
        argv = dask.config.get("distributed.worker.preload-argv", default=[]) or []
    preload = [preload] if isinstance(preload, str) else list(preload)
    argv = list(argv)
    if argv and isinstance(argv[0], str):  # one argument list for every preload
        argv = [argv] * len(preload)
    if WORKER_PRELOAD not in preload:
        argv = (argv or [[] for _ in preload]) + [[]]
        preload.append(WORKER_PRELOAD)
    return {"preload": preload, "preload_argv": argv}


@contextlib.contextmanager
def _logger_levels(names=("distributed", "tornado")):
    """The loggers of ``names``, their levels restored on exit."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    try:
        yield loggers
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextlib.contextmanager
def _silenced_on_interrupt(loggers):
    """On Ctrl-C or SIGTERM, silence ``loggers`` while the cluster closes: its nanny warns of
    workers it stops and its client of the tasks it cancels, which the user asked for."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
        raise


@contextlib.contextmanager
def _quiet_tracker():
    """Start processes (among them multiprocessing's resource tracker, started with the first
    worker) without its warning of the semaphores of workers stopped by Ctrl-C: one more line
    after "interrupted". The user's own warning filters stay."""
    key, ignore = "PYTHONWARNINGS", "ignore::UserWarning:multiprocessing.resource_tracker"
    previous = os.environ.get(key)
    os.environ[key] = f"{previous},{ignore}" if previous else ignore
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous


def _in_main_thread():
    import threading

    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _workers_ignore_ctrl_c():
    """Ignore SIGINT while worker processes start, so that they inherit it: Ctrl-C (sent to the
    whole process group) then reaches only this process, which closes the cluster, instead of
    printing a KeyboardInterrupt traceback from every worker."""
    if not _in_main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield  # None: a handler not installed from Python, which could not be put back
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _terminate_as_exit():
    """SIGTERM as ``SystemExit(143)`` while the cluster runs, so that it is closed (its workers
    and their scratch folders removed) rather than left to its processes' own timeouts."""
    if not _in_main_thread() or signal.getsignal(signal.SIGTERM) is None:
        yield
        return

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
