"""Hyper-parameter optimisation of the networks with Optuna: local, resumable, shared by workers.

A study lives in an Optuna storage (SQLite by default, any SQLAlchemy URL such as PostgreSQL for
several machines). Each trial trains one network of the task with a point of the task's search
space (`deepfocus.training.search_spaces`) on a tuning preset's data, reports the validation
objective after every epoch (bad trials are pruned by a median rule) and records the config it
trained. ``n_trials`` is the number of *finished* trials of the study in total: workers running
the same command share them out, and a re-run after a kill continues where the study stopped.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import torch

from .._validation import check_seed
from ..exceptions import DeepFocusError, InvalidInputError
from ..io.atomic import atomic_path
from ..models import NetworkConfig, build_network
from .loss_weights import weighted_loss
from .presets import get_preset
from .samples import SAMPLES_VERSION
from .search_spaces import load_search_space
from .tasks import get_task
from .train import _dataset, _load_or_prepare, _scaled, network_arrays, output_folder
from .trainer import Trainer

__all__ = [
    "OBJECTIVES",
    "DEFAULT_STORAGE",
    "objective_metrics",
    "tuning_data",
    "run_trial",
    "open_study",
    "study_provenance",
    "optimize",
    "best_config",
    "write_best_config",
    "write_trials",
    "score_model",
]

#: Where a study is kept unless ``storage`` says otherwise.
DEFAULT_STORAGE = "sqlite:///deepfocus-study.db"

#: The validation metric each task's search maximises (DESIGN section 6): the deconvolver's
#: PSNR (dB), the spectral finder's line-extent IoU, and for the characterizer the mean of the
#: fractions of sources with flux within 10 % and (resolved, elongated sources) PA within 10 deg.
OBJECTIVES = {
    "deconvolver": "val_psnr",
    "spectral": "val_iou",
    "characterizer": "val_flux_pa_score",
}

_FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
_CLAIMED = (*_FINISHED, optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)


def _check_seed(seed):
    """``seed`` as a Python `int` if Optuna's and NumPy's generators take it (0 to 2**32 - 1).

    A plain `int` also goes into the study's user attributes and JSON files: a numpy integer
    there would not serialise.
    """
    return check_seed(seed, upper=2**32 - 1)


def _pa_within_10deg(prediction, target):
    """Fraction of resolved, elongated sources (intrinsic major >= 0.5 beam, ellipticity >= 0.2)
    whose predicted PA is within 10 deg of the truth (PA from ``atan2(sin 2PA, cos 2PA) / 2``)."""
    ellipticity = torch.hypot(target[:, 4], target[:, 5])
    resolved = (ellipticity >= 0.2) & (target[:, 2] >= 0.5)
    if not resolved.any():
        return 0.0
    pa_true = 0.5 * torch.atan2(target[:, 4], target[:, 5])
    pa_pred = 0.5 * torch.atan2(prediction[:, 4], prediction[:, 5])
    diff = torch.remainder(pa_pred - pa_true, math.pi)
    diff = torch.minimum(diff, math.pi - diff)
    return float((diff[resolved] < math.radians(10)).float().mean())


def objective_metrics(task):
    """``metrics(prediction, target) -> dict``: the task's validation metrics plus what its
    objective needs (characterizer: ``pa_within_10deg`` and ``flux_pa_score``)."""
    metrics = get_task(task).metrics
    if task != "characterizer":
        return metrics

    def characterizer_metrics(prediction, target):
        result = metrics(prediction, target)
        result["pa_within_10deg"] = _pa_within_10deg(prediction, target)
        result["flux_pa_score"] = 0.5 * (result["flux_within_10pct"] + result["pa_within_10deg"])
        return result

    return characterizer_metrics


def tuning_data(task, *, preset="tune", seed=0, cache_dir=".", data_dir=None, progress=True):
    """Training and validation arrays of ``task`` for trials, ready for `run_trial`.

    A preset with ``data_from`` (e.g. ``tune``) takes that preset's data -- from its cache
    ``data-v<version>-<preset>-seed<N>-*.npz`` in ``cache_dir`` when there is one, else simulated and
    cached there -- and keeps a seeded random ``train_fraction`` of the training samples and
    the whole validation set.

    Returns
    -------
    dict
        ``{"train": {"inputs", "targets"}, "validation": {...}}`` in the units the networks
        see (characterizer cutouts at unit peak, deconvolver crops); the characterizer's are
        turned at random in each training batch (`~deepfocus.training.tasks.dihedral_cutouts`).
    """
    get_task(task)
    p = get_preset(preset)
    source = p.data_from or preset
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    data, _ = _load_or_prepare(
        [task], cache_dir, preset=source, seed=seed, data_dir=data_dir, progress=progress
    )
    train, validation = data["train"][task], data["validation"][task]
    if p.train_fraction < 1:
        n = len(train["inputs"])
        keep = max(1, int(round(p.train_fraction * n)))
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(23,)))
        index = np.sort(rng.choice(n, keep, replace=False))
        train = {key: value[index] for key, value in train.items()}
    train, validation = network_arrays(task, train, validation, crop=p.crop, seed=seed)
    return {"train": train, "validation": validation}


def run_trial(task, tuned, data, *, preset="tune", seed=0, callback=None, progress=False):
    """Train one network with a tuned config and return its validation record.

    Parameters
    ----------
    task : str
        Task name.
    tuned : dict
        ``{"network": ..., "training": ..., "loss_weights": ...}`` as
        `SearchSpace.apply <deepfocus.training.search_spaces.SearchSpace.apply>` returns.
    data : dict
        `tuning_data`'s arrays.
    preset : str
        Epochs, patience and the default optimisation settings.
    seed : int
        Seed of the weights and batch order: the same ``tuned`` gives the same result.
    callback : callable, optional
        Passed to `Trainer.fit <deepfocus.training.Trainer.fit>` (``callback(record)`` each epoch).

    Returns
    -------
    best : dict
        The record of the epoch whose weights are kept (lowest validation loss), with the
        objective's metrics; ``best["epochs_run"]`` and ``best["train_seconds"]`` added.
    """
    settings = replace(get_preset(preset).training_settings(task, seed), **tuned.get("training", {}))
    torch.manual_seed(seed)
    model = build_network(NetworkConfig.from_dict(tuned["network"]))
    trainer = Trainer(
        model,
        weighted_loss(task, tuned.get("loss_weights")),
        settings,
        metrics_fn=objective_metrics(task),
        progress=progress,
        augment=get_task(task).augment,
    )
    start = time.perf_counter()
    history = trainer.fit(_dataset(data["train"]), _dataset(data["validation"]), callback=callback)
    best = dict(min(history, key=lambda r: r["val_loss"]))
    best["epochs_run"] = len(history)
    best["train_seconds"] = round(time.perf_counter() - start, 1)
    return best


def score_model(task, model, *, preset="default", seed=0, cache_dir=".", data_dir=None, batch_size=256):
    """Validation metrics of a trained network on a preset's validation set, with its score.

    Compares a retrained (tuned) network with the shipped one on the same data: e.g.
    ``score_model("characterizer", "characterizer-default")`` and
    ``score_model("characterizer", "tuned/characterizer-default.safetensors")``.

    Parameters
    ----------
    task : str
        Task name.
    model : str, path-like or `torch.nn.Module`
        A shipped model's name, a weights file (`deepfocus.models.load_model`) or a network.
    preset, seed, cache_dir, data_dir
        Which validation set (as for `tuning_data`; the cache in ``cache_dir`` is reused).

    Returns
    -------
    dict
        ``val_<metric>`` of the task's metrics and of its score (`OBJECTIVES`).
    """
    from ..models import load_model

    if not isinstance(model, torch.nn.Module):
        model, _ = load_model(model)
    p = get_preset(preset)
    data, _ = _load_or_prepare(
        [task], Path(cache_dir), preset=p.data_from or preset, seed=seed, data_dir=data_dir, progress=False
    )
    validation = _scaled(task, data["validation"][task])
    trainer = Trainer(
        model,
        get_task(task).loss,
        replace(p.training_settings(task, seed), batch_size=batch_size),
        metrics_fn=objective_metrics(task),
        progress=False,
    )
    return {f"val_{k}": v for k, v in trainer.evaluate(_dataset(validation)).items()}


class _TrialSeededTPE(optuna.samplers.TPESampler):
    """TPE whose random draws are seeded by ``seed`` and the trial number.

    Optuna's seeded samplers draw from one generator per process, so a re-run (or a second
    worker) with the same seed would repeat the first trials' parameters. Seeding each trial
    from its number -- unique in the storage -- keeps runs reproducible and workers apart.
    The generators are private attributes of Optuna's samplers (checked at construction).
    """

    def __init__(self, seed, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self._base_seed = int(seed)
        if not (hasattr(self, "_rng") and hasattr(getattr(self, "_random_sampler", None), "_rng")):
            raise DeepFocusError(
                f"optuna {optuna.__version__}: TPESampler internals changed; update deepfocus"
            )

    def before_trial(self, study, trial):
        seed = (self._base_seed * 1_000_003 + trial.number) % 2**32
        self._rng.rng.seed(seed)
        self._random_sampler._rng.rng.seed(seed + 1)
        super().before_trial(study, trial)


@contextlib.contextmanager
def _quiet_optuna():
    """Hide Optuna's "experimental feature" warnings (heartbeats, stale-trial handling)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _storage(storage, heartbeat, attempts=5):
    """An `optuna.storages.RDBStorage` with heartbeats, retrying a fresh database's set-up.

    Workers started together on a new database race to create its tables (one of them gets
    an integrity or "already exists" error): the loser retries after a moment.
    """
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(attempts):
        try:
            with _quiet_optuna():
                return optuna.storages.RDBStorage(
                    storage,
                    # SQLite locks the whole file per write: let workers wait for one another
                    # (the default 5 s is short on a loaded machine) rather than fail.
                    engine_kwargs={"connect_args": {"timeout": 60}}
                    if str(storage).startswith("sqlite")
                    else None,
                    heartbeat_interval=int(heartbeat),
                    grace_period=2 * int(heartbeat),
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=1
                    ),
                )
        except (IntegrityError, OperationalError) as exc:
            if attempt == attempts - 1:
                raise InvalidInputError(f"cannot open study storage {_safe_url(storage)}: {exc}") from None
            time.sleep(0.5 * (attempt + 1))
        except Exception as exc:  # SQLAlchemy and Optuna raise many kinds for a bad URL
            raise InvalidInputError(f"cannot open study storage {_safe_url(storage)}: {exc}") from None


