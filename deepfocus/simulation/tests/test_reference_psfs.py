"""The simulator's PSF against PSFs made by CASA 6.7 (simobserve + tclean), sidelobe for sidelobe.

The twelve reference PSFs live in the project's ``shared/reference_psfs`` folder (beside the
repository); the test is skipped where that folder is absent (an installed package).
"""

import json
import os
from pathlib import Path

import astropy.units as u
import pytest
from astropy.io import fits

from deepfocus.simulation import Interferometer, Observation
from deepfocus.simulation.psf_metrics import compare_psfs

REFERENCE_DIR = Path(
    os.environ.get(
        "DEEPFOCUS_REFERENCE_PSFS",
        Path(__file__).resolve().parents[3].parent / "shared" / "reference_psfs",
    )
)
CASES = sorted(REFERENCE_DIR.glob("*.json")) if REFERENCE_DIR.is_dir() else []
#: The reference README: tclean's Gaussian fit to this non-Gaussian main lobe is poor.
POOR_BEAM_FIT = {"psf_c10.8_100GHz_dec-23_1800s"}


def observation_for(meta):
    return Observation(
        configuration=meta["config"].removesuffix(".cfg"),
        ra=meta["ra_deg"] * u.deg,
        dec=meta["dec_deg"] * u.deg,
        total_time=meta["totaltime_s"] * u.s,
        integration=meta["integration_s"] * u.s,
        frequency=meta["freq_ghz"] * u.GHz,
        channel_width=meta["chanwidth_mhz"] * u.MHz,
        n_channels=1,
        npix=meta["tclean"]["imsize"][0],
        cell=meta["tclean"]["cell_arcsec"] * u.arcsec,
        weighting=meta["tclean"]["weighting"],
        specmode=meta["tclean"]["specmode"],
        robust=meta["tclean"]["robust"],
        date=meta["refdate"].replace("/", "-"),
        noise=False,
    )


@pytest.mark.skipif(not CASES, reason=f"no reference PSFs at {REFERENCE_DIR}")
@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_psf_matches_casa(case):
    meta = json.loads(case.read_text())
    reference = fits.getdata(case.with_suffix(".fits")).squeeze().astype(float)
    alma = Interferometer(observation_for(meta))
    psf = alma.psf(0)
    assert psf[128, 128] == pytest.approx(1.0)
    casa_beam = (
        meta["bmaj_arcsec"] * u.arcsec,
        meta["bmin_arcsec"] * u.arcsec,
        meta["bpa_deg"] * u.deg,
    )
    result = compare_psfs(psf, reference, cell=alma.cell, beam=casa_beam)
    assert result["correlation"] >= 0.98
    assert result["peak_sidelobe_ratio"] == pytest.approx(1, abs=0.10)
    assert result["sidelobe_rms_ratio"] == pytest.approx(1, abs=0.10)
    if case.stem not in POOR_BEAM_FIT:
        beam = alma.beams[0]
        assert beam.major.to_value(u.arcsec) == pytest.approx(meta["bmaj_arcsec"], rel=0.05)
        assert beam.minor.to_value(u.arcsec) == pytest.approx(meta["bmin_arcsec"], rel=0.05)
        pa_difference = (beam.pa.to_value(u.deg) - meta["bpa_deg"] + 90) % 180 - 90
        assert abs(pa_difference) < 5
