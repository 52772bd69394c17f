"""Batches of cubes: ``deepfocus.batch.detect_many`` and ``deepfocus detect --output-dir``."""

import os
import time
from pathlib import Path

import numpy as np
import pytest

from deepfocus.batch import detect_many, expand_cubes, local_client, output_paths, product_path, psf_path
from deepfocus.cli import main
from deepfocus.detection.tests import helpers
from deepfocus.detection.tests.bad_inputs import write_bad_input
from deepfocus.exceptions import InvalidInputError
from deepfocus.io import read_catalog


@pytest.fixture(scope="module")
def cubes(tmp_path_factory):
    """Three small simulated cubes (different noise and source seeds): ``a``, ``b``, ``c``."""
    folder = tmp_path_factory.mktemp("cubes")
    paths = []
    for name, seed in (("a", 4), ("b", 5), ("c", 6)):
        files = helpers.write_simulation(helpers.simulation(seed=seed), folder, name)
        paths.append(files["dirty"])
    return paths


def detect(*args):
    return main(["detect", *map(str, args)])


def test_corrupt_cube_is_reported_and_the_others_finish(cubes, tmp_path, capsys):
    bad = write_bad_input("truncated", cubes[0], tmp_path)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (cubes[0], bad, cubes[1])}
    out = tmp_path / "out"
    code = detect(cubes[0], bad, cubes[1], "--output-dir", out, "--model", "none", "--regions", "--quiet")
    assert code == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "truncated or corrupt" in err
    assert f"failed: {bad}: " in err and f"{bad}: {bad}" not in err  # named once on its line
    assert sorted(p.name for p in out.iterdir()) == [
        "a_dirty.ecsv",
        "a_dirty.reg",
        "b_dirty.ecsv",
        "b_dirty.reg",
    ]
    assert len(read_catalog(out / "b_dirty.ecsv")) > 0
    # Inputs, good and bad, are opened read-only and left as they were.
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in before} == before


def test_rerun_skips_finished_cubes_unless_overwrite(cubes, tmp_path):
    out = tmp_path / "out"
    first = detect_many(cubes[:2], out, model=None, progress=False)
    assert [r.status for r in first.results] == ["ok", "ok"]
    assert all(r.n_sources > 0 for r in first.results)
    catalog = out / "a_dirty.ecsv"
    os.utime(catalog, (1, 1))
    second = detect_many(cubes[:2], out, model=None, progress=False)
    assert [r.status for r in second.results] == ["skipped", "skipped"]
    assert catalog.stat().st_mtime == 1
    # A finished cube asked for an output it lacks (here a region file) is not run again
    # without --overwrite: that would replace its catalogue and leave its other products stale.
    third = detect_many(cubes[:2], out, model=None, regions="crtf", progress=False)
    assert [r.status for r in third.results] == ["failed", "failed"]
    assert "a_dirty.crtf does not (another run's outputs): use --overwrite" in third.results[0].error
    assert catalog.stat().st_mtime == 1 and not (out / "a_dirty.crtf").exists()
    # An unfinished cube (no catalogue: a run killed after its regions) runs again.
    (out / "b_dirty.ecsv").unlink()
    (out / "b_dirty.crtf").write_text("left by a killed run")
    again = detect_many(cubes[1:2], out, model=None, regions="crtf", progress=False)
    assert [r.status for r in again.results] == ["ok"]
    assert (out / "b_dirty.crtf").read_text().startswith("#CRTF")
    fourth = detect_many(cubes[:2], out, model=None, overwrite=True, progress=False)
    assert [r.status for r in fourth.results] == ["ok", "ok"]
    assert catalog.stat().st_mtime > 1
    assert "2 done, 0 skipped" in str(fourth)


def test_cli_rerun_and_overwrite(cubes, tmp_path, capsys):
    out = tmp_path / "out"
    assert detect(cubes[0], "--output-dir", out, "--model", "none") == 0
    assert "1 done, 0 skipped" in capsys.readouterr().out
    assert detect(cubes[0], "--output-dir", out, "--model", "none") == 0
    assert "0 done, 1 skipped" in capsys.readouterr().out
    assert detect(cubes[0], "--output-dir", out, "--model", "none", "--overwrite") == 0
    assert "1 done, 0 skipped" in capsys.readouterr().out


def test_local_cluster_gives_the_same_catalogues(cubes, tmp_path):
    alone = detect_many(cubes, tmp_path / "alone", model=None, progress=False)
    with local_client(2, processes=False) as client:
        spread = detect_many(cubes, tmp_path / "cluster", model=None, client=client, progress=False)
    assert spread.success and alone.success
    assert [r.cube for r in spread.results] == [str(c) for c in cubes]
    for cube in cubes:
        a = read_catalog(output_paths(cube, tmp_path / "alone")["catalog"])
        b = read_catalog(output_paths(cube, tmp_path / "cluster")["catalog"])
        helpers.assert_same_catalog(a, b)


