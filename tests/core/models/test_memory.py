"""The one ring-buffer memory (docs/methods/xbn.md, properties 1–2), used by
``xbn`` and, under GSP's batch schedule, by ``gsp``; GSP memories saved before
the merge load as they are."""

from pathlib import Path

import pytest
import torch

from dml_pipelines.core.losses.gsp_xbm import CrossBatchMemory
from dml_pipelines.core.models.memory import RingMemory
from tests.core.methods.test_gsp import make as make_gsp


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


def test_survivors_are_the_entries_an_enqueue_keeps_oldest_first():
    mem = RingMemory(5, 1)
    for step in range(3):  # 6 rows into 5 slots: row 0 is gone
        mem.enqueue(
            torch.full((2, 1), float(step)), torch.tensor([2 * step, 2 * step + 1])
        )
    assert mem.chronological()[1].tolist() == [1, 2, 3, 4, 5]
    assert mem.survivors(2)[1].tolist() == [3, 4, 5]
    assert mem.survivors(7)[1].tolist() == []
    half = RingMemory(6, 1)
    half.enqueue(torch.zeros(3, 1), torch.tensor([7, 8, 9]))
    assert half.survivors(2)[1].tolist() == [7, 8, 9]  # free slots absorb the rows
    assert half.survivors(4)[1].tolist() == [8, 9]
    assert half.labels.tolist()[3:] == [-1, -1, -1]  # empty slots


LEGACY = Path(__file__).resolve().parents[2] / "fixtures/legacy/gsp_xbm_memory.pt"


@pytest.mark.parametrize("name", ["partial", "wrapped"])
def test_gsp_memory_saved_before_the_merge_loads_and_gives_the_same_references(name):
    """``gsp_xbm_memory.pt`` holds memories written by the code before the one
    ring buffer (``make_gsp_xbm_memory.py``), the next batch and the references
    that code gave for it."""
    case = torch.load(LEGACY, weights_only=True)[name]
    assert set(case["state"]) == {"embeddings", "labels", "pointer", "enqueued"}
    mem = CrossBatchMemory(case["size"], 4, batches=3, start_step=1)
    mem.load_state_dict(dict(case["state"]))  # strict
    refs, ref_labels = mem.references(case["batch"], case["batch_labels"])
    assert torch.equal(refs, case["refs"])
    assert torch.equal(ref_labels, case["ref_labels"])
    assert mem.active() == bool(case["active"])
    assert len(mem) == int((case["state"]["labels"] >= 0).sum())
    assert int(mem.ptr) == int(case["state"]["pointer"])


def test_gsp_method_checkpoint_with_the_old_memory_keys_loads():
    """A ``gsp`` method's state as ``last.pt`` held it before the merge
    (``memory.embeddings``/``memory.pointer``, no ``memory.count``) loads with
    ``load_state_dict`` (strict, as the trainer's resume) into the same memory."""
    method, _ = make_gsp(  # a memory of 9 rows of 4, as "partial"
        embedding_dim=4,
        sampler={"P": 3, "K": 3},
        xbm={"memory_batches": 1, "start_step": 1},
    )
    case = torch.load(LEGACY, weights_only=True)["partial"]
    old = {k: v for k, v in method.state_dict().items() if not k.startswith("memory.")}
    old.update({f"memory.{k}": v for k, v in case["state"].items()})
    method.load_state_dict(old)
    refs, _ = method.memory.references(case["batch"], case["batch_labels"])
    assert torch.equal(refs, case["refs"])
    assert set(method.state_dict()) - set(old) == {
        "memory.feats",
        "memory.ptr",
        "memory.count",
    }


def test_xbn_memory_saved_before_the_merge_loads():
    """XBN's buffers kept their names; its empty slots held label 0 (now −1),
    which ``count`` leaves out either way."""
    mem = RingMemory(4, 1)
    mem.load_state_dict(
        {
            "feats": torch.tensor([[5.0], [6.0], [0.0], [0.0]]),
            "labels": torch.tensor([5, 6, 0, 0]),
            "ptr": torch.tensor(2),
            "count": torch.tensor(2),
        }
    )
    assert mem.entries()[1].tolist() == mem.chronological()[1].tolist() == [5, 6]
    mem.enqueue(torch.tensor([[7.0], [8.0], [9.0]]), torch.tensor([7, 8, 9]))
    assert mem.chronological()[1].tolist() == [6, 7, 8, 9]


def test_reset_gives_the_state_of_a_fresh_memory():
    """Empty slots hold label −1 (module docstring) after a reset as when new."""
    mem = RingMemory(5, 2)
    for feats, labels in batches([3, 4], dim=2):
        mem.enqueue(feats, labels)
    mem.reset()
    fresh = RingMemory(5, 2).state_dict()
    for key, value in mem.state_dict().items():
        assert torch.equal(value, fresh[key]), key
