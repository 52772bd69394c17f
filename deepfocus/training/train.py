"""Train the pipeline's networks end to end: simulate (or read) data, fit, save weights + card."""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .._validation import check_seed
from ..exceptions import InvalidInputError
from ..io.atomic import atomic_path
from ..models import NetworkConfig, build_network, save_weights
from ..version import __version__
from . import ddp
from .data import TASKS, cube_names, read_cube_triplets, simulate_cubes, task_arrays, training_observations
from .loss_weights import check_loss_weights, weighted_loss
from .presets import get_preset
from .samples import CUTOUT_SIZE, SAMPLES_VERSION
from .search_spaces import TUNABLE_SETTINGS
from .tasks import get_task
from .trainer import Trainer

__all__ = ["prepare_data", "check_samples", "train_task", "train", "SEED_OFFSETS", "VALIDATION_FRACTION"]

#: Training, validation and test sets draw from these offsets of the user's seed, so no cube
#: (nor observation set-up) of one set appears in another.
SEED_OFFSETS = {"train": 0, "validation": 10_000, "test": 20_000}

#: Fraction of the cubes of a ``data_dir`` (the last ones, by name) that validate.
VALIDATION_FRACTION = 0.15


def prepare_data(tasks, *, preset="default", seed=0, data_dir=None, progress=True):
    """Training and validation arrays of ``tasks``, from one simulation pass per set.

    Parameters
    ----------
    tasks : sequence of str
        Task names.
    preset : str
        Sizes of the sets (`~deepfocus.training.presets.PRESETS`).
    seed : int
        Base seed; the sets use ``seed + SEED_OFFSETS[...]``.
    data_dir : path-like, optional
        Use FITS triplets from this folder instead of simulating (the last 15 % of the files,
        by name, validate: `VALIDATION_FRACTION`).

    Returns
    -------
    data : dict
        ``data[set][task]`` with ``inputs``, ``targets`` arrays.
    recipe : dict
        How the data were made (for the model card): for ``data_dir``, its absolute path and
        the names of the training and validation cubes.
    """
    seed = check_seed(seed)
    p = get_preset(preset)
    if data_dir is not None:
        names = cube_names(data_dir)
        if len(names) < 2:
            raise InvalidInputError(f"{data_dir} holds fewer than 2 cubes: cannot split off validation")
        n_val = max(1, int(round(VALIDATION_FRACTION * len(names))))
        cubes = list(read_cube_triplets(data_dir, progress=progress))
        files = [f"{name}_dirty.fits" for name in names]
        data = {
            "train": task_arrays(tasks, cubes[:-n_val], seed=seed, names=files[:-n_val]),
            "validation": task_arrays(tasks, cubes[-n_val:], seed=seed + 1, names=files[-n_val:]),
        }
        recipe = {
            "source": "files",
            "data_dir": str(Path(data_dir).resolve()),
            "n_cubes": len(names),
            "train": names[:-n_val],
            "validation": names[-n_val:],
        }
        return data, recipe
    data = {}
    recipe = {"source": "simulation", "preset": preset, "engine": "fast", "sets": {}}
    for name, n_cubes in (("train", p.n_train_cubes), ("validation", p.n_validation_cubes)):
        set_seed = seed + SEED_OFFSETS[name]
        observations = training_observations(
            p.n_observations, seed=set_seed, npix=p.npix, n_channels=p.n_channels
        )
        cubes = simulate_cubes(n_cubes, seed=set_seed, observations=observations, progress=progress)
        data[name] = task_arrays(tasks, cubes, seed=set_seed)
        recipe["sets"][name] = {
            "seed": set_seed,
            "n_cubes": n_cubes,
            "observations": [o.to_dict() for o in observations],
        }
    recipe["catalogue"] = "wide (75 %) and paper (25 %) recipes, S/N 2-50, sizes 0-3 beams"
    return data, recipe


