#!/usr/bin/env python3
"""Build ``deepfocus/data/atmosphere_alma.ecsv``: zenith opacity and sky temperature at ALMA.

The table is computed with CASA's ATM model (``casatools.atmosphere``), set up exactly as
``simobserve(thermalnoise='tsys-atm')`` sets it up through ``sm.setnoise`` (CASA's
``AtmosCorruptor::initAtm``): tropical atmosphere type, site altitude 5000 m, ground pressure
560 mbar, ground temperature 269 K (simobserve's ``t_ground``), relative humidity 20 %, water
vapour scale height 2 km, tropospheric lapse rate -5.6 K/km, top of the atmosphere 48 km,
pressure step 10 mbar and step factor 1.2.

Columns (one row per PWV and frequency; a full PWV x frequency grid):

``frequency`` (GHz)
    Centre of a 0.5 GHz bin, 35-950 GHz.
``pwv`` (mm)
    Zenith precipitable water vapour column.
``tau_zenith``
    Total zenith opacity (dry + wet), mean over the bin.
``tebb_zenith`` (K)
    Zenith sky equivalent black-body temperature at airmass 1 with perfect sky coupling,
    including the cosmic background (ATM's ``getTebbSky``), mean over the bin.

Narrow stratospheric lines (O3 and others, a few MHz to tens of MHz wide) cannot be followed
by any table of reasonable size, and sampling them at the bin centres would hit or miss them at
random. Every value is therefore the mean of ATM evaluated every 5 MHz across its 0.5 GHz bin:
what a typical narrow channel inside the bin sees on average. The broad pressure-broadened
tropospheric lines (H2O at 183, 325, 380, 448, 557, 752 GHz ..., O2 at 60, 119, 368, 425,
487 GHz ...) are resolved.

Needs casatools and casadata (``pip install "deepfocus[casa]"``); runs offline (a temporary
CASA site configuration points at casadata's bundled data). Takes about two minutes.

Usage::

    python scripts/make_atmosphere_table.py [--output PATH]
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: Frequency grid of the table (GHz): bin centres and bin width.
F_MIN, F_MAX, F_STEP = 35.0, 950.0, 0.5
#: ATM sampling inside each bin (GHz).
F_SAMPLE = 0.005
#: Zenith PWV values (mm).
PWV_MM = [0.05, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0]
#: The site as simobserve's thermal noise (``AtmosCorruptor::initAtm``) sets it up.
SITE = {
    "altitude_m": 5000.0,
    "pressure_mbar": 560.0,
    "ground_temperature_K": 269.0,
    "relative_humidity_percent": 20.0,
    "water_scale_height_km": 2.0,
    "lapse_rate_K_per_km": -5.6,
    "top_of_atmosphere_km": 48.0,
    "pressure_step_mbar": 10.0,
    "pressure_step_factor": 1.2,
    "atmosphere_type": 1,  # tropical
}
#: Bins computed per ATM spectral window (bounds memory; ATM cost is linear in channels).
_BINS_PER_WINDOW = 200

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "deepfocus" / "data" / "atmosphere_alma.ecsv"


def _offline_casa():
    """Point CASA at casadata's bundled data, without updates, before casatools is imported."""
    if "CASASITECONFIG" in os.environ or "casatools" in sys.modules:
        return None
    folder = tempfile.mkdtemp(prefix="deepfocus-casa-")
    path = os.path.join(folder, "siteconfig.py")
    with open(path, "w") as fh:
        fh.write(
            "import casadata\n"
            "datapath = [casadata.datapath]\n"
            "measurespath = casadata.datapath\n"
            "measures_auto_update = False\n"
            "data_auto_update = False\n"
            "nologfile = True\n"
        )
    os.environ["CASASITECONFIG"] = path
    return folder


