"""Broken or unsuitable FITS files, each paired with the start of the error it must give."""

import numpy as np
from astropy.io import fits

#: name -> a fragment of the error message.
BAD_INPUTS = {
    "image2d": "2-D image",
    "no_wcs": "no celestial WCS",
    "no_beam": "no beam",
    "bad_bunit": "unsupported brightness unit",
    "all_nan": "all NaN",
    "constant": "no channel has a measurable noise",
    "truncated": "truncated or corrupt",
    "missing": "no such file",
}


def write_bad_input(name, source, folder):
    """Write the bad file ``name`` (a key of `BAD_INPUTS`) made from the good cube ``source``."""
    path = folder / f"{name}.fits"
    with fits.open(source) as hdul:
        data = np.array(hdul[0].data)
        header = hdul[0].header.copy()
        beams = hdul["BEAMS"].copy()
    if name == "image2d":
        for key in ("NAXIS3", "CRPIX3", "CDELT3", "CUNIT3", "CTYPE3", "CRVAL3"):
            del header[key]
        header["WCSAXES"] = 2
        header["BMAJ"], header["BMIN"], header["BPA"] = 2e-4, 1.5e-4, 0.0
        fits.PrimaryHDU(data[0], header).writeto(path)
    elif name == "no_wcs":
        plain = fits.Header()
        plain["BUNIT"] = "Jy/beam"
        plain["BMAJ"], plain["BMIN"], plain["BPA"] = 2e-4, 1.5e-4, 0.0
        fits.PrimaryHDU(data, plain).writeto(path)
    elif name == "no_beam":
        fits.PrimaryHDU(data, header).writeto(path)  # without the BEAMS table and no BMAJ
    elif name == "bad_bunit":
        header["BUNIT"] = "erg/s"
        fits.HDUList([fits.PrimaryHDU(data, header), beams]).writeto(path)
    elif name == "all_nan":
        fits.HDUList([fits.PrimaryHDU(np.full_like(data, np.nan), header), beams]).writeto(path)
    elif name == "constant":  # no noise to normalise by (a model image, not an observation)
        fits.HDUList([fits.PrimaryHDU(np.ones_like(data), header), beams]).writeto(path)
    elif name == "truncated":
        raw = source.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif name != "missing":
        raise ValueError(name)
    return path