def check_samples(data, tasks, recipe):
    """Raise `InvalidInputError` unless every task has training and validation samples.

    Checked before any training, so that a data set too small for one task fails at once and
    names the task, its counts, where the data came from and what to do.
    """
    counts = {task: [len(data[name][task]["inputs"]) for name in ("train", "validation")] for task in tasks}
    short = [
        f"{task} ({n} training, {m} validation samples)" for task, (n, m) in counts.items() if 0 in (n, m)
    ]
    if not short:
        return
    if recipe.get("source") == "files":
        remedy = "give more cubes, or larger ones"
        origin = (
            f"{len(recipe['validation'])} of the {recipe['n_cubes']} cubes in {recipe['data_dir']} "
            f"validate (the last {VALIDATION_FRACTION:.0%} by name)"
        )
    else:
        remedy = "use a preset with more cubes, or larger ones"
        sets = recipe.get("sets", {})
        counted = " and ".join(f"{sets[name]['n_cubes']} {name}" for name in sets)
        origin = f"{counted} cubes simulated" if counted else "data from the cache"
    if 0 in counts.get("characterizer", ()):
        remedy += f" (the characterizer skips sources within {CUTOUT_SIZE // 2} px of an edge)"
    raise InvalidInputError(f"not enough data for {' and '.join(short)}: {remedy}; {origin}")


#: What a JSON value that is not an object is, for error messages.
_JSON_KINDS = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


def _read_config(config):
    """``config`` as given: a `NetworkConfig`, None, or the dict of a dict or JSON file.

    Raises `InvalidInputError` for a file that cannot be read or holds no JSON object.
    """
    if config is None or isinstance(config, (NetworkConfig, dict)):
        return config
    try:
        text = Path(config).read_text()
    except OSError as exc:
        raise InvalidInputError(f"cannot read network config {config}: {exc}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"network config {config} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        kind = _JSON_KINDS.get(type(value), "a number")
        raise InvalidInputError(f"network config {config} holds {kind}, not a JSON object")
    return value


def _tuned_extras(task, config):
    """Training-setting overrides and loss weights (all terms) of ``config``: those of a tuned
    config (``deepfocus optimize``'s ``best-<task>.json``: ``{"network": ..., "training": ...,
    "loss_weights": ...}``), none and the task's defaults otherwise."""
    config = _read_config(config)
    if not isinstance(config, dict) or "network" not in config:
        return {}, check_loss_weights(task, None)
    training = dict(config.get("training") or {})
    unknown = sorted(set(training) - set(TUNABLE_SETTINGS))
    if unknown:
        raise InvalidInputError(
            f"the config's training settings {', '.join(unknown)} cannot be set; "
            f"only {', '.join(TUNABLE_SETTINGS)}"
        )
    return training, check_loss_weights(task, config.get("loss_weights"))


def _resolve_config(task, config):
    """The `NetworkConfig` to train for ``task``: its default, a config, a dict or a JSON file.

    The dict or file holds a `NetworkConfig`'s fields, or a tuned config with them under
    ``"network"`` (as ``deepfocus optimize`` writes).

    Raises `InvalidInputError` for an unreadable file or a config whose mode, dimensions or
    channels do not fit the task's data.
    """
    definition = get_task(task)
    config = _read_config(config)
    if config is None:
        return definition.config
    if isinstance(config, dict):
        config = NetworkConfig.from_dict(config["network"] if "network" in config else config)
    wrong = [
        f"{k}={getattr(config, k)!r} (needs {getattr(definition.config, k)!r})"
        for k in ("mode", "dims", "in_channels", "out_channels")
        if getattr(config, k) != getattr(definition.config, k)
    ]
    if wrong:
        raise InvalidInputError(f"the network config does not fit task {task!r}: {', '.join(wrong)}")
    return config


def _dataset(arrays):
    return TensorDataset(torch.from_numpy(arrays["inputs"]), torch.from_numpy(arrays["targets"]))


def _scaled(task, arrays):
    """Characterizer cutouts at unit peak with shifted flux targets (see `samples.scale_cutouts`).

    The deconvolver keeps S/N units: deconvolution must keep the noise level, which a per-image
    rescaling would hide from it (a rescaled deconvolver had a validation PSNR of 26 dB after
    6 epochs, where the one in S/N units had 37 dB).
    """
    from .samples import scale_cutouts

    if task == "characterizer":
        inputs, log_scale = scale_cutouts(arrays["inputs"])
        targets = arrays["targets"].copy()
        targets[:, 6] -= log_scale
        return {"inputs": inputs, "targets": targets}
    return arrays


def network_arrays(task, train, validation, *, crop=None, seed=0):
    """Training and validation arrays as ``task``'s network sees them.

    Both are scaled (`_scaled`); the deconvolver's training images are cut into two random
    ``crop``-pixel crops each. (The characterizer's are turned at random in each batch instead:
    `~deepfocus.training.tasks.dihedral_cutouts`.)
    """
    train, validation = _scaled(task, train), _scaled(task, validation)
    if task == "deconvolver" and crop:
        train = random_crops(train, crop, 2, seed)
    return train, validation


def random_crops(arrays, size, per_image, seed):
    """``per_image`` random ``size`` x ``size`` crops of every image pair (deconvolver training).

    The network is fully convolutional, so it trains on crops and runs on whole images; crops
    cut the cost per step and add variety. Images no larger than ``size`` are kept whole.
    """
    inputs, targets = arrays["inputs"], arrays["targets"]
    ny, nx = inputs.shape[-2:]
    if ny <= size and nx <= size:
        return arrays
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(17,)))
    out_x, out_y = [], []
    for x, y in zip(inputs, targets, strict=True):
        for _ in range(per_image):
            y0, x0 = int(rng.integers(0, ny - size + 1)), int(rng.integers(0, nx - size + 1))
            out_x.append(x[..., y0 : y0 + size, x0 : x0 + size])
            out_y.append(y[..., y0 : y0 + size, x0 : x0 + size])
    return {"inputs": np.stack(out_x), "targets": np.stack(out_y)}


