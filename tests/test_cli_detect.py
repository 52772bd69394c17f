"""``deepfocus detect`` and ``deepfocus evaluate``, run as a user would."""

import json
import os

import astropy.units as u
import numpy as np
import pytest
from regions import EllipseSkyRegion, Regions

from deepfocus.cli import main
from deepfocus.detection.tests import helpers
from deepfocus.detection.tests.bad_inputs import BAD_INPUTS, write_bad_input
from deepfocus.detection.tests.fixtures import *  # noqa: F403
from deepfocus.io import read_catalog, validate_catalog

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def detect(*args):
    return main(["detect", *map(str, args)])


@pytest.fixture(scope="module")
def cli_run(bright_files, tmp_path_factory):
    """One classical ``deepfocus detect`` run with every output; returns the output paths."""
    out = tmp_path_factory.mktemp("detect")
    paths = {"catalog": out / "cat.ecsv", "ds9": out / "cat.reg", "plot": out / "cat.png"}
    code = detect(
        bright_files["dirty"], "--output", paths["catalog"], "--regions", paths["ds9"],
        "--plot", paths["plot"], "--model", "none", "--quiet",
    )  # fmt: skip
    assert code == 0
    return paths


def test_catalog_file(cli_run, classical_catalog):
    catalog = read_catalog(cli_run["catalog"])
    validate_catalog(catalog)
    assert len(catalog) == len(classical_catalog)
    assert np.allclose(catalog["x_centroid"].value, classical_catalog["x_centroid"].value)
    assert np.allclose(catalog["flux"].value, classical_catalog["flux"].value)
    assert catalog.meta["parameters"]["snr_threshold"] == 6.0
    assert catalog.meta["version"] == classical_catalog.meta["version"]


@pytest.mark.parametrize(("suffix", "fmt"), [(".reg", "ds9"), (".crtf", "crtf")])
def test_regions_round_trip(cli_run, bright_files, tmp_path, suffix, fmt):
    path = tmp_path / f"cat{suffix}"
    assert (
        detect(bright_files["dirty"], "--output", tmp_path / "c.ecsv", "--regions", path, "--model", "none")
        == 0
    )
    catalog = read_catalog(tmp_path / "c.ecsv")
    regions = Regions.read(path, format=fmt)
    assert len(regions) == len(catalog)
    assert all(isinstance(r, EllipseSkyRegion) for r in regions)
    centres = [r.center.icrs for r in regions]
    for region, centre, row in zip(regions, centres, catalog, strict=True):
        assert centre.separation(row["sky_centroid"]) < 1 * u.mas
        major = max(region.width, region.height)
        expected = (
            row["fwhm_major"] if row["fwhm_major"] > 0 else catalog.meta["beam_major_arcsec"] * u.arcsec
        )
        assert np.isclose(major.to_value(u.arcsec), expected.to_value(u.arcsec), rtol=1e-5)
    if fmt == "crtf":
        text = path.read_text()
        assert "coord=ICRS" in text or "coord=icrs" in text.lower()
        assert text.count("range=[") == len(catalog)  # each region carries its line's frequencies
        assert "GHz" in text


def test_region_format_option_overrides_the_suffix(bright_files, tmp_path):
    path = tmp_path / "cat.txt"
    argv = [bright_files["dirty"], "--output", tmp_path / "c.ecsv", "--model", "none", "--quiet"]
    assert detect(*argv, "--regions", path, "--region-format", "crtf") == 0
    assert path.read_text().startswith("#CRTF")


