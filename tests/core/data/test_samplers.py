import numpy as np
import pytest

from dml_pipelines.core.data.samplers import PKSampler


def _labels(rng, n_classes=12, lo=2, hi=9):
    return np.concatenate([[c] * rng.integers(lo, hi) for c in range(n_classes)])


@pytest.mark.parametrize("order", ["grouped", "interleaved"])
def test_every_batch_is_p_by_k_with_distinct_classes(order):
    labels = _labels(np.random.default_rng(0))
    s = PKSampler(labels, P=4, K=3, seed=1, order=order)
    batches = list(s)
    assert len(batches) == len(labels) // 12
    for b in batches:
        assert len(b) == 12
        chunks = (
            np.asarray(b).reshape(4, 3)
            if order == "grouped"
            else np.asarray(b).reshape(3, 4).T
        )
        for chunk in chunks:  # every K-chunk holds one class
            assert len(set(labels[chunk])) == 1
        assert len({labels[c[0]] for c in chunks}) == 4  # P distinct classes


def test_small_classes_are_filled_by_repeats():
    labels = np.array([0, 1, 1, 2, 2, 2, 3])  # classes with 1..3 images, K = 4
    for b in PKSampler(labels, P=2, K=4, seed=0, batches_per_epoch=20):
        chunks = np.asarray(b).reshape(2, 4)
        for chunk in chunks:
            assert len(set(labels[chunk])) == 1


def test_deterministic_under_seed_and_epoch():
    labels = _labels(np.random.default_rng(1))
    a, b = PKSampler(labels, 4, 3, seed=5), PKSampler(labels, 4, 3, seed=5)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    b.set_epoch(4)
    assert list(a) != list(b)
    assert list(PKSampler(labels, 4, 3, seed=6)) != list(
        PKSampler(labels, 4, 3, seed=5)
    )


def test_classes_visited_before_repeating():
    labels = np.repeat(np.arange(10), 8)
    s = PKSampler(labels, P=5, K=2, seed=0, batches_per_epoch=2)
    seen = [labels[b[0::2]] for b in s]
    assert sorted(np.concatenate(seen).tolist()) == list(range(10))


def test_repeated_classes_allowed_only_when_asked():
    labels = np.repeat(np.arange(3), 10)
    with pytest.raises(ValueError, match="sampler.P"):
        PKSampler(labels, P=4, K=2)
    s = PKSampler(labels, P=4, K=2, allow_repeated_classes=True, batches_per_epoch=50)
    batches = list(s)
    assert all(len(b) == 8 for b in batches)
    assert any(len(set(labels[b])) < 4 for b in batches)  # a class filled two chunks


def test_random_factorisation_keeps_batch_size_and_draws_allowed_p():
    labels = np.repeat(np.arange(40), 30)
    choices = [2, 3, 6, 9, 18, 27]
    s = PKSampler(labels, P=6, K=9, random_factorisation=(54, choices), seed=0)
    drawn = set()
    for epoch in range(30):
        s.set_epoch(epoch)
        P, K = s.factorisation()
        assert P in choices and P * K == 54
        drawn.add(P)
        for b in s:
            assert len(b) == 54
            for chunk in np.asarray(b).reshape(P, K):
                assert len(set(labels[chunk])) == 1
    assert len(drawn) > 2  # really redrawn per epoch


def test_invalid_order_names_the_key():
    with pytest.raises(ValueError, match="sampler.order"):
        PKSampler([0, 1], 1, 1, order="random")
