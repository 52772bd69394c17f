"""Quality of the three networks on a simulated test set with its own seed.

- deconvolver: PSNR and SSIM of the sky estimate (moment-0) against the sky model, beside the
  dirty image and a Högbom CLEAN of the same image (model, and model restored);
- spectral network: median line-centre error (channels) and line-extent IoU per S/N bin;
- characterizer (S/N >= 5): flux within 10 %, position angle within 10 deg (resolved sources),
  FWHM within 10 % (resolved), median position error; beside a least-squares 2-D Gaussian fit
  (astropy.modeling) on the same cutouts, the forward-model refinement that the pipeline runs
  with a PSF (a Gaussian through the cube's PSF, fitted from the network's estimates,
  `deepfocus.characterization.forward`), and the fraction of fluxes within 10 % per S/N bin
  beside an oracle that knows each source's noise-free image and fits only its amplitude.

Writes ``benchmarks/results/networks.json`` and ``docs/_generated/networks.rst``.
Run: ``python benchmarks/networks.py [--weights DIR] [--cubes 150]``
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time

import astropy.units as u
import numpy as np
import torch

from deepfocus.characterization.characterizer import _gaussian_fits
from deepfocus.characterization.forward import refine_sources
from deepfocus.deconvolution.clean import hogbom_clean, restore
from deepfocus.models import load_model
from deepfocus.training.data import simulate_cubes, training_observations
from deepfocus.training.samples import (
    characterizer_samples,
    deconvolver_sample,
    moment0,
    scale_cutouts,
)
from deepfocus.training.train import SEED_OFFSETS

from _common import machine, psnr, rst_table, ssim, write_docs, write_json

SNR_BINS = [(0, 3), (3, 5), (5, 10), (10, 20), (20, np.inf)]
RESOLVED = 0.5  # intrinsic major axis >= half the beam, and axis ratio <= 0.8


def deconvolution_scores(sim, network):
    x, target = deconvolver_sample(sim)
    with torch.no_grad():
        predicted = network(torch.from_numpy(x[None]))[0, 0].numpy()
    target = target[0]
    beam_area_pix = float((sim.beam.sr / (sim.cell_arcsec * u.arcsec) ** 2).to_value(u.one))
    dirty = x[0]
    image, sigma = moment0(sim.dirty, sim.noise, sim.dv)
    start = time.perf_counter()
    clean = hogbom_clean(image / sigma, sim.psf, gain=0.1, threshold=3.0, max_iter=5000)
    clean_seconds = time.perf_counter() - start
    kernel = sim.beam.as_kernel(sim.cell_arcsec * u.arcsec).array
    restored = restore(clean, kernel)
    estimates = {
        "dirty / beam area": dirty / beam_area_pix,
        "CLEAN model": clean.model,
        "CLEAN restored / beam area": restored / beam_area_pix,
        "network": predicted,
    }
    out = {name: {"psnr": psnr(e, target), "ssim": ssim(e, target)} for name, e in estimates.items()}
    total = target.sum()
    for name, e in estimates.items():
        out[name]["total_flux_error"] = float(abs(e.sum() - total) / abs(total)) if total else float("nan")
    out["clean_seconds"] = clean_seconds
    return out


def spectral_scores(sim, network):
    n_chan = sim.dirty.shape[0]
    channels = np.arange(n_chan)
    rows = []
    for row in sim.truth:
        px = int(np.clip(round(row["x_centroid"].value), 0, sim.dirty.shape[2] - 1))
        py = int(np.clip(round(row["y_centroid"].value), 0, sim.dirty.shape[1] - 1))
        spectrum = (sim.dirty[:, py, px] / sim.noise).astype(np.float32)
        with torch.no_grad():
            out = network(torch.from_numpy(spectrum[None, None]))[0].numpy()
        mask = out[0] > 0
        truth_mask = (channels >= row["z_min"]) & (channels <= row["z_max"])
        iou = (mask & truth_mask).sum() / max((mask | truth_mask).sum(), 1)
        if mask.any():
            # Line centre: the flux-weighted centre of the denoised spectrum in the largest run
            # of line channels that overlaps the strongest predicted channel.
            weights = np.clip(out[1], 0, None) * mask
            centre = float((weights * channels).sum() / max(weights.sum(), 1e-9))
        else:
            centre = np.nan
        rows.append(
            {"snr": float(row["snr"]), "iou": float(iou), "centre_error": abs(centre - row["z_centroid"])}
        )
    return rows


def characterization_rows(sim, network, rng):
    # The same cutouts of the noise-free cube (an identical random stream keeps them aligned).
    noiseless, _, _ = characterizer_samples(
        dataclasses.replace(sim, dirty=sim.signal), copy.deepcopy(rng), size=32, jitter_channels=0
    )
    inputs, targets, sigmas = characterizer_samples(sim, rng, size=32, jitter_channels=0)
    if len(inputs) == 0:
        return []
    with torch.no_grad():
        scaled, log_scale = scale_cutouts(inputs)
        predicted = network(torch.from_numpy(scaled)).numpy()
        predicted[:, 6] += log_scale
    half = 16
    kept = [
        r
        for r in sim.truth
        if half <= round(r["x_centroid"].value) <= sim.dirty.shape[2] - half
        and half <= round(r["y_centroid"].value) <= sim.dirty.shape[1] - half
    ]
    beam = sim.beam
    beam_area_pix = float((beam.sr / (sim.cell_arcsec * u.arcsec) ** 2).to_value(u.one))
    rows = []
    for row, x, clean, t, p, sigma in zip(kept, inputs, noiseless, targets, predicted, sigmas, strict=True):
        major_true = t[2] * sim.beam_major_pix * sim.cell_arcsec
        minor_true = t[3] * sim.beam_major_pix * sim.cell_arcsec
        pa_true = float(row["position_angle"].to_value(u.deg))
        net = {
            "dx": p[0] - t[0],
            "dy": p[1] - t[1],
            "flux_ratio": float(np.exp(p[6] - t[6])),
            "major": p[2] * sim.beam_major_pix * sim.cell_arcsec,
            "minor": p[3] * sim.beam_major_pix * sim.cell_arcsec,
            "pa": float(np.degrees(0.5 * np.arctan2(p[4], p[5])) % 180),
        }
        rows.append(
            {
                "snr": float(row["snr"]),
                "beam_major": float(sim.beam_major_pix * sim.cell_arcsec),
                "major_true": float(major_true),
                "minor_true": float(minor_true),
                "pa_true": pa_true,
                "network": net,
                "gaussian_fit": gaussian_fit(x[0] * sigma, t, beam, sim, beam_area_pix, row),
                "forward_fit": forward_fit(x[0] * sigma, net, t, sigma, sim, beam_area_pix, row),
                # Least-squares amplitude of the known noise-free image within 2 beams.
                "oracle_flux_ratio": oracle_flux_ratio(x[0], clean[0], sim.beam_major_pix),
            }
        )
    return rows


def oracle_flux_ratio(image, template, beam_major_pix):
    """Measured / true flux of an estimator that knows the source's noise-free image.

    ``image`` and ``template`` are the dirty and noise-free line-integrated cutouts (S/N units);
    the amplitude of ``template`` that fits ``image`` best (least squares within two beam
    major axes of the centre) scales the true flux.
    """
    n = image.shape[-1]
    yy, xx = np.mgrid[:n, :n]
    near = np.hypot(xx - n // 2, yy - n // 2) <= 2 * beam_major_pix
    t, d = template[near], image[near]
    return float(np.dot(t, d) / max(np.dot(t, t), 1e-12))


def gaussian_fit(image, target, beam, sim, beam_area_pix, row):
    """deepfocus's classical measurement (least-squares Gaussian, beam deconvolved) of a cutout."""
    fit = _gaussian_fits(image[None], [beam], sim.cell_arcsec)
    true_flux = float(row["flux"].to_value(u.Jy * u.km / u.s))
    return {
        "dx": float(fit["dx"][0] - target[0]),
        "dy": float(fit["dy"][0] - target[1]),
        "flux_ratio": float(fit["flux"][0] / true_flux),
        "major": float(fit["major"][0]),
        "minor": float(fit["minor"][0]),
        "pa": float(fit["pa"][0]),
    }


