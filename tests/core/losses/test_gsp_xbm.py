"""The cross-batch memory of GSP's base loss
(docs/baselines.md#cross-batch-memory-xbm): the memory term equals
pytorch-metric-learning's ``CrossBatchMemory`` on a scripted batch sequence, FIFO ring
order, the start step, and state in buffers."""

import pytest
import torch
from pytorch_metric_learning import distances, losses, reducers

from dml_pipelines.core.losses import load_all
from dml_pipelines.core.losses.gsp_xbm import CrossBatchMemory


def c1():
    return load_all().get("contrastive_c1")(embedding_size=5, num_classes=6)


def batches(steps=6, b=4, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.nn.functional.normalize(
            torch.randn(b, d, generator=g, dtype=torch.float64), dim=1
        )
        yield x, torch.randint(0, 3, (b,), generator=g)


def test_memory_term_equals_pml_cross_batch_memory():
    pml_c1 = losses.ContrastiveLoss(
        pos_margin=1.0,
        neg_margin=0.5,
        distance=distances.CosineSimilarity(),
        reducer=reducers.SumReducer(),
    )
    pml = losses.CrossBatchMemory(pml_c1, embedding_size=5, memory_size=12)
    ours = CrossBatchMemory(12, 5, batches=3, start_step=0).double()
    crit = c1()
    for x, y in batches():
        expected = pml(x.float(), y) / len(y)  # PML enqueues first, then scores
        got = ours.loss(crit, x, y)
        assert float(got) == pytest.approx(float(expected), rel=1e-5, abs=1e-6)
        ours.enqueue(x, y)
    assert int(ours.enqueued) == 6


def test_references_are_the_batch_then_the_survivors_newest_last():
    mem = CrossBatchMemory(6, 1, batches=3, start_step=0)
    for step in range(4):
        mem.enqueue(torch.full((2, 1), float(step)), torch.full((2,), step))
    refs, labels = mem.references(torch.full((2, 1), 9.0), torch.tensor([9, 9]))
    # memory holds steps 1, 2, 3; enqueueing the batch evicts step 1
    assert labels.tolist() == [9, 9, 2, 2, 3, 3]
    assert refs.flatten().tolist() == [9, 9, 2, 2, 3, 3]


def test_memory_term_starts_after_start_step_plus_memory_batches():
    mem = CrossBatchMemory(8, 2, batches=2, start_step=3)
    active = []
    for _ in range(6):
        active.append(mem.active())
        mem.enqueue(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    # TF: ready once start_at + batches_in_mem batches are enqueued (this one too)
    assert active == [False, False, False, False, True, True]


def test_memory_gradient_flows_only_through_the_anchors_and_state_is_buffers():
    mem = CrossBatchMemory(8, 5, batches=2, start_step=0).double()
    x, y = next(batches())
    mem.enqueue(x, y)
    anchors = x.clone().requires_grad_(True)
    mem.loss(c1(), anchors, y).backward()
    assert anchors.grad.abs().sum() > 0
    assert set(mem.state_dict()) == {"feats", "labels", "ptr", "count", "enqueued"}
    assert not any(t.requires_grad for t in mem.state_dict().values())


def test_empty_memory_and_one_class_batches_stay_finite():
    mem = CrossBatchMemory(8, 5, batches=2, start_step=0).double()
    x, _ = next(batches())
    y = torch.zeros(4, dtype=torch.long)  # one class: no negatives
    value = mem.loss(c1(), x, y)
    assert torch.isfinite(value)
    with pytest.raises(ValueError, match="xbm.memory_batches"):
        CrossBatchMemory(0, 5, batches=0, start_step=0)