def _cache_file(output_dir, preset, seed, tasks, data_dir):
    if data_dir is not None:
        return None
    # The samples' version is in the name: a cache of another version's samples is not used.
    return Path(output_dir) / f"data-v{SAMPLES_VERSION}-{preset}-seed{seed}-{'-'.join(sorted(tasks))}.npz"


def _load_or_prepare(tasks, output_dir, *, preset, seed, data_dir, progress):
    """`prepare_data`, cached in the output folder so that a re-run skips the simulation, and
    checked (`check_samples`) before it is cached or used."""
    cache = _cache_file(output_dir, preset, seed, tasks, data_dir)
    if cache is not None and not cache.exists():
        # A cache made for more tasks serves a subset of them.
        for other in sorted(Path(output_dir).glob(f"data-v{SAMPLES_VERSION}-{preset}-seed{seed}-*.npz")):
            if set(tasks) <= set(other.stem.split(f"seed{seed}-", 1)[1].split("-")):
                cache = other
                break
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as npz:
            recipe = json.loads(str(npz["recipe"]))
            data = {
                name: {
                    task: {key: npz[f"{name}/{task}/{key}"] for key in ("inputs", "targets")}
                    for task in tasks
                }
                for name in ("train", "validation")
            }
        check_samples(data, tasks, recipe)
        return data, recipe
    data, recipe = prepare_data(tasks, preset=preset, seed=seed, data_dir=data_dir, progress=progress)
    check_samples(data, tasks, recipe)
    if cache is not None:
        flat = {
            f"{name}/{task}/{key}": data[name][task][key]
            for name in ("train", "validation")
            for task in tasks
            for key in ("inputs", "targets")
        }
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, recipe=json.dumps(recipe), **flat)
    return data, recipe


