"""Multi-process data-parallel training with `torch.distributed` (DDP), as ``torchrun`` starts it.

``torchrun --nproc-per-node N`` runs N copies of a program with ``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT`` set. `init_from_env` turns those into an initialised process
group (gloo on CPU, NCCL on GPUs); `~deepfocus.training.Trainer` then wraps its model in
`~torch.nn.parallel.DistributedDataParallel`, shards the data with a
`~torch.utils.data.DistributedSampler`, reduces the validation metrics over the ranks, and
lets rank 0 alone write logs, checkpoints and weights.
"""

from __future__ import annotations

import os

import torch

__all__ = ["init_from_env", "rank", "world_size", "is_main_process", "barrier", "shutdown"]


def _active():
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank():
    """This process's rank (0 when not distributed)."""
    return torch.distributed.get_rank() if _active() else 0


def world_size():
    """Number of processes (1 when not distributed)."""
    return torch.distributed.get_world_size() if _active() else 1


def is_main_process():
    """True on rank 0 (and when not distributed): the process that writes files."""
    return rank() == 0


def barrier():
    """Wait for every rank (no-op when not distributed)."""
    if _active() and world_size() > 1:
        torch.distributed.barrier()


def init_from_env(backend=None):
    """Initialise the default process group from ``torchrun``'s environment variables.

    Does nothing (and returns False) when ``WORLD_SIZE`` is unset or 1, or when a process group
    already exists (then returns True).

    Parameters
    ----------
    backend : str, optional
        Process-group backend; default ``"gloo"``, because the `Trainer` keeps the model and
        its batches on the CPU (NCCL would only take CUDA tensors).

    Returns
    -------
    distributed : bool
        Whether this process is one of several.
    """
    if _active():
        return world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not torch.distributed.is_available():  # pragma: no cover - builds without distributed
        from ..exceptions import DeepFocusError

        raise DeepFocusError("this PyTorch build has no torch.distributed: run without torchrun")
    if backend is None:
        backend = "gloo"
    torch.distributed.init_process_group(backend=backend)
    return True


def shutdown(*, wait=True):
    """Destroy the process group made by `init_from_env` (no-op when there is none).

    With ``wait`` (after a run that went well on this rank), once every rank has reached this
    point: a rank that tore its group down while another still used it aborted in gloo
    ("terminate called without an active exception", seen once in CI on a loaded machine).
    Without it (after an error), at once: the other ranks may never arrive.
    """
    if _active():
        if wait:
            barrier()
        torch.distributed.destroy_process_group()
