"""Training under ``torchrun`` (one machine or several; elastic restarts).

``torchrun`` starts every process and tells each its place (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``/``PORT``).
``start()`` joins that process group (NCCL with one GPU per local process, else
gloo) plus a gloo *control* group that waits as long as rank 0 needs.
Rank 0 runs the whole Kedro run (``python -m dml_pipelines.train``); each time
its training node calls ``train_model``, ``lead`` sends the training job (index
table, cache directory, resolved config, checkpoint directory, transforms) to
the other ranks, which ``serve`` jobs until rank 0 releases them (``release``):
they train only, on their shard of every global batch, exactly as the processes
of ``training.devices: N`` do (``core/engine/distributed.py``). Rank 0 alone writes
checkpoints and results; evaluation runs on rank 0 after training.

Every rank must see the image cache and the checkpoint directory at the same
(relative) paths: a shared filesystem, with every launcher started in the
project root. ``lead`` checks it before training (one line naming the rank).

Elastic restarts: torchrun with ``--max-restarts`` (and
``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``, checked) restarts every process when
one dies; rank 0's Kedro run starts again and training resumes from the last
epoch's ``last.pt`` (at most one epoch lost).
``DML_KILL_ONCE=<rank>:<epoch>:<marker>`` makes rank ``<rank>`` kill itself
(SIGKILL) after the first step of 1-based epoch ``<epoch>`` unless ``<marker>``
exists (it is created first): the fault the restart test injects. See
``docs/distributed.md``.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch.distributed as dist

from dml_pipelines.core.engine.callbacks import Callback
from dml_pipelines.core.engine.distributed import init_group

KILL_ENV = "DML_KILL_ONCE"
# torchrun's own switch: a fresh rendezvous store per restart round
UNSHARED_STORE = "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"
# the control group waits for rank 0's next job (data preparation, evaluation
# of earlier methods): far longer than a collective of training may take
WAIT = timedelta(days=7)


@dataclass(frozen=True)
class Launch:
    """This process's place in a torchrun launch, and the control group."""

    rank: int
    world_size: int
    local_rank: int
    control: Any

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_launch: Launch | None = None


def _int(env: Mapping[str, str], key: str) -> int:
    try:
        return int(env[key])
    except (KeyError, ValueError):
        raise ValueError(
            f"torchrun environment: {key}={env.get(key)!r} is not an integer; "
            "start this entry point with torchrun"
        ) from None


