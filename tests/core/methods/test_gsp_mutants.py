"""Tests for the mutants that survived the mutation run of ``methods/gsp.py``
(docs/mutation.md): ``on_fit_start`` initialises the prototypes from a GAP memory
that is already full (docs/methods/gsp.md), and does nothing for other poolings."""

import torch

from tests.core.methods.test_gsp import make
from tests.core.models.test_gsp_pooling import kcenter_brute


def test_fit_start_initialises_the_prototypes_from_a_full_gap_memory():
    method, _ = make()
    pool = method.embedder.pooling
    rows = torch.randn(
        16, pool.memory.shape[1], generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():  # a full memory whose prototypes were not set yet
        pool.memory.copy_(rows)
        pool.memory_count.fill_(16)
    assert not bool(pool.initialized)
    method.on_fit_start(None)
    assert bool(pool.initialized)
    idx = kcenter_brute(rows[4:].double(), rows[:4].double(), 4)
    assert torch.equal(pool.prototypes.detach(), rows[4:][idx])


def test_fit_start_leaves_a_filling_memory_and_other_poolings_alone():
    method, _ = make()
    before = method.embedder.pooling.prototypes.detach().clone()
    method.on_fit_start(None)  # empty GAP memory: nothing happens
    assert not bool(method.embedder.pooling.initialized)
    assert torch.equal(method.embedder.pooling.prototypes.detach(), before)
    plain, _ = make(pooling={"name": "gap"}, zsr={"enabled": False})
    plain.on_fit_start(None)  # no initialize_if_full: no error
