"""The ``deepfocus`` command, run as a user would."""

import subprocess
import sys
import warnings

import pytest
from astropy.io import fits
from astropy.table import QTable

from deepfocus import __version__
from deepfocus.cli import main
from deepfocus.exceptions import DeepFocusWarning

SMALL = ["--npix", "32", "--channels", "8", "--total-time", "300"]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"deepfocus {__version__}"


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "deepfocus simulate --n 1 --output example" in out


def test_simulate_writes_cube_and_prints_summary(tmp_path, capsys):
    assert main(["simulate", "--n", "1", "--output", str(tmp_path), "--seed", "3", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "dirty cube  : 8 channels x 32 x 32 pixels" in out
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["sim0_dirty.fits", "sim0_sky.fits", "sim0_truth.ecsv"]
    truth = QTable.read(tmp_path / "sim0_truth.ecsv")
    assert len(truth) >= 1 and "snr" in truth.colnames


def test_simulate_noise_only(tmp_path):
    # Cubes without sources: what a detector finds in them is false.
    assert main(["simulate", "--n-sources", "0", "--output", str(tmp_path), "--quiet", *SMALL]) == 0
    assert len(QTable.read(tmp_path / "sim0_truth.ecsv")) == 0
    assert fits.getdata(tmp_path / "sim0_dirty.fits").std() > 0


def test_simulate_refuses_a_single_channel(tmp_path, capsys):
    # deepfocus detect would refuse the result (a 2-D image).
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--output", str(tmp_path), "--npix", "32", "--channels", "1"])
    assert info.value.code == 2
    assert "a spectral cube needs at least 2 channels, got 1" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_simulate_many_is_reproducible(tmp_path):
    for folder in ("a", "b"):
        assert main(["simulate", "--n", "2", "--output", str(tmp_path / folder), "--quiet", *SMALL]) == 0
    for name in ("sim0_dirty.fits", "sim1_truth.ecsv"):
        if name.endswith(".ecsv"):
            a, b = (QTable.read(tmp_path / f / name) for f in ("a", "b"))
            assert list(a["flux"].value) == list(b["flux"].value)
        else:
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_simulate_refuses_existing_outputs_before_writing_any(tmp_path, capsys):
    # A file of the fourth cube exists: nothing is written, where cubes 0-2 used to be first.
    (tmp_path / "sim3_sky.fits").write_bytes(b"earlier")
    assert main(["simulate", "--n", "4", "--output", str(tmp_path), "--quiet", *SMALL]) == 1
    err = capsys.readouterr().err
    assert f"output exists: {tmp_path / 'sim3_sky.fits'} (pass --overwrite" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim3_sky.fits"]
    assert main(["simulate", "--n", "4", "--output", str(tmp_path), "--quiet", "--overwrite", *SMALL]) == 0
    assert len(list(tmp_path.glob("sim*_dirty.fits"))) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "C-42"], "unknown antenna configuration 'C-42'"),
        (["--channel-width", "-1"], "channel_width must be positive"),
        (["--pwv", "80"], "pwv 80.0 mm outside the atmosphere table"),
        (["--psf-file", "missing.fits"], "cannot read PSF FITS file 'missing.fits'"),
        (["--integration", "5000"], "integration 5000.0 s is longer than total_time 300.0 s"),
        (["--dec", "60"], "or raise pixels_per_beam"),  # no --cell given: say what else to change
        (["--cell", "100"], "cell 100 arcsec is too large for the longest baseline: choose a cell of"),
        ([], None),  # no --output
    ],
)
def test_bad_input_is_one_line_error(tmp_path, capsys, args, message):
    argv = ["simulate", *SMALL, *args]
    if message is not None:
        argv += ["--output", str(tmp_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("deepfocus simulate: error: ")
    assert len(err.strip().splitlines()) == 1
    assert (message or "needs --output") in err
    assert not any(p.suffix == ".fits" for p in tmp_path.iterdir())


def test_too_large_cell_does_not_warn(tmp_path):
    # The error comes before the imaging weights, which would warn of a 0 / 0.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert main(["simulate", "--output", str(tmp_path), "--cell", "100", *SMALL]) == 1


def test_negative_seed_is_refused(tmp_path, capsys):
    # As train and optimize refuse it: one line, exit status 1.
    assert main(["simulate", "--output", str(tmp_path), "--seed", "-1", *SMALL]) == 1
    err = capsys.readouterr().err
    assert err == "deepfocus simulate: error: seed must be a non-negative integer, got -1\n"
    assert not any(tmp_path.iterdir())


def test_existing_output_needs_overwrite(tmp_path, capsys):
    argv = ["simulate", "--output", str(tmp_path), "--quiet", *SMALL]
    assert main(argv) == 0
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "output exists" in err and "(pass --overwrite to replace" in err
    assert main(argv + ["--overwrite"]) == 0


def test_list_configurations(capsys):
    assert main(["simulate", "--list-configurations"]) == 0
    names = capsys.readouterr().out.split()
    assert "alma.cycle10.10" in names and "aca.cycle10" in names


def test_entry_point_runs_without_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepfocus",
            "simulate",
            "--output",
            str(tmp_path),
            "--config",
            "nope",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "unknown antenna configuration" in result.stderr


def test_simulate_warns_once_when_lines_are_wider_than_half_the_band(tmp_path):
    # SMALL has 8 channels, the wide recipe's lines up to 20: one warning for the two cubes.
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert main(["simulate", "--n", "2", "--output", str(tmp_path), "--quiet", *SMALL]) == 0
    (message,) = [str(w.message) for w in record if issubclass(w.category, DeepFocusWarning)]
    assert "up to 20 channels" in message and "at least 40 channels (n_channels, --channels)" in message


def test_simulate_defaults_do_not_warn(tmp_path):
    # The default band (64 channels) with a small image, to keep it quick.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeepFocusWarning)
        argv = ["simulate", "--output", str(tmp_path), "--quiet", "--npix", "32", "--total-time", "300"]
        assert main(argv) == 0
        assert main([*argv, "--recipe", "paper", "--overwrite"]) == 0
