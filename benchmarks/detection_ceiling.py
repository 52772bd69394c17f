"""How far any stage that keeps or drops candidates could lift deepfocus's F1: an oracle bound.

On validation cubes (the validation seed: neither the training nor the benchmark's test cubes),
the candidates of the matched filter are taken down to a low threshold, their lines found by the
spectral network, and each is kept exactly when it matches a true source: no classifier of
candidates (network or other) can do better than this oracle, so its F1 bounds what the networks
can add to the classical stages without finding new candidates. Also counts, per band of
matched-filter S/N, how many candidates are true and false (what a classifier would have to
separate), and scores both shipped pipelines on the same cubes.

The position-angle target is put beside a fit that knows everything about each source but its
angle: for every resolved, elongated source of S/N >= 5 (as `deepfocus.evaluation` counts them)
that the networks' pipeline found, the source's true position, sizes and line and the cube's PSF
are given, and the angle whose PSF-convolved Gaussian fits the line image best is taken (a grid
of 1 deg, the amplitude fitted): only the noise and neighbours' sidelobes stand between it and
the truth. The same fit, and a fit of the flux alone, are also made of each source alone in
the cube's noise (`ideal_estimates`): what the noise by itself allows.

What the faint sources lose to the bright ones is measured on the fast-engine cubes by taking
the bright sources' noise-free dirty emission out and searching again (`subtraction_counts`):
through the PSF the size of the image, as ``tclean`` writes it, and at every offset, as the
simulator made it; and the pipeline's own models of its bright detections, at every offset.

Writes ``benchmarks/results/detection_ceiling.json`` and ``docs/_generated/detection_ceiling.rst``.
Run: ``python benchmarks/detection_ceiling.py [--cubes 40] [--casa-cubes 6]``
"""

from __future__ import annotations

import argparse
import dataclasses
import warnings

import astropy.units as u
import numpy as np
from astropy.stats import mad_std
from astropy.table import QTable, vstack
from detection import test_cubes
from scipy.signal import fftconvolve

from deepfocus import DeepFocus
from deepfocus.characterization.forward import FIT_RADIUS, _crop, _fwhm, _source_image
from deepfocus.detection.candidates import find_candidates
from deepfocus.detection.detector import CubeDetector, masked_view
from deepfocus.evaluation import evaluate, match_catalogs, matched_table
from deepfocus.evaluation.metrics import MAX_AXIS_RATIO, RESOLVED_BEAM_FRACTION, SNR_BINS
from deepfocus.io.cube import read_cube
from deepfocus.simulation import Interferometer
from deepfocus.simulation.skymodel import REQUIRED_COLUMNS, SkyModel
from deepfocus.training.train import SEED_OFFSETS

from _common import machine, rst_table, write_docs, write_json

#: The pipelines' matched-filter threshold (`~deepfocus.DeepFocus`'s default).
THRESHOLD = 6.0
#: The lowest matched-filter S/N of the oracle's candidates.
LOW_THRESHOLD = 4.0
#: Bands of matched-filter S/N in which true and false candidates are counted.
BANDS = ((4.0, 4.5), (4.5, 5.0), (5.0, 5.5), (5.5, 6.0), (6.0, np.inf))


def candidate_rows(detector, cube):
    """Every candidate line above `LOW_THRESHOLD` as a catalogue (input channel order), its
    matched-filter S/N and the matched filter's `SignalToNoise` (the detector's channel order)."""
    view = masked_view(cube)
    candidates, mf = find_candidates(
        view, threshold=LOW_THRESHOLD, widths=detector.widths, beam_scale=detector.min_separation
    )
    rows, n_chan = detector._lines(view, mf, candidates)
    k = np.array([r[0] for r in rows], dtype=int)
    z = np.array([cube.to_input_channel(r[1]) for r in rows], dtype=float)
    table = QTable(
        {
            "x_centroid": candidates["x_centroid"].value[k] * u.pix,
            "y_centroid": candidates["y_centroid"].value[k] * u.pix,
            "z_centroid": z,
        }
    )
    return table, np.asarray(candidates["filter_snr"])[k], mf


