"""Atomic outputs (`deepfocus.io.atomic`)."""

import gzip

import numpy as np
import pytest
from astropy.io import fits

from deepfocus.io.atomic import atomic_path


@pytest.mark.parametrize(
    ("suffix", "magic"), [(".fits.gz", b"\x1f\x8b"), (".fits.bz2", b"BZh"), (".fits", b"SIMPLE")]
)
def test_compressed_names_are_compressed(tmp_path, suffix, magic):
    # The temporary name keeps the compression suffix: astropy compresses by the name it writes.
    path = tmp_path / f"sky{suffix}"
    with atomic_path(path) as tmp:
        assert tmp.name.endswith(suffix[len(".fits") :] or ".part")
        fits.PrimaryHDU(np.arange(16.0).reshape(4, 4)).writeto(tmp)
    assert path.read_bytes()[: len(magic)] == magic
    np.testing.assert_array_equal(fits.getdata(path), np.arange(16.0).reshape(4, 4))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # nothing else left
    if suffix == ".fits.gz":
        assert gzip.decompress(path.read_bytes())[:6] == b"SIMPLE"


def test_a_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "sky.fits.gz"
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        fits.PrimaryHDU(np.ones((2, 2))).writeto(tmp)
        raise RuntimeError("killed")
    assert not list(tmp_path.iterdir())
