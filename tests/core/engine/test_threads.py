"""Thread counts set on purpose (core/engine/threads.py): the training process
takes its share of the cores minus one per loader process, faiss the same count,
and ``training.num_threads`` wins; checked through ``Trainer.fit``."""

import faiss
import pytest
import torch

from dml_pipelines.core.engine import threads

from .conftest import make_cfg, make_loader, make_trainer


@pytest.fixture(autouse=True)
def _restore_threads(monkeypatch):
    # the automatic rule alone: no switch set, an idle machine
    for name in (threads.THREADS_ENV, "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 0.0)
    before = torch.get_num_threads()
    yield
    threads.configure_threads(before)


def test_share_of_the_cores_minus_the_loader_processes(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    assert threads.training_threads(None, 0) == 8
    assert threads.training_threads(None, 2) == 6  # one core per loader process
    assert threads.training_threads(None, 0, world_size=2) == 4  # two ranks
    assert threads.training_threads(None, 3, world_size=2) == 1
    assert threads.training_threads(None, 12) == 1  # never below one
    assert threads.training_threads(3, 2, world_size=2) == 3  # asked for: as is


class Workers(list):
    """A loader that says it runs ``num_workers`` processes (a list of batches)."""

    def __init__(self, batches, num_workers):
        super().__init__(batches)
        self.num_workers = num_workers


@pytest.mark.parametrize(
    ("num_threads", "workers", "expected"), [(None, 1, 3), (None, 0, 4), (2, 1, 2)]
)
def test_trainer_fit_sets_torch_and_faiss_threads(
    monkeypatch, num_threads, workers, expected
):
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    cfg = make_cfg(training={"epochs": 1, "num_threads": num_threads})
    loader = Workers(list(make_loader(0)), workers)
    make_trainer(cfg, loader=loader).fit()
    assert torch.get_num_threads() == expected
    assert faiss.omp_get_max_threads() == expected
