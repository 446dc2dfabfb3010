"""Tests for the mutants that survived the mutation run of ``losses/gsp_xbm.py``
(docs/mutation.md): the size message, the step counter, the references' dtype,
the anchors' own copies left out of the memory term, and loading a state without
the legacy keys (docs/baselines.md#cross-batch-memory-xbm)."""

import pytest
import torch

from dml_pipelines.core.losses import load_all
from dml_pipelines.core.losses.gsp_xbm import CrossBatchMemory
from tests.core.losses.test_gsp_xbm import batches


def test_bad_size_message_names_the_memory_batches_key():
    with pytest.raises(ValueError) as err:
        CrossBatchMemory(0, 5, batches=0, start_step=0)
    assert str(err.value) == (
        "xbm.memory_batches: need size > 0 and dim > 0 (memory size 0, dim 5)"
    )
    assert CrossBatchMemory(4, 2, batches=1, start_step=0).enqueued.dtype == torch.long


def test_references_follow_the_batch_dtype():
    mem = CrossBatchMemory(6, 2, batches=3, start_step=0)  # float32 rows
    mem.enqueue(torch.ones(2, 2), torch.tensor([0, 1]))
    refs, _ = mem.references(
        torch.zeros(2, 2, dtype=torch.bfloat16), torch.tensor([2, 3])
    )
    assert refs.dtype == torch.bfloat16 and refs.shape == (4, 2)


@pytest.mark.parametrize("name", ["multi_similarity", "contrastive_c1"])
def test_with_an_empty_memory_the_term_is_the_in_batch_loss(name):
    """The references are then the batch itself, each anchor's own copy left out
    as in the plain in-batch loss (a self pair would count as a positive)."""
    criterion = load_all().get(name)(embedding_size=5, num_classes=6)
    mem = CrossBatchMemory(12, 5, batches=3, start_step=0).double()
    x, y = next(batches())
    torch.testing.assert_close(mem.loss(criterion, x, y), criterion(x, y))


def test_a_state_without_feats_is_torchs_missing_key_error():
    # neither the legacy ``embeddings`` nor ``feats``: nothing to rename
    state = CrossBatchMemory(4, 2, batches=2, start_step=0).state_dict()
    del state["feats"]
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "feats"'):
        CrossBatchMemory(4, 2, batches=2, start_step=0).load_state_dict(state)


def test_a_legacy_state_counts_a_stored_label_zero():
    """Before the merge empty slots held label −1, so class 0 is a stored row."""
    mem = CrossBatchMemory(4, 1, batches=2, start_step=0)
    mem.load_state_dict(
        {
            "embeddings": torch.tensor([[1.0], [2.0], [0.0], [0.0]]),
            "labels": torch.tensor([0, 3, -1, -1]),
            "pointer": torch.tensor(2),
            "enqueued": torch.tensor(1),
        }
    )
    assert len(mem) == 2
    assert mem.chronological()[1].tolist() == [0, 3]
