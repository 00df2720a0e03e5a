"""Multi-process training: two ranks train the same model as one process with the same global batch.

The tests start each rank as torchrun does: a ``python`` process with RANK, LOCAL_RANK, WORLD_SIZE,
MASTER_ADDR and MASTER_PORT in its environment. The test itself hosts the rendezvous store, as
torchrun's agent would, on a free port of 127.0.0.1, and TORCHELASTIC_USE_AGENT_STORE makes every
rank a client of it. The tests do not run torchrun itself, because the TCPStore it creates listens on
every network interface (seen with PyTorch 2.13), and a test may listen on 127.0.0.1 only.
"""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from training_corpus import extra_dirs_value

from registry.tokenizer import get_encoding
from training import data, trainer
from training.config import load_run_config
from training.distributed import DistributedContext, local_batch_size
from training.sparsity import sparse_parameters

REPO = Path(__file__).resolve().parents[1]
RANK_TIMEOUT_S = 900  # about 10 s on an idle 2-core machine, far longer on a loaded one

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="this PyTorch build has no gloo backend",
)


def tiny_overrides(root: Path, *extra: str) -> list[str]:
    corpus_dirs = extra_dirs_value()
    return [
        f'train.out_dir="{root / "store"}"',
        f'train.checkpoint_dir="{root / "checkpoints"}"',
        "train.include_stdlib=false",
        f"train.extra_dirs={corpus_dirs}",
        "train.validation_fraction=0.3",
        *extra,
    ]


@contextlib.contextmanager
def loopback_store():
    """Host a TCPStore on a free port of 127.0.0.1 (and no other address); yield the port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    # The store takes over the listening socket and closes it when the store is deleted.
    store = dist.TCPStore(
        "127.0.0.1",
        port,
        is_master=True,
        master_listen_fd=listener.detach(),
        wait_for_workers=False,
    )
    try:
        yield port
    finally:
        del store


def rank_environment(rank: int, world_size: int, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        GROUP_RANK="0",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        TORCHELASTIC_USE_AGENT_STORE="True",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
    )
    if sys.platform == "linux":
        env["GLOO_SOCKET_IFNAME"] = "lo"  # gloo's own sockets on the loopback interface only
    return env


def wait_for_ranks(processes: list[subprocess.Popen]) -> bool:
    """Wait for every rank to exit; kill all when one fails (its peers would wait for it) or when
    RANK_TIMEOUT_S has passed. Return whether the time ran out."""
    deadline = time.monotonic() + RANK_TIMEOUT_S
    timed_out = True
    while time.monotonic() < deadline:
        codes = [process.poll() for process in processes]
        if all(code == 0 for code in codes) or any(code not in (None, 0) for code in codes):
            timed_out = False
            break
        time.sleep(0.2)
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()
    return timed_out


def run_ranks(args: list[str], log_dir: Path, world_size: int = 2) -> list[tuple[str, str]]:
    """Run ``python ARGS`` as ``world_size`` ranks; return each rank's (stdout, stderr).

    Fails the test when a rank exits with an error or runs longer than RANK_TIMEOUT_S.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    processes = []
    with loopback_store() as port:
        for rank in range(world_size):
            stdout = (log_dir / f"rank{rank}.out").open("w")
            stderr = (log_dir / f"rank{rank}.err").open("w")
            process = subprocess.Popen(
                [sys.executable, *args],
                cwd=REPO,
                env=rank_environment(rank, world_size, port),
                stdout=stdout,
                stderr=stderr,
            )
            processes.append((process, stdout, stderr))
        timed_out = wait_for_ranks([process for process, _, _ in processes])

    outputs = []
    failures = []
    for rank, (process, stdout, stderr) in enumerate(processes):
        stdout.close()
        stderr.close()
        err_text = (log_dir / f"rank{rank}.err").read_text()
        outputs.append(((log_dir / f"rank{rank}.out").read_text(), err_text))
        if process.returncode != 0:
            failures.append(f"rank {rank} exited {process.returncode}:\n{err_text[-4000:]}")
    assert not timed_out, f"ranks still running after {RANK_TIMEOUT_S} s\n" + "\n".join(failures)
    assert not failures, "\n".join(failures)
    return outputs