def train_task(
    task, data, recipe, output, *, preset="default", seed=0, config=None, progress=True, command=None
):
    """Train one network on prepared arrays and write its weights and model card.

    Parameters
    ----------
    task : str
        Task name.
    data : dict
        ``data["train"][task]`` and ``data["validation"][task]`` arrays (`prepare_data`).
    recipe : dict
        Data recipe for the model card.
    output : path-like
        Weights file (``.safetensors``; the card is written beside it as ``.json``, the
        training log as ``.csv``). Existing files are replaced; the log is written under a
        temporary name and moved into place after the weights, so a killed run never leaves a
        log beside weights it does not belong to.
    preset : str
        Training recipe (`~deepfocus.training.presets.PRESETS`), for the training settings.
    seed : int
        Seed of the networks' initialisation and batches.
    config : `~deepfocus.models.NetworkConfig`, dict or path-like, optional
        Architecture (default: the task's); a JSON file as ``deepfocus optimize`` writes.
    progress : bool
        Show progress bars.
    command : str, optional
        The command line recorded in the model card.

    Returns
    -------
    card : dict
        The model card written.
    """
    definition = get_task(task)
    seed = check_seed(seed)
    config = _read_config(config)
    overrides, loss_weights = _tuned_extras(task, config)
    config = _resolve_config(task, config)
    settings = replace(get_preset(preset).training_settings(task, seed), **overrides)
    output = Path(output)
    torch.manual_seed(seed)
    model = build_network(config)
    train_arrays, validation_arrays = network_arrays(
        task, data["train"][task], data["validation"][task], crop=get_preset(preset).crop, seed=seed
    )
    partial_log = output.with_name(f".{output.stem}.csv.part")
    trainer = Trainer(
        model,
        weighted_loss(task, loss_weights),
        settings,
        metrics_fn=definition.metrics,
        log_path=partial_log,
        tensorboard_dir=output.with_name(f"{output.stem}_tensorboard"),
        progress=progress,
        augment=definition.augment,
    )
    start = time.perf_counter()
    try:
        history = trainer.fit(_dataset(train_arrays), _dataset(validation_arrays))
    except BaseException:
        if ddp.is_main_process():  # the rank that writes the log
            partial_log.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - start
    best = min(history, key=lambda r: r["val_loss"])
    card = {
        "task": task,
        "description": definition.description,
        "outputs": list(definition.targets),
        "training": {
            "preset": preset,
            "seed": seed,
            "settings": asdict(settings),
            "loss_weights": loss_weights,
            "epochs_run": len(history),
            "training_seconds": round(seconds, 1),
            "threads": torch.get_num_threads(),
            "n_train_samples": int(len(train_arrays["inputs"])),
            "train_sample_shape": list(train_arrays["inputs"].shape[1:]),
            "n_validation_samples": int(len(data["validation"][task]["inputs"])),
            # What the samples were and how each batch was changed (None: as they were).
            "samples_version": SAMPLES_VERSION,
            "augment": getattr(definition.augment, "__name__", None),
            "command": command or f"deepfocus train --task {task} --preset {preset} --seed {seed}",
            "deepfocus_version": __version__,
        },
        "data": recipe,
        "metrics": {k: v for k, v in best.items() if k.startswith("val_")},
    }
    if ddp.is_main_process():  # under torchrun every rank ends with these weights; rank 0 writes them
        _save_run(model, output, card, partial_log)
    return card


def _save_run(model, output, card, partial_log):
    """Write the weights and card, then move the run's log into place beside them.

    The old log goes first, and so does the training plot (``deepfocus train --plot``) of the
    weights replaced, if any: a run killed in between leaves none rather than those of another
    run. A plot beside no weights is not this command's, and stays.
    """
    log = output.with_suffix(".csv")
    replacing = output.exists()
    log.unlink(missing_ok=True)
    if replacing:
        output.with_suffix(".png").unlink(missing_ok=True)
    save_weights(model, output, card=card)
    if partial_log.exists():
        os.replace(partial_log, log)


@contextlib.contextmanager
def output_folder(path):
    """Create the folder ``path`` for a run's outputs; if the run fails, remove it again when
    this created it and it is still empty.

    Raises `InvalidInputError` when ``path``, or the nearest of its parents that exists, is
    not a folder.
    """
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "it" if existing == path else existing
        raise InvalidInputError(f"output {path} must be a folder: {where} is a file")
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        if created and path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        raise


