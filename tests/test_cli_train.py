"""``deepfocus train``, run as a user would (with the seconds-long 'tiny' preset)."""

import json

import pytest
import torch

from deepfocus.cli import main
from deepfocus.training import PRESETS


@pytest.fixture(autouse=True)
def single_thread():
    """One torch thread (the command may change it; restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_train_tiny(tmp_path, capsys):
    args = ["train", "--task", "spectral", "--preset", "tiny", "--output", str(tmp_path), "--quiet"]
    assert main([*args, "--threads", "1", "--seed", "4"]) == 0
    assert capsys.readouterr().out == ""
    names = {p.name for p in tmp_path.iterdir()}
    expected = {"spectral-tiny.csv", "spectral-tiny.json", "spectral-tiny.safetensors", "training-tiny.json"}
    assert expected <= names
    assert all(name.endswith(".npz") for name in names - expected)  # at most a data cache
    card = json.loads((tmp_path / "spectral-tiny.json").read_text())
    assert card["task"] == "spectral" and card["training"]["seed"] == 4
    assert "--preset tiny" in card["training"]["command"]


def test_train_prints_metrics(tmp_path, capsys):
    assert main(["train", "--task", "characterizer", "--preset", "tiny", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("characterizer: ") and "loss=" in out


def test_bad_preset(tmp_path, capsys):
    code = main(["train", "--task", "spectral", "--preset", "huge", "--output", str(tmp_path / "o")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("deepfocus train: error: unknown preset 'huge'")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_config_for_all_is_refused(tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text("{}")
    code = main(["train", "--preset", "tiny", "--config", str(config), "--output", str(tmp_path / "o")])
    assert code == 1
    assert capsys.readouterr().err.startswith("deepfocus train: error: --config applies to one task")


def test_bad_task_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--task", "imager", "--output", "x"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "deepfocus train --task all --preset default --output weights" in out


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.startswith("deepfocus train: error: ") and err.count("\n") == 1, err
    assert all(needle in err for needle in needles), err


def test_existing_weights_need_overwrite(tmp_path, capsys):
    weights = tmp_path / "spectral-tiny.safetensors"
    weights.write_bytes(b"old")
    args = ["train", "--task", "spectral", "--preset", "tiny", "--output", str(tmp_path), "--quiet"]
    assert main(args) == 1
    _one_line_error(capsys, str(weights), "--overwrite")
    assert weights.read_bytes() == b"old"
    assert main([*args, "--overwrite", "--threads", "1"]) == 0
    assert weights.read_bytes() != b"old"


def test_too_little_data_and_missing_data_are_one_line(tmp_path, capsys):
    """The review's workflow: cubes from ``deepfocus simulate`` too small for the characterizer."""
    sims = tmp_path / "sims"
    small = ["--npix", "32", "--channels", "16"]
    assert main(["simulate", "--n", "2", *small, "--output", str(sims), "--quiet"]) == 0
    out = tmp_path / "w1"
    args = ["train", "--task", "all", "--preset", "tiny", "--output", str(out), "--quiet"]
    assert main([*args, "--data", str(sims)]) == 1
    _one_line_error(capsys, "not enough data for characterizer (0 training, 0 validation", "more cubes")
    assert main([*args, "--data", str(tmp_path / "doesnotexist")]) == 1
    _one_line_error(capsys, "data folder", "doesnotexist does not exist")
    assert not out.exists()  # failed runs leave no output folder behind


def test_help_names_every_preset(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert all(f"{name} (" in out for name in PRESETS)


def test_bad_seed_config_output_and_data_are_one_line(tmp_path, capsys):
    """The review's refusals, each before any training and without a traceback."""
    out = tmp_path / "out"
    args = ["train", "--task", "spectral", "--preset", "tiny", "--quiet"]
    assert main([*args, "--output", str(out), "--seed", "-1"]) == 1
    _one_line_error(capsys, "seed must be a non-negative integer, got -1")
    config = tmp_path / "list.json"
    config.write_text("[1, 2]")
    assert main([*args, "--output", str(out), "--config", str(config)]) == 1
    _one_line_error(capsys, f"network config {config} holds an array, not a JSON object")
    assert not out.exists()
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main([*args, "--output", str(afile)]) == 1
    _one_line_error(capsys, f"output {afile} must be a folder")
    junk = tmp_path / "junk"
    junk.mkdir()
    for stem in ("a", "b"):
        for suffix in ("_dirty.fits", "_sky.fits", "_truth.ecsv"):
            (junk / f"{stem}{suffix}").write_text("hi")
    assert main([*args, "--output", str(out), "--data", str(junk)]) == 1
    _one_line_error(capsys, f"cannot read {junk / 'a_dirty.fits'}: ", "FITS")
    (junk / "a_truth.ecsv").unlink()
    assert main([*args, "--output", str(out), "--data", str(junk)]) == 1
    _one_line_error(capsys, "a_dirty.fits has no matching a_truth.ecsv\n")
    assert not out.exists()


def test_quiet_help_says_it_hides_the_summary(capsys):
    """As ``detect --quiet`` and ``simulate --quiet``: no progress bars and no summary."""
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--quiet no progress bars, no metrics summary" in out
