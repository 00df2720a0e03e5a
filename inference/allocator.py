"""glibc malloc settings that let freed tensor memory be reused instead of handed back to the kernel.

PyTorch takes CPU tensor memory from malloc. glibc serves a large request with its own mmap()
and unmaps it on free. Requests count as large from 128 KiB, a threshold that rises to at most
32 MiB as larger blocks are freed. So every forward pass faults its activations in again, one
zeroed 4 KiB page at a time. On a 2-core KVM guest (AMD EPYC, glibc 2.36, torch 2.13.0) that
cost 13,500 page faults and about a quarter of a 103 ms forward pass of the bundled model's shape
(8 x 256 tokens). Recording every hook doubled the faults. With `keep_freed_memory()` the same
pass took 76 ms and recording added 2% instead of 13%. `benchmarks/inference.py` applies it, and
runs with glibc's defaults under `CIRCUIT_SPARSITY_MALLOC=system` for comparison.

The settings raise the mmap threshold to 1 GiB and the trim threshold to 2 GiB, so freed blocks
stay in the heap for the next pass. The cost is that the process keeps its peak heap: its
resident memory does not shrink after a large batch. Set `CIRCUIT_SPARSITY_MALLOC=system` to
keep glibc's defaults. Other C libraries (macOS, Windows, musl) are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

logger = logging.getLogger(__name__)

ENV_VAR = "CIRCUIT_SPARSITY_MALLOC"
# mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 30
TRIM_THRESHOLD_BYTES = (1 << 31) - 1  # INT_MAX, the largest value mallopt takes

_applied = False


class MallocSettingError(ValueError):
    """CIRCUIT_SPARSITY_MALLOC has a value other than 'reuse' or 'system'."""


def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed memory for reuse; return whether the settings are active.

    Safe to call more than once and from any entry point. Returns False without changing
    anything when the C library is not glibc or `CIRCUIT_SPARSITY_MALLOC=system` is set.
    """
    global _applied
    if _applied:
        return True

    raw = os.environ.get(ENV_VAR, "")
    choice = raw.strip().lower() or "reuse"  # unset and empty both mean the default
    if choice == "system":
        logger.info("%s=system: keeping glibc's malloc defaults", ENV_VAR)
        return False
    if choice != "reuse":
        raise MallocSettingError(
            f"{ENV_VAR}={raw!r} is invalid; use 'reuse' (the default) or 'system'"
        )

    library, _ = platform.libc_ver()
    if library != "glibc":
        logger.debug("C library is %r, not glibc: malloc settings left alone", library or "unknown")
        return False

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    settings = {M_MMAP_THRESHOLD: MMAP_THRESHOLD_BYTES, M_TRIM_THRESHOLD: TRIM_THRESHOLD_BYTES}
    for parameter, value in settings.items():
        if libc.mallopt(ctypes.c_int(parameter), ctypes.c_int(value)) != 1:
            logger.warning("mallopt(%d, %d) failed; glibc's defaults stay", parameter, value)
            return False

    _applied = True
    logger.info(
        "malloc keeps freed memory for reuse (mmap threshold %d MiB); %s=system turns this off",
        MMAP_THRESHOLD_BYTES >> 20,
        ENV_VAR,
    )
    return True


def keep_freed_memory_or_exit() -> bool:
    """Call `keep_freed_memory` for a command-line program: an invalid setting exits with one line."""
    try:
        return keep_freed_memory()
    except MallocSettingError as err:
        raise SystemExit(f"error: {err}") from None