def test_cluster_reports_a_failed_cube(cubes, tmp_path):
    missing = tmp_path / "missing.fits"
    with local_client(1, processes=False) as client:
        summary = detect_many(
            [missing, cubes[2]], tmp_path / "out", model=None, client=client, progress=False
        )
    assert [r.status for r in summary.results] == ["failed", "ok"]
    assert "no such file" in summary.failed[0].error
    assert str(missing) in str(summary)


def test_glob_patterns(cubes, tmp_path):
    pattern = str(cubes[0].parent / "*_dirty.fits")
    assert expand_cubes([pattern, cubes[0]]) == sorted(cubes)
    with pytest.raises(InvalidInputError, match="no file matches"):
        expand_cubes([str(tmp_path / "*.fits")])
    summary = detect_many(pattern, tmp_path / "out", model=None, progress=False)
    assert len(summary.ok) == 3


def test_patterns_leave_out_the_products_made_with_their_cubes(tmp_path, caplog):
    # A folder of tclean and deepfocus simulate products: obs/*.fits gives the cubes.
    tclean = [f"a.{end}.fits" for end in ("image", "psf", "pb", "residual", "model", "mask", "sumwt")]
    simulated = ["b_dirty.fits", "b_psf.fits", "b_pb.fits", "b_sky.fits"]
    others = ["c_pb.fits", "d.fits", "d.psf.fits.gz", "e.weight.fits"]  # c, e: no cube of theirs
    for name in tclean + simulated + others:
        (tmp_path / name).touch()
    with caplog.at_level("WARNING", logger="deepfocus"):
        found = expand_cubes(str(tmp_path / "*.fits*"))
    assert [p.name for p in found] == ["a.image.fits", "b_dirty.fits", "c_pb.fits", "d.fits", "e.weight.fits"]
    assert caplog.text.count("left out") == 10
    assert f"left out {tmp_path / 'a.pb.fits'}" in caplog.text
    assert f"made with {tmp_path / 'a.image.fits'}" in caplog.text
    # A file named is taken as it is.
    assert expand_cubes([tmp_path / "a.psf.fits"]) == [tmp_path / "a.psf.fits"]


def test_output_names_and_clashes(cubes, tmp_path):
    paths = output_paths(
        "obs/src1.image.fits.gz", tmp_path, catalog_format="votable", regions="crtf", plot=True
    )
    assert [p.name for p in paths.values()] == ["src1.image.xml", "src1.image.crtf", "src1.image.png"]
    other = tmp_path / "other"
    other.mkdir()
    twin = other / cubes[0].name
    twin.write_bytes(cubes[0].read_bytes())
    with pytest.raises(InvalidInputError, match="same output name"):
        detect_many([cubes[0], twin], tmp_path / "out", model=None, progress=False)


def test_psf_names_of_a_batch(tmp_path):
    for image in ("obs/src1.image.fits", "obs/src1.image.pbcor.fits", "obs/src1.residual.fits.gz"):
        assert psf_path(image, "auto") == Path("obs/src1.psf.fits")
    assert psf_path("obs/cube.fits", "auto") == Path("obs/cube.psf.fits")
    assert psf_path("obs/src1.image.fits", "psfs/{stem}_psf.fits") == Path("psfs/src1.image_psf.fits")
    for bad in ("one.psf.fits", "{name}.fits"):
        with pytest.raises(InvalidInputError, match="PSF"):
            psf_path("obs/src1.image.fits", bad)
    assert product_path("obs/src1.image.fits", "auto", "pb") == Path("obs/src1.pb.fits")
    with pytest.raises(InvalidInputError, match="already primary-beam corrected"):  # twice
        product_path("obs/src1.image.pbcor.fits", "auto", "pb")
    # deepfocus simulate's names, NAME_dirty.fits beside NAME_psf.fits and NAME_pb.fits, where
    # those files exist; CASA's naming otherwise.
    sims = tmp_path / "sims"
    sims.mkdir()
    (sims / "sim03_psf.fits").touch()
    assert psf_path(sims / "sim03_dirty.fits", "auto") == sims / "sim03_psf.fits"
    assert product_path(sims / "sim03_dirty.fits", "auto", "pb") == sims / "sim03_dirty.pb.fits"
    with pytest.raises(InvalidInputError, match="primary beam of many cubes"):
        product_path("obs/src1.image.fits", "one.pb.fits", "pb")


