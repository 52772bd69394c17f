"""Helpers shared by the benchmark scripts: machine facts, JSON results and RST tables."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GENERATED_DOCS = ROOT / "docs" / "_generated"


def machine() -> dict:
    """Facts about the machine and software a benchmark ran on."""
    import numpy
    import torch

    import deepfocus

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "deepfocus": deepfocus.__version__,
    }


def write_json(name: str, data: dict) -> Path:
    """Write ``benchmarks/results/NAME.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return path


def rst_table(headers, rows) -> str:
    """A reStructuredText grid-free ("simple") table."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, "  ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=False)), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) for r in cells[1:]]
    lines.append(rule)
    return "\n".join(lines)


def write_docs(name: str, text: str) -> Path:
    """Write ``docs/_generated/NAME.rst`` (included by the documentation)."""
    GENERATED_DOCS.mkdir(parents=True, exist_ok=True)
    path = GENERATED_DOCS / f"{name}.rst"
    path.write_text(text.rstrip() + "\n")
    return path


def psnr(estimate, truth):
    """Peak signal-to-noise ratio (dB) of ``estimate`` against ``truth`` (peak of the truth)."""
    import numpy as np

    mse = np.mean((estimate - truth) ** 2)
    return float(10 * np.log10(truth.max() ** 2 / max(mse, 1e-30)))


def ssim(estimate, truth):
    """Structural similarity (scikit-image) over the truth's data range."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(estimate, truth, data_range=float(truth.max() - truth.min())))