def forward_fit(image, net, target, sigma, sim, beam_area_pix, row):
    """The forward-model refinement of the network's estimates (position held), with the PSF."""
    n = image.shape[-1]
    x, y = n // 2 + target[0] + net["dx"], n // 2 + target[1] + net["dy"]
    fit = refine_sources(
        [image],
        [np.ones_like(image, dtype=bool)],
        [np.asarray(sim.psf, dtype=float)],
        [x],
        [y],
        [net["major"] / sim.cell_arcsec],
        [net["minor"] / sim.cell_arcsec],
        [net["pa"]],
        [net["flux_ratio"] * float(row["flux"].to_value(u.Jy * u.km / u.s))],
        noise=[sigma],
        beam_area=[beam_area_pix],
    )
    return {
        "dx": net["dx"],
        "dy": net["dy"],
        "flux_ratio": float(fit["flux"][0] / row["flux"].to_value(u.Jy * u.km / u.s)),
        "major": float(fit["major"][0] * sim.cell_arcsec),
        "minor": float(fit["minor"][0] * sim.cell_arcsec),
        "pa": float(fit["pa"][0]),
    }


def summarise_characterization(rows):
    bright = [r for r in rows if r["snr"] >= 5]
    resolved = [
        r
        for r in bright
        if r["major_true"] >= RESOLVED * r["beam_major"] and r["minor_true"] <= 0.8 * r["major_true"]
    ]
    out = {"flux_within_10pct_by_snr": []}
    for lo, hi in [b for b in SNR_BINS if b[0] >= 5]:
        sel = [r for r in bright if lo <= r["snr"] < hi]
        out["flux_within_10pct_by_snr"].append(
            {
                "snr_bin": f"{lo}-{hi}",
                "n": len(sel),
                "network": float(np.mean([abs(r["network"]["flux_ratio"] - 1) < 0.1 for r in sel])),
                "gaussian_fit": float(np.mean([abs(r["gaussian_fit"]["flux_ratio"] - 1) < 0.1 for r in sel])),
                "forward_fit": float(np.mean([abs(r["forward_fit"]["flux_ratio"] - 1) < 0.1 for r in sel])),
                "oracle": float(np.mean([abs(r["oracle_flux_ratio"] - 1) < 0.1 for r in sel])),
            }
        )
    out["oracle_flux_within_10pct"] = float(np.mean([abs(r["oracle_flux_ratio"] - 1) < 0.1 for r in bright]))
    for method in ("network", "gaussian_fit", "forward_fit"):
        flux_ok = np.mean([abs(r[method]["flux_ratio"] - 1) < 0.1 for r in bright])
        pos = np.median([np.hypot(r[method]["dx"], r[method]["dy"]) for r in bright])
        pa_err = [abs((r[method]["pa"] - r["pa_true"] + 90) % 180 - 90) for r in resolved]
        fwhm_ok = [abs(r[method]["major"] / r["major_true"] - 1) < 0.1 for r in resolved]
        out[method] = {
            "n_sources_snr_ge_5": len(bright),
            "n_resolved": len(resolved),
            "flux_within_10pct": float(flux_ok),
            "median_position_error_pix": float(pos),
            "pa_within_10deg": float(np.mean(np.array(pa_err) < 10)) if resolved else float("nan"),
            "fwhm_within_10pct": float(np.mean(fwhm_ok)) if resolved else float("nan"),
        }
    return out