@pytest.fixture(scope="module")
def casa_named(tmp_path_factory):
    """Two simulated cubes with their PSFs under CASA's names: ``NAME.image.fits``, ``NAME.psf.fits``."""
    folder = tmp_path_factory.mktemp("casa_named")
    images = []
    for name, seed in (("p", 7), ("q", 8)):
        files = helpers.simulation(seed=seed).write(folder, name, psf=True)
        files["dirty"].rename(folder / f"{name}.image.fits")
        files["psf"].rename(folder / f"{name}.psf.fits")
        images.append(folder / f"{name}.image.fits")
    return images


def test_batch_gives_each_cube_its_psf(casa_named, tmp_path, monkeypatch):
    import deepfocus.batch as batch

    seen = {}
    detect_cube = batch.detect_cube

    def spy(cube, catalog, **kwargs):
        seen[Path(cube).name] = kwargs["psf"]
        return detect_cube(cube, catalog, **kwargs)

    monkeypatch.setattr(batch, "detect_cube", spy)
    summary = detect_many(casa_named, tmp_path / "out", model=None, psf="auto", progress=False)
    assert summary.success
    assert seen == {
        "p.image.fits": casa_named[0].with_name("p.psf.fits"),
        "q.image.fits": casa_named[1].with_name("q.psf.fits"),
    }
    # The catalogue is the one of a single run with that PSF.
    from deepfocus import DeepFocus

    single = DeepFocus(model=None)(casa_named[0], psf=casa_named[0].with_name("p.psf.fits"))
    batch_table = read_catalog(summary.ok[0].outputs[0])
    np.testing.assert_allclose(batch_table["x_centroid"].value, single["x_centroid"].value)


def test_batch_cube_without_its_psf_fails_alone(casa_named, tmp_path, capsys):
    lonely = tmp_path / "r.image.fits"
    lonely.write_bytes(casa_named[0].read_bytes())
    out = tmp_path / "out"
    code = detect(casa_named[0], lonely, "--output-dir", out, "--model", "none", "--psf", "auto", "--quiet")
    assert code == 1
    err = capsys.readouterr().err
    assert f"no PSF file {tmp_path / 'r.psf.fits'}" in err
    assert sorted(p.name for p in out.iterdir()) == ["p.image.ecsv"]


