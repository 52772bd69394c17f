"""Bad input and options: each is refused with a clear `InvalidInputError`; masks."""

import numpy as np
import pytest

from deepfocus import CubeDetector, DeepFocus
from deepfocus.exceptions import InvalidInputError, NoDetectionsWarning

from . import helpers
from .bad_inputs import BAD_INPUTS, write_bad_input


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_a_clear_error(name, bright_files, tmp_path):
    path = write_bad_input(name, bright_files["dirty"], tmp_path)
    with pytest.raises(InvalidInputError, match=BAD_INPUTS[name]) as info:
        DeepFocus(model=None)(path)
    assert str(path) in str(info.value)
    with pytest.raises(InvalidInputError, match=BAD_INPUTS[name]):
        CubeDetector(model=None)(path)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"snr_threshold": -1}, "snr_threshold must be a positive number"),
        ({"snr_threshold": 0}, "snr_threshold must be a positive number"),
        ({"snr_threshold": "a"}, "snr_threshold must be a number"),
        ({"snr_threshold": float("nan")}, "snr_threshold must be a finite number"),
        ({"snr_threshold": float("inf")}, "snr_threshold must be a finite number"),
        ({"snr_threshold": None}, "snr_threshold must be a number"),
        ({"snr_threshold": True}, "snr_threshold must be a number"),
        ({"snr_threshold": [5, 6]}, "snr_threshold must be a number"),
        ({"min_separation": 0}, "min_separation must be positive"),
        ({"min_separation": -2.0}, "min_separation must be positive"),
        ({"min_separation": "1"}, "min_separation must be a number"),
        ({"min_separation": float("nan")}, "min_separation must be a finite number"),
        ({"widths": ()}, "widths must be positive channel counts"),
        ({"widths": (0, 3)}, "widths must be positive channel counts"),
        ({"widths": (-3,)}, "widths must be positive channel counts"),
        ({"widths": 3}, "widths must be positive channel counts"),
        ({"widths": ("a",)}, "widths must be positive channel counts"),
        ({"widths": (2.5,)}, "widths must be positive channel counts"),
        ({"deconvolved_fraction": 1.0}, r"deconvolved_fraction must be in \[0, 1\)"),
        ({"deconvolved_fraction": "x"}, "deconvolved_fraction must be a number"),
        ({"sidelobe_rejection": "no"}, "sidelobe_rejection must be True or False"),
    ],
)
def test_options_are_validated(options, message):
    with pytest.raises(InvalidInputError, match=message):
        CubeDetector(model=None, **options)
    if "snr_threshold" in options:
        with pytest.raises(InvalidInputError, match=message):
            DeepFocus(options["snr_threshold"], model=None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_in_flight": 0}, "max_in_flight must be a positive integer"),
        ({"max_in_flight": -3}, "max_in_flight must be a positive integer"),
        ({"max_in_flight": 2.5}, "max_in_flight must be a positive integer"),
        ({"max_in_flight": True}, "max_in_flight must be a positive integer"),
        ({"memory_limit": "lots"}, "memory"),
    ],
)
def test_pipeline_options_are_validated_when_made(options, message):
    # In __init__, as photutils does, not when the first (large) cube is run.
    with pytest.raises(InvalidInputError, match=message):
        DeepFocus(model=None, **options)


def test_options_are_normalised():
    detector = CubeDetector(np.float32(6), model=None, min_separation=2, widths=[np.int64(12), 3, 3, 1])
    assert detector.snr_threshold == 6.0 and isinstance(detector.snr_threshold, float)
    assert detector.min_separation == 2.0
    assert detector.widths == (1, 3, 12)


def test_positional_options_are_refused():
    with pytest.raises(TypeError):
        CubeDetector(5, 1.0)  # min_separation is keyword-only


