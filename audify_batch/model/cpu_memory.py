"""Keep the memory of one batch's activations for the next, on CPU.

A batch of 64 five-second segments through the default model makes activations of up to 66 MB
each (YAMNet's first blocks, bf16). glibc's malloc serves blocks over 32 MB (at first over
128 kB) with fresh ``mmap`` pages and unmaps them on ``free``, so every batch faults each page
of its activations in again, zero-filled by the kernel. Measured on the 2-core reference
machine, that was a third of the model's time and two thirds of the frontend's: the model alone
ran at 121 segments/s bf16 (50 fp32) and at 183 (123) with the heap kept.

``keep_freed_memory`` tells glibc (``mallopt``) to serve every block from the heap and to give
freed memory back only when more than 1 GiB of it lies at the top of a heap: the next batch
reuses pages that are mapped already. The cost: the process stays near its peak memory instead
of shrinking between batches, and each malloc arena (one per thread that allocates, up to 8 per
core) may hold its own freed gigabyte, and setting it turns off glibc's dynamic mmap threshold
for good. So only the batch loops ask for it (``audify label`` on CPU once its decode workers
have started, so that they keep glibc's defaults; ``classify``, the benchmarks, training), never
the long-lived review desk. Elsewhere (no glibc) it changes nothing.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_MAX = -4
KEPT_FREE_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Serve allocations from the heap and keep freed memory for reuse; True where glibc took it."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEPT_FREE_BYTES))
