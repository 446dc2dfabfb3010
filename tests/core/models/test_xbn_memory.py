"""The XBM ring buffer (docs/methods/xbn.md, properties 1–2)."""

import pytest
import torch

from dml_pipelines.core.models.xbn_memory import RingMemory


def batches(sizes, dim=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    start = 0
    for n in sizes:
        yield torch.randn(n, dim, generator=g), torch.arange(start, start + n)
        start += n


@pytest.mark.parametrize("sizes", [[3, 3, 3, 3], [4, 5, 2, 6, 1], [7], [2, 9]])
def test_fifo_holds_exactly_the_last_k_in_order(sizes):
    mem = RingMemory(7, 3)
    all_feats, all_labels = [], []
    for feats, labels in batches(sizes):
        slots = mem.enqueue(feats, labels)
        all_feats.append(feats)
        all_labels.append(labels)
        kept = slots >= 0
        stored, stored_labels = mem.entries()
        torch.testing.assert_close(stored[slots[kept]], feats[kept])
        assert torch.equal(stored_labels[slots[kept]], labels[kept])
    feats, labels = torch.cat(all_feats), torch.cat(all_labels)
    n = min(len(labels), 7)
    got, got_labels = mem.chronological()
    assert len(mem) == n and mem.is_full == (len(labels) >= 7)
    torch.testing.assert_close(got, feats[-n:])
    assert torch.equal(got_labels, labels[-n:])


def test_a_batch_larger_than_the_memory_keeps_its_last_rows():
    mem = RingMemory(4, 2)
    feats, labels = torch.randn(6, 2), torch.arange(6)
    slots = mem.enqueue(feats, labels)
    assert slots[:2].tolist() == [-1, -1] and sorted(slots[2:].tolist()) == [0, 1, 2, 3]
    assert torch.equal(mem.chronological()[1], labels[2:])


def test_partially_filled_memory_exposes_only_filled_slots_and_label_zero_counts():
    mem = RingMemory(5, 2)
    mem.enqueue(torch.ones(2, 2), torch.zeros(2, dtype=torch.long))
    feats, labels = mem.entries()
    assert feats.shape == (2, 2) and labels.tolist() == [0, 0] and not mem.is_full
    mem.enqueue(torch.ones(3, 2), torch.zeros(3, dtype=torch.long))
    assert mem.is_full  # label 0 in the last slot does not make it look un-full


def test_memory_stores_no_graph_and_reset_empties_it():
    mem = RingMemory(4, 2)
    z = torch.randn(3, 2, requires_grad=True)
    mem.enqueue(z * 2, torch.arange(3))
    feats, _ = mem.entries()
    assert not feats.requires_grad and feats.grad_fn is None
    assert not mem.feats.requires_grad
    mem.reset()
    assert len(mem) == 0 and int(mem.ptr) == 0 and mem.entries()[0].shape == (0, 2)


def test_state_round_trips_through_state_dict():
    a, b = RingMemory(5, 2), RingMemory(5, 2)
    for feats, labels in batches([3, 4], dim=2):
        a.enqueue(feats, labels)
    b.load_state_dict(a.state_dict())
    assert len(b) == 5 and int(b.ptr) == int(a.ptr)
    for x, y in zip(a.chronological(), b.chronological(), strict=True):
        assert torch.equal(x, y)


def test_bad_size_is_a_one_line_error():
    with pytest.raises(ValueError, match="xbm.memory_size"):
        RingMemory(0, 3)


def test_smallest_sizes_and_buffer_dtypes():
    one = RingMemory(1, 1)  # one slot of one dimension is valid
    one.enqueue(torch.ones(2, 1), torch.tensor([3, 4]))
    feats, labels = one.entries()
    assert feats.tolist() == [[1.0]] and labels.tolist() == [4]
    for size, dim in ((0, 4), (4, 0), (-1, 4)):
        with pytest.raises(ValueError, match=r"^xbm\.memory_size: need size > 0"):
            RingMemory(size, dim)
    m = RingMemory(3, 2)
    assert m.labels.dtype == m.ptr.dtype == m.count.dtype == torch.long
