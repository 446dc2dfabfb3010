"""Thread counts set on purpose, so the trainer, the loader processes, faiss and
the other jobs of a shared machine never oversubscribe the cores.

Left alone, each library sizes its own pool: torch's intra-op OpenMP pool takes
every core, faiss (its own OpenMP runtime) takes every core too, and each loader
process would take every core again. When the cores are busy (the pools of one
process, or other jobs on the machine), spinning OpenMP threads turn an epoch of
a few seconds into tens of seconds (``docs/benchmarks.md``, "Threads on a shared
machine"). The compute threads of a training process, first setting that is
present wins:

1. ``training.num_threads`` of the method block (an explicit setting);
2. ``DML_NUM_THREADS`` (the project-wide switch: a number or ``auto``; under
   Kedro the key ``compute.num_threads`` of ``conf/base/parameters_compute.yml``
   sets it when the variable is not set, ``dml_pipelines.run_summary``);
3. ``OMP_NUM_THREADS`` (the OpenMP convention);
4. ``auto``: the process's share of the cores it may really use (CPU affinity
   and the cgroup's CPU quota, divided by the processes of a multi-process run)
   minus one per loader process, and no more than the cores the rest of the
   machine leaves idle at the start (CPU time of other processes over
   ``LOAD_WINDOW_S``); at least one.

faiss in the same process gets the same count (validation and evaluation
searches run between training steps, never beside them); each loader process
uses one thread (``core/data/loader.py``). The loader processes follow the same
order: a number in ``training.num_workers``, then ``DML_NUM_WORKERS``
(``compute.num_workers``), then ``auto`` (``core/engine/training_data.py``).
None of these settings changes a result.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

#: the project-wide switches (``conf/base/parameters_compute.yml``)
THREADS_ENV = "DML_NUM_THREADS"
WORKERS_ENV = "DML_NUM_WORKERS"
#: seconds over which the CPU time of other processes is measured at the start
LOAD_WINDOW_S = 0.1


def _cgroup_quota() -> float | None:
    """CPUs allowed by this process's cgroup CPU quota (v2 ``cpu.max`` or v1
    ``cpu.cfs_quota_us``), ``None`` without a quota."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    root = Path("/sys/fs/cgroup")
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if controllers == "":  # cgroup v2
            files = [(root / rel / "cpu.max", None)]
        elif "cpu" in controllers.split(","):
            base = root / controllers
            files = [
                (d / "cpu.cfs_quota_us", d / "cpu.cfs_period_us")
                for d in (base / rel, base)
            ]
        else:
            continue
        for quota_file, period_file in files:
            try:
                if period_file is None:
                    quota, period = quota_file.read_text().split()[:2]
                else:
                    quota = quota_file.read_text().strip()
                    period = period_file.read_text().strip()
            except (OSError, ValueError):
                continue
            if quota in ("max", "-1"):
                continue
            return int(quota) / int(period)
    return None


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity (else ``os.cpu_count``),
    capped by the cgroup CPU quota (rounded up)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy ticks of the whole machine, ticks of this process) from ``/proc``."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq = map(int, fields[:7])
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return None
    # utime, stime of this process: fields 14 and 15 of stat (11, 12 after ")")
    return user + nice + system + irq + softirq, int(own[11]) + int(own[12])


def busy_elsewhere(window: float = LOAD_WINDOW_S) -> float:
    """Cores kept busy by other processes: the machine's CPU time minus this
    process's over ``window`` seconds, in cores (0 where ``/proc`` is absent)."""
    before = _cpu_ticks()
    if before is None:
        return 0.0
    start = time.monotonic()
    time.sleep(window)
    after = _cpu_ticks()
    elapsed = time.monotonic() - start
    if after is None:
        return 0.0
    hz = os.sysconf("SC_CLK_TCK")
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, others / hz / elapsed)


def _env_count(name: str) -> int | None:
    """A positive count from the environment variable ``name``; ``None`` when
    unset, empty or ``auto``. Anything else: a one-line error naming it."""
    raw = os.environ.get(name, "").strip()
    if raw.lower() in ("", "auto"):
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1 and not (name == WORKERS_ENV and raw == "0"):
        raise ValueError(f"{name}={raw!r}: expected a positive integer or 'auto'")
    return value


def thread_choice(
    requested: int | None, loader_workers: int, world_size: int = 1
) -> tuple[int, str]:
    """The compute threads of one training process and where the number comes
    from (module docstring: method block, ``DML_NUM_THREADS``,
    ``OMP_NUM_THREADS``, ``auto``)."""
    if requested:
        return int(requested), "training.num_threads"
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        value = _env_count(name)
        if value is not None:
            return value, name
    cores = available_cores()
    share = max(1, cores // max(1, int(world_size)) - max(0, int(loader_workers)))
    busy = busy_elsewhere() if cores > 1 else 0.0
    idle = max(1, cores - int(busy + 0.5))
    n = min(share, idle)
    return n, (
        f"auto: {cores} usable cores, {busy:.1f} busy elsewhere, "
        f"{loader_workers} loader processes, {world_size} training processes"
    )


def training_threads(
    requested: int | None, loader_workers: int, world_size: int = 1
) -> int:
    """Compute threads of one training process (``thread_choice``)."""
    return thread_choice(requested, loader_workers, world_size)[0]


def configured_workers(configured: int | str) -> int | str:
    """``training.num_workers`` when it is a number, else (``auto``)
    ``DML_NUM_WORKERS`` when set, else ``auto``."""
    if configured != "auto":
        return configured
    value = _env_count(WORKERS_ENV)
    return configured if value is None else value


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


def apply_thread_policy(
    requested: int | None, loader_workers: int, world_size: int = 1
) -> int:
    """Choose the training process's threads (``thread_choice``), set them for
    torch and faiss and log the count with its source; returns it."""
    n, source = thread_choice(requested, loader_workers, world_size)
    log.info("training threads: %d (%s)", n, source)
    return configure_threads(n)