def compute():
    """Compute the grid.

    Returns
    -------
    freqs : `numpy.ndarray`
        Bin centres in GHz, shape ``(n_freq,)``.
    tau, tebb : `numpy.ndarray`
        Zenith opacity and equivalent black-body temperature (K), shape ``(n_pwv, n_freq)``.
    info : dict
        Versions and the ATM profile's own ground water column.
    """
    import casatools

    qa = casatools.quanta()
    at = casatools.atmosphere()
    s = SITE
    at.initAtmProfile(
        altitude=qa.quantity(s["altitude_m"], "m"),
        temperature=qa.quantity(s["ground_temperature_K"], "K"),
        pressure=qa.quantity(s["pressure_mbar"], "mbar"),
        maxAltitude=qa.quantity(s["top_of_atmosphere_km"], "km"),
        humidity=s["relative_humidity_percent"],
        dTem_dh=qa.quantity(s["lapse_rate_K_per_km"], "K/km"),
        dP=qa.quantity(s["pressure_step_mbar"], "mbar"),
        dPm=s["pressure_step_factor"],
        h0=qa.quantity(s["water_scale_height_km"], "km"),
        atmType=s["atmosphere_type"],
    )
    info = {
        "casatools_version": casatools.version_string(),
        "atm_version": at.getAtmVersion(),
        "profile_ground_pwv_mm": float(np.ravel(at.getGroundWH2O()["value"])[0]),
        "n_layers": int(at.getNumLayers()),
    }

    freqs = np.round(np.arange(F_MIN, F_MAX + F_STEP / 2, F_STEP), 6)
    per_bin = int(round(F_STEP / F_SAMPLE))
    tau = np.empty((len(PWV_MM), len(freqs)))
    tebb = np.empty_like(tau)
    for start in range(0, len(freqs), _BINS_PER_WINDOW):
        centres = freqs[start : start + _BINS_PER_WINDOW]
        nchan = len(centres) * per_bin
        # Samples at the centres of per_bin sub-channels tiling [centre - step/2, centre + step/2].
        lo = centres[0] - F_STEP / 2
        f_centre = lo + nchan * F_SAMPLE / 2
        at.initSpectralWindow(
            nbands=1,
            fCenter=qa.quantity(f_centre, "GHz"),
            fWidth=qa.quantity(nchan * F_SAMPLE, "GHz"),
            fRes=qa.quantity(F_SAMPLE, "GHz"),
        )
        got = at.getNumChan(0)
        first = float(np.ravel(at.getChanFreq(0, 0)["value"])[0])
        if got != nchan or abs(first - (lo + F_SAMPLE / 2)) > 1e-6:
            raise RuntimeError(f"unexpected ATM grid: {got} channels from {first} GHz")
        dry = np.asarray(at.getDryOpacitySpec(0)[1], dtype=float)
        for i, w in enumerate(PWV_MM):
            wq = qa.quantity(w, "mm")
            at.setUserWH2O(wq)
            wet = np.asarray(at.getWetOpacitySpec(0)[1]["value"], dtype=float)
            tb = np.asarray(at.getTebbSkySpec(0, wq)[1]["value"], dtype=float)
            sl = slice(start, start + len(centres))
            tau[i, sl] = (dry + wet).reshape(len(centres), per_bin).mean(axis=1)
            tebb[i, sl] = tb.reshape(len(centres), per_bin).mean(axis=1)
        print(f"  {centres[0]:.1f}-{centres[-1]:.1f} GHz done", flush=True)
    info["sky_background_K"] = float(np.ravel(at.getSkyBackgroundTemperature()["value"])[0])
    at.done()
    return freqs, tau, tebb, info


def build_table(freqs, tau, tebb, info):
    """Assemble the ECSV table (rows ordered by PWV, then frequency)."""
    import astropy.units as u
    from astropy.table import QTable

    n_pwv, n_freq = tau.shape
    table = QTable()
    table["frequency"] = np.tile(freqs, n_pwv) * u.GHz
    table["pwv"] = np.repeat(np.asarray(PWV_MM, dtype=float), n_freq) * u.mm
    # ECSV writes every digit of a float: round first to keep the file small (the rounding,
    # 5 significant digits and 1 mK, is far below the model's accuracy).
    table["tau_zenith"] = np.array([float(f"{x:.5g}") for x in tau.ravel()])
    table["tebb_zenith"] = np.round(tebb.ravel(), 3) * u.K
    table["frequency"].info.description = "centre of a 0.5 GHz bin"
    table["pwv"].info.description = "zenith precipitable water vapour"
    table["tau_zenith"].info.description = "zenith opacity, dry + wet, mean over the bin"
    table["tebb_zenith"].info.description = (
        "zenith sky equivalent black-body temperature incl. the cosmic background, "
        "airmass 1, perfect sky coupling, mean over the bin"
    )
    table.meta["comments"] = [
        "Zenith opacity and sky brightness at the ALMA site from CASA's ATM model,",
        "set up as simobserve(thermalnoise='tsys-atm') does (AtmosCorruptor::initAtm).",
        "Made by scripts/make_atmosphere_table.py.",
    ]
    table.meta["model"] = "CASA ATM (casatools.atmosphere)"
    table.meta["casatools_version"] = info["casatools_version"]
    table.meta["atm_version"] = info["atm_version"]
    table.meta["site"] = dict(SITE, atmosphere_type="1 (tropical)")
    table.meta["atm_profile_ground_pwv_mm"] = round(info["profile_ground_pwv_mm"], 5)
    table.meta["atm_profile_layers"] = info["n_layers"]
    table.meta["sky_background_K"] = info["sky_background_K"]
    table.meta["frequency_bin_GHz"] = F_STEP
    table.meta["frequency_sampling_GHz"] = F_SAMPLE
    table.meta["airmass"] = 1.0
    table.meta["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="ECSV file to write")
    args = parser.parse_args(argv)

    confdir = _offline_casa()
    cwd = os.getcwd()
    workdir = tempfile.mkdtemp(prefix="deepfocus-atm-")
    os.chdir(workdir)  # any CASA log file lands here, not in the caller's directory
    try:
        t0 = time.perf_counter()
        freqs, tau, tebb, info = compute()
        table = build_table(freqs, tau, tebb, info)
    finally:
        os.chdir(cwd)
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
        if confdir:
            shutil.rmtree(confdir, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    table.write(args.output, format="ascii.ecsv", overwrite=True)
    size = args.output.stat().st_size
    print(
        f"wrote {args.output} ({len(table)} rows, {size / 1024:.0f} KiB) in {time.perf_counter() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