def training_record(cards):
    """RST table of how the networks were trained, from their model cards."""
    rows = []
    for task, card in cards.items():
        t = card["training"]
        rows.append(
            (
                task,
                card.get("n_parameters", "?"),
                t["n_train_samples"],
                t["epochs_run"],
                f"{t['training_seconds'] / 60:.1f}",
                f"{card['size_bytes'] / 1e6:.2f}",
            )
        )
    total = sum(c["training"]["training_seconds"] for c in cards.values()) / 60
    size = sum(c["size_bytes"] for c in cards.values()) / 1e6
    commands = {}
    for task, card in cards.items():
        commands.setdefault(card["training"]["command"], []).append(task)
    made = "; ".join(f"``{cmd}`` ({', '.join(tasks)})" for cmd, tasks in commands.items())
    return (
        f"The shipped weights were made on 2 CPU cores with {made}: {total:.0f} minutes of training "
        f"in all (plus the simulation of the data, about 7 minutes), {size:.1f} MB of weights. "
        f"``deepfocus train --task all --preset default`` remakes all three from the same data and "
        f"seeds. From their model cards:\n\n"
        + rst_table(["network", "parameters", "training samples", "epochs", "minutes", "MB"], rows)
        + "\n"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights", default=None, help="folder with <task>-default.safetensors (default: shipped)"
    )
    parser.add_argument("--cubes", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    name = (
        (lambda task: f"{args.weights}/{task}-default.safetensors")
        if args.weights
        else (lambda t: f"{t}-default")
    )
    loaded = {task: load_model(name(task)) for task in ("deconvolver", "spectral", "characterizer")}
    networks = {task: model for task, (model, _) in loaded.items()}
    cards = {task: card for task, (_, card) in loaded.items()}
    test_seed = args.seed + SEED_OFFSETS["test"]
    observations = training_observations(8, seed=test_seed)
    rng = np.random.default_rng(test_seed)
    deconv, spectral, charac = [], [], []
    n_sources = 0
    for sim in simulate_cubes(args.cubes, seed=test_seed, observations=observations):
        n_sources += len(sim.truth)
        deconv.append(deconvolution_scores(sim, networks["deconvolver"]))
        spectral.extend(spectral_scores(sim, networks["spectral"]))
        charac.extend(characterization_rows(sim, networks["characterizer"], rng))
    methods = ["dirty / beam area", "CLEAN model", "CLEAN restored / beam area", "network"]
    deconv_summary = {
        m: {k: float(np.median([d[m][k] for d in deconv])) for k in ("psnr", "ssim", "total_flux_error")}
        for m in methods
    }
    spectral_summary = []
    for lo, hi in SNR_BINS:
        sel = [r for r in spectral if lo <= r["snr"] < hi]
        errors = [r["centre_error"] for r in sel if np.isfinite(r["centre_error"])]
        spectral_summary.append(
            {
                "snr_bin": f"{lo}-{hi}",
                "n": len(sel),
                "found_fraction": float(len(errors) / len(sel)) if sel else float("nan"),
                "median_centre_error": float(np.median(errors)) if errors else float("nan"),
                "median_iou": float(np.median([r["iou"] for r in sel])) if sel else float("nan"),
            }
        )
    charac_summary = summarise_characterization(charac)
    data = {
        "machine": machine(),
        "test_seed": test_seed,
        "cubes": args.cubes,
        "sources": n_sources,
        "deconvolver": deconv_summary,
        "spectral": spectral_summary,
        "characterizer": charac_summary,
    }
    write_json("networks", data)
    t1 = rst_table(
        ["estimate", "PSNR (dB)", "SSIM", "total-flux error"],
        [
            (m, f"{v['psnr']:.1f}", f"{v['ssim']:.3f}", f"{100 * v['total_flux_error']:.1f} %")
            for m, v in deconv_summary.items()
        ],
    )
    t2 = rst_table(
        ["S/N", "sources", "line found", "median centre error (chan)", "median IoU"],
        [
            (
                r["snr_bin"],
                r["n"],
                f"{r['found_fraction']:.2f}",
                f"{r['median_centre_error']:.2f}",
                f"{r['median_iou']:.2f}",
            )
            for r in spectral_summary
        ],
    )
    t3 = rst_table(
        ["method", "flux within 10 %", "PA within 10 deg", "FWHM within 10 %", "median position error (pix)"],
        [
            (
                m,
                f"{v['flux_within_10pct']:.2f}",
                f"{v['pa_within_10deg']:.2f}",
                f"{v['fwhm_within_10pct']:.2f}",
                f"{v['median_position_error_pix']:.3f}",
            )
            for m, v in charac_summary.items()
            if m in ("network", "gaussian_fit", "forward_fit")
        ],
    )
    t4 = rst_table(
        ["S/N", "sources", "network", "Gaussian fit", "forward fit (PSF)", "oracle (known source image)"],
        [
            (
                b["snr_bin"],
                b["n"],
                f"{b['network']:.2f}",
                f"{b['gaussian_fit']:.2f}",
                f"{b['forward_fit']:.2f}",
                f"{b['oracle']:.2f}",
            )
            for b in charac_summary["flux_within_10pct_by_snr"]
        ],
    )
    m = data["machine"]
    c = charac_summary["network"]
    text = (
        f"Test set: {args.cubes} simulated cubes (seed {test_seed}, 8 observation set-ups never used in "
        f"training), {n_sources} sources; {m['cores']} cores, {m['date'][:10]}; "
        "``python benchmarks/networks.py``.\n\n"
        f"Deconvolver (medians over cubes; moment-0 images against the sky model):\n\n{t1}\n\n"
        f"Spectral network (spectrum at each source's pixel):\n\n{t2}\n\n"
        f"Characterizer, sources with S/N >= 5 ({c['n_sources_snr_ge_5']}; {c['n_resolved']} resolved: "
        f"intrinsic major axis >= {RESOLVED} beam and axis ratio <= 0.8):\n\n{t3}\n\n"
        "Fraction of fluxes within 10 % per S/N bin; the oracle knows each source's noise-free "
        "line-integrated image and fits only its amplitude within two beams of the centre of the "
        "32-pixel cutout (a reference, not a bound: the forward fit uses the pixels out to 1.5 "
        f"observed FWHMs; all S/N >= 5: {charac_summary['oracle_flux_within_10pct']:.2f}):\n\n{t4}\n"
    )
    write_docs("networks", text)
    print(text)
    write_docs("training", training_record(cards))


if __name__ == "__main__":
    main()