def test_widths_longer_than_the_band_are_skipped(bright_files):
    # 96 channels is more than the cube's 48: ignored, whatever its place in the list.
    catalog = CubeDetector(model=None, widths=(96, 6))(bright_files["dirty"])
    assert catalog is not None and len(catalog) == len(helpers.BRIGHT_SOURCES)


@pytest.mark.parametrize(
    "shape", [(10, 10), (helpers.NPIX, helpers.NPIX + 1), (2, helpers.NPIX, helpers.NPIX)]
)
def test_mask_of_the_wrong_shape_is_an_error(bright_files, shape):
    with pytest.raises(InvalidInputError, match="mask shape"):
        CubeDetector(model=None)(bright_files["dirty"], mask=np.zeros(shape, bool))


def _box(shape, x, y, half=8):
    mask = np.zeros(shape, bool)
    mask[..., int(y) - half : int(y) + half + 1, int(x) - half : int(x) + half + 1] = True
    return mask


def test_a_mask_over_a_source_removes_it(bright_files, classical_catalog):
    x, y = helpers.BRIGHT_SOURCES[1][:2]
    image_mask = _box((helpers.NPIX, helpers.NPIX), x, y)
    for finder in (CubeDetector(model=None), DeepFocus(model=None)):
        catalog = finder(bright_files["dirty"], mask=image_mask)
        assert len(catalog) == len(classical_catalog) - 1
        assert np.all(np.hypot(catalog["x_centroid"].value - x, catalog["y_centroid"].value - y) > 8)
    # A cube mask over all channels does the same; an empty mask changes nothing.
    cube_mask = np.broadcast_to(image_mask, (helpers.N_CHANNELS, helpers.NPIX, helpers.NPIX))
    assert len(CubeDetector(model=None)(bright_files["dirty"], mask=cube_mask)) == len(classical_catalog) - 1
    unmasked = CubeDetector(model=None)(bright_files["dirty"], mask=np.zeros((helpers.NPIX, helpers.NPIX)))
    assert len(unmasked) == len(classical_catalog)


def test_a_cube_mask_over_a_line_removes_only_that_line(casa_file):
    # Source 0 (z = 12 ascending) is channel 35 of the descending CASA-style cube; source 3
    # (z = 35 ascending, channel 12) sits elsewhere. Masking input channels 28-42 over both
    # positions removes source 0 only.
    x0, y0 = helpers.BRIGHT_SOURCES[0][:2]
    x3, y3 = helpers.BRIGHT_SOURCES[3][:2]
    full = CubeDetector(model=None)(casa_file)
    mask = np.zeros((helpers.N_CHANNELS, helpers.NPIX, helpers.NPIX), bool)
    mask[28:43] = _box((helpers.NPIX, helpers.NPIX), x0, y0) | _box((helpers.NPIX, helpers.NPIX), x3, y3)
    catalog = CubeDetector(model=None)(casa_file, mask=mask)
    assert len(catalog) == len(full) - 1
    near0 = np.hypot(catalog["x_centroid"].value - x0, catalog["y_centroid"].value - y0) < 2
    near3 = np.hypot(catalog["x_centroid"].value - x3, catalog["y_centroid"].value - y3) < 2
    assert not near0.any() and near3.sum() == 1


def test_a_mask_over_everything_finds_nothing(bright_files):
    with pytest.warns(NoDetectionsWarning):
        assert (
            CubeDetector(model=None)(bright_files["dirty"], mask=np.ones((helpers.NPIX, helpers.NPIX)))
            is None
        )


def test_a_slice_of_a_spectral_cube_is_refused_by_its_dimensions(bright_files):
    from spectral_cube import SpectralCube

    cube = SpectralCube.read(bright_files["dirty"])
    for part, what in ((cube[0], "2-D"), (cube[:, 5, 5], "1-D")):
        with pytest.raises(InvalidInputError, match=f"needs a spectral cube \\(3-D\\); got a {what}"):
            DeepFocus(model=None)(part)
