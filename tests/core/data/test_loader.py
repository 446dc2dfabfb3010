"""Tests of the cache DataLoader (core/data/loader.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dml_pipelines.core.data.loader import make_loader
from dml_pipelines.core.data.transforms import build_transforms
from tests.conftest import two_shape_cache

N = 12


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return two_shape_cache(tmp_path_factory.mktemp("loader"), N, resize_shorter=24)


LABELS = np.arange(N) * 10 + 1  # distinct per position, so batches can be checked
TRANSFORMS = build_transforms("proxy_anchor", image_size=16, resize_size=20)
BATCHES = [[0, 1, 2, 3], [5, 5, 6, 7], [11, 8, 9, 10]]


def _run(cache, *, epochs=1, positions=None, **kw):
    positions = np.arange(N) if positions is None else positions
    loader = make_loader(cache, positions, LABELS[positions], TRANSFORMS, **kw)
    return [list(loader) for _ in range(epochs)], loader


def test_train_batches_follow_the_sampler_with_matching_labels(cache):
    (epoch,), _ = _run(cache, batch_sampler=BATCHES, train=True)
    assert len(epoch) == len(BATCHES)
    for (x, y), idx in zip(epoch, BATCHES, strict=True):
        assert x.shape == (4, 3, 16, 16) and x.dtype == torch.uint8
        assert y.dtype == torch.int64 and y.tolist() == LABELS[idx].tolist()
    x = epoch[1][0]
    assert not torch.equal(x[0], x[1])  # a repeated index is augmented independently


def test_eval_batches_are_sequential_full_and_deterministic(cache):
    positions = np.array([3, 0, 7, 1, 5, 2, 9])
    (epoch,), _ = _run(cache, positions=positions, batch_size=3, train=False)
    assert [len(y) for _, y in epoch] == [3, 3, 1]
    labels = torch.cat([y for _, y in epoch])
    assert labels.tolist() == LABELS[positions].tolist()
    images = torch.cat([x for x, _ in epoch])
    for k, pos in enumerate(positions):
        ref = torch.from_numpy(np.array(cache.image(pos))).permute(2, 0, 1)
        assert torch.equal(images[k], TRANSFORMS.test_sample(ref))


def test_training_augmentation_is_deterministic_under_a_seed(cache):
    (a, a2), _ = _run(cache, epochs=2, batch_sampler=BATCHES, train=True, seed=3)
    (b,), _ = _run(cache, batch_sampler=BATCHES, train=True, seed=3)
    (c,), _ = _run(cache, batch_sampler=BATCHES, train=True, seed=4)
    stack = lambda ep: torch.cat([x for x, _ in ep])  # noqa: E731
    assert torch.equal(stack(a), stack(b))
    assert not torch.equal(stack(a), stack(c))
    assert not torch.equal(stack(a), stack(a2))  # a new epoch draws new crops


def test_results_do_not_depend_on_num_workers_and_set_epoch_replays(cache):
    (a0, a1), _ = _run(cache, epochs=2, batch_sampler=BATCHES, train=True, seed=5)
    (w0, w1), loader = _run(
        cache, epochs=2, batch_sampler=BATCHES, train=True, seed=5, num_workers=2
    )
    for ref, got in ((a0, w0), (a1, w1)):
        for (x, y), (xr, yr) in zip(got, ref, strict=True):
            assert torch.equal(x, xr) and torch.equal(y, yr)
    loader.batch_sampler.set_epoch(1)  # resume at epoch 1
    again = list(loader)
    assert all(torch.equal(x, xr) for (x, _), (xr, _) in zip(again, a1, strict=True))


def test_set_epoch_is_forwarded_to_the_wrapped_sampler(cache):
    class Sampler:
        epoch = None

        def set_epoch(self, e):
            self.epoch = e

        def __iter__(self):
            return iter(BATCHES)

        def __len__(self):
            return len(BATCHES)

    inner = Sampler()
    loader = make_loader(
        cache, np.arange(N), LABELS, TRANSFORMS, batch_sampler=inner, train=True
    )
    loader.batch_sampler.set_epoch(4)
    assert inner.epoch == 4 and len(loader) == 3


def test_invalid_arguments(cache):
    with pytest.raises(ValueError, match="exactly one of batch_sampler and batch_size"):
        make_loader(cache, np.arange(N), LABELS, TRANSFORMS, train=False)
    with pytest.raises(ValueError, match="exactly one"):
        make_loader(
            cache, [0], [1], TRANSFORMS, batch_sampler=[[0]], batch_size=1, train=True
        )
    with pytest.raises(ValueError, match="12 positions but 3 labels"):
        make_loader(
            cache, np.arange(N), [1, 2, 3], TRANSFORMS, batch_size=2, train=False
        )
    with pytest.raises(ValueError, match="positions outside"):
        make_loader(cache, [0, N], [1, 2], TRANSFORMS, batch_size=2, train=False)


def test_mixed_sizes_without_image_size_give_a_clear_error(cache):
    small = build_transforms("small")
    loader = make_loader(cache, [0, 1], [0, 1], small, batch_size=2, train=False)
    with pytest.raises(ValueError, match="different sizes"):
        list(loader)
