"""The tasks' training-time pieces: the characterizer's random turns of its cutouts."""

import numpy as np
import pytest
import torch

from deepfocus.training.samples import CHARACTERIZER_TARGETS
from deepfocus.training.tasks import dihedral_cutouts, get_task

SIZE = 32


def _elliptical_cutout(dx, dy, major, minor, pa_deg, size=SIZE):
    """A Gaussian of FWHM ``major`` x ``minor`` pixels centred ``(dx, dy)`` from pixel
    ``size // 2``, its major axis at ``pa_deg`` from +y towards -x (east of north on a grid
    with east to the left), and its targets as the samples write them (sizes in pixels)."""
    yy, xx = np.mgrid[:size, :size].astype(float)
    x, y = xx - size // 2 - dx, yy - size // 2 - dy
    theta = np.radians(pa_deg)
    along = -x * np.sin(theta) + y * np.cos(theta)
    across = x * np.cos(theta) + y * np.sin(theta)
    sigma_major, sigma_minor = major / 2.3548, minor / 2.3548
    image = np.exp(-0.5 * ((along / sigma_major) ** 2 + (across / sigma_minor) ** 2))
    e = 1 - minor / major
    targets = [dx, dy, major, minor, e * np.sin(2 * theta), e * np.cos(2 * theta), np.log(7.0)]
    return image.astype(np.float32), np.asarray(targets, np.float32)


def test_turned_cutouts_show_their_turned_targets():
    rng = np.random.default_rng(0)
    params = [
        (
            rng.uniform(-0.5, 0.5),
            rng.uniform(-0.5, 0.5),
            rng.uniform(4, 7),
            rng.uniform(2, 3.5),
            rng.uniform(0, 180),
        )
        for _ in range(64)
    ]
    images, targets = zip(*(_elliptical_cutout(*p) for p in params), strict=True)
    inputs = torch.from_numpy(np.stack(images)[:, None])
    targets = torch.from_numpy(np.stack(targets))
    turned, turned_targets = dihedral_cutouts(inputs, targets, torch.Generator().manual_seed(1))
    assert turned.shape == inputs.shape and turned_targets.shape == targets.shape
    # The inputs are not changed in place, and most cutouts are turned (7 of 8 turns move them).
    assert torch.equal(inputs, torch.from_numpy(np.stack(images)[:, None]))
    moved = [not torch.equal(turned[k], inputs[k]) for k in range(len(inputs))]
    assert 0.7 < np.mean(moved) < 1.0
    # Each turned cutout is the image its turned targets describe.
    for k in range(len(inputs)):
        dx, dy, major, minor, s2, c2, log_flux = turned_targets[k].tolist()
        pa = np.degrees(0.5 * np.arctan2(s2, c2))
        expected, _ = _elliptical_cutout(dx, dy, major, minor, pa)
        np.testing.assert_allclose(turned[k, 0].numpy(), expected, atol=1e-4)
        assert (major, minor, log_flux) == pytest.approx(targets[k, [2, 3, 6]].tolist())
        assert np.hypot(s2, c2) == pytest.approx(float(np.hypot(*targets[k, 4:6].numpy())), rel=1e-6)


def test_turns_are_seeded_and_differ_between_draws():
    inputs = torch.randn(16, 1, SIZE, SIZE)
    targets = torch.randn(16, len(CHARACTERIZER_TARGETS))
    a = dihedral_cutouts(inputs, targets, torch.Generator().manual_seed(3))
    b = dihedral_cutouts(inputs, targets, torch.Generator().manual_seed(3))
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    generator = torch.Generator().manual_seed(3)
    first, second = dihedral_cutouts(inputs, targets, generator), dihedral_cutouts(inputs, targets, generator)
    assert not torch.equal(first[0], second[0])


def test_only_the_characterizer_is_turned():
    assert get_task("characterizer").augment is dihedral_cutouts
    # The deconvolver's images are whole fields and the spectra are 1-D: not turned.
    assert get_task("deconvolver").augment is None and get_task("spectral").augment is None
