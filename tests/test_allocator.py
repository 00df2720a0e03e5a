"""keep_freed_memory: forward passes reuse freed memory instead of faulting it in; the opt-out works."""

import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from inference import allocator

GLIBC = platform.libc_ver()[0] == "glibc"
REPO = Path(__file__).resolve().parents[1]

# Each script runs in a fresh interpreter, because the malloc settings last for the life of a
# process. Each prints the minor page faults of every step as JSON.

# 64 MiB is above glibc's largest automatic mmap threshold (32 MiB on 64-bit), so with the
# defaults every allocation of it is a fresh mmap() that faults in all 16,384 of its pages.
FAULTS_PER_LARGE_BLOCK = """
import ctypes, ctypes.util, json, resource
from inference.allocator import keep_freed_memory

applied = keep_freed_memory()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""

# Activations of 2 MiB to 8 MiB. With glibc's defaults the faults vary from pass to pass, because
# the automatic thresholds move. With the settings, most passes after the first fault nothing.
FAULTS_PER_FORWARD = """
import json, resource, torch
from inference.allocator import keep_freed_memory
from inference.config import config_from_dict
from inference.gpt import GPT

applied = keep_freed_memory()
config = config_from_dict(
    dict(n_layer=2, d_model=256, n_head=4, d_mlp=1024, vocab_size=512, block_size=256)
)
torch.manual_seed(0)
model = GPT(config).eval()
idx = torch.randint(0, 512, (8, 256))
faults = []
with torch.no_grad():
    for _ in range(8):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        model(idx)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""


@pytest.fixture
def set_malloc(monkeypatch):
    """Return a function that sets CIRCUIT_SPARSITY_MALLOC as if keep_freed_memory had not run."""

    def set_value(value: str) -> None:
        monkeypatch.setattr(allocator, "_applied", False)
        monkeypatch.setenv(allocator.ENV_VAR, value)

    return set_value


def _faults(script: str, malloc_setting: str) -> dict:
    env = dict(os.environ, CIRCUIT_SPARSITY_MALLOC=malloc_setting, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="the malloc settings apply to glibc only")
def test_large_block_reuses_freed_memory():
    system = _faults(FAULTS_PER_LARGE_BLOCK, "system")
    reuse = _faults(FAULTS_PER_LARGE_BLOCK, "reuse")

    assert system["applied"] is False
    assert reuse["applied"] is True
    assert min(system["faults"]) >= 16_000, system  # every allocation maps fresh pages
    assert max(reuse["faults"][1:]) < 100, reuse  # every later allocation reuses the freed block


@pytest.mark.skipif(not GLIBC, reason="the malloc settings apply to glibc only")
def test_forward_reuses_freed_memory():
    system = _faults(FAULTS_PER_FORWARD, "system")
    reuse = _faults(FAULTS_PER_FORWARD, "reuse")

    assert max(system["faults"][1:]) > 1000, system  # the cost that the settings remove
    assert statistics.median(reuse["faults"][1:]) < 100, reuse


def test_system_setting_keeps_defaults(set_malloc):
    set_malloc("system")
    assert allocator.keep_freed_memory() is False


def test_invalid_setting_rejected(set_malloc):
    set_malloc("jemalloc")
    with pytest.raises(ValueError, match="CIRCUIT_SPARSITY_MALLOC='jemalloc' is invalid"):
        allocator.keep_freed_memory()


def test_app_exits_on_invalid_setting():
    env = dict(os.environ, CIRCUIT_SPARSITY_MALLOC="jemalloc")
    result = subprocess.run(
        [sys.executable, str(REPO / "app.py"), "--help"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "error: CIRCUIT_SPARSITY_MALLOC='jemalloc' is invalid" in result.stderr
    assert "Traceback" not in result.stderr


def test_empty_setting_means_default(set_malloc):
    set_malloc("")
    assert allocator.keep_freed_memory() is GLIBC


def test_cli_exits_with_value_as_typed(set_malloc):
    set_malloc("JeMalloc")
    with pytest.raises(SystemExit) as exit_info:
        allocator.keep_freed_memory_or_exit()
    assert str(exit_info.value).startswith("error: CIRCUIT_SPARSITY_MALLOC='JeMalloc' is invalid")
