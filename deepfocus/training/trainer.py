"""A small, reproducible training loop: AdamW, a learning-rate schedule, early stopping,
checkpoint and resume, and metrics logged to CSV (and TensorBoard when it is installed).

Written here rather than taken from PyTorch Lightning to keep the dependency list short: the
loop is ~150 lines and needs nothing Lightning adds on one CPU machine.
"""

from __future__ import annotations

import copy
import csv
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm.auto import tqdm

from ..exceptions import InvalidInputError
from ..io.atomic import atomic_path
from . import ddp

__all__ = ["TrainingSettings", "Trainer"]


@dataclass
class TrainingSettings:
    """Optimisation settings.

    Parameters
    ----------
    epochs : int
        Maximum number of passes over the training set.
    batch_size : int
        Samples per step.
    learning_rate : float
        Peak learning rate of the one-cycle schedule (AdamW).
    weight_decay : float
        AdamW weight decay.
    patience : int
        Stop after this many epochs without a better validation loss.
    seed : int
        Seed of the initial weights and the batch order.
    threads : int or None
        Torch CPU threads (None: leave as is).
    """

    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 6
    seed: int = 0
    threads: int | None = None

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise InvalidInputError("epochs, batch_size and patience must be positive")
        if not self.learning_rate > 0:
            raise InvalidInputError("learning_rate must be positive")
        if not self.weight_decay >= 0:
            raise InvalidInputError("weight_decay must be zero or positive")
        if self.threads is not None and self.threads < 1:
            raise InvalidInputError("threads must be a positive integer (or None)")