def start(env: Mapping[str, str] | None = None) -> Launch | None:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 (``None``
    otherwise: no torchrun, or one process, which trains as without it)."""
    global _launch
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env or _int(env, "WORLD_SIZE") == 1:
        return None
    if (
        env.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        and _int(env, "TORCHELASTIC_MAX_RESTARTS") > 0
    ):
        raise ValueError(
            f"torchrun --max-restarts: set {UNSHARED_STORE}=1 in "
            "torchrun's environment (with the store torchrun shares, a restart can "
            "read the previous round's addresses and fail: pytorch issue 135712)"
        )
    world, rank = _int(env, "WORLD_SIZE"), _int(env, "RANK")
    local_rank = _int(env, "LOCAL_RANK")
    init_group(local_rank, _int(env, "LOCAL_WORLD_SIZE"))
    control = dist.new_group(backend="gloo", timeout=WAIT)
    _launch = Launch(rank, world, local_rank, control)
    return _launch


def current() -> Launch | None:
    """The launch this process joined with ``start`` (``None`` outside one)."""
    return _launch


def stop() -> None:
    """Leave the process group (after ``release`` or ``serve``)."""
    global _launch
    if _launch is not None and dist.is_initialized():
        dist.destroy_process_group()
    _launch = None


def with_world(cfg: Any, world: int) -> Any:
    """``cfg`` with ``training.devices`` = the number of processes torchrun
    started (the resume key and the run's record then say what ran)."""
    devices = cfg.training.devices
    if devices not in (1, world):
        raise ValueError(
            f"{cfg.method}.training.devices: {devices}, but torchrun started "
            f"{world} processes; set it to 1 or {world}"
        )
    training = cfg.training.model_copy(update={"devices": world})
    return cfg.model_copy(update={"training": training})


class KillOnce(Callback):
    """Test fault: SIGKILL this process after the first step of ``epoch``
    (1-based) unless ``marker`` exists; the marker is written first."""

    name = "launch.KillOnce"

    def __init__(self, epoch: int, marker: Path) -> None:
        self.epoch, self.marker, self.now = epoch, marker, 0

    def on_train_epoch_start(self, trainer: Any, epoch: int) -> None:
        self.now = epoch + 1

    def on_train_batch_end(self, trainer: Any, outputs: Any) -> None:
        if self.now == self.epoch and not self.marker.exists():
            self.marker.write_text(f"killed rank at epoch {self.epoch}\n")
            os.kill(os.getpid(), signal.SIGKILL)


def fault_callbacks(rank: int, env: Mapping[str, str] | None = None) -> list[Any]:
    """``[KillOnce]`` when ``DML_KILL_ONCE`` names this rank, else ``[]``."""
    env = os.environ if env is None else env
    spec = env.get(KILL_ENV)
    if not spec:
        return []
    parts = spec.split(":", 2)
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        raise ValueError(f"{KILL_ENV}={spec!r}: expected <rank>:<epoch>:<marker>")
    if int(parts[0]) != rank:
        return []
    return [KillOnce(int(parts[1]), Path(parts[2]))]


def _settings(cache: Any) -> dict[str, Any]:
    """The cache's manifest without its directory and file times (as in
    ``data_fingerprint``): equal on every rank that sees the same cache."""
    return {
        k: v for k, v in cache.meta.items() if k not in ("directory", "source_hash")
    }


def _check(launch: Launch, job: dict[str, Any]) -> Any:
    """Open the job's cache on this rank and look for rank 0's token in the
    checkpoint directory; every rank learns every rank's problem, and all raise
    the same one-line error (no rank is left waiting in a collective)."""
    from dml_pipelines.core.data.cache import ImageCache

    problem, cache = None, None
    try:
        cache = ImageCache.open(job["cache_dir"])
        mine, main = _settings(cache), job["cache_settings"]
        differ = sorted(k for k in {*mine, *main} if mine.get(k) != main.get(k))
        if differ:
            problem = (
                f"image cache {job['cache_dir']} differs from rank 0's in "
                f"{', '.join(differ)}"
            )
    except (OSError, ValueError) as exc:
        problem = str(exc)
    token = job["token"]
    if problem is None and token is not None and not Path(token).exists():
        problem = f"checkpoint directory {Path(token).parent} is not rank 0's"
    problems: list[Any] = [None] * launch.world_size
    dist.all_gather_object(problems, problem, group=launch.control)
    if token is not None and launch.is_main:
        Path(token).unlink(missing_ok=True)
    for rank, p in enumerate(problems):
        if p is not None:
            raise ValueError(
                f"torchrun rank {rank}: {p}; every machine must see the project's "
                "data/ at the same path (a shared filesystem, launchers started in "
                "the project root)"
            )
    return cache


def _run_job(launch: Launch, job: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    from dml_pipelines.core.engine.fit import fit_rank

    cache = _check(launch, job)
    return fit_rank(
        launch.rank,
        launch.world_size,
        job["table"],
        cache,
        job["cfg"],
        job["checkpoint_dir"],
        job["recall_at"],
        job["transforms"],
        callbacks=fault_callbacks(launch.rank),
        run_files=job.get("run_files"),
    )


def lead(
    table: Any,
    cache: Any,
    cfg: Any,
    checkpoint_dir: str | Path | None,
    recall_at: tuple[int, ...],
    transforms: Any,
    run_files: list[Any] | None = None,
) -> tuple[dict[str, Any], Any]:
    """Rank 0: send this training job to every rank, train rank 0's shard and
    return ``fit_rank``'s result (``train_model`` under torchrun)."""
    launch = _launch
    if launch is None or not launch.is_main:
        raise RuntimeError("launch.lead: only rank 0 of a torchrun launch leads")
    cfg = with_world(cfg, launch.world_size)  # before any file is written
    token = None
    if checkpoint_dir is not None:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        token = str(Path(checkpoint_dir) / f".torchrun-{uuid.uuid4().hex}")
        Path(token).touch()
    job = {
        "table": table,
        "cache_dir": str(cache.directory),
        "cache_settings": _settings(cache),
        "cfg": cfg,
        "checkpoint_dir": checkpoint_dir,
        "recall_at": recall_at,
        "transforms": transforms,
        "run_files": run_files,
        "token": token,
    }
    dist.broadcast_object_list([job], src=0, group=launch.control)
    return _run_job(launch, job)


def release() -> None:
    """Rank 0: tell every rank that no training job follows."""
    if _launch is not None and _launch.is_main:
        dist.broadcast_object_list([None], src=0, group=_launch.control)


def serve() -> None:
    """Ranks > 0: train each job rank 0 sends, until ``release``."""
    launch = _launch
    if launch is None or launch.is_main:
        raise RuntimeError("launch.serve: only ranks > 0 of a torchrun launch serve")
    while True:
        box: list[Any] = [None]
        dist.broadcast_object_list(box, src=0, group=launch.control)
        if box[0] is None:
            return
        _run_job(launch, box[0])
