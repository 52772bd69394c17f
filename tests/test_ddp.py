"""Data-parallel training: two CPU processes (gloo) started by ``torchrun`` through the Trainer."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from deepfocus.training.samples import SAMPLES_VERSION

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="needs torch.distributed with gloo",
)

# Each rank writes its trainer outputs under names carrying its rank, so the test sees who wrote
# what; the final parameters and the history go to a separate folder for the comparison.
CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    import torch
    from torch.utils.data import TensorDataset
    from deepfocus.training import Trainer, TrainingSettings
    from deepfocus.training import ddp

    assert ddp.init_from_env()
    torch.set_num_threads(1)
    rank, world = ddp.rank(), ddp.world_size()
    run, result = Path(sys.argv[1]), Path(sys.argv[2])
    rng = np.random.default_rng(0)  # the same data on every rank; the sampler splits it
    x = rng.normal(size=(70, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0], np.float32))[:, None] + 0.1
    train, validation = TensorDataset(torch.from_numpy(x[:50]), torch.from_numpy(y[:50])), TensorDataset(
        torch.from_numpy(x[50:]), torch.from_numpy(y[50:])
    )
    torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    metrics = lambda p, t: {"mae": float((p - t).abs().mean()), "n": int(len(t))}
    trainer = Trainer(
        model, torch.nn.functional.mse_loss, TrainingSettings(epochs=2, batch_size=8, seed=3),
        metrics_fn=metrics, log_path=run / f"log-rank{rank}.csv", progress=False,
    )
    history = trainer.fit(train, validation, checkpoint=run / f"checkpoint-rank{rank}.pt")
    params = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()
    np.save(result / f"params-rank{rank}.npy", params)
    (result / f"history-rank{rank}.json").write_text(json.dumps(history))
    ddp.shutdown()
    """
)


def test_two_gloo_processes_train_in_step(tmp_path):
    run, result = tmp_path / "run", tmp_path / "result"
    run.mkdir()
    result.mkdir()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    proc = subprocess.run(
        [*command, str(script), str(run), str(result)], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    params = [np.load(result / f"params-rank{r}.npy") for r in (0, 1)]
    assert np.array_equal(params[0], params[1])
    histories = [json.loads((result / f"history-rank{r}.json").read_text()) for r in (0, 1)]
    assert len(histories[0]) == 2
    for a, b in zip(*histories, strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == {
            k: v for k, v in b.items() if k != "seconds"
        }
        assert a["val_n"] == 20  # the metrics saw the whole validation set, gathered from both ranks
    # Only rank 0 wrote the log and the checkpoint.
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-rank0.pt", "log-rank0.csv"]
    state = torch.load(run / "checkpoint-rank0.pt", weights_only=True)
    saved = torch.cat([v.flatten() for v in state["model"].values()]).numpy()
    assert state["epoch"] == 1
    assert saved.shape == params[0].shape


@pytest.mark.slow
def test_deepfocus_train_under_torchrun(tmp_path):
    """``torchrun -m deepfocus train``: the CLI initialises gloo from the environment; rank 0
    alone simulates, writes and reports."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    argv = ["-m", "deepfocus", "train", "--task", "characterizer", "--preset", "tiny", "--output", tmp_path]
    proc = subprocess.run(
        [*command, *map(str, argv)], env=env, capture_output=True, text=True, timeout=400, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("characterizer:") == 1  # one report, from rank 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "characterizer-tiny.csv",
        "characterizer-tiny.json",
        "characterizer-tiny.safetensors",
        f"data-v{SAMPLES_VERSION}-tiny-seed0-characterizer.npz",
        "training-tiny.json",
    ]
    card = json.loads((tmp_path / "characterizer-tiny.json").read_text())
    assert card["training"]["epochs_run"] >= 1
