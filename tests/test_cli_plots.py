"""The plot options of the command line: ``evaluate --plot``, ``train --plot``, ``detect --plot-sources``."""

import json
from importlib import resources

import pytest
import torch
from astropy.table import QTable

from deepfocus.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXAMPLE_TRUTH = resources.files("deepfocus.data") / "example_truth.ecsv"


@pytest.fixture(autouse=True)
def single_thread():
    """One torch thread (the commands may change it; restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _png(path):
    return path.is_file() and path.read_bytes()[:8] == PNG_SIGNATURE


def test_evaluate_plot(tmp_path, capsys):
    catalog = QTable.read(EXAMPLE_TRUTH)[:3]
    catalog.write(tmp_path / "cat.ecsv")
    plot = tmp_path / "out" / "diagnostics.png"
    args = ["evaluate", "--truth", str(EXAMPLE_TRUTH), "--catalog", str(tmp_path / "cat.ecsv")]
    assert main([*args, "--plot", str(plot), "--quiet"]) == 0
    assert _png(plot)
    assert capsys.readouterr().out == ""
    assert not [p for p in plot.parent.iterdir() if p.name.endswith(".part")]  # written atomically


def test_evaluate_outputs_never_replace_its_inputs(tmp_path, capsys):
    catalog = tmp_path / "cat.ecsv"
    QTable.read(EXAMPLE_TRUTH)[:3].write(catalog)
    before = catalog.read_bytes()
    args = ["evaluate", "--truth", str(EXAMPLE_TRUTH), "--catalog", str(catalog)]
    assert main([*args, "--json", str(catalog)]) == 1
    assert "--json" in (err := capsys.readouterr().err) and "is the input --catalog" in err
    assert main([*args, "--plot", str(tmp_path / "d.fits")]) == 1
    assert "cannot write a plot as .fits" in capsys.readouterr().err
    assert catalog.read_bytes() == before


def test_evaluate_refuses_existing_outputs_without_overwrite(tmp_path, capsys):
    # As detect and deconvolve: an existing --json or --plot (here a catalogue) is refused before
    # anything is scored, and replaced only with --overwrite.
    catalog = tmp_path / "cat.ecsv"
    QTable.read(EXAMPLE_TRUTH)[:3].write(catalog)
    victim, plot = tmp_path / "victim.ecsv", tmp_path / "d.png"
    victim.write_bytes(catalog.read_bytes())
    plot.write_bytes(b"old")
    before = victim.read_bytes()
    args = ["evaluate", "--truth", str(EXAMPLE_TRUTH), "--catalog", str(catalog), "--quiet"]
    assert main([*args, "--json", str(victim)]) == 1
    assert capsys.readouterr().err == (
        f"deepfocus evaluate: error: output exists: --json {victim} (use --overwrite)\n"
    )
    assert main([*args, "--json", str(tmp_path / "new.json"), "--plot", str(plot)]) == 1
    assert f"output exists: --plot {plot} (use --overwrite)" in capsys.readouterr().err
    assert victim.read_bytes() == before and plot.read_bytes() == b"old"
    assert not (tmp_path / "new.json").exists()  # refused before any output is written
    bad_truth = ["evaluate", "--truth", str(tmp_path / "none.ecsv"), "--catalog", str(catalog)]
    assert main([*bad_truth, "--json", str(victim)]) == 1  # before the truth is even read
    assert "(use --overwrite)" in capsys.readouterr().err
    # A folder is no file to replace, even with --overwrite.
    assert main([*args, "--json", str(tmp_path), "--overwrite"]) == 1
    assert f"--json {tmp_path} is a folder, not a file" in capsys.readouterr().err
    assert main([*args, "--json", str(victim), "--plot", str(plot), "--overwrite"]) == 0
    assert "completeness" in json.loads(victim.read_text())
    assert _png(plot)
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]  # written atomically


def test_evaluate_plot_bad_truth(tmp_path, capsys):
    plot = tmp_path / "d.png"
    args = ["evaluate", "--truth", str(tmp_path / "none.ecsv"), "--catalog", str(EXAMPLE_TRUTH)]
    assert main([*args, "--plot", str(plot)]) == 1
    assert "no such file" in capsys.readouterr().err
    assert not plot.exists()


def _toy_train(tasks, output_dir, *, preset="default", **kwargs):
    """Stands in for `deepfocus.training.train` (seconds of simulation and training saved): a real
    `Trainer` fits a linear model and writes ``<task>-<preset>.csv`` as ``train`` does."""
    from pathlib import Path

    from deepfocus.training import Trainer, TrainingSettings

    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.TensorDataset(x, x.sum(dim=1, keepdim=True))
    cards = {}
    for task in [tasks] if isinstance(tasks, str) else tasks:
        log = Path(output_dir) / f"{task}-{preset}.csv"
        settings = TrainingSettings(epochs=3, batch_size=8)
        Trainer(
            torch.nn.Linear(2, 1), torch.nn.functional.mse_loss, settings, log_path=log, progress=False
        ).fit(data, data)
        cards[task] = {"metrics": {}, "training": {"training_seconds": 0.0}}
    return cards


def test_train_plot(tmp_path, monkeypatch):
    import deepfocus.training

    monkeypatch.setattr(deepfocus.training, "train", _toy_train)
    args = ["train", "--task", "spectral", "--preset", "tiny", "--output", str(tmp_path), "--quiet"]
    assert main([*args, "--threads", "1", "--plot"]) == 0
    assert _png(tmp_path / "spectral-tiny.png")
    (tmp_path / "spectral-tiny.png").unlink()
    assert main([*args, "--threads", "1"]) == 0  # without --plot, no figure
    assert not (tmp_path / "spectral-tiny.png").exists()


def test_detect_plot_sources(tmp_path, capsys):
    folder = tmp_path / "sources"
    args = ["detect", "--example", "--output", str(tmp_path / "cat.ecsv"), "--model", "none", "--quiet"]
    assert main([*args, "--plot-sources", str(folder)]) == 0
    catalog = QTable.read(tmp_path / "cat.ecsv")
    assert len(catalog) > 0
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"source_{i}.png" for i in catalog["id"])
    assert all(_png(p) for p in folder.iterdir())
    # Existing source plots are outputs: not replaced without --overwrite.
    (tmp_path / "cat.ecsv").unlink()
    assert main([*args, "--plot-sources", str(folder)]) == 1
    assert "source_1.png" in capsys.readouterr().err


def test_detect_plot_sources_overwrite_removes_stale_plots(tmp_path):
    folder = tmp_path / "sources"
    folder.mkdir()
    # A plot of a source an earlier run found (not in the new catalogue) and files that are not
    # deepfocus plots, which must be left alone.
    stale = folder / "source_999.png"
    stale.write_bytes(PNG_SIGNATURE)
    keep = ["notes.txt", "source_01.png", "source_x.png"]
    for name in keep:
        (folder / name).write_text("mine")
    (folder / "source_998.png").mkdir()  # a folder, even with the name, is never removed
    args = ["detect", "--example", "--output", str(tmp_path / "cat.ecsv"), "--model", "none", "--quiet"]
    assert main([*args, "--plot-sources", str(folder), "--overwrite"]) == 0
    catalog = QTable.read(tmp_path / "cat.ecsv")
    assert 0 < len(catalog) < 999
    assert not stale.exists()
    plots = sorted(p.name for p in folder.glob("source_*.png") if p.name not in keep and p.is_file())
    assert plots == sorted(f"source_{i}.png" for i in catalog["id"])
    assert all(_png(folder / name) for name in plots)
    assert all((folder / name).read_text() == "mine" for name in keep)
    assert (folder / "source_998.png").is_dir()
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]  # written atomically


def test_detect_plot_sources_keeps_old_plots_when_plotting_fails(tmp_path, monkeypatch):
    import deepfocus.visualization

    folder = tmp_path / "sources"
    folder.mkdir()
    stale = folder / "source_999.png"
    stale.write_bytes(PNG_SIGNATURE)

    def fail(*args, **kwargs):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(deepfocus.visualization, "plot_source", fail)
    args = ["detect", "--example", "--output", str(tmp_path / "cat.ecsv"), "--model", "none", "--quiet"]
    with pytest.raises(RuntimeError, match="plotting failed"):
        main([*args, "--plot-sources", str(folder), "--overwrite"])
    assert stale.exists()  # nothing removed before every new plot is written


@pytest.mark.parametrize(
    ("folder", "message"),
    [("cat.ecsv", "is the --output file"), ("blocker/sub", "blocker is a file, not a folder")],
)
def test_detect_plot_sources_folder_is_checked_before_the_run(tmp_path, capsys, folder, message):
    (tmp_path / "blocker").write_text("x")
    out = tmp_path / "cat.ecsv"
    args = ["detect", "--example", "--output", str(out), "--model", "none", "--quiet"]
    assert main([*args, "--plot-sources", str(tmp_path / folder)]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # refused before the run


def test_detect_plot_sources_needs_one_cube(tmp_path, capsys):
    args = ["detect", "--example", "--output-dir", str(tmp_path / "o"), "--plot-sources", str(tmp_path / "s")]
    assert main(args) == 1
    assert "--plot-sources applies to one cube" in capsys.readouterr().err