def _safe_url(storage):
    """The storage URL with any password hidden (for files and logs)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(storage).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL: nothing to hide
        return str(storage)


def open_study(
    storage=DEFAULT_STORAGE,
    study_name=None,
    *,
    task,
    seed=0,
    provenance=None,
    n_startup_trials=6,
    heartbeat=30,
):
    """Create or load the study ``study_name`` (default ``deepfocus-<task>``) in ``storage``.

    Parameters
    ----------
    storage : str
        SQLAlchemy URL (``sqlite:///file.db``, ``postgresql://user@host/db``, ...).
    provenance : dict, optional
        What the trials' scores depend on (`optimize` gives ``preset``, ``seed``, ``data`` and
        ``search_space``), kept as the study's user attributes: a study with trials made with
        other values is refused, so that trials on other data are never ranked together. A
        study without them (made by an earlier version) continues and takes these.
    heartbeat : int
        Seconds between a running trial's heartbeats; a trial silent for twice as long (its
        worker was killed) is marked failed and its parameters queued again.

    Raises
    ------
    deepfocus.exceptions.InvalidInputError
        An unusable URL, a seed outside 0 to 2**32 - 1, or a study of that name made for
        another task or with another ``provenance``.
    """
    seed = _check_seed(seed)
    study_name = study_name or f"deepfocus-{task}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = _storage(storage, heartbeat)
    study = optuna.create_study(
        storage=rdb,
        study_name=study_name,
        direction="maximize",
        load_if_exists=True,
        sampler=_TrialSeededTPE(seed, n_startup_trials=n_startup_trials),
        # Steps are epochs (1, 2, ...): a trial is never pruned in its first two epochs, or five
        # for the characterizer, whose epochs are half as long since its samples are no longer
        # doubled by their mirror images (the same share of its tune preset's 12 epochs).
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=5, n_warmup_steps=6 if task == "characterizer" else 3
        ),
    )
    made_for = study.user_attrs.get("task")
    if made_for not in (None, task):
        raise InvalidInputError(
            f"study {study_name!r} in {_safe_url(storage)} is for task {made_for!r}, not {task!r}"
        )
    _check_provenance(study, provenance or {}, storage)
    if made_for is None:
        study.set_user_attr("task", task)
        study.set_user_attr("objective", OBJECTIVES[task])
    return study


#: What a study made before a provenance value was recorded ran with: its trials trained on
#: the first version of the samples.
_BEFORE_RECORDED = {"samples": "version 1"}


def _check_provenance(study, provenance, storage):
    """Refuse a study whose trials were made with another ``provenance``; record it otherwise.

    Values a study does not hold yet (a new study, or one made before they were recorded) are
    set, except the samples' version, which such a study's trials had at 1; so are other values
    of a study with no finished, running or queued trial (nothing would be mixed).
    """
    attrs = {**_BEFORE_RECORDED, **study.user_attrs}
    differ = [key for key, value in provenance.items() if key in attrs and attrs[key] != value]
    if differ and _count(study.get_trials(deepcopy=False), _CLAIMED):
        details = "; ".join(f"{key} {attrs[key]!r}, not {provenance[key]!r}" for key in differ)
        raise InvalidInputError(
            f"study {study.study_name!r} in {_safe_url(storage)} was run with different "
            f"{', '.join(differ)}: give a new --storage or --study name to tune with these ({details})"
        )
    for key, value in provenance.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)


def study_provenance(task, *, preset, seed, data_dir=None, space=None):
    """What the scores of ``task``'s trials depend on, as `open_study` records it.

    Returns
    -------
    dict
        ``preset``, ``seed``, ``data`` (the absolute path of ``data_dir``, or the preset whose
        simulated data the trials use), ``samples`` (the version of the samples cut from them,
        `~deepfocus.training.samples.SAMPLES_VERSION`) and ``search_space`` (``shipped``, a
        file's absolute path, or a digest of a dict).
    """
    if data_dir is not None:
        data = str(Path(data_dir).resolve())
    else:
        data = f"simulated ({get_preset(preset).data_from or preset} preset)"
    if space is None:
        space_name = f"shipped ({task})"
    elif isinstance(space, dict):
        digest = hashlib.sha256(json.dumps(space, sort_keys=True).encode()).hexdigest()[:12]
        space_name = f"dict (sha256 {digest})"
    else:
        space_name = str(Path(space).resolve())
    return {
        "preset": preset,
        "seed": _check_seed(seed),
        "data": data,
        "samples": f"version {SAMPLES_VERSION}",
        "search_space": space_name,
    }


class _Surplus(Exception):
    """A trial created after the study already had its trials (see `optimize`)."""


class _Interrupted(BaseException):
    """A trial's Ctrl-C, raised past Optuna (which catches only `Exception` and
    `KeyboardInterrupt`) so that it neither logs a traceback nor fails the trial itself."""

    def __init__(self, number):
        super().__init__(number)
        self.number = number


def _interruptible(objective):
    """``objective`` raising `_Interrupted` instead of `KeyboardInterrupt` (see `_requeue`)."""

    def wrapped(trial):
        try:
            return objective(trial)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise _Interrupted(trial.number) from None

    return wrapped


def _requeue(study, number):
    """Fail the interrupted trial ``number`` and queue its parameters to run first next time,
    as the heartbeat's retry does for a killed worker's trial. The copy keeps the trial's retry
    history as it is: an interrupt does not use up the one retry a kill gets.

    Returns
    -------
    `optuna.trial.FrozenTrial`
        The failed trial.
    """
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    user_attrs = {k: v for k, v in trial.user_attrs.items() if k != "interrupted"}
    study.tell(number, state=optuna.trial.TrialState.FAIL)
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=dict(trial.params),
            distributions=dict(trial.distributions),
            user_attrs=user_attrs,
            system_attrs=dict(trial.system_attrs),
        )
    )
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def _count(trials, states, below=None):
    return sum(t.state in states and (below is None or t.number < below) for t in trials)


def optimize(
    task,
    n_trials,
    *,
    storage=DEFAULT_STORAGE,
    study_name=None,
    timeout=None,
    preset="tune",
    seed=0,
    output_dir=".",
    space=None,
    data_dir=None,
    heartbeat=30,
    progress=True,
    log=print,
):
    """Run trials of ``task`` until its study has ``n_trials`` finished ones; write the results.

    Parameters
    ----------
    task : {'deconvolver', 'spectral', 'characterizer'}
        Network to tune.
    n_trials : int
        Finished (complete or pruned) trials the study must have in total, over all workers
        and runs: a re-run of a finished study does nothing, a killed run's re-run continues.
    storage : str
        SQLAlchemy URL of the study's database (default ``sqlite:///deepfocus-study.db``).
    study_name : str, optional
        Default ``deepfocus-<task>``.
    timeout : float, optional
        Seconds after which this worker starts no new trial.
    preset : str
        Data and epochs of a trial (default ``tune``).
    seed : int
        Seed of the data, the weights and the sampler, from 0 to 2**32 - 1.
    output_dir : path-like
        Data cache, ``best-<task>.json`` (the best trial's config, for
        ``deepfocus train --config``) and ``trials-<task>.csv``.
    space : dict or path-like, optional
        Search space (default: the task's shipped one).
    data_dir : path-like, optional
        FITS triplets to use instead of simulated data.
    heartbeat : int
        Seconds between heartbeats of a running trial (see `open_study`).
    log : callable or None
        Receives one line per trial.

    Returns
    -------
    study : `optuna.study.Study`

    Raises
    ------
    deepfocus.exceptions.InvalidInputError
        Bad arguments, a study run with another preset, seed, data or search space
        (`open_study`), or data without training or validation samples of ``task`` (before
        any trial).
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise InvalidInputError(f"n_trials must be a positive integer, got {n_trials!r}")
    if timeout is not None and not timeout > 0:
        raise InvalidInputError(f"timeout must be a positive number of seconds, got {timeout!r}")
    seed = _check_seed(seed)
    search = load_search_space(task, space)
    get_preset(preset)
    provenance = study_provenance(task, preset=preset, seed=seed, data_dir=data_dir, space=space)
    output_dir = Path(output_dir)
    objective_key = OBJECTIVES[task]
    data = {}

    def prepare():
        """The trials' data, made (and checked) once, before this worker's first trial."""
        if not data:
            data["arrays"] = tuning_data(
                task, preset=preset, seed=seed, cache_dir=output_dir, data_dir=data_dir, progress=progress
            )

    def objective(trial):
        # A trial counts only if fewer than n_trials trials numbered before it are finished,
        # running or queued: two workers then never finish more than n_trials between them
        # (trial numbers are unique in the storage), whatever the timing.
        earlier = _count(trial.study.get_trials(deepcopy=False), _CLAIMED, below=trial.number)
        if earlier >= n_trials:
            trial.set_user_attr("surplus", True)
            raise _Surplus
        tuned = search.apply(search.suggest(trial))
        trial.set_user_attr("config", {k: v for k, v in tuned.items() if k != "params"})

        def report(record):
            trial.report(record[objective_key], record["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {record['epoch']}")

        best = run_trial(task, tuned, data["arrays"], preset=preset, seed=seed, callback=report)
        trial.set_user_attr("metrics", {k: v for k, v in best.items() if k.startswith("val_")})
        trial.set_user_attr("epochs_run", best["epochs_run"])
        trial.set_user_attr("train_seconds", best["train_seconds"])
        return best[objective_key]

    with output_folder(output_dir):  # made first: an SQLite storage may live in it
        study = open_study(
            storage,
            study_name,
            task=task,
            seed=seed,
            provenance=provenance,
            n_startup_trials=min(10, max(3, n_trials // 3)),
            heartbeat=heartbeat,
        )
        _run_trials(
            study,
            objective,
            n_trials,
            prepare=prepare,
            deadline=None if timeout is None else time.monotonic() + timeout,
            heartbeat=heartbeat,
            log=None if log is None else lambda t: log(_trial_line(study, t, objective_key, n_trials)),
        )
        if _count(study.get_trials(deepcopy=False), (optuna.trial.TrialState.COMPLETE,)):
            best = output_dir / f"best-{task}.json"
            write_best_config(study, best, preset=preset, seed=seed, storage=storage)
        write_trials(study, output_dir / f"trials-{task}.csv")
    return study


def _run_trials(study, objective, n_trials, *, prepare, deadline, heartbeat, log):
    """Run ``objective`` one trial at a time until the study has ``n_trials`` finished ones
    (or ``deadline``, a `time.monotonic` value, passes); ``prepare()`` before the first trial,
    ``log(trial)`` after each of this worker's trials.

    A `KeyboardInterrupt` during a trial fails it quietly (user attribute ``interrupted``),
    queues its parameters again (the next run starts with them, as after a kill) and is raised
    again.
    """
    failures = 0
    while True:
        with _quiet_optuna():
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        finished = _count(trials, _FINISHED)
        if finished >= n_trials or (deadline is not None and time.monotonic() > deadline):
            return
        waiting = _count(trials, (optuna.trial.TrialState.WAITING,))
        running = _count(trials, (optuna.trial.TrialState.RUNNING,))
        if not waiting and finished + running >= n_trials:
            # Other workers hold the last trials: wait for them to finish (or to go stale,
            # in which case their trials are queued again and picked up here).
            time.sleep(min(5.0, heartbeat / 2))
            continue
        prepare()
        done = []
        try:
            study.optimize(
                _interruptible(objective),
                n_trials=1,
                catch=(_Surplus,),
                gc_after_trial=True,
                callbacks=[lambda s, t, keep=done.append: keep(t)],
            )
        except _Interrupted as interrupted:
            trial = _requeue(study, interrupted.number)
            if log is not None:
                log(trial)
            raise KeyboardInterrupt from None
        if not done:
            continue
        trial, surplus = done[0], done[0].user_attrs.get("surplus")
        failures = failures + 1 if trial.state == optuna.trial.TrialState.FAIL and not surplus else 0
        if failures >= 3:
            raise DeepFocusError(f"3 trials in a row failed in study {study.study_name!r}; see the log above")
        if log is not None and not surplus:
            log(trial)


def _trial_line(study, trial, objective_key, n_trials):
    """One log line of a finished (or interrupted) trial."""
    value = "" if trial.value is None else f" {objective_key}={trial.value:.4g}"
    state = "interrupted, queued to run again" if trial.user_attrs.get("interrupted") else trial.state.name
    finished = _count(study.get_trials(deepcopy=False), _FINISHED)
    return f"trial {trial.number}: {state.lower()}{value} ({finished}/{n_trials} finished)"


def best_config(study, *, preset=None, seed=None, storage=None):
    """The best complete trial's config as ``deepfocus train --config`` reads it.

    Returns
    -------
    dict
        ``{"task", "network", "training", "loss_weights", "params", "objective", "study"}``.
    """
    best = study.best_trial
    task = study.user_attrs.get("task")
    config = best.user_attrs["config"]
    return {
        "task": task,
        "network": config["network"],
        "training": config["training"],
        "loss_weights": config["loss_weights"],
        "params": best.params,
        "objective": {"name": OBJECTIVES.get(task), "value": best.value, "direction": "maximize"},
        "validation_metrics": best.user_attrs.get("metrics", {}),
        "study": {
            "name": study.study_name,
            "storage": None if storage is None else _safe_url(storage),
            "trial": best.number,
            "n_complete": _count(study.get_trials(deepcopy=False), (optuna.trial.TrialState.COMPLETE,)),
            "preset": preset,
            "seed": None if seed is None else _check_seed(seed),
            "data": study.user_attrs.get("data"),
            "search_space": study.user_attrs.get("search_space"),
        },
    }


def write_best_config(study, path, **kwargs):
    """Write `best_config` as JSON to ``path`` (atomically); returns the dict."""
    config = best_config(study, **kwargs)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(config, indent=1) + "\n")
    return config


def write_trials(study, path):
    """Write one CSV row per trial (number, state, value, seconds, parameters, metrics), atomically.

    Written with the csv module: `optuna.study.Study.trials_dataframe` needs pandas, which
    deepfocus does not depend on.
    """
    trials = study.get_trials(deepcopy=False)
    params = sorted({p for t in trials for p in t.params})
    metrics = sorted({m for t in trials for m in t.user_attrs.get("metrics", {})})
    fields = ["number", "state", "value", "epochs_run", "duration_s", *params, *metrics]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        out = csv.DictWriter(fh, fieldnames=fields)
        out.writeheader()
        for t in trials:
            duration = None if t.duration is None else round(t.duration.total_seconds(), 1)
            row = {"number": t.number, "state": t.state.name, "value": t.value, "duration_s": duration}
            row["epochs_run"] = t.user_attrs.get("epochs_run", len(t.intermediate_values) or None)
            row.update(t.params)
            row.update(t.user_attrs.get("metrics", {}))
            out.writerow(row)
