"""The deconvolver's verdict on a candidate depends only on the pixels around it, so tiles and a
single pass agree (the network's group normalisation sees a training-size cutout, not the
whole image)."""

from types import SimpleNamespace

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable
from radio_beam import Beam

from deepfocus import CubeDetector
from deepfocus.detection.detector import DECONVOLVER_CUTOUT

N_CHAN, NY, NX = 12, 170, 160
CELL = 0.1 * u.arcsec
BEAM = Beam(major=0.5 * u.arcsec, minor=0.4 * u.arcsec, pa=20 * u.deg)  # 5 pixels per beam


@pytest.fixture(scope="module")
def detector():
    return CubeDetector(model="default")


def _scene(seed=1):
    """Unit-noise channel S/N with a bright source at (x, y) = (80, 84) in channels 4-7."""
    rng = np.random.default_rng(seed)
    snr = rng.normal(size=(N_CHAN, NY, NX)).astype(np.float32)
    yy, xx = np.mgrid[:NY, :NX]
    blob = np.exp(-0.5 * (np.hypot(xx - 80, yy - 84) / 2.2) ** 2)
    snr[4:8] += 6 * blob.astype(np.float32)
    return snr


def _scores(detector, channel_snr, positions, valid=None):
    valid = np.ones(channel_snr.shape[1:], bool) if valid is None else valid
    view = SimpleNamespace(beams=[BEAM] * N_CHAN, cell=CELL, valid=valid)
    mf = SimpleNamespace(channel_snr=channel_snr, snr=channel_snr)
    candidates = QTable({"x_centroid": [p[0] for p in positions] * u.pix})
    candidates["y_centroid"] = [p[1] for p in positions] * u.pix
    rows = [(k, 5.5, 4, 7, 4.0, 6.0) for k in range(len(positions))]
    return detector._deconvolved_scores(view, mf, rows, candidates)


def test_score_is_the_same_in_a_crop_of_the_image(detector):
    snr = _scene()
    positions = [(80.2, 83.7), (120.0, 130.0)]  # the source, and an empty place
    whole = _scores(detector, snr, positions)
    y0, x0 = 30, 25  # the crop keeps both candidates' cutouts whole
    crop = snr[:, y0 : y0 + 2 * DECONVOLVER_CUTOUT + 10, x0 : x0 + 2 * DECONVOLVER_CUTOUT]
    shifted = [(x - x0, y - y0) for x, y in positions]
    np.testing.assert_allclose(_scores(detector, crop, shifted), whole, rtol=1e-5)
    # The source passes the detector's default gate.
    assert whole[0] > detector.deconvolved_fraction


def test_candidate_on_the_image_edge_is_scored(detector):
    snr = _scene()
    scores = _scores(detector, snr, [(1.0, 2.0), (NX - 1.0, NY - 1.0)])
    assert np.all(np.isfinite(scores))


def test_blank_pixels_stay_out_of_the_normalisation(detector, monkeypatch):
    # Blank pixels (a CASA NaN border 10 pixels from the source) enter the deconvolver as zeros;
    # its group normalisation then takes statistics over the data alone, as it does when it
    # makes the deconvolved image, so the score stays nearer the one without the border.
    positions = [(80.2, 83.7)]
    for seed in (1, 3):
        snr = _scene(seed)
        whole = _scores(detector, snr, positions)[0]
        valid = np.ones(snr.shape[1:], bool)
        valid[:, :70] = False
        blanked = np.where(valid, snr, 0.0).astype(np.float32)
        masked = _scores(detector, blanked, positions, valid)[0]

        def plain_network(batch, _valid):  # zeros in the statistics
            return detector._deconvolver(batch).numpy()[:, 0]

        with monkeypatch.context() as patch:
            patch.setattr(detector, "_deconvolve", plain_network)
            plain = _scores(detector, blanked, positions, valid)[0]
        assert abs(masked - whole) < 0.75 * abs(plain - whole)
