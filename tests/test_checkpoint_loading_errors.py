"""Unreadable checkpoints: pickled objects, non-tensor entries and wrapped state dicts."""

import json

import pytest
import torch

from inference.config import config_from_dict
from inference.gpt import GPT, load_model
from inference.loading import CheckpointError

BASE = {"block_size": 8, "vocab_size": 16, "n_layer": 1, "n_head": 2, "d_model": 8, "bias": False}


class NotAllowlisted:
    """A class that torch.load(weights_only=True) does not allow."""


def write_checkpoint(folder, payload):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "beeg_config.json").write_text(json.dumps(BASE))
    torch.save(payload, folder / "final_model.pt")
    return folder


def size_of(folder):
    return (folder / "final_model.pt").stat().st_size


def state_dict():
    return GPT(config_from_dict(BASE)).state_dict()


def test_pickled_module_names_file_size_and_fix(tmp_path):
    folder = write_checkpoint(tmp_path / "m", GPT(config_from_dict(BASE)))
    with pytest.raises(CheckpointError) as info:
        load_model(folder)
    message = str(info.value)
    assert f"final_model.pt ({size_of(folder)} bytes)" in message
    assert "pickled object of class inference.gpt.GPT" in message
    assert "torch.save(model.state_dict(), 'final_model.pt')" in message


def test_non_allowlisted_object_names_its_class(tmp_path):
    folder = write_checkpoint(tmp_path / "m", {**state_dict(), "extra": NotAllowlisted()})
    with pytest.raises(CheckpointError) as info:
        load_model(folder)
    message = str(info.value)
    assert f"final_model.pt ({size_of(folder)} bytes)" in message
    assert "NotAllowlisted" in message
    assert "weights_only=False" not in message


def test_non_tensor_value_names_key_and_type(tmp_path):
    state = {**state_dict(), "transformer.ln_f.weight": [1.0] * 8}
    folder = write_checkpoint(tmp_path / "m", state)
    with pytest.raises(CheckpointError) as info:
        load_model(folder)
    message = str(info.value)
    assert f"final_model.pt ({size_of(folder)} bytes)" in message
    assert "maps 'transformer.ln_f.weight' to a list, expected a torch.Tensor" in message
    assert f"1 of {len(state)} entries are invalid" in message


def test_non_string_key_names_key_and_type(tmp_path):
    folder = write_checkpoint(tmp_path / "m", {1: torch.zeros(1), **state_dict()})
    with pytest.raises(CheckpointError) as info:
        load_model(folder)
    message = str(info.value)
    assert f"final_model.pt ({size_of(folder)} bytes)" in message
    assert "has a key 1 of type int, expected str" in message


@pytest.mark.parametrize("order", ["model_first", "step_first"])
def test_wrapped_state_dict_names_entry(tmp_path, order):
    payload = {"model": state_dict(), "step": 3}
    if order == "step_first":
        payload = {"step": 3, "model": payload["model"]}
    folder = write_checkpoint(tmp_path / "m", payload)
    with pytest.raises(CheckpointError) as info:
        load_model(folder)
    message = str(info.value)
    assert "wraps its state dict in the entry 'model'" in message
    assert "torch.save(checkpoint['model'], 'final_model.pt')" in message


def test_top_level_list_rejected(tmp_path):
    folder = write_checkpoint(tmp_path / "m", [torch.zeros(1)])
    with pytest.raises(CheckpointError, match=r"contains a list, expected a state dict"):
        load_model(folder)


def test_checkpoint_error_is_value_error():
    assert issubclass(CheckpointError, ValueError)
