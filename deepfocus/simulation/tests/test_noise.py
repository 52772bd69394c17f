import astropy.units as u
import numpy as np
import pytest

from deepfocus.exceptions import InvalidInputError
from deepfocus.simulation import AntennaConfiguration, Observation, uv_tracks
from deepfocus.simulation.noise import NoiseModel, atmosphere, receiver_temperature

# Measured with CASA 6.7.0-31 simobserve(thermalnoise='tsys-atm', user_pwv=0.5) at 230 GHz, one
# 2 GHz channel, 10 s integrations, alma.cycle10.3: zenith Tsys 73.28 K and visibility noise
# 0.01644 Jy per polarisation (real part).
CASA_TSYS_ZENITH = 73.28
CASA_SIGMA_POL = 0.01644


def model(**settings):
    obs = Observation(frequency=230 * u.GHz, **settings)
    return NoiseModel(obs, AntennaConfiguration.from_name("C-3"))


def test_system_temperature_matches_casa_tsys_atm():
    tsys = model(pwv=0.5 * u.mm).system_temperature(230 * u.GHz, [np.pi / 2])
    assert tsys[0].to_value(u.K) == pytest.approx(CASA_TSYS_ZENITH, rel=0.01)


def test_visibility_noise_matches_casa():
    noise = model(tsys=CASA_TSYS_ZENITH * u.K, channel_width=2 * u.GHz)
    coverage = uv_tracks(AntennaConfiguration.from_name("C-3"), -23 * u.deg, total_time=100 * u.s)
    sigma_stokes_i = noise.visibility_sigma(230 * u.GHz, coverage)
    assert sigma_stokes_i.shape == (10, 903)
    # Stokes I averages two polarisations: sigma_I = sigma_pol / sqrt(2).
    assert sigma_stokes_i[0, 0] * np.sqrt(2) == pytest.approx(CASA_SIGMA_POL, rel=0.01)


def test_tsys_grows_with_airmass_water_and_frequency():
    low = model(pwv=0.5 * u.mm).system_temperature(230 * u.GHz, np.radians([90, 30]))
    wet = model(pwv=3.0 * u.mm).system_temperature(230 * u.GHz, np.radians([90]))
    assert low[1] > low[0]
    assert wet[0] > low[0]
    # The 183 GHz water line is opaque with wet air.
    tau_line, _ = atmosphere(183.3 * u.GHz, 3 * u.mm)
    tau_window, _ = atmosphere(230 * u.GHz, 3 * u.mm)
    assert tau_line[0] > 10 * tau_window[0]


def test_receiver_temperatures_and_ranges():
    assert receiver_temperature(100 * u.GHz) == 40 * u.K
    assert receiver_temperature(345 * u.GHz) == 72 * u.K
    with pytest.raises(InvalidInputError, match="outside ALMA's bands"):
        receiver_temperature(20 * u.GHz)
    with pytest.raises(InvalidInputError, match="pwv"):
        atmosphere(230 * u.GHz, 50 * u.mm)