def train_args(overrides: list[str], *flags: str) -> list[str]:
    args = ["-m", "training", "train", "tiny", *flags]
    for override in overrides:
        args += ["--set", override]
    return args


def assert_same_weights(actual_folder: Path, expected_folder: Path) -> None:
    expected = torch.load(expected_folder / "final_model.pt", weights_only=True)
    actual = torch.load(actual_folder / "final_model.pt", weights_only=True)
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        nnz = int(torch.count_nonzero(value))
        assert int(torch.count_nonzero(actual[key])) == nnz, key
        assert torch.equal(actual[key] != 0, value != 0), f"{key}: other entries kept"
        scale = float(value.abs().max()) or 1.0
        torch.testing.assert_close(actual[key], value, rtol=1e-5, atol=1e-5 * scale, msg=key)


def read_progress(store: Path) -> list[dict]:
    lines = (store / "train_curves/tiny/progress.json").read_text().splitlines()
    return [json.loads(line) for line in lines]


def assert_same_record(actual: dict, expected: dict) -> None:
    for key in ("step", "tokens", "lr", "density", "L0", "L0_non_embed"):
        assert actual[key] == expected[key], key
    for key in ("train_xent", "test_xent"):
        assert actual[key] == pytest.approx(expected[key], rel=1e-5), key
    for layer in (0, 1):
        key = f"num_alive_neurons/c_fc/layer_{layer}"
        assert actual[key] == expected[key], key


@pytest.fixture(scope="module")
def encoding():
    return get_encoding("stdlib_2k")


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory, encoding) -> Path:
    """The tiny preset trained for 20 steps in this process; returns the run's root folder."""
    root = tmp_path_factory.mktemp("one_process")
    trainer.train(load_run_config("tiny", tiny_overrides(root)), encoding)
    return root


def test_local_batch_size_divides():
    assert local_batch_size(8, 1) == 8
    assert local_batch_size(8, 2) == 4
    assert local_batch_size(6, 3) == 2


