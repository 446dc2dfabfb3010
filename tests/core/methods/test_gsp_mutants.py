"""Tests for the mutants that survived the mutation run of ``methods/gsp.py``
(docs/mutation.md): ``on_fit_start`` initialises the prototypes from a GAP memory
that is already full (docs/methods/gsp.md), and does nothing for other poolings."""

import pytest
import torch

from dml_pipelines.core.engine.hooks import StepContext, StepOutput
from dml_pipelines.core.methods.gsp import GSP
from dml_pipelines.core.methods.gsp_config import GspConfig
from dml_pipelines.core.models.embedder import normalize_embeddings
from tests.core.engine.conftest import two_rank_step
from tests.core.methods.test_gsp import batch, make
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


def test_method_defaults_are_the_config_defaults():
    method, cfg = make()
    plain = GSP(method.embedder, method.criterion)
    assert plain.zsr_weight == GspConfig(method="gsp").zsr.weight
    assert plain.mix == GspConfig(method="gsp").zsr.mix == "convex"
    assert plain.memory_weight == GspConfig(method="gsp").xbm.weight


def test_an_active_memory_adds_its_weighted_term():
    method, _ = make(zsr={"enabled": False}, xbm={"memory_batches": 1, "start_step": 0})
    method.memory_weight = 0.5
    x, y = batch(4)
    method.memory.enqueue(
        torch.nn.functional.normalize(torch.randn(8, method.memory.dim)), y
    )
    assert method.memory.active()
    loss, logs = method.training_loss(x, y)
    assert set(logs) == {"dml", "xbm"} and logs["xbm"] > 0
    assert loss.item() == pytest.approx(logs["dml"] + 0.5 * logs["xbm"], rel=1e-6)


def test_batch_end_without_gap_output_or_gsp_pooling_is_a_no_op():
    method, _ = make()
    out = StepOutput(torch.tensor(0.0), {}, {}, 0, 0)
    method.on_train_batch_end(None, out)  # nothing to enqueue or observe
    assert int(method.embedder.pooling.steps_seen) == 0
    plain, _ = make(pooling={"name": "gap"}, zsr={"enabled": False})
    plain.on_train_batch_end(None, out)  # a pooling without observe


def test_every_batch_term_and_output_spans_the_gathered_global_batch():
    """Under two processes the base loss, the ZSR term and the step's outputs
    (embeddings and labels for the memory, GAP rows for the prototypes) are the
    global batch's, not the rank's shard (docs/distributed.md)."""
    method, _ = make()
    method.train()
    images, labels = batch()
    assert method.zsr is not None
    one = StepContext()
    method.training_loss(images, labels, one)
    two = two_rank_step()
    _, logs = method.training_loss(images, labels, two)
    both = torch.cat([labels, labels])
    assert torch.equal(two.outputs["labels"], both)
    assert torch.equal(
        two.outputs["embeddings"], torch.cat([one.outputs["embeddings"]] * 2)
    )
    assert torch.equal(two.outputs["gap"], torch.cat([one.outputs["gap"]] * 2))
    with torch.no_grad():
        feats = method.embedder.features(images)
        emb = normalize_embeddings(feats["embedding"].float(), method.normalization)
        dml = method.criterion(torch.cat([emb, emb]), both)
        zsr = method.zsr(torch.cat([feats["aux"]] * 2), both)
    assert logs["dml"] == pytest.approx(float(dml), rel=1e-5)
    assert logs["zsr"] == pytest.approx(float(zsr), rel=1e-5)