def resolved_bright(truth):
    """Truth rows whose position angle is scored: S/N >= 5, resolved and elongated."""
    major = truth["fwhm_major"].to_value(u.arcsec)
    minor = truth["fwhm_minor"].to_value(u.arcsec)
    beam = float(truth.meta["beam_major_arcsec"])
    return (
        (np.asarray(truth["snr"]) >= 5)
        & (major >= RESOLVED_BEAM_FRACTION * beam)
        & (minor <= MAX_AXIS_RATIO * major)
        & (major > 0)
    )


def angle_error(measured, true):
    """Position-angle difference (deg) folded into [-90, 90)."""
    return (np.asarray(measured) - np.asarray(true) + 90) % 180 - 90


def truth_residual(sim, data):
    """The dirty cube less every truth source (line and continuum) seen through the PSF and the
    primary beam: what the noise alone made (0 where the cube is blank)."""
    return np.nan_to_num(data - truth_model(sim, sim.truth, continuum=True))


def truth_model(sim, rows, *, continuum):
    """Noise-free dirty cube of the truth ``rows``: each channel of their sky model (times the
    primary beam, if any) convolved with that channel's PSF."""
    meta = sim.truth.meta
    n_chan, ny, nx = sim.psf.shape
    if not continuum:
        rows = rows.copy()
        rows["continuum_flux"] = 0 * u.Jy
    sky = SkyModel(
        rows,
        (n_chan, ny, nx),
        cell=meta["cell_arcsec"] * u.arcsec,
        channel_velocity_width=meta["channel_velocity_width_kms"] * u.km / u.s,
    ).cube()
    sky = np.asarray(sky, dtype=float)
    if sim.primary_beam is not None:
        sky = sky * np.nan_to_num(np.asarray(sim.primary_beam, dtype=float)).reshape((-1, ny, nx))
    return np.stack(
        [
            fftconvolve(sky[c], _crop(np.asarray(sim.psf[c], dtype=float), max(ny, nx)), mode="same")
            for c in range(n_chan)
        ]
    )


def _line_window(sim, row, reach, n_chan):
    """First and last channel within ``reach`` line FWHMs of the row's line centre."""
    dv = float(sim.truth.meta["channel_velocity_width_kms"])
    z, width = float(row["z_centroid"]), row["line_width"].to_value(u.km / u.s) / dv
    return max(0, int(np.floor(z - reach * width))), min(n_chan - 1, int(np.ceil(z + reach * width)))


