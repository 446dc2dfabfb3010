"""Thread counts set on purpose, so the trainer, the loader processes and faiss
never oversubscribe the cores.

Left alone, each library sizes its own pool: torch's intra-op OpenMP pool takes
every core, faiss (its own OpenMP runtime) takes every core too, and each loader
process would take every core again. On a small CPU machine the pools then fight
for the same cores, and spinning OpenMP threads turn an epoch of ~1 s into tens
of seconds. The rule here:

* each training process uses ``training.num_threads`` threads, or (``None``) its
  share of the cores this process may run on (cores // processes of a
  multi-process run) minus one per loader process (at least one);
* faiss in the same process gets the same count (validation and evaluation
  searches run between training steps, never beside them);
* each loader process uses one thread (``core/data/loader.py``).
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, else ``os.cpu_count``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def training_threads(
    requested: int | None, loader_workers: int, world_size: int = 1
) -> int:
    """Compute threads of one training process: ``requested``, or its share of
    the available cores (``cores // world_size``) minus one per loader process,
    at least one."""
    if requested:
        return int(requested)
    share = available_cores() // max(1, int(world_size))
    return max(1, share - max(0, int(loader_workers)))


def configure_threads(n: int) -> int:
    """Set torch's intra-op threads and faiss's OpenMP threads to ``n``; returns
    ``n``."""
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        return n
    faiss.omp_set_num_threads(n)
    return n