def _refuse_replacing(weights):
    """Raise `FileExistsError` naming the first of ``weights`` (task -> path) that exists, and
    the tasks still to train where some are (an interrupted run of several tasks)."""
    existing = [path for path in weights.values() if path.exists()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        missing = [task for task, path in weights.items() if not path.exists()]
        others = ", then ".join(f"--task {task}" for task in missing)
        rest = f"; or train only the others, one run each ({others} on the command line)" if missing else ""
        raise FileExistsError(
            f"{existing[0]}{more} exists: pass overwrite=True, or --overwrite on the command line, "
            f"to replace it{rest}"
        )


def _write_summary(path, cards):
    """Merge this run's metrics and seconds per task into the JSON summary ``path``, keeping
    the entries of tasks trained by earlier runs into the same folder."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        summary = {}
    if not isinstance(summary, dict):
        summary = {}
    for task, card in cards.items():
        summary[task] = card["metrics"] | {"seconds": card["training"]["training_seconds"]}
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=1))


def train(
    tasks,
    output_dir,
    *,
    preset="default",
    seed=0,
    data_dir=None,
    config=None,
    overwrite=False,
    progress=True,
    command=None,
):
    """Prepare data once and train each of ``tasks`` (``"all"`` for the three networks).

    Writes ``OUTPUT_DIR/<task>-<preset>.safetensors`` (+ ``.json`` card, ``.csv`` log) and
    merges each task's metrics into ``OUTPUT_DIR/training-<preset>.json`` as soon as the task
    is trained (so an interrupted run keeps those of the tasks it finished).

    Parameters
    ----------
    tasks : str or list of str
        ``"deconvolver"``, ``"spectral"``, ``"characterizer"``, a list of them, or ``"all"``.
    output_dir : path-like
        Folder of the weights, cards, logs, metrics and the cached training data (made if
        missing).
    preset : str
        Training recipe (`~deepfocus.training.presets.PRESETS`: ``"default"``, the shipped
        weights' recipe; ``"tune"``; ``"tiny"``, seconds, to check a set-up).
    seed : int
        Seed of the data (the training, validation and test sets use distinct seeds derived
        from it) and of the networks' initialisation and batches.
    data_dir : path-like, optional
        A folder of ``NAME_dirty.fits``, ``NAME_sky.fits`` and ``NAME_truth.ecsv`` files to
        train on instead of simulating (the last 15 % by name validate).
    config : `~deepfocus.models.NetworkConfig`, dict or path-like, optional
        The architecture of the one task trained (a JSON file as ``deepfocus optimize``
        writes); default: the task's own.
    overwrite : bool
        Replace existing weights of the tasks; if False (the default), existing weights raise
        `FileExistsError` before any work is done.
    progress : bool
        Show progress bars.
    command : str, optional
        The command line recorded in the model cards (default: the call).

    Returns
    -------
    cards : dict
        Model card per task.

    Raises
    ------
    deepfocus.exceptions.InvalidInputError
        An unknown task or preset, a negative seed, an output that is not a folder, an
        unusable config, or data too small for a task (before any training).
    """
    tasks = list(TASKS) if tasks in ("all", ["all"]) else ([tasks] if isinstance(tasks, str) else list(tasks))
    tasks = list(dict.fromkeys(tasks))
    for task in tasks:
        get_task(task)
    get_preset(preset)
    seed = check_seed(seed)  # a plain int: the model cards are JSON
    if config is not None and len(tasks) != 1:
        raise InvalidInputError("--config applies to one task at a time")
    if config is not None:  # checked before the (long) data preparation
        config = _read_config(config)
        _resolve_config(tasks[0], config)
        _tuned_extras(tasks[0], config)
    output_dir = Path(output_dir)
    weights = {task: output_dir / f"{task}-{preset}.safetensors" for task in tasks}
    if not overwrite:
        _refuse_replacing(weights)
    # Under torchrun, rank 0 simulates (and caches) the data; the other ranks then read the cache.
    main = ddp.is_main_process()
    progress = progress and main
    with output_folder(output_dir):
        if not main:
            ddp.barrier()  # wait for rank 0's cache
        try:
            data, recipe = _load_or_prepare(
                tasks, output_dir, preset=preset, seed=seed, data_dir=data_dir, progress=progress
            )
        finally:  # also when the data are refused: the other ranks then fail on them too
            if main:
                ddp.barrier()
        cards = {}
        for task in tasks:
            cards[task] = train_task(
                task,
                data,
                recipe,
                weights[task],
                preset=preset,
                seed=seed,
                config=config,
                progress=progress,
                command=command,
            )
            if main:  # after each task: Ctrl-C during the next one keeps this one's entry
                _write_summary(output_dir / f"training-{preset}.json", {task: cards[task]})
    return cards
