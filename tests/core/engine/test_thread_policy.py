"""The thread policy on a shared machine (issue #29 item 1,
``core/engine/threads.py``): an explicit setting, ``DML_NUM_THREADS`` and
``OMP_NUM_THREADS`` are honoured in that order; ``auto`` leaves the cores other
processes keep busy and respects the cgroup quota; the training log names the
count; ``DML_NUM_WORKERS`` sets the loader processes an ``auto`` block gets.
Checked through ``Trainer.fit`` and ``train_model``'s ``loader_workers``."""

import logging

import faiss
import pytest
import torch

from dml_pipelines.core.engine import threads
from dml_pipelines.core.engine.training_data import loader_workers

from .conftest import make_cfg, make_loader, make_trainer

# the real functions (the fixture below replaces them with fixed answers)
AVAILABLE_CORES = threads.available_cores
BUSY_ELSEWHERE = threads.busy_elsewhere


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    for name in (threads.THREADS_ENV, threads.WORKERS_ENV, "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 0.0)
    before = torch.get_num_threads()
    yield
    threads.configure_threads(before)


def fit(num_threads=None):
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    cfg = make_cfg(training={"epochs": 1, "num_threads": num_threads})
    make_trainer(cfg, loader=list(make_loader(0))).fit()
    return torch.get_num_threads(), faiss.omp_get_max_threads()


def test_omp_num_threads_is_honoured(monkeypatch, caplog):
    """OMP_NUM_THREADS=1 was overridden by the share of the cores (4 here)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with caplog.at_level(logging.INFO, logger="dml_pipelines.core.engine.threads"):
        assert fit() == (1, 1)
    assert "training threads: 1 (OMP_NUM_THREADS)" in caplog.text


def test_project_switch_then_method_block_win(monkeypatch, caplog):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv(threads.THREADS_ENV, "3")
    with caplog.at_level(logging.INFO, logger="dml_pipelines.core.engine.threads"):
        assert fit() == (3, 3)
        assert fit(num_threads=2) == (2, 2)
    assert "training threads: 3 (DML_NUM_THREADS)" in caplog.text
    assert "training threads: 2 (training.num_threads)" in caplog.text
    monkeypatch.setenv(threads.THREADS_ENV, "auto")  # auto: the next rule
    assert fit() == (1, 1)


def test_a_bad_switch_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv(threads.THREADS_ENV, "two")
    with pytest.raises(ValueError, match=r"^DML_NUM_THREADS='two': expected a pos"):
        fit()


def test_auto_leaves_the_cores_other_processes_keep_busy(monkeypatch, caplog):
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 1.2)
    with caplog.at_level(logging.INFO, logger="dml_pipelines.core.engine.threads"):
        assert fit() == (3, 3)
    assert "training threads: 3 (auto: 4 usable cores, 1.2 busy elsewhere" in (
        caplog.text
    )
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 7.0)
    assert fit() == (1, 1)  # never below one
    assert threads.training_threads(None, 1, world_size=2) == 1


def test_usable_cores_follow_affinity_and_cgroup_quota(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: None)
    assert AVAILABLE_CORES() == 4
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: 1.5)  # 150000/100000
    assert AVAILABLE_CORES() == 2


def test_busy_elsewhere_counts_other_processes_only(monkeypatch):
    """Machine ticks minus this process's ticks over the window: 30 busy ticks
    of which 20 are ours, in 0.1 s at 100 Hz = one other busy core."""
    ticks = iter([(1000, 500), (1030, 520)])
    clock = iter([10.0, 10.1])
    monkeypatch.setattr(threads, "_cpu_ticks", lambda: next(ticks))
    monkeypatch.setattr(threads.os, "sysconf", lambda name: 100)
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    monkeypatch.setattr(threads.time, "monotonic", lambda: next(clock))
    assert BUSY_ELSEWHERE(0.1) == pytest.approx(1.0)


def test_dml_num_workers_sets_the_loader_processes_of_an_auto_block(monkeypatch):
    cfg = make_cfg(training={"num_workers": "auto"})
    assert loader_workers(cfg.training) == 0  # auto on a CPU device
    monkeypatch.setenv(threads.WORKERS_ENV, "2")
    assert loader_workers(cfg.training) == 2
    explicit = make_cfg(training={"num_workers": 1})
    assert loader_workers(explicit.training) == 1  # the method block wins
