"""load_model and load_tensor: the device (CPU unless CUDA is requested and present), the layers
that get the sparse path, and how much of a checkpoint one tensor's read takes (its pages only)."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inference.config import config_from_dict
from inference.gpt import GPT, load_model
from inference.loading import load_tensor, pick_device
from inference.sparse import SparseLinear

REPO = Path(__file__).resolve().parents[1]
CONFIG = {"block_size": 8, "vocab_size": 16, "n_layer": 1, "n_head": 2, "d_model": 8, "bias": False}


@pytest.fixture
def model_dir(tmp_path):
    (tmp_path / "beeg_config.json").write_text(json.dumps(CONFIG))
    torch.save(GPT(config_from_dict(CONFIG)).state_dict(), tmp_path / "final_model.pt")
    return tmp_path


def test_default_device_is_cpu(model_dir):
    model = load_model(model_dir)
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert not model.training


def test_cuda_without_device_falls_back(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="inference.loading"):
        assert pick_device(cuda=True) == torch.device("cpu")
    assert "no CUDA device is available" in caplog.text


def test_cuda_chosen_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(cuda=True) == torch.device("cuda")
    assert pick_device(cuda=False) == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_load_moves_weights(model_dir):
    model = load_model(model_dir, cuda=True)
    assert {p.device.type for p in model.parameters()} == {"cuda"}


# Reads one small tensor from a checkpoint with a 64 MiB neighbour and prints the bytes that
# read() calls returned (rchar in /proc/self/io). Pages of a memory map are not counted there,
# while torch.load without mmap reads every tensor with read().
READ_BYTES = """
import sys, torch
from inference.loading import load_tensor, read_state_dict

def rchar():
    with open("/proc/self/io") as io:
        return int(next(line for line in io if line.startswith("rchar:")).split()[1])

folder = sys.argv[1]
before = rchar()
small = load_tensor(folder, "small")
after_one = rchar()
read_state_dict(folder + "/final_model.pt", mmap=False)
after_all = rchar()
assert torch.equal(small, torch.arange(4.0))
print(after_one - before, after_all - after_one)
"""


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux's /proc/self/io")
def test_load_tensor_reads_only_its_pages(tmp_path):
    big = torch.ones(16 << 20)  # 64 MiB of float32
    torch.save({"small": torch.arange(4.0), "big": big}, tmp_path / "final_model.pt")
    (tmp_path / "beeg_config.json").write_text(json.dumps(CONFIG))

    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-c", READ_BYTES, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr

    one_tensor, whole_file = (int(n) for n in result.stdout.split())
    assert whole_file >= 64 << 20  # rchar counts a full read
    assert one_tensor < 4 << 20  # the memory-mapped read of one tensor skips the 64 MiB one


def test_load_tensor_names_missing_key(model_dir):
    with pytest.raises(KeyError, match="has no tensor 'nope'"):
        load_tensor(model_dir, "nope")


def test_auto_sparse_picks_large_sparse_layers(tmp_path):
    # c_fc has 2**20 weights at density 1/64, so "auto" gives it CSR products. c_attn is as
    # large but dense, so it keeps dense products.
    config = dict(CONFIG, d_model=1024, d_mlp=1024, n_head=8, vocab_size=64)
    torch.manual_seed(0)
    model = GPT(config_from_dict(config))
    with torch.no_grad():
        weight = model.transformer.h[0].mlp.c_fc.weight
        weight.mul_(torch.rand_like(weight) < 1 / 64)
    (tmp_path / "beeg_config.json").write_text(json.dumps(config))
    torch.save(model.state_dict(), tmp_path / "final_model.pt")

    auto = load_model(tmp_path)
    dense = load_model(tmp_path, sparse=False)
    block = auto.transformer.h[0]
    assert isinstance(block.mlp.c_fc, SparseLinear)
    assert not isinstance(block.attn.c_attn, SparseLinear)

    idx = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(auto(idx)[0], dense(idx)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("sparse", [1, 0, 1.0, "yes", None])
def test_sparse_flag_must_be_bool_or_auto(model_dir, sparse):
    # 1 == True in Python, so a check by equality alone let sparse=1 take the "auto" path.
    with pytest.raises(ValueError, match=f"sparse={sparse!r} is invalid"):
        load_model(model_dir, sparse=sparse)
