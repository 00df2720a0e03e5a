"""Multi-process training under ``torchrun``: the process group, batch sharding and replica checks.

torchrun starts one process per device and sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT`` in each. With more than one process the trainer:

1. joins the default process group (gloo on CPU, nccl on CUDA, one GPU per local rank);
2. draws the same global batch on every rank from the shared data generator, and runs forward and
   backward on its own contiguous slice of ``batch_size / world_size`` sequences;
3. lets DistributedDataParallel average the gradients, so clipping, AdamW and the top-k projection
   see the gradient of the global batch and every rank keeps bit-identical weights;
4. writes progress.json, checkpoints and the final model from rank 0 only.

Without torchrun (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) everything runs in the one process and no
process group is created.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import os
import pickle
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.nn as nn

logger = logging.getLogger(__name__)

DEVICE_TYPES = ("cpu", "cuda")

# Integer views of floating-point tensors, by element size in bytes, for exact fingerprints.
_INTEGER_VIEWS = {2: torch.int16, 4: torch.int32, 8: torch.int64}

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class DistributedContext:
    """This process's place among the training processes, and the device it trains on."""

    rank: int = 0  # global rank, 0 .. world_size - 1
    local_rank: int = 0  # rank on this machine; picks the GPU
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and logs progress (rank 0)."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether there are other processes to talk to."""
        return self.world_size > 1

    def shard(self, rows: torch.Tensor) -> torch.Tensor:
        """Return this rank's contiguous slice of the first dimension of a global batch."""
        local = local_batch_size(rows.shape[0], self.world_size)
        return rows[self.rank * local : (self.rank + 1) * local]

    def barrier(self) -> None:
        """Wait until every rank has reached this call."""
        if self.enabled:
            dist.barrier()

    def mean(self, value: float) -> float:
        """Return the mean of ``value`` over all ranks (the same float on every rank)."""
        if not self.enabled:
            return value
        total = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return float(total) / self.world_size

    def broadcast(self, value: float) -> float:
        """Return rank 0's ``value`` on every rank."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(tensor, src=0)
        return float(tensor)

    def any_rank(self, flags: torch.Tensor) -> torch.Tensor:
        """Return the element-wise OR of a bool tensor over all ranks."""
        if not self.enabled:
            return flags
        counts = flags.to(device=self.device, dtype=torch.int32)
        dist.all_reduce(counts, op=dist.ReduceOp.MAX)
        return counts.bool().to(flags.device)

    def call_on_main(self, function: Callable[[], T]) -> T:
        """Call ``function`` on rank 0 only and return its result on every rank.

        Use it for files that only rank 0 can be relied on to see. An exception raised by
        ``function`` is raised on every rank, so no rank waits for a peer that has failed.
        """
        if not self.enabled:
            return function()
        outcome: list[Any] = [None, None]  # [result, exception]
        error = None
        if self.is_main:
            try:
                outcome[0] = function()
            except Exception as err:  # raised again on every rank below
                error = err
                outcome[1] = _picklable(err)
        dist.broadcast_object_list(outcome, src=0, device=self.device)
        if error is not None:
            raise error
        if outcome[1] is not None:
            raise outcome[1]
        return outcome[0]


def _picklable(error: Exception) -> Exception:
    """Return ``error`` if it pickles, else a RuntimeError with its type and message."""
    try:
        pickle.dumps(error)
    except Exception:
        return RuntimeError(f"rank 0 raised {type(error).__name__}: {error}")
    return error


SINGLE_PROCESS = DistributedContext()


def local_batch_size(batch_size: int, world_size: int) -> int:
    """Return the sequences per rank of a global batch; raise ValueError when they do not divide."""
    if batch_size % world_size != 0:
        lower = batch_size - batch_size % world_size
        options = [n for n in (lower, lower + world_size) if n > 0]
        raise ValueError(
            f"train.batch_size {batch_size} is the global batch and must be a multiple of the "
            f"{world_size} training processes; set train.batch_size to "
            + " or ".join(str(n) for n in options)
        )
    return batch_size // world_size


def _read_int_env(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(
            f"environment variable {name}={raw!r} is not an integer; launch with torchrun, "
            "which sets it"
        ) from None


def ranks_from_environment() -> tuple[int, int, int]:
    """Return (rank, local_rank, world_size) from the torchrun environment, (0, 0, 1) outside it.

    An already initialised default process group takes precedence over the environment.
    """
    if dist.is_available() and dist.is_initialized():
        local_rank = _read_int_env("LOCAL_RANK")
        return dist.get_rank(), local_rank or 0, dist.get_world_size()

    world_size = _read_int_env("WORLD_SIZE")
    if world_size is None or world_size == 1:
        return 0, 0, 1
    rank = _read_int_env("RANK")
    local_rank = _read_int_env("LOCAL_RANK")
    if rank is None or local_rank is None:
        raise ValueError(
            f"WORLD_SIZE={world_size} is set but RANK or LOCAL_RANK is missing; launch with "
            "torchrun, which sets all three"
        )
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside [0, WORLD_SIZE={world_size})")
    return rank, local_rank, world_size


def _device_for(device_type: str, local_rank: int) -> torch.device:
    if device_type not in DEVICE_TYPES:
        raise ValueError(f"train.device must be one of {list(DEVICE_TYPES)}, got {device_type!r}")
    if device_type == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(
            'train.device is "cuda" but torch.cuda.is_available() is False; install the CUDA '
            'build of PyTorch or set train.device="cpu"'
        )
    if local_rank >= torch.cuda.device_count():
        raise RuntimeError(
            f"LOCAL_RANK {local_rank} has no GPU ({torch.cuda.device_count()} visible); start at "
            "most one process per GPU (torchrun --nproc_per_node)"
        )
    return torch.device("cuda", local_rank)


@contextlib.contextmanager
def process_group(device_type: str = "cpu") -> Iterator[DistributedContext]:
    """Join the torchrun process group for the duration of the block and yield this rank's context.

    The backend is gloo for ``device_type="cpu"`` and nccl for ``"cuda"``. Outside torchrun the
    block runs as a single process. A default process group that the caller has already
    initialised is used as it is and left open.
    """
    rank, local_rank, world_size = ranks_from_environment()
    device = _device_for(device_type, local_rank)
    context = DistributedContext(rank, local_rank, world_size, device)
    if world_size == 1 or dist.is_initialized():
        yield context
        return

    # NOTE: only the gloo (CPU) path has been run. The nccl path, one GPU per local rank, is untested.
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    # env:// reads MASTER_ADDR and MASTER_PORT, which torchrun sets.
    dist.init_process_group(backend, rank=rank, world_size=world_size)
    logger.info(
        "rank %d of %d joined the %s process group on %s", rank, world_size, backend, device
    )
    try:
        yield context
        # NOTE: all ranks leave the group together. Without this barrier a rank that finished first
        # aborted at exit about once in 17 test runs ("terminate called without an active
        # exception"), while rank 0 still wrote the model. The cause inside gloo is not confirmed.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def wrap_model(model: nn.Module, context: DistributedContext) -> nn.Module:
    """Return the module to run training forwards through: DDP with several ranks, else ``model``.

    DDP copies rank 0's parameters and buffers to every rank when it is built. Buffers are not
    broadcast again on each forward, because the model's buffers (the logits bias and a frozen
    bigram table) never change during training.
    """
    if not context.enabled:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    ddp_class = nn.parallel.DistributedDataParallel
    # PyTorch 2.13 warns that broadcast_buffers is deprecated in favour of forward_sync_buffers.
    # Releases without the new argument still take the old one.
    if "forward_sync_buffers" in inspect.signature(ddp_class).parameters:
        return ddp_class(model, device_ids=device_ids, forward_sync_buffers=False)
    return ddp_class(model, device_ids=device_ids, broadcast_buffers=False)


def tensor_fingerprint(tensor: torch.Tensor) -> torch.Tensor:
    """Return an int64 checksum of the tensor's bits: the sum of its entries read as integers.

    Integer addition modulo 2**64 does not depend on the order of the terms, so equal tensors give
    equal checksums on every device and machine, and a change in any one entry changes the sum.
    """
    flat = tensor.detach().reshape(-1)
    if flat.is_floating_point():
        flat = flat.view(_INTEGER_VIEWS[flat.element_size()])
    return flat.to(torch.int64).sum()


def check_replicas_identical(
    named_tensors: Iterable[tuple[str, torch.Tensor]], context: DistributedContext
) -> None:
    """Raise RuntimeError naming every tensor whose bits differ between ranks."""
    if not context.enabled:
        return
    names, fingerprints = [], []
    for name, tensor in named_tensors:
        names.append(name)
        fingerprints.append(tensor_fingerprint(tensor).to(context.device))
    highest = torch.stack(fingerprints)
    lowest = highest.clone()
    dist.all_reduce(highest, op=dist.ReduceOp.MAX)
    dist.all_reduce(lowest, op=dist.ReduceOp.MIN)
    differing = [
        name for name, same in zip(names, (highest == lowest).tolist(), strict=True) if not same
    ]
    if differing:
        raise RuntimeError(
            f"weights differ between the {context.world_size} training processes in {differing}; "
            "every rank must run the same code, config and PyTorch build"
        )