def test_batch_divides_each_cube_by_its_primary_beam(casa_named, tmp_path, capsys):
    from astropy.io import fits

    from deepfocus import DeepFocus

    folder = tmp_path / "obs"
    folder.mkdir()
    images = []
    for image, gain in zip(casa_named, (0.5, 0.8), strict=True):
        copy = folder / image.name
        copy.write_bytes(image.read_bytes())
        shape = fits.getdata(image).shape
        fits.PrimaryHDU(np.full(shape, gain, np.float32)).writeto(copy.with_name(copy.name[:1] + ".pb.fits"))
        images.append(copy)
    lonely = folder / "r.image.fits"
    lonely.write_bytes(casa_named[0].read_bytes())
    out = tmp_path / "out"
    code = detect(*images, lonely, "--output-dir", out, "--model", "none", "--pb", "auto", "--quiet")
    assert code == 1  # r has no r.pb.fits: it fails alone
    assert f"no primary-beam file {folder / 'r.pb.fits'}" in capsys.readouterr().err
    for image, gain in zip(casa_named, (0.5, 0.8), strict=True):
        plain = DeepFocus(model=None)(image)
        corrected = read_catalog(out / image.name.replace(".fits", ".ecsv"))
        np.testing.assert_allclose(corrected["flux"].value, plain["flux"].value / gain, rtol=1e-6)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--output-dir", "d", "--psf", "one.psf.fits"], "pattern with {stem}"),
        (["--output-dir", "d", "--pb", "one.pb.fits"], "pattern with {stem}"),
        (["--output", "x.ecsv"], "use --output-dir"),
        (["--output-dir", "d", "--regions", "x.reg"], "without a file name"),
        (["--output-dir", "d", "--workers", "2", "--scheduler", "tcp://h:1"], "not both"),
        (["--output-dir", "d", "--output", "x.ecsv"], "--output FILE for one cube"),
    ],
)
def test_cli_usage_errors(cubes, tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert detect(cubes[0], cubes[1], *argv) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow  # processes start in ~5 s; the fast version: test_local_cluster_gives_the_same_catalogues
def test_cli_workers_run_a_local_cluster(cubes, tmp_path):
    """Two worker processes from the command line (the real thing, not threads)."""
    out = tmp_path / "out"
    code = detect(*cubes[:2], "--output-dir", out, "--model", "none", "--workers", "2", "--quiet")
    assert code == 0
    for cube in cubes[:2]:
        helpers.assert_same_catalog(
            read_catalog(output_paths(cube, out)["catalog"]),
            read_catalog(detect_many(cube, tmp_path / "ref", model=None, progress=False).ok[0].outputs[0]),
        )


def test_memory_limit_processes_each_cube_in_tiles(cubes, tmp_path, capsys):
    tiled = detect_many(cubes[0], tmp_path / "tiled", model=None, memory_limit="20 MiB", progress=False)
    whole = detect_many(cubes[0], tmp_path / "whole", model=None, progress=False)
    a, b = read_catalog(tiled.ok[0].outputs[0]), read_catalog(whole.ok[0].outputs[0])
    assert a.meta["tiling"]["n_tiles"] > 1
    assert len(a) == len(b) > 0
    assert np.allclose(a["x_centroid"].value, b["x_centroid"].value)
    assert np.allclose(a["flux"].value, b["flux"].value)
    with pytest.raises(InvalidInputError, match="not with memory_limit"):
        detect_many(cubes[0], tmp_path / "p", model=None, memory_limit="20 MiB", plot=True)
    capsys.readouterr()
    code = detect(
        cubes[0], "--output-dir", tmp_path / "cli", "--model", "none", "--memory-limit", "20MiB", "--quiet"
    )
    assert code == 0 and read_catalog(output_paths(cubes[0], tmp_path / "cli")["catalog"]).meta["tiling"]
    # One cube out of core: --quiet also hides the tiles' progress bars.
    single = tmp_path / "single.ecsv"
    code = detect(cubes[0], "--output", single, "--model", "none", "--memory-limit", "20MiB", "--quiet")
    assert code == 0 and read_catalog(single).meta["tiling"]["n_tiles"] > 1
    assert capsys.readouterr().err == ""


def test_cli_scheduler_address(cubes, tmp_path, capsys):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        argv = ["--output-dir", tmp_path, "--model", "none", "--scheduler", cluster.scheduler_address, "-v"]
        assert detect(cubes[1], *argv) == 0
    err = capsys.readouterr().err
    assert f"{cubes[1]}: ok" in err  # -v logs each cube
    assert len(read_catalog(output_paths(cubes[1], tmp_path)["catalog"])) > 0


def _die_on(name):
    """Run on a worker: make it exit (as an out-of-memory kill would) when it reaches cube ``name``."""
    import deepfocus.batch

    original = deepfocus.batch.detect_cube

    def dying(cube, *args, **kwargs):
        if str(cube).endswith(name):
            time.sleep(1.0)  # mid-work, as a real crash: the previous cube's result has gone out
            os._exit(1)
        return original(cube, *args, **kwargs)

    deepfocus.batch.detect_cube = dying


def _sigint_disposition():
    import os
    import signal

    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN, os.getpid()


def _exit_now():
    import os

    os._exit(1)


def test_the_workers_preload_joins_the_users():
    # A preload argument would override dask's configured ones: they are kept, ours after them,
    # with argument lists of the same length (distributed refuses a mismatch).
    import dask
    import distributed  # noqa: F401 - its defaults in dask's config before the set below

    from deepfocus.batch import WORKER_PRELOAD, _with_worker_preload

    assert _with_worker_preload({}) == {"preload": [WORKER_PRELOAD], "preload_argv": [[]]}
    config = {"distributed.worker.preload": ["a", "b"], "distributed.worker.preload-argv": [["-x"], []]}
    with dask.config.set(config):
        merged = _with_worker_preload({})
        assert merged == {"preload": ["a", "b", WORKER_PRELOAD], "preload_argv": [["-x"], [], []]}
        given = {"preload": "c", "preload_argv": ["--flag"]}  # one argv for every preload
        merged = _with_worker_preload(given)
        assert merged == {"preload": ["c", WORKER_PRELOAD], "preload_argv": [["--flag"], []]}
    again = _with_worker_preload({"preload": [WORKER_PRELOAD]})
    assert again["preload"] == [WORKER_PRELOAD]


@pytest.mark.slow  # starts a worker process, and another when it dies
def test_local_workers_leave_ctrl_c_to_this_process():
    # Ctrl-C reaches the whole process group: the workers ignore it (they printed a
    # KeyboardInterrupt traceback each), this process stops the run and closes the cluster; a
    # worker the nanny starts again after the first died does too.
    import os
    import signal

    environ = os.environ.get("PYTHONWARNINGS")
    # Python's own Ctrl-C handler, as in a terminal (a background run may inherit SIG_IGN, which
    # the workers would inherit whatever deepfocus did).
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    handler = signal.getsignal(signal.SIGINT)
    try:
        _check_workers_ignore_ctrl_c(handler)
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert os.environ.get("PYTHONWARNINGS") == environ  # set for the workers' start only
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def _check_workers_ignore_ctrl_c(handler):
    import signal
    import time

    with local_client(1) as client:
        ((ignored, first),) = client.run(_sigint_disposition).values()
        assert ignored
        assert signal.getsignal(signal.SIGINT) is handler
        assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL  # closes the cluster
        client.submit(_exit_now, pure=False)
        for _ in range(120):
            time.sleep(0.25)
            try:
                replies = list(client.run(_sigint_disposition).values())
            except Exception:  # noqa: BLE001 - the worker is being replaced
                continue
            if replies and replies[0][1] != first:
                break
        else:
            pytest.fail("the dead worker was not replaced")
        assert replies[0][0]


@pytest.mark.slow  # starts worker processes (twice: the dead one is replaced)
def test_a_dying_worker_fails_its_cube_only(cubes, tmp_path):
    import dask

    # No retries; the worker runs the cubes in the order given (earlier submissions first), so
    # the good cube is done before the bad one kills it.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), local_client(1) as client:
        client.run(_die_on, cubes[0].name)
        summary = detect_many([cubes[1], cubes[0]], tmp_path, model=None, client=client, progress=False)
    # The good cube is "skipped" when its result died with the worker and the task ran again on
    # the replacement, which found its outputs complete.
    assert summary.results[0].status in ("ok", "skipped")
    assert summary.results[1].status == "failed"
    assert len(read_catalog(output_paths(cubes[1], tmp_path)["catalog"])) > 0
    assert not output_paths(cubes[0], tmp_path)["catalog"].exists()
    assert "KilledWorker" in summary.failed[0].error


def test_single_cube_psf_auto(casa_named, tmp_path, capsys):
    out = tmp_path / "p.ecsv"
    assert detect(casa_named[0], "--output", out, "--model", "none", "--psf", "auto", "--quiet") == 0
    lonely = tmp_path / "r.image.fits"
    lonely.write_bytes(casa_named[0].read_bytes())
    assert detect(lonely, "--output", tmp_path / "r.ecsv", "--model", "none", "--psf", "auto") == 1
    assert f"no PSF file {tmp_path / 'r.psf.fits'}" in capsys.readouterr().err


def test_batch_never_takes_a_cube_for_its_own_catalogue(tmp_path):
    # A FITS catalogue written beside its cube would be the cube itself: <stem>.fits.
    from astropy.io import fits

    cube = tmp_path / "field.fits"
    fits.PrimaryHDU(np.zeros((4, 8, 8), np.float32)).writeto(cube)
    before = cube.read_bytes()
    for overwrite in (False, True):
        summary = detect_many(
            [cube], tmp_path, catalog_format="fits", model=None, overwrite=overwrite, progress=False
        )
        (result,) = summary.results
        assert result.status == "failed" and "is the input cube" in result.error
        assert cube.read_bytes() == before


def test_example_in_a_batch(tmp_path, capsys):
    # In a batch too, --example finds its PSF beside it ('auto': example_dirty -> example_psf).
    assert main(["detect", "--example", "--output-dir", str(tmp_path), "--quiet"]) == 0
    catalog = read_catalog(tmp_path / "example_dirty.ecsv")
    assert len(catalog) == 5 and catalog.meta["forward_fit"] == "psf"


class _Terminal(__import__("io").StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("progress", [True, False])
def test_single_pass_shows_its_step_on_a_terminal(cubes, tmp_path, monkeypatch, progress):
    from deepfocus.batch import detect_cube
    from deepfocus.pipeline import DeepFocus

    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    detect_cube(cubes[0], tmp_path / "c.ecsv", pipeline=DeepFocus(model=None), progress=progress)
    shown = terminal.getvalue()
    assert ("finding and measuring sources" in shown) == progress
    assert ("reading" in shown) == progress


# --------------------------------------------------------------------------------------------
# a finished cube is skipped only if made with this run's settings


def test_cli_rerun_with_other_settings_fails_those_cubes(cubes, tmp_path, capsys):
    out = tmp_path / "out"
    a, b = out / "a_dirty.ecsv", out / "b_dirty.ecsv"
    assert detect(*cubes[:2], "--output-dir", out, "--model", "none", "--quiet") == 0
    os.utime(a, (1, 1))
    b.unlink()  # an unfinished cube: it runs, with the new threshold
    capsys.readouterr()
    assert detect(*cubes[:2], "--output-dir", out, "--model", "none", "--snr-threshold", "5") == 1
    captured = capsys.readouterr()
    assert "1 done, 0 skipped (outputs exist), 1 failed" in captured.out
    message = (
        f"{a} was made with snr_threshold=6.0, this run uses snr_threshold=5.0: use --overwrite to redo it"
    )
    assert f"failed: {cubes[0]}: {message}\n" in captured.err
    assert a.stat().st_mtime == 1  # not replaced
    assert read_catalog(b).meta["parameters"]["snr_threshold"] == 5.0
    # The same settings as the catalogue's: skipped, as before.
    assert detect(cubes[0], "--output-dir", out, "--model", "none") == 0
    assert "0 done, 1 skipped" in capsys.readouterr().out
    assert (
        detect(*cubes[:2], "--output-dir", out, "--model", "none", "--snr-threshold", "5", "--overwrite") == 0
    )
    assert "2 done, 0 skipped" in capsys.readouterr().out
    assert read_catalog(a).meta["parameters"]["snr_threshold"] == 5.0
    assert detect(*cubes[:2], "--output-dir", out, "--model", "none", "--snr-threshold", "5") == 0
    assert "0 done, 2 skipped" in capsys.readouterr().out


@pytest.mark.parametrize("catalog_format", ["fits", "votable"])
def test_rerun_compares_forward_fit_and_networks(cubes, tmp_path, catalog_format):
    out = tmp_path / "out"
    options = {"model": None, "catalog_format": catalog_format, "progress": False}
    assert detect_many(cubes[0], out, **options).success
    (other,) = detect_many(cubes[0], out, **{**options, "forward_fit": "beam"}).results
    assert other.status == "failed"
    assert "was made with forward_fit=none, this run uses forward_fit=beam: use --overwrite" in other.error
    (networks,) = detect_many(cubes[0], out, **{**options, "model": "default"}).results
    assert networks.status == "failed"
    assert (
        "was made with spectral model=none, deconvolver model=none and characterizer model=gaussian fit, "
        "this run uses spectral model=spectral-default, deconvolver model=deconvolver-default and "
        "characterizer model=characterizer-default: use --overwrite"
    ) in networks.error
    (same,) = detect_many(cubes[0], out, **options).results
    assert same.status == "skipped" and same.warning is None


def test_rerun_knows_weights_by_their_hash(cubes, tmp_path):
    # The shipped weights under another name (a copy in a folder): the same catalogue.
    from importlib import resources

    folder = tmp_path / "mine"
    folder.mkdir()
    shipped = resources.files("deepfocus.data") / "weights"
    for task in ("spectral", "deconvolver", "characterizer"):
        for suffix in (".safetensors", ".json"):
            (folder / f"{task}-default{suffix}").write_bytes(
                (shipped / f"{task}-default{suffix}").read_bytes()
            )
    out = tmp_path / "out"
    assert detect_many(cubes[0], out, model=folder, progress=False).success
    (result,) = detect_many(cubes[0], out, model="default", progress=False).results
    assert result.status == "skipped" and result.warning is None


def test_rerun_over_a_catalogue_without_settings(cubes, tmp_path):
    from deepfocus.io import write_catalog

    out = tmp_path / "out"
    assert detect_many(cubes[0], out, model=None, progress=False).success
    catalog = out / "a_dirty.ecsv"
    table = read_catalog(catalog)
    table.meta = {"version": "0.0.1"}  # another program's, or an older deepfocus's
    write_catalog(table, catalog, overwrite=True)
    # Nothing to compare: kept, with a warning.
    summary = detect_many(cubes[0], out, model=None, snr_threshold=5, progress=False)
    (result,) = summary.results
    assert result.status == "skipped"
    assert (
        result.warning
        == f"cannot tell which settings made {catalog} (it records none): kept; use --overwrite to redo it"
    )
    assert f"skipped: {cubes[0]}: cannot tell" in str(summary)
    # Some settings recorded: those are compared, the others named.
    table.meta = {"parameters": {"snr_threshold": 6.0}, "models": {"spectral": None, "deconvolver": None}}
    write_catalog(table, catalog, overwrite=True)
    (result,) = detect_many(cubes[0], out, model=None, progress=False).results
    assert result.status == "skipped"
    assert (
        "cannot tell which min_separation_beams, widths_channels, deconvolved_fraction, characterizer model"
        in result.warning
    )
    (result,) = detect_many(cubes[0], out, model=None, snr_threshold=5, progress=False).results
    assert result.status == "failed" and "snr_threshold=6.0, this run uses snr_threshold=5.0" in result.error
    # An unreadable catalogue is no finished run's output.
    catalog.write_text("not a catalogue\n")
    (result,) = detect_many(cubes[0], out, model=None, progress=False).results
    assert result.status == "failed"
    assert result.error.startswith(f"cannot read the settings {catalog} was made with (")
    assert result.error.endswith("): use --overwrite to redo it")


def test_a_pbcor_cube_fails_alone_in_a_batch_with_its_primary_beam(cubes, tmp_path):
    # Whichever its place in the batch: the other cubes run.
    import shutil

    from astropy.io import fits

    shutil.copy(cubes[0], tmp_path / "a.image.pbcor.fits")
    shutil.copy(cubes[1], tmp_path / "b.image.fits")
    fits.PrimaryHDU(np.ones(fits.getdata(cubes[1]).shape, np.float32)).writeto(tmp_path / "b.pb.fits")
    for order in (["a.image.pbcor.fits", "b.image.fits"], ["b.image.fits", "a.image.pbcor.fits"]):
        out = tmp_path / f"out_{order[0]}"
        summary = detect_many([tmp_path / name for name in order], out, model=None, pb="auto", progress=False)
        status = {Path(result.cube).name: result.status for result in summary.results}
        assert status == {"a.image.pbcor.fits": "failed", "b.image.fits": "ok"}
        assert "already primary-beam corrected" in summary.failed[0].error


def test_rerun_of_an_empty_cube_with_its_primary_beam(tmp_path):
    # No detection: the empty catalogue records the primary-beam correction too.
    from astropy.io import fits

    cube = helpers.write_simulation(helpers.simulation(rows=(), seed=3), tmp_path, "e")["dirty"]
    fits.PrimaryHDU(np.full(fits.getdata(cube).shape, 0.5, np.float32)).writeto(tmp_path / "e_pb.fits")
    out = tmp_path / "out"
    (first,) = detect_many(cube, out, model=None, pb="auto", progress=False).results
    assert first.status == "ok" and first.n_sources == 0
    (again,) = detect_many(cube, out, model=None, pb="auto", progress=False).results
    assert again.status == "skipped" and again.warning is None
    (plain,) = detect_many(cube, out, model=None, progress=False).results
    assert plain.status == "failed"
    assert (
        "was made with primary_beam_corrected=True, this run uses primary_beam_corrected=False" in plain.error
    )


def test_rerun_of_an_empty_out_of_core_cube_compares_its_settings(tmp_path):
    # An out-of-core run that finds nothing records the run's settings as a single pass does.
    cube = helpers.write_simulation(helpers.simulation(rows=(), seed=3), tmp_path, "e")["dirty"]
    out = tmp_path / "out"
    kwargs = dict(model=None, memory_limit="20 MiB", progress=False)
    (first,) = detect_many(cube, out, **kwargs).results
    assert first.status == "ok" and first.n_sources == 0
    meta = read_catalog(first.outputs[0]).meta
    assert meta["parameters"]["snr_threshold"] == 6.0 and meta["forward_fit"] == "none"
    (again,) = detect_many(cube, out, **kwargs).results
    assert again.status == "skipped" and again.warning is None
    (other,) = detect_many(cube, out, snr_threshold=5.0, **kwargs).results
    assert other.status == "failed"
    assert "was made with snr_threshold=6.0, this run uses snr_threshold=5.0" in other.error


def test_forward_fit_psf_without_a_psf_is_refused_up_front(cubes, tmp_path, capsys):
    # An empty cube succeeded (recording forward_fit=none) and then failed on every re-run,
    # overwrite or not; a cube with sources failed in the characterizer.
    from deepfocus.batch import detect_cube
    from deepfocus.pipeline import DeepFocus

    empty = helpers.write_simulation(helpers.simulation(rows=(), seed=3), tmp_path, "e")["dirty"]
    out = tmp_path / "out"
    for overwrite in (False, True):
        with pytest.raises(InvalidInputError) as error:
            detect_many(
                [empty, cubes[0]], out, model=None, forward_fit="psf", overwrite=overwrite, progress=False
            )
        assert str(error.value) == (
            "forward_fit='psf' (--forward-fit psf) needs each cube's PSF: give psf ('auto' or a pattern "
            "with {stem}; --psf), or use forward_fit='auto', which fits through the PSF where one is given"
        )
        assert not out.exists()
    assert detect(empty, "--output-dir", out, "--model", "none", "--forward-fit", "psf", "--quiet") != 0
    assert "forward_fit='psf' (--forward-fit psf) needs each cube's PSF" in capsys.readouterr().err
    assert not out.exists()
    # One cube, with or without sources: refused before it is read.
    pipeline = DeepFocus(model=None, forward_fit="psf")
    message = r"forward_fit='psf' \(--forward-fit psf\) needs the cube's PSF: give psf"
    for cube in (empty, cubes[0]):
        with pytest.raises(InvalidInputError, match=message):
            detect_cube(cube, tmp_path / "one.ecsv", pipeline=pipeline, progress=False)
        with pytest.raises(InvalidInputError, match=message):
            pipeline(cube)
    assert not (tmp_path / "one.ecsv").exists()


@pytest.mark.parametrize("memory_limit", [None, "20 MiB"])
def test_rerun_compares_whether_a_psf_was_given(tmp_path, memory_limit):
    # The detector's sidelobe test uses the PSF whatever the forward fit: a PSF added with
    # forward_fit='beam' changes the catalogue.
    files = helpers.simulation(seed=4).write(tmp_path, "a", psf=True)
    out = tmp_path / "out"
    options = dict(model=None, forward_fit="beam", memory_limit=memory_limit, progress=False)
    (first,) = detect_many(files["dirty"], out, **options).results
    assert first.status == "ok" and first.n_sources > 0
    (again,) = detect_many(files["dirty"], out, psf="auto", **options).results
    assert again.status == "failed"
    assert (
        f"{first.outputs[0]} was made with psf=False, this run uses psf=True: use --overwrite" in again.error
    )
    meta = read_catalog(first.outputs[0]).meta
    assert meta["parameters"]["psf"] is False and meta["forward_fit"] == "beam"
    assert ("tiling" in meta) == (memory_limit is not None)
    (redone,) = detect_many(files["dirty"], out, psf="auto", overwrite=True, **options).results
    assert redone.status == "ok"
    assert read_catalog(redone.outputs[0]).meta["parameters"]["psf"] is True  # tiles' detectors had none
    (same,) = detect_many(files["dirty"], out, psf="auto", **options).results
    assert same.status == "skipped" and same.warning is None
    (without,) = detect_many(files["dirty"], out, **options).results
    assert without.status == "failed" and "was made with psf=True, this run uses psf=False" in without.error


@pytest.mark.parametrize("rows", [None, ()], ids=["sources", "empty"])
def test_rerun_compares_sidelobe_rejection(tmp_path, rows):
    kwargs = {} if rows is None else {"rows": rows}
    files = helpers.simulation(seed=4, **kwargs).write(tmp_path, "a", psf=True)
    out = tmp_path / "out"
    options = dict(model=None, psf="auto", progress=False)
    (first,) = detect_many(files["dirty"], out, **options).results
    assert first.status == "ok" and (first.n_sources > 0) == (rows is None)
    (other,) = detect_many(files["dirty"], out, sidelobe_rejection=False, **options).results
    assert other.status == "failed"
    assert (
        "was made with sidelobe_rejection=True, this run uses sidelobe_rejection=False: use --overwrite"
        in other.error
    )
    assert read_catalog(first.outputs[0]).meta["parameters"]["sidelobe_rejection"] is True
    (same,) = detect_many(files["dirty"], out, **options).results
    assert same.status == "skipped" and same.warning is None


def test_rerun_over_a_catalogue_that_does_not_record_the_primary_beam(tmp_path):
    # Empty catalogues made with --pb before primary_beam_corrected was always written lack it:
    # not recorded (kept, with a warning), not False (a failure).
    from astropy.io import fits

    from deepfocus.io import write_catalog

    cube = helpers.write_simulation(helpers.simulation(rows=(), seed=3), tmp_path, "e")["dirty"]
    fits.PrimaryHDU(np.full(fits.getdata(cube).shape, 0.5, np.float32)).writeto(tmp_path / "e_pb.fits")
    out = tmp_path / "out"
    (first,) = detect_many(cube, out, model=None, pb="auto", progress=False).results
    catalog = Path(first.outputs[0])
    table = read_catalog(catalog)
    assert table.meta["primary_beam_corrected"] is True
    del table.meta["primary_beam_corrected"]
    write_catalog(table, catalog, overwrite=True)
    (result,) = detect_many(cube, out, model=None, pb="auto", progress=False).results
    assert result.status == "skipped"
    assert result.warning == (
        f"cannot tell which primary_beam_corrected made {catalog} (not recorded): kept; "
        "use --overwrite to redo it"
    )
    # Written either way now, with sources or without.
    for name, rows in (("s", None), ("n", ())):
        kwargs = {} if rows is None else {"rows": rows}
        dirty = helpers.write_simulation(helpers.simulation(seed=4, **kwargs), tmp_path, name)["dirty"]
        (done,) = detect_many(dirty, out, model=None, progress=False).results
        assert read_catalog(done.outputs[0]).meta["primary_beam_corrected"] is False
