"""The pair-loss contract: references, self-exclusion and the distance option,
for every pair loss."""

import pytest
import torch

from dml_pipelines.core.losses import load_all
from dml_pipelines.core.losses.pair_loss import PairLoss, clip_to_ball

PAIR_LOSSES = ("contrastive_c1", "contrastive_c2", "triplet", "multi_similarity")


def build(name, **args):
    return load_all().get(name)(embedding_size=6, num_classes=4, **args)


def batch(seed=0, n=12, d=6):
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(
        torch.randn(n, d, generator=g, dtype=torch.float64)
    )
    y = torch.randint(0, 4, (n,), generator=g)
    return x, y


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_references_equal_to_the_batch_give_the_plain_call(name):
    x, y = batch()
    loss = build(name)
    assert isinstance(loss, PairLoss)
    plain = loss(x, y)
    torch.testing.assert_close(loss(x, y, x, y, exclude_self=True), plain)
    own = torch.arange(len(y))
    torch.testing.assert_close(loss(x, y, x, y, exclude_self=own), plain)
    # the plain call is pytorch-metric-learning's own
    torch.testing.assert_close(plain, _pml_plain(loss, x, y))


def _pml_plain(loss, x, y):
    value = loss.loss(x, y)
    return value / len(y) if loss.per_anchor else value


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_without_exclusion_the_self_pair_counts(name):
    x, y = batch(1)
    loss = build(name)
    with_self = loss(x, y, x, y, exclude_self=False)
    assert torch.isfinite(with_self)
    # a self pair is a positive at similarity 1 / distance 0: a zero term for the
    # contrastive losses (sum, or mean over non-zero terms), a real one for MS
    # (triplet: only where a negative lies within the margin)
    same = torch.allclose(with_self, loss(x, y))
    if name == "multi_similarity":
        assert not same
    elif name.startswith("contrastive"):
        assert same


def test_c1_against_a_memory_loop_with_own_copies_excluded():
    x, y = batch(2, n=6)
    mx, my = batch(3, n=9)
    mx[:6], my[:6] = x, y  # the batch's own stored copies sit at 0..5
    own = torch.arange(6)
    got = build("contrastive_c1")(x, y, mx, my, exclude_self=own)
    ref = 0.0
    for a in range(6):
        for j in range(9):
            if j == a:
                continue
            s = float(x[a] @ mx[j])
            ref += (1 - s) if y[a] == my[j] else max(s - 0.5, 0.0)
    assert float(got) == pytest.approx(ref / 6, abs=1e-10)


def test_clip_to_ball_keeps_short_vectors_and_does_not_renormalise():
    g = torch.Generator().manual_seed(4)
    x = 0.3 * torch.randn(8, 6, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    clipped = build("contrastive_c1", distance="clip_to_ball")
    normal = build("contrastive_c1")
    assert torch.equal(clip_to_ball(x), x / x.norm(dim=1, keepdim=True).clamp_min(1))
    ref = 0.0
    xc = clip_to_ball(x)
    for a in range(8):
        for j in range(8):
            if a != j:
                s = float(xc[a] @ xc[j])  # dot product, no re-normalisation
                ref += (1 - s) if y[a] == y[j] else max(s - 0.5, 0.0)
    assert float(clipped(x, y)) == pytest.approx(ref / 8, abs=1e-10)
    assert float(normal(x, y)) != pytest.approx(float(clipped(x, y)))


def test_bad_contract_use_is_a_clear_error():
    x, y = batch()
    loss = build("triplet")
    with pytest.raises(ValueError, match="go together"):
        loss(x, y, ref_embeddings=x)
    with pytest.raises(ValueError, match="distance"):
        build("triplet", distance="cosine")


def test_sparse_triplets_equal_the_dense_enumeration():
    from dml_pipelines.core.losses.pair_loss import triplets_from_masks

    g = torch.Generator().manual_seed(5)
    pos = torch.rand(7, 11, generator=g) < 0.3
    neg = ~pos & (torch.rand(7, 11, generator=g) < 0.7)
    pos[3] = False  # an anchor without positives
    dense = torch.nonzero(pos[:, :, None] & neg[:, None, :], as_tuple=True)
    for got, ref in zip(triplets_from_masks(pos, neg), dense, strict=True):
        assert torch.equal(got, ref)
