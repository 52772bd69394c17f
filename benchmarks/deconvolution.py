"""Deconvolution quality and speed: dirty image, deepfocus Högbom CLEAN, CASA tclean and the network.

Test cubes: a fresh seed, observation set-ups not used in training (8 random ones over ALMA's
configurations, bands and weather, 4-6 pixels per beam), 128 x 128 x 64; every other cube has
its sources scaled to a brightest peak S/N of 3-10 ("faint"); plus CASA-engine cubes where
casatools is installed, on which CASA ``tclean`` (Högbom, same 3-sigma threshold, gain 0.1)
also runs. The truth of a CASA cube is its sky model times the primary beam (CASA always
applies it).

For the integrated (moment-0) image and per channel, against the true sky model: PSNR (peak of
the truth), SSIM, relative error of the total flux and of each source's flux (in an aperture of
radius 1.5 beam FWHM, or the source's FWHM if larger), and the rms of estimate - truth in units
of the image noise (the dirty noise divided by the beam area in pixels); seconds per cube.
The "dirty" estimate is the dirty image divided by the beam area in pixels.

Writes ``benchmarks/results/deconvolution.json``, ``docs/_generated/deconvolution.rst`` and
``docs/_static/deconvolution_example.png``.
Run: ``python benchmarks/deconvolution.py [--cubes 20] [--casa-cubes 3] [--seed 11]``
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import astropy.units as u
import numpy as np
import torch

from deepfocus.deconvolution import Deconvolver, HogbomClean
from deepfocus.io.cube import read_cube
from deepfocus.simulation import Interferometer, Observation, simulate
from deepfocus.training.data import training_observations
from deepfocus.training.train import SEED_OFFSETS

from _common import ROOT, machine, psnr, rst_table, ssim, write_docs, write_json

CASA_SETUPS = [
    ("alma.cycle10.3", 230.0, -60.0),
    ("alma.cycle10.1", 100.0, -23.0),
    ("alma.cycle10.5", 230.0, -30.0),
]
METHODS = ("dirty", "hogbom (deepfocus)", "tclean hogbom (CASA)", "network (deepfocus)")
FAINT_SNR = 10.0


def faint_catalog(sim, rng):
    """The catalogue of ``sim`` with fluxes scaled to a brightest peak S/N in [3, 10]."""
    catalog = sim.truth.copy()
    scale = rng.uniform(3.0, FAINT_SNR) / float(np.max(catalog["snr"]))
    catalog["flux"] = catalog["flux"] * scale
    return catalog


def test_cubes(n_fast, n_casa, seed, failures):
    """Yield ``(engine, faint, sim, tclean products or None)``."""
    from deepfocus.exceptions import DeepFocusError

    rng = np.random.default_rng(seed)
    observations = training_observations(8, seed=seed, npix=128, n_channels=64)
    for index in range(n_fast):
        alma = Interferometer(observations[index % len(observations)])
        sim = simulate(interferometer=alma, seed=[seed, index])
        faint = index % 2 == 1
        if faint:
            sim = simulate(interferometer=alma, catalog=faint_catalog(sim, rng), seed=[seed, index])
        yield "fast", faint, sim, None
    made = index = 0
    while made < n_casa and index < 3 * n_casa:
        from radio_beam import Beam

        from deepfocus.simulation.casa_engine import simulate_with_casa
        from deepfocus.simulation.simulate import assemble, sky_model_for

        c, f, d = CASA_SETUPS[index % len(CASA_SETUPS)]
        alma = Interferometer(
            Observation(configuration=c, frequency=f * u.GHz, dec=d * u.deg, npix=128, n_channels=64)
        )
        faint = index % 2 == 1
        catalog = None
        if faint:
            catalog = faint_catalog(simulate(interferometer=alma, seed=[seed, n_fast + index]), rng)
        sky, catalog, noise_rng = sky_model_for(alma, catalog, seed=[seed, n_fast + index])
        obs = alma.observation.replace(cell=alma.cell, tsys=None)
        try:
            casa = simulate_with_casa(
                sky.cube(), obs, seed=noise_rng, clean={"threshold": 3.0, "gain": 0.1, "niter": 10000}
            )
        except DeepFocusError as exc:
            failures.append(f"{c}: {exc}")
        else:
            beams = [Beam(major=b[0] * u.arcsec, minor=b[1] * u.arcsec, pa=b[2] * u.deg) for b in casa.beams]
            sim = assemble(alma, casa.dirty, sky, catalog, psf=casa.psf, beams=beams, engine="casa")
            made += 1
            yield "casa", faint, sim, casa.clean
        index += 1


def primary_beam(sim):
    """Gaussian primary beam (12-m dish, FWHM 1.13 lambda/D) ``(n_chan, ny, nx)``, 1 at the centre."""
    obs = sim.observation
    n = obs.npix
    wavelength = obs.frequencies.to_value(u.m, equivalencies=u.spectral())
    cell = float(read_cube(sim.dirty).cell.to_value(u.rad))
    yy, xx = np.mgrid[:n, :n] - n // 2
    r = np.hypot(xx, yy) * cell
    fwhm = 1.13 * wavelength / 12.0
    return np.exp(-4 * np.log(2) * (r[None] / fwhm[:, None, None]) ** 2)


def source_errors(estimate, truth, sim, beam_pix, cell):
    """Relative flux error of every source (aperture sums) with its S/N."""
    yy, xx = np.mgrid[: truth.shape[0], : truth.shape[1]]
    out = []
    for row in sim.truth:
        radius = max(1.5 * beam_pix, float(row["fwhm_major"].to_value(u.arcsec)) / cell)
        near = np.hypot(xx - row["x_centroid"].value, yy - row["y_centroid"].value) <= radius
        t = truth[near].sum()
        if t > 0:
            out.append((float(row["snr"]), float((estimate[near].sum() - t) / t)))
    return out


def scores(estimate, truth, sigma_pix, sim, beam_pix, cell, valid):
    """Metrics of one integrated image (2-D) or one cube (3-D, over line channels)."""
    estimate = np.where(valid, np.nan_to_num(estimate), 0.0)
    truth = np.where(valid, truth, 0.0)
    total = truth.sum()
    out = {
        "total_flux_error": float(abs(estimate.sum() - total) / total),
        "residual_rms": float(np.sqrt(np.mean((estimate - truth) ** 2)) / sigma_pix),
    }
    if truth.ndim == 2:
        out["psnr"], out["ssim"] = psnr(estimate, truth), ssim(estimate, truth)
        out["sources"] = source_errors(estimate, truth, sim, beam_pix, cell)
    else:
        # Channels with emission (above 1 % of the cube's peak: line wings of 1e-12 Jy would
        # make PSNR and SSIM meaningless).
        line = [k for k in range(truth.shape[0]) if truth[k].max() > 0.01 * truth.max()]
        out["psnr"] = float(np.mean([psnr(estimate[k], truth[k]) for k in line]))
        out["ssim"] = float(np.mean([ssim(estimate[k], truth[k]) for k in line]))
    return out


def timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def evaluate(sim, tclean, network_image, network_cube, clean_image, clean_cube):
    prepared = read_cube(sim.dirty)
    dv = prepared.channel_velocity_width.to_value(u.km / u.s)
    cell = prepared.cell.to_value(u.arcsec)
    beam = prepared.beams[prepared.n_channels // 2]
    beam_pix = (beam.major / prepared.cell).to_value(u.one)
    beam_area = float((beam.sr / prepared.cell**2).to_value(u.one))
    sky = sim.sky.unmasked_data[:].value.astype(float)
    if sim.truth.meta.get("engine") == "casa":
        sky = sky * primary_beam(sim)
    noise = prepared.noise.to_value(u.Jy / u.beam)
    good = np.isfinite(noise)
    sigma_image = np.sqrt(np.sum(noise[good] ** 2)) * dv / beam_area
    sigma_chan = float(np.nanmedian(noise)) / beam_area
    valid_cube = prepared.valid
    valid_image = valid_cube.any(axis=0)
    truth_image = sky.sum(axis=0) * dv
    dirty = np.nan_to_num(prepared.data.astype(float))
    estimates = {"dirty": ((dirty.sum(axis=0) * dv / beam_area, dirty / beam_area), 0.0)}
    psf = sim.psf
    ci, t_ci = timed(lambda: clean_image(sim.dirty, psf=psf))
    cc, t_cc = timed(lambda: clean_cube(sim.dirty, psf=psf))
    estimates["hogbom (deepfocus)"] = ((ci.sky.value, cc.sky.filled_data[:].value), (t_ci, t_cc))
    if tclean is not None:
        model = tclean["model"].astype(float)
        estimates["tclean hogbom (CASA)"] = ((model.sum(axis=0) * dv, model), (None, tclean["seconds"]))
    ni, t_ni = timed(lambda: network_image(sim.dirty))
    nc, t_nc = timed(lambda: network_cube(sim.dirty))
    estimates["network (deepfocus)"] = ((ni.sky.value, nc.sky.filled_data[:].value), (t_ni, t_nc))
    result = {}
    for name, ((image, cube), seconds) in estimates.items():
        result[name] = {
            "image": scores(image, truth_image, sigma_image, sim, beam_pix, cell, valid_image),
            "cube": scores(cube, sky, sigma_chan, sim, beam_pix, cell, valid_cube),
            "seconds_image": None if not seconds else seconds[0],
            "seconds_cube": None if not seconds else seconds[1],
        }
    images = {name: e[0][0] for name, e in estimates.items()}
    return result, images, truth_image


def summarise(rows, key):
    """Medians of the per-cube metrics of one method, one product (image or cube)."""
    if not rows:
        return None
    out = {}
    for metric in ("psnr", "ssim", "total_flux_error", "residual_rms"):
        out[metric] = float(np.median([r[key][metric] for r in rows]))
    if key == "image":
        errors = [e for r in rows for e in r["image"]["sources"]]
        for label, lo, hi in (("snr<=10", 0, FAINT_SNR), ("snr>10", FAINT_SNR, np.inf)):
            sel = [abs(err) for snr, err in errors if lo < snr <= hi]
            out[f"source_flux_error_{label}"] = float(np.median(sel)) if sel else None
            out[f"n_sources_{label}"] = len(sel)
    seconds = [r[f"seconds_{key}"] for r in rows if r[f"seconds_{key}"] is not None]
    out["seconds"] = float(np.median(seconds)) if seconds else None
    return out


def figure(images, truth, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["dirty", "truth", "tclean hogbom (CASA)", "network (deepfocus)"]
    if "tclean hogbom (CASA)" not in images:
        names[2] = "hogbom (deepfocus)"
    panels = [(n, truth if n == "truth" else images[n]) for n in names]
    resid = [(f"{n} - truth", images[n] - truth) for n in names[2:]]
    fig, axes = plt.subplots(1, 6, figsize=(18, 3.4))
    vmax = float(np.percentile(truth, 99.9))  # point sources would saturate the rest
    for ax, (name, img) in zip(axes, panels + resid, strict=True):
        lim = (-vmax / 2, vmax / 2) if " - truth" in name else (-0.1 * vmax, vmax)
        im = ax.imshow(
            img, origin="lower", cmap="RdBu_r" if " - truth" in name else "inferno", vmin=lim[0], vmax=lim[1]
        )
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, label="Jy/pixel km/s" if ax is axes[0] else None)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cubes", type=int, default=20)
    parser.add_argument("--casa-cubes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--output", default="deconvolution")
    args = parser.parse_args()
    torch.set_num_threads(1)
    n_casa = args.casa_cubes if importlib.util.find_spec("casatools") is not None else 0
    seed = SEED_OFFSETS["test"] + args.seed
    network_image, network_cube = Deconvolver(mode="image"), Deconvolver(mode="cube")
    clean_image = HogbomClean(mode="image", threshold=3.0, gain=0.1, max_iter=10_000)
    clean_cube = HogbomClean(mode="cube", threshold=3.0, gain=0.1, max_iter=10_000)
    rows = {name: {"fast": [], "casa": [], "faint": [], "bright": []} for name in METHODS}
    failures, example = [], None
    for engine, faint, sim, tclean in test_cubes(args.cubes, n_casa, seed, failures):
        result, images, truth = evaluate(sim, tclean, network_image, network_cube, clean_image, clean_cube)
        for name, r in result.items():
            r["engine"], r["faint"], r["max_snr"] = engine, faint, float(np.max(sim.truth["snr"]))
            rows[name][engine].append(r)
            rows[name]["faint" if r["max_snr"] <= FAINT_SNR else "bright"].append(r)
        if engine == "casa" and (example is None or example[0] != "casa"):
            example = (engine, images, truth)
        elif example is None:
            example = (engine, images, truth)
        print(
            engine,
            "faint" if faint else "bright",
            {n: round(r["image"]["psnr"], 1) for n, r in result.items()},
            {n: round(r["image"]["total_flux_error"], 3) for n, r in result.items()},
            flush=True,
        )
    summary = {}
    for name in METHODS:
        summary[name] = {
            subset: {key: summarise(rows[name][subset], key) for key in ("image", "cube")}
            for subset in ("fast", "casa", "faint", "bright")
        }
        everything = rows[name]["fast"] + rows[name]["casa"]
        summary[name]["all"] = {key: summarise(everything, key) for key in ("image", "cube")}
    data = {
        "description": __doc__.split("\n\n")[0],
        "command": f"python benchmarks/deconvolution.py --cubes {args.cubes} --casa-cubes {args.casa_cubes} "
        f"--seed {args.seed}",
        "seed": seed,
        "cubes": {"fast": args.cubes, "casa": len(rows["dirty"]["casa"])},
        "faint_snr": FAINT_SNR,
        "casa_failures": failures,
        "summary": summary,
        "per_cube": {name: rows[name]["fast"] + rows[name]["casa"] for name in METHODS},
        "machine": machine(),
    }
    write_json(args.output, data)
    if example is not None:
        figure(example[1], example[2], ROOT / "docs" / "_static" / "deconvolution_example.png")
    write_rst(data, args)


def write_rst(data, args):
    lines = []
    subsets = (
        ("casa", "Cubes made with CASA (the only ones where tclean runs)"),
        ("faint", "Cubes whose brightest source has S/N <= 10"),
        ("bright", "Cubes whose brightest source has S/N > 10"),
    )
    for subset, title in subsets:
        table = []
        for name in METHODS:
            s = data["summary"][name][subset]
            if s is None or s["image"] is None:
                continue
            for key in ("image", "cube"):
                m = s[key]
                table.append(
                    [
                        name,
                        "integrated" if key == "image" else "per channel",
                        fmt(m["psnr"], ".1f"),
                        fmt(m["ssim"], ".3f"),
                        fmt(m["total_flux_error"], ".3f"),
                        fmt(m.get("source_flux_error_snr<=10"), ".3f") if key == "image" else "",
                        fmt(m.get("source_flux_error_snr>10"), ".3f") if key == "image" else "",
                        fmt(m["residual_rms"], ".2f"),
                        fmt(m["seconds"], ".2f"),
                    ]
                )
        if not table:
            continue
        lines.append(f"**{title}** (medians over cubes)\n")
        lines.append(
            rst_table(
                [
                    "method",
                    "product",
                    "PSNR (dB)",
                    "SSIM",
                    "total flux err.",
                    "source flux err. (S/N<=10)",
                    "source flux err. (S/N>10)",
                    "residual rms (noise)",
                    "s / cube",
                ],
                table,
            )
            + "\n"
        )
    head = (
        f"{data['cubes']['fast']} fast-engine and {data['cubes']['casa']} CASA-engine test cubes "
        f"(128 x 128 x 64, seed {data['seed']}); CASA tclean only on the CASA cubes, its time is "
        "the tclean (Högbom) call alone. Made by ``" + data["command"] + "``.\n"
    )
    write_docs(args.output, head + "\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
