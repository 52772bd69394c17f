"""Finding a task's weights: shipped names, files, and the folders `deepfocus train` writes."""

import shutil

import pytest

from deepfocus.exceptions import InvalidInputError
from deepfocus.models.registry import load_task_model, task_weights, weights_folder

TASKS = ("deconvolver", "spectral", "characterizer")


def _copy(task, folder, suffix):
    """The shipped weights of ``task`` as ``folder/<task>-<suffix>.safetensors`` (+ card)."""
    for ext in (".safetensors", ".json"):
        shutil.copyfile(weights_folder() / f"{task}-default{ext}", folder / f"{task}-{suffix}{ext}")
    return folder / f"{task}-{suffix}.safetensors"


def test_a_folder_of_any_preset_is_found(tmp_path):
    # `deepfocus train --preset tiny --output w` writes <task>-tiny: detect takes the folder.
    for task in TASKS:
        _copy(task, tmp_path, "tiny")
    for task in TASKS:
        network, info = load_task_model(tmp_path, task)
        assert info["name"] == str(tmp_path / f"{task}-tiny.safetensors")
        assert len(info["sha256"]) == 64
    _copy("spectral", tmp_path, "default")  # -default wins over others
    assert task_weights(tmp_path, "spectral").name == "spectral-default.safetensors"


def test_a_folder_without_or_with_several_weights_is_refused(tmp_path):
    message = "holds no spectral weights.*deepfocus train --task spectral"
    with pytest.raises(InvalidInputError, match=message) as info:
        load_task_model(tmp_path, "spectral")
    assert f"copy the shipped ones in ({weights_folder() / 'spectral-default.safetensors'}" in str(info.value)
    _copy("spectral", tmp_path, "tiny")
    _copy("spectral", tmp_path, "tune")
    with pytest.raises(InvalidInputError, match="several spectral weights"):
        load_task_model(tmp_path, "spectral")


@pytest.mark.parametrize("given", ["file", "folder"])
def test_weights_of_another_task_are_refused(tmp_path, given):
    # The spectral network's weights named as the characterizer's: a clear error, not an
    # IndexError from the wrong number of outputs.
    path = _copy("spectral", tmp_path, "default")
    path.rename(tmp_path / "characterizer-default.safetensors")
    (tmp_path / "spectral-default.json").rename(tmp_path / "characterizer-default.json")
    model = tmp_path if given == "folder" else tmp_path / "characterizer-default.safetensors"
    with pytest.raises(InvalidInputError, match="holds spectral weights, not characterizer weights"):
        load_task_model(model, "characterizer")


def test_shipped_names_with_or_without_their_task():
    for model in ("default", "deconvolver-default"):
        _, info = load_task_model(model, "deconvolver")
        assert info["name"] == "deconvolver-default"
    network, info = load_task_model(None, "spectral")
    assert network is None and info is None


@pytest.mark.parametrize("given", ["nonexistent_dir", "missing.safetensors", "spectral-nope"])
def test_a_missing_folder_file_or_name_is_named_as_given(tmp_path, monkeypatch, given):
    # Not "'spectral-nonexistent_dir' is neither a weights file nor ...": the user never typed
    # the task's prefix.
    monkeypatch.chdir(tmp_path)
    message = f"model '{given}': no such folder or weights file, and not a shipped model (shipped: default)"
    with pytest.raises(InvalidInputError) as info:
        load_task_model(given, "spectral")
    assert str(info.value) == message