@pytest.mark.parametrize(
    ("batch_size", "world_size", "suggestion"),
    [(5, 2, "4 or 6"), (3, 4, "4"), (10, 4, "8 or 12")],
)
def test_local_batch_size_rejects_remainder(batch_size, world_size, suggestion):
    message = (
        f"train.batch_size {batch_size} is the global batch and must be a multiple of the "
        f"{world_size} training processes; set train.batch_size to {suggestion}"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        local_batch_size(batch_size, world_size)


def test_shard_is_slice_of_global_batch():
    tokens = torch.arange(1000)
    single = torch.Generator().manual_seed(3)
    second_rank = torch.Generator().manual_seed(3)
    context = DistributedContext(rank=1, local_rank=1, world_size=2)

    inputs, targets = data.sample_batch(tokens, 6, 8, single)
    shard_inputs, shard_targets = data.sample_batch(tokens, 6, 8, second_rank, context)

    assert torch.equal(shard_inputs, inputs[3:])
    assert torch.equal(shard_targets, targets[3:])
    assert torch.equal(second_rank.get_state(), single.get_state())


def test_train_rejects_batch_not_dividing(tmp_path, encoding, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    run = load_run_config("tiny", tiny_overrides(tmp_path, "train.batch_size=5"))

    with pytest.raises(ValueError, match=r"batch_size 5 is the global batch .* to 4 or 6"):
        trainer.train(run, encoding)
    assert not dist.is_initialized()
    assert not (tmp_path / "store").exists()


@pytest.mark.slow
def test_collective_helpers_on_two_ranks(tmp_path):
    outputs = run_ranks([str(REPO / "tests/distributed_worker.py")], tmp_path)

    for rank, (stdout, _) in enumerate(outputs):
        report = json.loads(stdout.strip().splitlines()[-1])
        assert report["rank"] == rank
        assert report["main_result"] == {"computed_by": 0}
        assert report["main_error"] == "no checkpoint at runs/tiny/ckpt.pt"
        assert report["replica_error"] is not None
        assert "['lm_head']" in report["replica_error"]
        assert "wte" not in report["replica_error"]
        assert report["mean"] == 0.5
        assert report["broadcast"] == 10.0
        assert report["any_rank"] == [True, True, False]


@pytest.mark.slow
def test_two_ranks_match_one_process(tmp_path, one_process_run):
    overrides = tiny_overrides(tmp_path, "train.num_threads=1")
    outputs = run_ranks(train_args(overrides), tmp_path / "logs")

    assert_same_weights(tmp_path / "store/models/tiny", one_process_run / "store/models/tiny")
    records = read_progress(tmp_path / "store")
    expected = read_progress(one_process_run / "store")
    assert [r["step"] for r in records] == [10, 20]
    for actual, expected_record in zip(records, expected, strict=True):
        assert_same_record(actual, expected_record)

    rank0_log, rank1_log = outputs[0][1], outputs[1][1]
    assert "training.trainer: step 20:" in rank0_log
    assert "training.trainer: step" not in rank1_log
    assert " INFO " not in rank1_log


@pytest.mark.slow
def test_two_ranks_resume_checkpoint(tmp_path, encoding, one_process_run):
    # Train 10 of the 20 steps in this process and checkpoint them, then finish on two ranks.
    overrides = tiny_overrides(tmp_path, "train.num_threads=1")
    run = load_run_config("tiny", overrides)
    state = trainer.init_state(run)
    train_tokens, _ = trainer.load_tokens(run, encoding)
    sparse = sparse_parameters(state.model)
    for _ in range(10):
        trainer.train_step(state, run, train_tokens, sparse)
    trainer.save_state(state, run, tmp_path / "checkpoints/tiny")

    run_ranks(train_args(overrides, "--resume"), tmp_path / "logs")

    assert_same_weights(tmp_path / "store/models/tiny", one_process_run / "store/models/tiny")
    records = read_progress(tmp_path / "store")
    assert [r["step"] for r in records] == [20]
    assert_same_record(records[0], read_progress(one_process_run / "store")[-1])


@pytest.mark.slow
def test_signal_to_one_rank_stops_both(tmp_path):
    # Only rank 1 gets SIGTERM, as when one machine's scheduler stops its share of a job. Both
    # ranks must stop after the same step, and rank 0 must write that step's checkpoint.
    overrides = tiny_overrides(tmp_path, "train.num_threads=1", "train.max_steps=100000")
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    progress = tmp_path / "store/train_curves/tiny/progress.json"
    processes = []
    with loopback_store() as port:
        for rank in range(2):
            processes.append(
                subprocess.Popen(
                    [sys.executable, *train_args(overrides)],
                    cwd=REPO,
                    env=rank_environment(rank, 2, port),
                    stdout=subprocess.DEVNULL,
                    stderr=(log_dir / f"rank{rank}.err").open("w"),
                )
            )
        deadline = time.monotonic() + RANK_TIMEOUT_S
        while not (progress.is_file() and progress.read_text().endswith("\n")):
            assert time.monotonic() < deadline, "no training record before the deadline"
            assert all(process.poll() is None for process in processes), "a rank exited early"
            time.sleep(0.2)
        processes[1].send_signal(signal.SIGTERM)
        try:
            # Each rank exits with an error here, so wait_for_ranks would kill the other one.
            for process in processes:
                process.wait(timeout=RANK_TIMEOUT_S)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()

    logs = [(log_dir / f"rank{rank}.err").read_text() for rank in range(2)]
    steps = [re.search(r"stopped: interrupted at step (\d+)", log) for log in logs]
    assert all(steps), logs
    assert steps[0].group(1) == steps[1].group(1)
    assert [process.returncode for process in processes] == [1, 1]
    saved = torch.load(tmp_path / "checkpoints/tiny/ckpt.pt", weights_only=True)
    assert saved["step"] == int(steps[0].group(1))
    assert 10 <= saved["step"] < 100000
    assert "rank 1 got SIGTERM" in logs[1]