def test_plot(cli_run, classical_catalog, bright_files):
    assert cli_run["plot"].read_bytes()[:8] == PNG_SIGNATURE
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy.visualization.wcsaxes import WCSAxes
    from matplotlib.patches import Ellipse

    from deepfocus.visualization import plot_detections

    figure = plot_detections(bright_files["dirty"], classical_catalog)
    try:
        (ax,) = [a for a in figure.axes if isinstance(a, WCSAxes)]
        ellipses = [p for p in ax.patches if isinstance(p, Ellipse)]
        assert len(ellipses) == len(classical_catalog)
        assert ax.wcs.wcs.ctype[0].startswith("RA") and ax.wcs.wcs.ctype[1].startswith("DEC")
        assert "RA" in ax.coords[0].get_axislabel() and "Dec" in ax.coords[1].get_axislabel()
        assert f"{len(classical_catalog)} detections" in ax.get_title()
    finally:
        plt.close(figure)


def test_input_file_is_unchanged(casa_file, tmp_path):
    before = casa_file.read_bytes()
    mtime = os.stat(casa_file).st_mtime_ns
    assert detect(casa_file, "--output", tmp_path / "c.fits", "--model", "none", "--quiet") == 0
    assert casa_file.read_bytes() == before
    assert os.stat(casa_file).st_mtime_ns == mtime
    assert len(read_catalog(tmp_path / "c.fits")) == len(helpers.BRIGHT_SOURCES)


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_a_one_line_error(name, bright_files, tmp_path, capsys):
    path = write_bad_input(name, bright_files["dirty"], tmp_path)
    output = tmp_path / "cat.ecsv"
    assert detect(path, "--output", output, "--model", "none") == 1
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("deepfocus detect: error: ")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err + captured.out
    assert BAD_INPUTS[name] in err
    assert not output.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--snr-threshold", "-1"], "snr_threshold must be a positive number"),
        (["--snr-threshold", "nan"], "snr_threshold must be a finite number"),
        (
            ["--model", "no-such-model"],
            "model 'no-such-model': no such folder or weights file, and not a shipped model "
            "(shipped: default)",
        ),
        (["--regions", "cat.txt"], "cat.txt: use a .reg (DS9) or .crtf (CRTF) name, or give --region-format"),
        (["--forward-fit", "psf"], "needs the cube's PSF: give psf (--psf FILE"),
    ],
)
def test_bad_options_are_one_line_errors(bright_files, tmp_path, capsys, args, message):
    args = [str(tmp_path / a) if a.endswith(".txt") else a for a in args]
    argv = [bright_files["dirty"], "--output", tmp_path / "cat.ecsv", *args]
    if "--model" not in args:
        argv += ["--model", "none"]
    assert detect(*argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("deepfocus detect: error: ") and len(err.strip().splitlines()) == 1
    assert message in err


def test_forward_fit_option(cli_run, bright_files, tmp_path):
    # 'none' keeps the Gaussian fit's measurements; 'beam' refits them through the restoring beam.
    plain = read_catalog(cli_run["catalog"])
    for choice, same in (("none", True), ("beam", False)):
        out = tmp_path / f"{choice}.ecsv"
        assert (
            detect(
                bright_files["dirty"], "--output", out, "--model", "none", "--forward-fit", choice, "--quiet"
            )
            == 0
        )
        fluxes = read_catalog(out)["flux"].value
        assert np.allclose(fluxes, plain["flux"].value, rtol=1e-6) == same


def test_pb_option_divides_fluxes_by_the_primary_beam(cli_run, bright_files, tmp_path, capsys):
    from astropy.io import fits

    with fits.open(bright_files["dirty"]) as hdul:
        hdul[0].data = hdul[0].data * np.float32(0.5)  # attenuated sky and noise: same S/N
        hdul.writeto(tmp_path / "attenuated.fits")
        gain = np.full((1,) + hdul[0].data.shape[-3:], 0.5, np.float32)  # a Stokes axis, as exportfits
    fits.PrimaryHDU(gain).writeto(tmp_path / "attenuated.pb.fits")
    out = tmp_path / "pbcor.ecsv"
    argv = [tmp_path / "attenuated.fits", "--output", out, "--model", "none", "--quiet"]
    assert detect(*argv, "--pb", tmp_path / "attenuated.pb.fits") == 0
    plain = read_catalog(cli_run["catalog"])
    corrected = read_catalog(out)
    assert np.allclose(corrected["flux"].value, plain["flux"].value, rtol=1e-4)
    assert corrected.meta["primary_beam_corrected"] is True
    assert detect(*argv, "--pb", tmp_path / "missing.fits", "--overwrite") == 1
    err = capsys.readouterr().err
    assert err.startswith("deepfocus detect: error: no primary-beam file")
    assert len(err.strip().splitlines()) == 1


def test_pb_of_a_corrected_cube_is_refused(bright_files, tmp_path, capsys):
    # tclean's .image.pbcor is already divided by the primary beam: with --pb (a file, auto or
    # a batch's auto) it would be divided again, so it is refused before anything is written.
    import shutil

    from astropy.io import fits

    cube = tmp_path / "obs.image.pbcor.fits"
    shutil.copy(bright_files["dirty"], cube)
    with fits.open(cube) as hdul:
        fits.PrimaryHDU(np.full(hdul[0].data.shape, 0.5, np.float32)).writeto(tmp_path / "obs.pb.fits")
    out = tmp_path / "out.ecsv"
    for pb in (tmp_path / "obs.pb.fits", "auto"):
        assert detect(cube, "--output", out, "--model", "none", "--quiet", "--pb", pb) == 1
        err = capsys.readouterr().err
        assert "obs.image.pbcor.fits is already primary-beam corrected" in err
        assert len(err.strip().splitlines()) == 1
    assert not out.exists()
    batch = tmp_path / "batch"
    assert detect(cube, "--output-dir", batch, "--model", "none", "--quiet", "--pb", "auto") == 1
    assert "already primary-beam corrected" in capsys.readouterr().err
    assert not batch.exists() or not list(batch.glob("*.ecsv"))
    # Without --pb the corrected cube is detected as it is.
    assert detect(cube, "--output", out, "--model", "none", "--quiet") == 0


def test_existing_output_needs_overwrite(cli_run, bright_files, capsys):
    before = cli_run["catalog"].read_bytes()
    assert detect(bright_files["dirty"], "--output", cli_run["catalog"], "--model", "none") == 1
    assert "output exists" in capsys.readouterr().err
    assert cli_run["catalog"].read_bytes() == before


def test_nothing_found_writes_an_empty_catalog(cli_run, tmp_path, capsys):
    noise = helpers.write_simulation(helpers.simulation((), seed=5), tmp_path, "noise")
    outputs = {
        "catalog": tmp_path / "empty.ecsv",
        "fits": tmp_path / "empty.fits",
        "crtf": tmp_path / "empty.crtf",
        "plot": tmp_path / "empty.png",
    }
    argv = [noise["dirty"], "--snr-threshold", "50", "--model", "none"]
    code = detect(
        *argv, "--output", outputs["catalog"], "--regions", outputs["crtf"], "--plot", outputs["plot"]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "no sources found" in captured.err and "Traceback" not in captured.err
    assert detect(*argv, "--output", outputs["fits"], "--quiet") == 0
    for key in ("catalog", "fits"):
        catalog = read_catalog(outputs[key])
        assert len(catalog) == 0
        validate_catalog(catalog)  # the contract's columns, with no rows
        # and those of a catalogue with sources, so that the catalogues of many cubes stack
        assert catalog.colnames == read_catalog(cli_run["catalog"]).colnames
        assert catalog.meta["parameters"]["snr_threshold"] == 50.0
    assert len(Regions.read(outputs["crtf"], format="crtf")) == 0
    # A DS9 file without regions still has its header and frame (regions writes 0 bytes).
    ds9 = tmp_path / "empty.reg"
    assert detect(*argv, "--output", tmp_path / "again.ecsv", "--regions", ds9, "--quiet") == 0
    assert ds9.read_text().startswith("# Region file format: DS9")
    assert len(Regions.read(ds9, format="ds9")) == 0
    assert outputs["plot"].read_bytes()[:8] == PNG_SIGNATURE
    # An empty catalogue scores as nothing found.
    assert (
        main(["evaluate", "--truth", str(noise["truth"]), "--catalog", str(outputs["catalog"]), "--quiet"])
        == 0
    )


def test_network_model_folder(bright_files, tiny_weights, tmp_path):
    paths = {"catalog": tmp_path / "net.xml", "plot": tmp_path / "net.png"}
    argv = [bright_files["dirty"], "--model", tiny_weights, "--quiet"]
    assert detect(*argv, "--output", paths["catalog"], "--plot", paths["plot"]) == 0
    catalog = read_catalog(paths["catalog"])  # VOTable
    assert len(catalog) >= 1
    validate_catalog(catalog)
    for task in ("spectral", "deconvolver", "characterizer"):
        assert catalog.meta["models"][task]["name"].endswith(f"{task}-default.safetensors")
    for name in ("x_centroid", "flux", "fwhm_major", "position_angle"):
        assert np.all(np.isfinite(np.asarray(catalog[name])))
    assert paths["plot"].read_bytes()[:8] == PNG_SIGNATURE


def test_weights_folder_as_train_writes_it(bright_files, tiny_weights, tmp_path, capsys):
    # `deepfocus train --preset tiny --output w` writes <task>-tiny.*: --model w takes them; a
    # task's weights under another task's name are a one-line error.
    import shutil

    folder = tmp_path / "w"
    folder.mkdir()
    for task in ("spectral", "deconvolver", "characterizer"):
        for ext in (".safetensors", ".json"):
            shutil.copyfile(tiny_weights / f"{task}-default{ext}", folder / f"{task}-tiny{ext}")
    argv = [bright_files["dirty"], "--model", folder, "--quiet"]
    assert detect(*argv, "--output", tmp_path / "w.ecsv") == 0
    catalog = read_catalog(tmp_path / "w.ecsv")
    for task in ("spectral", "deconvolver", "characterizer"):
        assert catalog.meta["models"][task]["name"] == str(folder / f"{task}-tiny.safetensors")
    for ext in (".safetensors", ".json"):
        (folder / f"characterizer-tiny{ext}").unlink()
        shutil.copyfile(tiny_weights / f"deconvolver-default{ext}", folder / f"characterizer-tiny{ext}")
    assert detect(*argv, "--output", tmp_path / "x.ecsv") == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "holds deconvolver weights, not characterizer weights" in err


def test_example_cube(tmp_path, capsys):
    assert detect("--example", "--output", tmp_path / "ex.ecsv", "--model", "none") == 0
    assert "sources ->" in capsys.readouterr().out
    assert len(read_catalog(tmp_path / "ex.ecsv")) >= 1


def test_example_is_measured_through_its_psf(tmp_path, capsys):
    # The quick start: the shipped networks and the example's PSF find every source of its truth
    # and measure those of S/N >= 5; the S/N 3 one is found 3.9 pixels from its true position,
    # where its faint line image peaks, beyond the matching radius (2.5 pixels).
    from importlib import resources

    from deepfocus.evaluation import evaluate

    assert detect("--example", "--output", tmp_path / "ex.ecsv", "--quiet") == 0
    catalog = read_catalog(tmp_path / "ex.ecsv")
    assert catalog.meta["forward_fit"] == "psf"
    truth = read_catalog(resources.files("deepfocus.data") / "example_truth.ecsv")
    scores = evaluate(truth, catalog)
    assert len(catalog) == len(truth) == 5
    bright = truth[truth["snr"] >= 5]
    assert evaluate(bright, catalog)["n_matched"] == len(bright) == 4
    faint = truth[truth["snr"] < 5][0]
    distance = np.hypot(
        catalog["x_centroid"].value - faint["x_centroid"].value,
        catalog["y_centroid"].value - faint["y_centroid"].value,
    )
    assert distance.min() < 5  # within a beam (5 pixels)
    assert scores["flux_within_10pct"] >= 0.75
    # The example is a cube of its own.
    assert detect("--example", tmp_path / "ex.ecsv", "--output", tmp_path / "ex3.ecsv") == 1
    assert "give --example or a CUBE, not both" in capsys.readouterr().err
    # Another PSF given explicitly wins over the example's.
    assert detect("--example", "--output", tmp_path / "ex2.ecsv", "--psf", tmp_path / "none.fits") == 1
    assert "no PSF file" in capsys.readouterr().err


def test_summary_counts_sources_outside_the_training_range(tmp_path, capsys):
    assert detect("--example", "--output", tmp_path / "ex.ecsv", "--quiet") == 0
    assert capsys.readouterr().out == ""
    assert detect("--example", "--output", tmp_path / "ex2.ecsv") == 0
    out = capsys.readouterr().out
    flags = np.asarray(read_catalog(tmp_path / "ex2.ecsv")["flags"])
    n = int(np.count_nonzero(flags & 16))
    if n:
        assert f"({n} outside the networks' training range: flag 16)" in out
    else:
        assert "training range" not in out


def test_evaluate_writes_json(cli_run, bright_files, tmp_path, capsys):
    path = tmp_path / "scores.json"
    code = main(["evaluate", "--truth", str(bright_files["truth"]), "--catalog", str(cli_run["catalog"]),
                 "--json", str(path)])  # fmt: skip
    assert code == 0
    assert "completeness" in capsys.readouterr().out
    scores = json.loads(path.read_text())
    assert {"completeness", "purity", "f1"} <= set(scores)
    assert scores["completeness"] == 1.0 and scores["purity"] == 1.0 and scores["f1"] == 1.0


def test_evaluate_notes_when_nothing_matches(cli_run, bright_files, tmp_path, capsys):
    # The catalogue of one cube scored against another cube's truth: a note, not silence.
    from astropy.table import QTable

    truth = QTable.read(bright_files["truth"])
    truth["x_centroid"] = truth["x_centroid"] + 30 * truth["x_centroid"].unit
    truth.write(tmp_path / "other_truth.ecsv")
    argv = ["evaluate", "--truth", str(tmp_path / "other_truth.ecsv"), "--catalog", str(cli_run["catalog"])]
    assert main([*argv, "--quiet"]) == 0
    assert "are the catalogue and the truth of the same cube?" in capsys.readouterr().err
    assert (
        main(["evaluate", "--truth", str(bright_files["truth"]), "--catalog", str(cli_run["catalog"])]) == 0
    )
    assert capsys.readouterr().err == ""


def test_evaluate_notes_a_truth_of_another_pixel_size(cli_run, bright_files, tmp_path, capsys):
    # The truth of a cube imaged with other pixels: some sources may still match by chance.
    from astropy.table import QTable

    truth = QTable.read(bright_files["truth"])
    cell = float(truth.meta["cell_arcsec"])
    truth.meta["cell_arcsec"] = 1.05 * cell
    truth.write(tmp_path / "other_truth.ecsv")
    argv = ["evaluate", "--truth", str(tmp_path / "other_truth.ecsv"), "--catalog", str(cli_run["catalog"])]
    assert main([*argv, "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deepfocus evaluate: note: ")
    assert f"the truth's pixel size is {1.05 * cell:.4g} arcsec, the catalogue's {cell:.4g} arcsec" in err[0]


def test_evaluate_bad_input_is_a_one_line_error(bright_files, tmp_path, capsys):
    argv = ["evaluate", "--truth", str(bright_files["truth"]), "--catalog", str(tmp_path / "none.ecsv")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("deepfocus evaluate: error: ") and len(err.strip().splitlines()) == 1
    assert "no such file" in err


@pytest.mark.parametrize("option", ["--output", "--plot", "--regions"])
def test_overwrite_never_replaces_the_input_cube(bright_files, tmp_path, capsys, option):
    cube = tmp_path / "cube.fits"
    cube.write_bytes(bright_files["dirty"].read_bytes())
    before = cube.read_bytes()
    outputs = {"--output": tmp_path / "c.ecsv", option: cube}
    argv = [cube, *(a for item in outputs.items() for a in item), "--model", "none", "--overwrite"]
    assert detect(*argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"deepfocus detect: error: {option} ") and "is the input CUBE" in err
    assert cube.read_bytes() == before
    assert not (tmp_path / "c.ecsv").exists()


def test_outputs_must_be_different_files(bright_files, tmp_path, capsys):
    out = tmp_path / "c.ecsv"
    assert detect(bright_files["dirty"], "--output", out, "--regions", out, "--model", "none") == 1
    assert "--regions and --output are the same file" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("suffix", "signature"), [(".pdf", b"%PDF"), (".svg", b"<?xml"), (".svgz", b"<?xml")]
)
def test_plot_is_written_in_the_format_of_its_suffix(bright_files, tmp_path, suffix, signature):
    import gzip

    plot = tmp_path / f"cat{suffix}"
    argv = [bright_files["dirty"], "--output", tmp_path / "c.ecsv", "--model", "none", "--quiet"]
    assert detect(*argv, "--plot", plot) == 0
    data = plot.read_bytes()
    assert (gzip.decompress(data) if suffix == ".svgz" else data).startswith(signature)


def test_plot_suffix_that_matplotlib_cannot_write_is_refused_before_the_run(bright_files, tmp_path, capsys):
    out = tmp_path / "c.ecsv"
    assert (
        detect(bright_files["dirty"], "--output", out, "--plot", tmp_path / "p.fits", "--model", "none") == 1
    )
    err = capsys.readouterr().err
    assert "cannot write a plot as .fits" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # refused before the pipeline ran


def test_catalogue_suffix_is_checked_before_the_run(bright_files, tmp_path, capsys, monkeypatch):
    # Before, a name like cat.txt failed after the whole run, with the regions and plot written.
    import deepfocus.pipeline

    monkeypatch.setattr(
        deepfocus.pipeline.DeepFocus, "__call__", lambda *a, **k: pytest.fail("the pipeline ran")
    )
    regions, plot = tmp_path / "c.crtf", tmp_path / "c.png"
    code = detect(bright_files["dirty"], "--output", tmp_path / "c.txt", "--regions", regions, "--plot", plot)
    assert code == 1
    err = capsys.readouterr().err
    assert "cannot tell the catalogue format from 'c.txt'" in err and len(err.strip().splitlines()) == 1
    assert sorted(tmp_path.iterdir()) == []


def test_a_psf_beside_the_cube_that_is_not_given_is_noted(tmp_path, capsys):
    from importlib.resources import files

    data = files("deepfocus.data")
    cube, psf = tmp_path / "obs.image.fits", tmp_path / "obs.psf.fits"
    cube.write_bytes((data / "example_dirty.fits").read_bytes())
    psf.write_bytes((data / "example_psf.fits").read_bytes())
    argv = [cube, "--model", "none", "--output"]
    assert detect(*argv, tmp_path / "a.ecsv") == 0
    assert (
        "note: obs.psf.fits lies beside the cube but is not used: give --psf auto" in capsys.readouterr().err
    )
    assert detect(*argv, tmp_path / "b.ecsv", "--psf", "auto") == 0
    assert "note:" not in capsys.readouterr().err
    assert detect(*argv, tmp_path / "c.ecsv", "--quiet") == 0
    assert capsys.readouterr().err == ""


def test_output_under_a_file_names_the_file(bright_files, tmp_path, capsys):
    blocker = tmp_path / "notafolder"
    blocker.write_text("x")
    out = blocker / "c.ecsv"
    assert detect(bright_files["dirty"], "--output", out, "--model", "none", "--quiet") == 1
    err = capsys.readouterr().err
    assert f"cannot write {out}: {blocker} is a file, not a folder" in err
    assert blocker.read_text() == "x"
