"""keep_freed_memory: forward passes reuse freed memory instead of faulting it in; the opt-out works."""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from inference import allocator

GLIBC = platform.libc_ver()[0] == "glibc"
REPO = Path(__file__).resolve().parents[1]

# Each script runs in a fresh interpreter, because the malloc settings last for the life of a
# process. Each prints what it measured as JSON.

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

# The same forward pass under either setting, because the settings change where memory comes
# from and never the numbers. benchmarks/inference.py measures the time they save. A pass's page
# faults depend on how fragmented the heap is, which varies from run to run, so they are not tested.
LOGITS_OF_FORWARD = """
import json, torch
from inference.allocator import keep_freed_memory
from inference.config import config_from_dict
from inference.gpt import GPT

applied = keep_freed_memory()
config = config_from_dict(
    dict(n_layer=2, d_model=256, n_head=4, d_mlp=1024, vocab_size=512, block_size=256)
)
torch.manual_seed(0)
torch.set_num_threads(1)
model = GPT(config).eval()
idx = torch.randint(0, 512, (8, 256))
with torch.no_grad():
    passes = [model(idx)[0] for _ in range(3)]
same = all(torch.equal(passes[0], other) for other in passes[1:])
print(json.dumps({"applied": applied, "same": same, "logits": passes[0][:, -1, :8].tolist()}))
"""


@pytest.fixture
def set_malloc(monkeypatch):
    """Return a function that sets CIRCUIT_SPARSITY_MALLOC as if keep_freed_memory had not run."""

    def set_value(value: str) -> None:
        monkeypatch.setattr(allocator, "_applied", False)
        monkeypatch.setenv(allocator.ENV_VAR, value)

    return set_value


def _run(script: str, malloc_setting: str) -> dict:
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
    system = _run(FAULTS_PER_LARGE_BLOCK, "system")
    reuse = _run(FAULTS_PER_LARGE_BLOCK, "reuse")

    assert system["applied"] is False
    assert reuse["applied"] is True
    assert min(system["faults"]) >= 16_000, system  # every allocation maps fresh pages
    assert max(reuse["faults"][1:]) < 100, reuse  # every later allocation reuses the freed block


@pytest.mark.skipif(not GLIBC, reason="the malloc settings apply to glibc only")
def test_forward_logits_match_across_settings():
    system = _run(LOGITS_OF_FORWARD, "system")
    reuse = _run(LOGITS_OF_FORWARD, "reuse")

    assert system["applied"] is False
    assert reuse["applied"] is True
    assert system["same"]
    assert reuse["same"]  # reused memory does not change later passes
    assert reuse["logits"] == system["logits"]


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
