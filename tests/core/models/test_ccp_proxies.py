"""CCP proxy selection (docs/methods/ccp.md, "What was verified"): batched greedy
k-center against a brute-force farthest-point loop, covering radius, zero
seeds, the pool draw and the m-major layout."""

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from dml_pipelines.core.models.ccp_proxies import (
    dataset_labels,
    draw_pool,
    pool_loader,
    to_class_major,
    to_m_major,
)
from dml_pipelines.core.models.kcenter import greedy_k_center


def brute_force(pool, seeds, k):
    """Per class: repeatedly pick the item farthest (squared Euclidean) from
    the seeds and the items already picked; float64 loops."""
    out = []
    for c in range(pool.shape[0]):
        chosen = []
        centres = [seeds[c, q] for q in range(seeds.shape[1])]
        for _ in range(k):
            best, best_d = None, -1.0
            for j in range(pool.shape[1]):
                d = min(float(((pool[c, j] - q) ** 2).sum()) for q in centres)
                if d > best_d:
                    best, best_d = j, d
            chosen.append(best)
            centres.append(pool[c, best])
        out.append(chosen)
    return out


def radius(pool, centres):
    """max over items of the distance to the nearest centre, per class."""
    return torch.cdist(pool, centres).amin(dim=2).amax(dim=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_k_center_equals_brute_force_farthest_point(seed):
    g = torch.Generator().manual_seed(seed)
    pool = torch.randn(5, 9, 4, generator=g, dtype=torch.float64)
    seeds = torch.randn(5, 3, 4, generator=g, dtype=torch.float64)
    picks, where = greedy_k_center(pool, seeds, 4)
    assert where.tolist() == brute_force(pool, seeds, 4)
    for c in range(5):  # exact copies of distinct pool rows
        assert len(set(where[c].tolist())) == 4
        assert torch.equal(picks[c], pool[c, where[c]])


@pytest.mark.parametrize("seed", [3, 4])
def test_covering_radius_never_exceeds_the_seeds_radius(seed):
    g = torch.Generator().manual_seed(seed)
    pool = torch.randn(6, 12, 5, generator=g, dtype=torch.float64)
    seeds = torch.randn(6, 2, 5, generator=g, dtype=torch.float64)
    picks, _ = greedy_k_center(pool, seeds, 3)
    both = torch.cat([seeds, picks], dim=1)
    assert (radius(pool, both) <= radius(pool, seeds)).all()
    assert (radius(pool, both) < radius(pool, seeds)).any()
    # greedy beats a random choice of the same size on average
    rand = pool[:, torch.randperm(12, generator=g)[:3]]
    assert radius(pool, picks).mean() <= radius(pool, rand).mean() * 1.5


def test_zero_seeds_pick_the_largest_norm_item_first():
    g = torch.Generator().manual_seed(5)
    pool = torch.randn(4, 7, 3, generator=g)
    _, where = greedy_k_center(pool, torch.zeros(4, 2, 3), 2)
    assert torch.equal(where[:, 0], pool.norm(dim=2).argmax(dim=1))


def test_duplicate_pool_items_stay_finite_and_bad_shapes_are_errors():
    pool = torch.ones(2, 3, 4)
    picks, where = greedy_k_center(pool, torch.zeros(2, 1, 4), 3)
    assert torch.isfinite(picks).all() and where.shape == (2, 3)
    with pytest.raises(ValueError, match="4 picks from 3 items"):
        greedy_k_center(pool, torch.zeros(2, 1, 4), 4)
    with pytest.raises(ValueError, match="must be"):
        greedy_k_center(pool, torch.zeros(3, 1, 4), 1)


def test_layouts_round_trip_and_row_m_c_is_proxy_m_of_class_c():
    x = torch.arange(3 * 2 * 4, dtype=torch.float32).reshape(3 * 2, 4)  # M=2, C=3
    per_class = to_class_major(x, 3)
    assert per_class.shape == (3, 2, 4)
    for m in range(2):
        for c in range(3):
            assert torch.equal(per_class[c, m], x[m * 3 + c])
    assert torch.equal(to_m_major(per_class), x)


def test_pool_draw_takes_class_items_without_replacement_then_cycles():
    labels = np.array([0] * 5 + [1] * 2 + [2] * 4)
    idx = draw_pool(labels, 3, 4, np.random.default_rng(0))
    assert idx.shape == (3, 4)
    for c in range(3):
        assert (labels[idx[c]] == c).all()
    assert len(set(idx[0])) == 4 and len(set(idx[2])) == 4
    assert sorted(idx[1][:2]) == [5, 6] and list(idx[1][2:]) == list(idx[1][:2])
    other = draw_pool(labels, 3, 4, np.random.default_rng(1))
    assert not np.array_equal(idx, other)


def test_pool_draw_rejects_empty_classes_and_foreign_labels():
    with pytest.raises(ValueError, match=r"classes \[1\] have no training image"):
        draw_pool(np.array([0, 0, 2]), 3, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="0..1"):
        draw_pool(np.array([0, 1, 2]), 2, 2, np.random.default_rng(0))


def test_tensor_dataset_pool_loader_and_labels():
    images = torch.arange(6 * 3 * 2 * 2, dtype=torch.uint8).reshape(6, 3, 2, 2)
    ds = TensorDataset(images, torch.tensor([1, 0, 1, 0, 2, 2]))
    assert dataset_labels(ds).tolist() == [1, 0, 1, 0, 2, 2]
    batches = list(pool_loader(ds, np.array([[4, 0], [1, 5]]), 3, True, 0))
    got = torch.cat([b[0] for b in batches])
    assert [len(b[0]) for b in batches] == [3, 1]
    assert torch.equal(got, images[[4, 0, 1, 5]])
    with pytest.raises(ValueError, match="exposes no labels"):
        dataset_labels([1, 2, 3])


@pytest.fixture(scope="module")
def cache_dataset(tmp_path_factory):
    import pandas as pd
    from PIL import Image

    from dml_pipelines.core.data.cache import build_cache
    from dml_pipelines.core.data.loader import CacheDataset
    from dml_pipelines.core.data.transforms import build_transforms

    tmp = tmp_path_factory.mktemp("ccp_pool")
    rng = np.random.default_rng(0)
    for i in range(6):
        arr = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(arr).save(tmp / f"{i}.png")
    table = pd.DataFrame(
        {"path": [f"{i}.png" for i in range(6)], "label": [0, 0, 0, 1, 1, 1]}
    )
    table["split"] = "train"
    cache = build_cache(table, tmp, tmp / "cache")
    transforms = build_transforms("proxy_anchor", image_size=16, resize_size=16)
    labels = np.array([1, 1, 1, 0, 0, 0])
    return CacheDataset(cache, np.arange(6), labels, transforms, train=True)


def test_cache_dataset_pool_is_augmented_and_seeded(cache_dataset):
    ds = cache_dataset
    assert dataset_labels(ds).tolist() == [1, 1, 1, 0, 0, 0]
    idx = np.array([[3, 4], [0, 0]])

    def images(augment, seed):
        batches = list(pool_loader(ds, idx, 3, augment, seed))
        return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])

    x, y = images(True, 1)
    assert x.shape == (4, 3, 16, 16) and y.tolist() == [0, 0, 1, 1]
    assert not torch.equal(x[2], x[3])  # the same image, augmented twice
    assert torch.equal(x, images(True, 1)[0])  # seeded
    assert not torch.equal(x, images(True, 2)[0])
    test, _ = images(False, 1)
    assert torch.equal(test[2], test[3]) and torch.equal(test, images(False, 2)[0])


def test_cache_dataset_pool_uses_the_loader_workers_asked_for(cache_dataset):
    """``num_workers`` (the trainer's ``loader_workers``) reaches the loader;
    the batches do not depend on it (items are seeded by their place)."""
    idx = np.array([[3, 4], [0, 1]])
    loader = pool_loader(cache_dataset, idx, 3, True, 5, num_workers=1)
    assert loader.num_workers == 1
    in_process = list(pool_loader(cache_dataset, idx, 3, True, 5))
    for (a, la), (b, lb) in zip(list(loader), in_process, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)