class Trainer:
    """Fit a model to a dataset of ``(input, target)`` pairs.

    Parameters
    ----------
    model : `torch.nn.Module`
        The network.
    loss_fn : callable
        ``loss_fn(prediction, target) -> scalar tensor``.
    settings : `TrainingSettings`
        Optimisation settings.
    metrics_fn : callable, optional
        ``metrics_fn(predictions, targets) -> dict`` of validation metrics (floats), computed on
        the whole validation set each epoch.
    log_path : path-like, optional
        CSV file of per-epoch losses and metrics (a TensorBoard run is written beside it when
        ``tensorboard`` is installed).
    tensorboard_dir : path-like, optional
        Folder of the TensorBoard run (default: ``log_path`` without its suffix, plus
        ``_tensorboard``).
    progress : bool
        Show a progress bar.
    augment : callable, optional
        ``augment(inputs, targets, generator) -> (inputs, targets)``, applied to each training
        batch with the trainer's seeded generator (e.g.
        `~deepfocus.training.tasks.dihedral_cutouts`); validation batches are left as they are.

    Notes
    -----
    Under ``torchrun`` (a `torch.distributed` process group initialised, e.g. by
    `~deepfocus.training.ddp.init_from_env`), `fit` trains data-parallel: the model is wrapped
    in `~torch.nn.parallel.DistributedDataParallel`, each rank sees its share of the training
    set (`~torch.utils.data.DistributedSampler`, ``batch_size`` per rank), validation is split
    over the ranks and its loss and metrics are computed on the gathered whole, and only rank 0
    writes the log and the checkpoint. Every rank ends with the same weights.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable,
        settings: TrainingSettings,
        *,
        metrics_fn: Callable | None = None,
        log_path=None,
        tensorboard_dir=None,
        progress: bool = True,
        augment: Callable | None = None,
    ):
        self.model = model
        self.augment = augment
        self.loss_fn = loss_fn
        self.settings = settings
        self.metrics_fn = metrics_fn
        self.log_path = Path(log_path) if log_path else None
        if tensorboard_dir is None and self.log_path is not None:
            tensorboard_dir = str(self.log_path.with_suffix("")) + "_tensorboard"
        self.tensorboard_dir = tensorboard_dir
        self.progress = progress
        self.history: list[dict] = []
        self.best_state = None
        self.best_loss = float("inf")

    def _loader(self, dataset, shuffle, generator=None, sampler=None):
        if sampler is not None:
            return DataLoader(dataset, batch_size=self.settings.batch_size, sampler=sampler)
        return DataLoader(dataset, batch_size=self.settings.batch_size, shuffle=shuffle, generator=generator)

    def evaluate(self, dataset: Dataset):
        """Mean loss and metrics of the model on ``dataset`` (no gradients).

        Distributed: each rank evaluates every ``world_size``-th sample, and the loss and
        metrics are those of all the ranks' predictions together (the same on every rank).
        """
        self.model.eval()
        world = ddp.world_size()
        part = dataset if world == 1 else Subset(dataset, range(ddp.rank(), len(dataset), world))
        losses, predictions, targets = [], [], []
        with torch.no_grad():
            for x, y in self._loader(part, False):
                out = self.model(x)
                losses.append(float(self.loss_fn(out, y)) * len(x))
                predictions.append(out)
                targets.append(y)
        total = float(np.sum(losses))
        if world > 1:
            total = _all_sum(total)
            if self.metrics_fn is not None:
                predictions, targets = _all_gather(predictions), _all_gather(targets)
        result = {"loss": total / len(dataset)}
        if self.metrics_fn is not None:
            result.update(self.metrics_fn(torch.cat(predictions), torch.cat(targets)))
        return result

    def fit(self, train: Dataset, validation: Dataset, *, checkpoint=None, resume=False, callback=None):
        """Train with early stopping on the validation loss; keep the best weights.

        Parameters
        ----------
        train, validation : `torch.utils.data.Dataset`
            ``(input, target)`` pairs; the validation set must come from other seeds.
        checkpoint : path-like, optional
            Saved after every epoch (model, optimiser, schedule, random states, history) with
            ``torch.save``.
        resume : bool
            Continue from ``checkpoint`` if it exists (loaded with ``weights_only=True``): an
            interrupted run resumed with the same settings ends with the same weights as an
            uninterrupted one. The schedule spans ``epochs``, so ``epochs``, ``batch_size``,
            ``learning_rate`` and ``weight_decay`` must be those of the checkpoint.
        callback : callable, optional
            ``callback(record)`` after each epoch (and its checkpoint), with the epoch's record
            (``epoch``, ``train_loss``, ``val_loss``, ``val_<metric>``, ...). An exception it raises
            (e.g. ``optuna.TrialPruned``) ends the fit and reaches the caller.

        Returns
        -------
        history : list of dict
            Per-epoch records.
        """
        s = self.settings
        if len(train) == 0 or len(validation) == 0:
            raise InvalidInputError(
                f"training and validation sets must not be empty (got {len(train)} and "
                f"{len(validation)} samples)"
            )
        if s.threads:
            torch.set_num_threads(s.threads)
        torch.manual_seed(s.seed)
        generator = torch.Generator().manual_seed(s.seed)
        optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=s.learning_rate, weight_decay=s.weight_decay
        )
        world, main = ddp.world_size(), ddp.is_main_process()
        sampler = None
        if world > 1:
            sampler = DistributedSampler(
                train, num_replicas=world, rank=ddp.rank(), shuffle=True, seed=s.seed
            )
        steps_per_epoch = max(1, int(np.ceil(len(sampler or train) / s.batch_size)))
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=s.learning_rate, epochs=s.epochs, steps_per_epoch=steps_per_epoch
        )
        start_epoch, stale = 0, 0
        self.history, self.best_state, self.best_loss = [], None, float("inf")
        checkpoint = Path(checkpoint) if checkpoint else None
        if resume and checkpoint is not None and checkpoint.exists():
            state = torch.load(checkpoint, weights_only=True)
            saved = state.get("settings", {})
            changed = [
                f"{k}: {saved.get(k)!r} != {getattr(s, k)!r}"
                for k in ("epochs", "batch_size", "learning_rate", "weight_decay")
                if saved.get(k) != getattr(s, k)
            ]
            if state["scheduler"].get("total_steps") != scheduler.total_steps and not changed:
                changed.append(f"steps per epoch ({len(train)} training samples)")
            if changed:
                raise InvalidInputError(
                    f"checkpoint {checkpoint} belongs to a run with other settings "
                    f"({'; '.join(changed)}): resume with the same ones, or start afresh"
                )
            self.model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            generator.set_state(state["generator"])
            if "torch_rng" in state:  # dropout draws from the global generator
                torch.set_rng_state(state["torch_rng"])
            self.history = list(state["history"])
            self.best_state = state["best_model"]
            self.best_loss = float(state["best_loss"])
            start_epoch, stale = int(state["epoch"]) + 1, int(state["stale"])
        # Wrapped after a resume: DDP broadcasts rank 0's weights when it is built.
        net = torch.nn.parallel.DistributedDataParallel(self.model) if world > 1 else self.model
        writer = self._tensorboard() if main else None
        for epoch in range(start_epoch, s.epochs):
            if stale >= s.patience:
                break
            begin = time.perf_counter()
            self.model.train()
            total, seen = 0.0, 0
            if sampler is not None:
                sampler.set_epoch(epoch)
            batches = tqdm(
                self._loader(train, True, generator, sampler),
                desc=f"epoch {epoch + 1}/{s.epochs}",
                leave=False,
                disable=not (self.progress and main),
            )
            for x, y in batches:
                if self.augment is not None:
                    x, y = self.augment(x, y, generator)
                optimizer.zero_grad(set_to_none=True)
                loss = self.loss_fn(net(x), y)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
                optimizer.step()
                if scheduler.last_epoch < scheduler.total_steps - 1:
                    scheduler.step()
                total += float(loss.detach()) * len(x)
                seen += len(x)
            if world > 1:
                total, seen = _all_sum(total), _all_sum(seen)
            record = {"epoch": epoch + 1, "train_loss": total / seen}
            record.update({f"val_{k}": v for k, v in self.evaluate(validation).items()})
            record["lr"] = optimizer.param_groups[0]["lr"]
            record["seconds"] = time.perf_counter() - begin
            self.history.append(record)
            if record["val_loss"] < self.best_loss:
                self.best_loss, stale = record["val_loss"], 0
                self.best_state = copy.deepcopy(self.model.state_dict())
            else:
                stale += 1
            if main:
                self._log(record, writer)
            if checkpoint is not None and main:
                with atomic_path(checkpoint) as tmp:
                    torch.save(
                        {
                            "model": self.model.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(),
                            "generator": generator.get_state(),
                            "torch_rng": torch.get_rng_state(),
                            "history": self.history,
                            "best_model": self.best_state,
                            "best_loss": self.best_loss,
                            "epoch": epoch,
                            "stale": stale,
                            "settings": asdict(s),
                        },
                        tmp,
                    )
            if callback is not None:
                callback(record)
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        if writer is not None:
            writer.close()
        return self.history

    def _tensorboard(self):
        if self.tensorboard_dir is None:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional
            return None
        return SummaryWriter(log_dir=str(self.tensorboard_dir))

    def _log(self, record, writer):
        if self.log_path is not None:
            # Rewritten from the history each epoch: a fresh run never appends to an old log,
            # and a resumed one never repeats the epochs after its checkpoint.
            fields = list(dict.fromkeys(k for r in self.history for k in r))
            with atomic_path(self.log_path) as tmp, open(tmp, "w", newline="") as fh:
                out = csv.DictWriter(fh, fieldnames=fields)
                out.writeheader()
                out.writerows(self.history)
        if writer is not None:
            for key, value in record.items():
                if key != "epoch":
                    writer.add_scalar(key, value, record["epoch"])


def _all_sum(value):
    """``value`` summed over the ranks (float64)."""
    tensor = torch.tensor([float(value)], dtype=torch.float64)
    torch.distributed.all_reduce(tensor)
    return float(tensor.item())


def _all_gather(tensors):
    """Every rank's list of tensors, concatenated in rank order (a list of tensors)."""
    gathered = [None] * ddp.world_size()
    torch.distributed.all_gather_object(gathered, [t.cpu() for t in tensors])
    return [t for part in gathered for t in part]
