"""Make the example cube shipped in ``deepfocus/data`` (used by ``deepfocus detect --example``).

A 96 x 96 x 40 dirty cube from the fast engine: ALMA C-4 at 230 GHz, 30-min track, PWV 1 mm,
five sources from the ``paper`` recipe (a bright central source, fainter ones, a blended pair
and two lines at one position), with its PSF as ``tclean`` would write it beside the cube (which
``--example`` uses). Run: ``python scripts/make_example_cube.py``.
"""

from pathlib import Path

import astropy.units as u

from deepfocus.simulation import Observation, simulate

OUT = Path(__file__).resolve().parents[1] / "deepfocus" / "data"

if __name__ == "__main__":
    observation = Observation(configuration="alma.cycle10.4", frequency=230 * u.GHz, npix=96, n_channels=40)
    sim = simulate(observation, seed=2026, recipe="paper", n_sources=5)
    paths = sim.write(OUT, "example", overwrite=True, psf=True)
    (OUT / "example_sky.fits").unlink()  # the sky model is not needed to try the detector
    print(sim.summary())
    print("written:", paths["dirty"], paths["psf"], paths["truth"])