def _fit_region(sim, row, image, lo, hi):
    """The cutout of ``image`` around the row (its fit radius), the row's position in it, its
    FWHMs (pixels), the PSF of its line cropped to the cutout and the mask of the fitted pixels."""
    cell = float(sim.truth.meta["cell_arcsec"])
    major = row["fwhm_major"].to_value(u.arcsec) / cell
    minor = row["fwhm_minor"].to_value(u.arcsec) / cell
    kernel = np.asarray(sim.psf[(lo + hi) // 2], dtype=float)
    radius = FIT_RADIUS * np.hypot(major, _fwhm(kernel))
    half = int(np.ceil(radius)) + 3
    padded = np.pad(image, half, constant_values=np.nan)
    cx, cy = int(round(row["x_centroid"].value)), int(round(row["y_centroid"].value))
    cut = padded[cy : cy + 2 * half, cx : cx + 2 * half]
    size = 2 * half
    x, y = row["x_centroid"].value - cx + half, row["y_centroid"].value - cy + half
    yy, xx = np.mgrid[:size, :size]
    region = (np.hypot(xx - x, yy - y) <= radius) & np.isfinite(cut)
    return cut, (x, y), (major, minor), _crop(kernel, size), region


def _best_angle(sim, row, image, lo, hi):
    """The angle (deg, a 1 deg grid) whose PSF-convolved Gaussian, with the row's position and
    sizes and its amplitude fitted, fits ``image`` best."""
    cut, (x, y), (major, minor), kernel, region = _fit_region(sim, row, image, lo, hi)
    d = cut[region]
    best, best_rss = np.nan, np.inf
    for angle in range(180):
        source = _source_image(cut.shape[0], x, y, major, minor, np.radians(angle))
        m = fftconvolve(source, kernel, mode="same")[region]
        amplitude = np.dot(m, d) / max(np.dot(m, m), 1e-30)
        rss = float(np.sum((d - amplitude * m) ** 2))
        if rss < best_rss:
            best, best_rss = float(angle), rss
    return best


def pa_oracle(sim, data, row):
    """The position angle (deg) of the Gaussian, with every other property known, through the
    PSF that fits the line image best.

    ``data`` is the dirty cube as a float array. The line image sums the channels within 0.7
    line FWHM of the line centre (the window of best S/N for a Gaussian line) less the median
    of the channels outside twice that; pixels beyond the image count as blank.
    """
    n_chan = data.shape[0]
    lo, hi = _line_window(sim, row, 0.7, n_chan)
    out = _line_window(sim, row, 1.4, n_chan)
    off = np.ones(n_chan, dtype=bool)
    off[out[0] : out[1] + 1] = False
    continuum = np.nanmedian(data[off], axis=0) if off.sum() >= 3 else 0.0
    return _best_angle(sim, row, (data[lo : hi + 1] - continuum).sum(axis=0), lo, hi)


def alone_image(residual, line_model, lo, hi):
    """The line image a source would have alone, in the noise the cube has: channels
    ``lo..hi`` of ``residual`` (`truth_residual`) plus the source's noise-free line."""
    return (residual[lo : hi + 1] + line_model[lo : hi + 1]).sum(axis=0)


def ideal_estimates(sim, residual, index):
    """Position angle (deg) and line flux (Jy km/s) of truth source ``index`` measured alone.

    The source's own noise-free line is put back into the cube's noise (no neighbours, no
    continuum) and every property but one is given: the angle is `_best_angle`'s on the
    channels within 0.7 line FWHM of the centre; for the flux, the true PSF-convolved Gaussian
    is fitted (its amplitude alone) on the channels within 1 FWHM (the pipeline's flux window),
    to that image and to the noise-free one, and the truth's flux scaled by the ratio (the share
    of the line in those channels and the primary beam cancel). Only the noise stands between
    these and the truth.
    """
    row = sim.truth[index]
    n_chan = residual.shape[0]
    line_model = truth_model(sim, sim.truth[[index]], continuum=False)
    lo, hi = _line_window(sim, row, 0.7, n_chan)
    angle = _best_angle(sim, row, alone_image(residual, line_model, lo, hi), lo, hi)
    lo, hi = _line_window(sim, row, 1.0, n_chan)
    cut, (x, y), (major, minor), kernel, region = _fit_region(
        sim, row, alone_image(residual, line_model, lo, hi), lo, hi
    )
    clean = _fit_region(sim, row, line_model[lo : hi + 1].sum(axis=0), lo, hi)[0]
    source = _source_image(cut.shape[0], x, y, major, minor, np.radians(row["position_angle"].value))
    m = fftconvolve(source, kernel, mode="same")[region]
    ratio = np.dot(m, cut[region]) / max(np.dot(m, clean[region]), 1e-30)
    return angle, float(ratio * row["flux"].to_value(u.Jy * u.km / u.s))


def template_snr(sim, residual, index):
    """S/N of truth source ``index`` through its own exact template, in the cube's noise.

    The template is the source's noise-free line seen through the PSF (`truth_model`); the
    statistic is its correlation with the cube, the noise its robust rms over every spatial
    shift of the template across ``residual`` (circularly, so that every shift keeps the whole
    template). This is the matched filter of a single known source: no search over positions,
    widths or shapes, which a detector must make.
    """
    model = truth_model(sim, sim.truth[[index]], continuum=False)
    energy = np.sum(model**2, axis=(1, 2))
    if energy.max() <= 0:
        return float("nan")
    shape = residual.shape[1:]
    channels = np.nonzero(energy > 1e-4 * energy.max())[0]
    spectrum = sum(np.fft.rfft2(residual[c]) * np.conj(np.fft.rfft2(model[c])) for c in channels)
    return float(energy.sum() / mad_std(np.fft.irfft2(spectrum, s=shape)))


def snr_with_noise_planes(detector, sim, mf, residual):
    """The detector's best matched-filter S/N cube (``mf``: its `SignalToNoise` of the cube)
    when each summed plane is divided by the noise that plane has in the cube's noise alone
    (``residual``, `truth_residual`) rather than in the cube: what the sources' own emission and
    sidelobes add to the plane noise removed."""
    # Blank where the cube is (a CASA cube's border): zeros there would be half of a plane's
    # pixels, and its robust noise 0.
    blank = ~np.isfinite(np.asarray(sim.dirty.unmasked_data[:].value))
    residual = np.where(blank, np.nan, residual).astype(np.float32)
    noise_only = read_cube(sim.dirty._new_cube_with(data=residual), psf=sim.psf)
    _, quiet = find_candidates(
        masked_view(noise_only), threshold=np.inf, widths=detector.widths, beam_scale=detector.min_separation
    )
    requiet = dataclasses.replace(mf, plane_noise=quiet.plane_noise)
    n_chan = mf.snr.shape[0]
    return np.max([requiet.width_snr(i) for i, w in enumerate(mf.widths) if w <= n_chan], axis=0)


def filter_snr_at(snr_cube, cube, row, *, beam_pix, channel_width):
    """The detector's best matched-filter S/N (``snr_cube``, in the detector's channel order)
    within the matching window of truth ``row``: half a beam (``beam_pix`` pixels) in position
    and max(line FWHM, 2) channels (``channel_width`` km/s each) of its centre."""
    n_chan, ny, nx = snr_cube.shape
    reach = max(row["line_width"].to_value(u.km / u.s) / channel_width, 2.0)
    z = float(cube.to_input_channel(float(row["z_centroid"])))  # the mapping is its own inverse
    yy, xx = np.mgrid[:ny, :nx]
    near = np.hypot(xx - row["x_centroid"].value, yy - row["y_centroid"].value) <= 0.5 * beam_pix
    lo, hi = max(0, int(np.floor(z - reach))), min(n_chan, int(np.ceil(z + reach)) + 1)
    return float(snr_cube[lo:hi][:, near].max()) if near.any() and hi > lo else float("nan")


SENSITIVITY_COLUMNS = (
    "found",
    "filter_above_threshold",
    "template_above_threshold",
    "filter_over_template",
    "noise_planes_over_template",
)


def sensitivity_by_bin(sensitivity, threshold):
    """Per truth S/N bin (`~deepfocus.evaluation.metrics.SNR_BINS`): the number of sources, the
    fractions found by the networks' pipeline, above ``threshold`` in the detector's matched
    filter and above it through the exact template, and the median ratio of the two S/Ns."""
    values = np.array(sensitivity, dtype=float).reshape(-1, 5)
    out = []
    for lo, hi, label in SNR_BINS:
        here = values[(values[:, 0] >= lo) & (values[:, 0] < hi)]
        ok = np.isfinite(here[:, 2]) & np.isfinite(here[:, 3]) & (here[:, 3] > 0)
        out.append(
            {
                "snr": label,
                "n": int(len(here)),
                "found": float(here[:, 1].mean()) if len(here) else None,
                "filter_above_threshold": float(np.mean(here[:, 2] >= threshold)) if len(here) else None,
                "template_above_threshold": float(np.mean(here[:, 3] >= threshold)) if len(here) else None,
                "filter_over_template": float(np.median(here[ok, 2] / here[ok, 3])) if ok.any() else None,
                "noise_planes_over_template": (
                    float(np.median(here[ok, 4] / here[ok, 3])) if ok.any() else None
                ),
            }
        )
    return out


#: Causes of a lost source, in the order they are tested (`loss_cause`).
LOSS_CAUSES = ("blended", "below the threshold", "dropped after the filter")


def blended_sources(truth, *, beam_pix, channel_width):
    """Which truth sources have another within one beam (``beam_pix``, major FWHM in pixels)
    whose line overlaps theirs (centres closer than the mean of the two line FWHMs, in channels
    of ``channel_width`` km/s): two such sources look like one to any finder."""
    x, y = truth["x_centroid"].value, truth["y_centroid"].value
    z = np.asarray(truth["z_centroid"], dtype=float)
    width = truth["line_width"].to_value(u.km / u.s) / channel_width
    apart = np.hypot(x[:, None] - x, y[:, None] - y) / beam_pix
    overlap = np.abs(z[:, None] - z) < 0.5 * (width[:, None] + width)
    close = (apart < 1) & overlap
    np.fill_diagonal(close, False)
    return close.any(axis=1)


def loss_cause(blended, filter_snr, threshold):
    """Why a true source that the pipeline missed was lost: it is `blended` with a neighbour, its
    best matched-filter S/N within the matching window is below ``threshold``, or it passed the
    filter and a later stage (the sidelobe test, the deconvolver, the characterizer moving it out
    of the matching window) dropped it."""
    if blended:
        return LOSS_CAUSES[0]
    if not filter_snr >= threshold:
        return LOSS_CAUSES[1]
    return LOSS_CAUSES[2]


def losses_by_bin(sensitivity, causes):
    """Per truth S/N bin from 3 up: the number of sources, of those lost, and of the lost by
    cause (``causes``: one `LOSS_CAUSES` entry, or None for a found source, per row of
    ``sensitivity``)."""
    snr = np.array([row[0] for row in sensitivity], dtype=float)
    causes = np.array([c or "" for c in causes])
    out = []
    for lo, hi, label in SNR_BINS:
        if hi <= 3:
            continue
        here = (snr >= lo) & (snr < hi)
        entry = {"snr": label, "n": int(here.sum()), "lost": int(np.sum(here & (causes != "")))}
        entry.update({cause: int(np.sum(here & (causes == cause))) for cause in LOSS_CAUSES})
        out.append(entry)
    return out


#: Truth S/N from which sources count as bright in the subtraction test (`subtraction_counts`).
BRIGHT_SNR = 10.0
#: Cubes searched in the subtraction test (`subtraction_counts`).
SUBTRACTIONS = (
    "the cube",
    f"less its sources of S/N >= {BRIGHT_SNR:g}, through the PSF",
    f"less its sources of S/N >= {BRIGHT_SNR:g}, at every offset",
    f"less its detections of S/N >= {BRIGHT_SNR:g} as measured, at every offset",
    "less every source, through the PSF",
)
#: Columns of a catalogue that make a sky model, its continuum included.
SKY_COLUMNS = (*REQUIRED_COLUMNS, "continuum_flux")


def subtraction_counts(pipeline, sim, first, data, residual):
    """What taking the bright sources' emission out of a fast-engine cube would gain the faint ones.

    Each cube of `SUBTRACTIONS` is searched by ``pipeline`` with the cube's PSF: the cube itself
    (``first``, the catalogue ``pipeline`` gave it); the cube less the noise-free dirty emission
    of its true sources of S/N >= `BRIGHT_SNR` as a CLEAN that knew every bright source exactly
    would remove it, through the PSF the size of the image that tclean writes (`truth_model`),
    and as the simulator made it, at every offset (the PSF of twice the image's size that its uv
    coverage gives: `~deepfocus.simulation.Interferometer.dirty_signal`); the cube less, at
    every offset, the emission of the pipeline's own detections of S/N >= `BRIGHT_SNR` as it
    measured them (its catalogue then holds those and what the second search finds away from
    them); and ``residual``, the cube less every true source through the PSF. Returns, for each,
    the fainter sources found per S/N bin below `BRIGHT_SNR` and the detections that match no
    true source.
    """
    meta = sim.truth.meta
    interferometer = Interferometer(sim.observation)

    def everywhere(rows):
        rows = QTable(rows)[list(SKY_COLUMNS)]
        finite = np.all([np.isfinite(np.asarray(rows[c], dtype=float)) for c in SKY_COLUMNS], axis=0)
        sky = SkyModel(
            rows[finite],
            data.shape,
            cell=meta["cell_arcsec"] * u.arcsec,
            channel_velocity_width=meta["channel_velocity_width_kms"] * u.km / u.s,
        )
        return data - interferometer.dirty_signal(sky)

    def search(values):
        return pipeline(read_cube(sim.dirty._new_cube_with(data=values.astype(np.float32)), psf=sim.psf))

    true_bright = sim.truth[np.asarray(sim.truth["snr"]) >= BRIGHT_SNR]
    found_bright = first[np.asarray(first["snr"]) >= BRIGHT_SNR] if first is not None else []
    catalogs = {SUBTRACTIONS[0]: first}
    if len(true_bright):
        catalogs[SUBTRACTIONS[1]] = search(data - truth_model(sim, true_bright, continuum=True))
        catalogs[SUBTRACTIONS[2]] = search(everywhere(true_bright))
    else:
        catalogs[SUBTRACTIONS[1]] = catalogs[SUBTRACTIONS[2]] = first
    if len(found_bright):
        beam_pix = meta["beam_major_arcsec"] / meta["cell_arcsec"]
        again = _away_from(search(everywhere(found_bright)), found_bright, beam_pix)
        catalogs[SUBTRACTIONS[3]] = (
            found_bright
            if again is None
            else vstack([found_bright[list(again.colnames)], again], metadata_conflicts="silent")
        )
    else:
        catalogs[SUBTRACTIONS[3]] = first
    catalogs[SUBTRACTIONS[4]] = search(residual)
    out = {}
    for name in SUBTRACTIONS:
        scores = evaluate(sim.truth, catalogs[name])
        faint = [b for b in scores["completeness_by_snr"] if b["n"] and b["label"] in FAINT_BINS]
        out[name] = {
            "found": {b["label"]: int(b["found"]) for b in faint},
            "n": {b["label"]: int(b["n"]) for b in faint},
            "false": int(scores["n_detected"] - scores["n_matched"]),
        }
    return out


def _away_from(catalog, subtracted, beam_pix, channels=3):
    """The rows of ``catalog`` more than a beam (``beam_pix``) or ``channels`` line-centre
    channels from every row of ``subtracted`` (what is left of a subtracted source is not a new
    one); None if none is."""
    if catalog is None:
        return None
    x, y = subtracted["x_centroid"].value, subtracted["y_centroid"].value
    z = np.asarray(subtracted["z_centroid"], dtype=float)
    keep = [
        not np.any(
            (np.hypot(x - row["x_centroid"].value, y - row["y_centroid"].value) < beam_pix)
            & (np.abs(z - float(row["z_centroid"])) < channels)
        )
        for row in catalog
    ]
    return catalog[np.array(keep, dtype=bool)] if any(keep) else None


#: The S/N bins of `~deepfocus.evaluation.metrics.SNR_BINS` below `BRIGHT_SNR`.
FAINT_BINS = tuple(label for _lo, hi, label in SNR_BINS if hi <= BRIGHT_SNR)


def summed_subtractions(per_cube):
    """`subtraction_counts` summed over cubes."""
    out = {}
    for name in SUBTRACTIONS:
        entries = [c[name] for c in per_cube]
        out[name] = {
            "found": {b: sum(e["found"].get(b, 0) for e in entries) for b in FAINT_BINS},
            "n": {b: sum(e["n"].get(b, 0) for e in entries) for b in FAINT_BINS},
            "false": sum(e["false"] for e in entries),
        }
    return out


def summed(metrics):
    n_truth = sum(m["n_truth"] for m in metrics)
    n_det = sum(m["n_detected"] for m in metrics)
    n_match = sum(m["n_matched"] for m in metrics)
    return {
        "n_truth": n_truth,
        "n_detected": n_det,
        "n_matched": n_match,
        "completeness": n_match / n_truth,
        "purity": n_match / n_det if n_det else float("nan"),
        "f1": 2 * n_match / (n_truth + n_det),
    }


def flux_error(measured, true):
    """Relative flux error in per cent."""
    ratio = u.Quantity(measured) / u.Quantity(true)
    return 100 * (np.asarray(ratio.decompose().value, dtype=float) - 1)


def within_10(errors):
    """The fraction of ``errors`` (deg, or per cent) within 10."""
    errors = np.asarray(errors, dtype=float)
    errors = errors[np.isfinite(errors)]
    return {"n": int(len(errors)), "fraction": float(np.mean(np.abs(errors) < 10)) if len(errors) else None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cubes", type=int, default=40)
    parser.add_argument("--casa-cubes", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    import importlib.util

    n_casa = args.casa_cubes if importlib.util.find_spec("casatools") is not None else 0
    seed = SEED_OFFSETS["validation"] + args.seed
    detector = CubeDetector(THRESHOLD)
    pipelines = {"networks": DeepFocus(THRESHOLD), "networks off": DeepFocus(THRESHOLD, model=None)}
    scores = {name: [] for name in pipelines}
    oracle, band_counts, n_truth = [], np.zeros((len(BANDS), 2), dtype=int), 0
    oracle_pa_errors, network_pa_errors, ideal_pa_errors = [], [], []
    network_flux_errors, ideal_flux_errors = [], []
    # Per truth source: S/N, found, the detector's filter S/N, the exact template's S/N, the
    # filter S/N with the plane noise of the noise alone.
    sensitivity, causes = [], []
    subtractions = []
    failures = []
    for engine, sim in test_cubes(args.cubes, n_casa, seed, failures):
        cube = read_cube(sim.dirty, psf=sim.psf)
        n_truth += len(sim.truth)
        data = np.asarray(sim.dirty.unmasked_data[:].value, dtype=float)
        residual = truth_residual(sim, data)
        found = np.zeros(len(sim.truth), dtype=bool)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            catalogs = {}
            for name, pipeline in pipelines.items():
                catalog = catalogs[name] = pipeline(cube, pb=sim.primary_beam)
                scores[name].append(evaluate(sim.truth, catalog))
                if name == "networks" and catalog is not None:
                    pairs = matched_table(sim.truth, catalog)
                    index = np.asarray(pairs["truth_index"], dtype=int)
                    found[index] = True
                    scored = resolved_bright(sim.truth)[index]
                    bright = np.asarray(sim.truth["snr"])[index] >= 5
                    network_pa_errors += list(
                        angle_error(pairs["det_position_angle"].value, pairs["true_position_angle"].value)[
                            scored
                        ]
                    )
                    network_flux_errors += list(flux_error(pairs["det_flux"], pairs["true_flux"])[bright])
                    for k, row in zip(scored, sim.truth[index], strict=True):
                        if k:
                            oracle_pa_errors.append(
                                float(angle_error(pa_oracle(sim, data, row), row["position_angle"].value))
                            )
                    for k, b, i in zip(scored, bright, index, strict=True):
                        if not b:
                            continue
                        angle, flux = ideal_estimates(sim, residual, i)
                        ideal_flux_errors.append(float(flux_error(flux, sim.truth["flux"][i].value)))
                        if k:
                            ideal_pa_errors.append(
                                float(angle_error(angle, sim.truth["position_angle"][i].value))
                            )
            if engine == "fast":  # the simulator's own dirty emission is known at every offset
                subtractions.append(
                    subtraction_counts(pipelines["networks"], sim, catalogs["networks"], data, residual)
                )
            rows, snr, mf = candidate_rows(detector, cube)
            quiet_cube = snr_with_noise_planes(detector, sim, mf, residual)
        meta = sim.truth.meta
        window = {
            "beam_pix": meta["beam_major_arcsec"] / meta["cell_arcsec"],
            "channel_width": meta["channel_velocity_width_kms"],
        }
        blended = blended_sources(sim.truth, **window)
        for i, row in enumerate(sim.truth):
            filter_snr = filter_snr_at(mf.snr, cube, row, **window)
            causes.append(None if found[i] else loss_cause(blended[i], filter_snr, THRESHOLD))
            sensitivity.append(
                (
                    float(row["snr"]),
                    bool(found[i]),
                    filter_snr,
                    template_snr(sim, residual, i),
                    filter_snr_at(quiet_cube, cube, row, **window),
                )
            )
        match = match_catalogs(sim.truth, rows if len(rows) else None)
        true = np.zeros(len(rows), dtype=bool)
        true[match.catalog_index] = True
        for b, (lo, hi) in enumerate(BANDS):
            here = (snr >= lo) & (snr < hi)
            band_counts[b] += [int(np.sum(here & true)), int(np.sum(here & ~true))]
        oracle.append(evaluate(sim.truth, rows[true] if true.any() else None))
    results = {name: summed(m) for name, m in scores.items()}
    results[f"oracle: every true candidate above S/N {LOW_THRESHOLD:g}"] = summed(oracle)
    data = {
        "machine": machine(),
        "seed": seed,
        "cubes": {"fast": args.cubes, "casa": n_casa},
        "n_truth": n_truth,
        "results": results,
        "candidates_by_filter_snr": [
            {"filter_snr": [lo, None if np.isinf(hi) else hi], "true": int(t), "false": int(f)}
            for (lo, hi), (t, f) in zip(BANDS, band_counts, strict=True)
        ],
        "position_angle_within_10deg": {
            "networks (matched sources)": within_10(network_pa_errors),
            "angle alone fitted, all else known": within_10(oracle_pa_errors),
            "angle alone fitted, source alone in the noise": within_10(ideal_pa_errors),
        },
        "flux_within_10pct": {
            "networks (matched sources)": within_10(network_flux_errors),
            "amplitude alone fitted, source alone in the noise": within_10(ideal_flux_errors),
        },
        "sensitivity_by_snr": sensitivity_by_bin(sensitivity, THRESHOLD),
        "losses_by_snr": losses_by_bin(sensitivity, causes),
        "subtraction": summed_subtractions(subtractions),
        "casa_failures": failures,
    }
    write_json("detection_ceiling", data)
    rows = [
        (name, f"{r['f1']:.3f}", f"{r['purity']:.3f}", f"{r['completeness']:.3f}")
        for name, r in results.items()
    ]
    bands = [
        (f"{lo:g} - {hi:g}" if np.isfinite(hi) else f">= {lo:g}", str(t), str(f))
        for (lo, hi), (t, f) in zip(BANDS, band_counts, strict=True)
    ]
    m = data["machine"]
    text = (
        f"{args.cubes} fast-engine and {n_casa} CASA-engine validation cubes (seed {seed}, not the "
        f"benchmark's test cubes), {n_truth} sources; {m['cores']} cores, {m['date'][:10]}; "
        "``python benchmarks/detection_ceiling.py``. The oracle keeps exactly the candidates "
        "that match a true source: no stage that keeps or drops candidates can beat it.\n\n"
        f"{rst_table(['pipeline', 'F1', 'purity', 'completeness'], rows)}\n\n"
        "Candidates (lines found by the spectral network) by matched-filter S/N:\n\n"
        f"{rst_table(['matched-filter S/N', 'true', 'false'], bands)}\n\n"
        "Position angle within 10 deg, resolved and elongated sources of S/N >= 5:\n\n"
        + rst_table(
            ["estimate", "n", "within 10 deg"],
            [
                (name, str(v["n"]), f"{v['fraction']:.2f}")
                for name, v in data["position_angle_within_10deg"].items()
            ],
        )
        + "\n\nLine flux within 10 %, sources of S/N >= 5:\n\n"
        + rst_table(
            ["estimate", "n", "within 10 %"],
            [(name, str(v["n"]), f"{v['fraction']:.2f}") for name, v in data["flux_within_10pct"].items()],
        )
        + f"\n\nTrue sources by per-channel peak S/N: found by the networks' pipeline, above the "
        f"threshold ({THRESHOLD:g}) in the detector's matched filter (its best S/N within the "
        "matching window) and through each source's own exact template in the cube's noise (one "
        "known source, with no search over positions, widths or shapes), and the median ratio of the "
        "two S/Ns, also with the filter's planes divided by the noise they have in the cube's "
        "noise alone (without the sources' emission and sidelobes):\n\n"
        + rst_table(
            [
                "S/N",
                "n",
                "found",
                "filter above",
                "template above",
                "filter / template",
                "same, noise planes",
            ],
            [
                (
                    b["snr"],
                    str(b["n"]),
                    *("" if b[k] is None else f"{b[k]:.2f}" for k in SENSITIVITY_COLUMNS),
                )
                for b in data["sensitivity_by_snr"]
            ],
        )
        + "\n\nTrue sources of S/N >= 3 that the networks' pipeline lost, by cause: blended (another "
        "true source within one beam whose line overlaps), below the threshold in the detector's "
        "matched filter, or dropped after it (by the sidelobe test, the deconvolver, or a measured "
        "position outside the matching window):\n\n"
        + rst_table(
            ["S/N", "n", "lost", *LOSS_CAUSES],
            [
                (b["snr"], str(b["n"]), str(b["lost"]), *(str(b[c]) for c in LOSS_CAUSES))
                for b in data["losses_by_snr"]
            ],
        )
        + "\n\nThe networks' pipeline on each fast-engine cube; on the cube less the noise-free dirty "
        f"emission of its true sources of S/N >= {BRIGHT_SNR:g} (their sky and primary beam), as a "
        "CLEAN that knew every bright source exactly would take it out through the PSF the size of "
        "the image that tclean writes, and as the simulator made it, with the sidelobes at every "
        "offset (through a PSF twice the image's size); on the cube less, at every offset, the "
        f"emission of the pipeline's own detections of S/N >= {BRIGHT_SNR:g} as it measured them "
        "(its catalogue: those, and what the second search finds away from them); and on the cube "
        "less every true source through the PSF. The fainter sources found (of those in each bin), "
        "and the detections that match no true source:\n\n"
        + rst_table(
            ["cube searched", *(f"found, S/N {b}" for b in FAINT_BINS), "false detections"],
            [
                (
                    name,
                    # No source is left to find in the cube less every source.
                    *(
                        "-" if name == SUBTRACTIONS[-1] else f"{v['found'][b]} of {v['n'][b]}"
                        for b in FAINT_BINS
                    ),
                    str(v["false"]),
                )
                for name, v in data["subtraction"].items()
            ],
        )
        + "\n"
    )
    write_docs("detection_ceiling", text)
    print(text)


if __name__ == "__main__":
    main()
