"""A process killed (SIGKILL) while it writes leaves no partial output under the final name."""

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from deepfocus.batch import detect_many, output_paths
from deepfocus.detection.tests import helpers
from deepfocus.io import read_catalog

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

# The child runs a real batch; the rename of its catalogue is delayed after astropy has written
# the whole temporary file, so the kill lands between the write and the rename.
CHILD = textwrap.dedent(
    """
    import os, sys, time
    from deepfocus.batch import detect_many

    original = os.replace

    def slow_replace(source, target):
        if str(target).endswith(".ecsv"):
            print("WRITTEN", source, flush=True)
            time.sleep(120)
        return original(source, target)

    os.replace = slow_replace
    detect_many(sys.argv[1], sys.argv[2], model=None, regions="ds9", progress=False)
    """
)


def _wait_for(process, token, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = process.stdout.readline()
        if token in line:
            return line
        if not line and process.poll() is not None:
            break
    process.kill()
    pytest.fail(f"the child never reached {token!r}: {process.stderr.read()}")


def test_killed_mid_write_leaves_no_partial_output(tmp_path):
    cube = helpers.write_simulation(helpers.simulation(), tmp_path, "k")["dirty"]
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(cube), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = _wait_for(process, "WRITTEN")
    temporary = line.split(maxsplit=1)[1].strip()
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    paths = output_paths(cube, out, regions="ds9")
    assert not paths["catalog"].exists()
    # Whatever is left is a hidden ``.<name>.*.part`` temporary, never a file a reader would take
    # for a catalogue (and the region file, written first, is complete).
    leftovers = sorted(p.name for p in out.iterdir() if p != paths["regions"])
    assert leftovers, "the kill was meant to land before the rename"
    assert all(name.startswith(f".{paths['catalog'].name}.") and name.endswith(".part") for name in leftovers)
    assert temporary.endswith(leftovers[0])
    # The re-run sees the cube as unfinished and completes it.
    summary = detect_many(cube, out, model=None, regions="ds9", progress=False)
    assert [r.status for r in summary.results] == ["ok"]
    assert len(read_catalog(paths["catalog"])) > 0
