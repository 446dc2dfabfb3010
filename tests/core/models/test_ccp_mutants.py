"""Kills surviving mutants of the CCP proxy selection (docs/mutation.md, units
``kcenter`` and ``ccp_proxies``): one pick is valid, malformed shapes are
rejected, the candidates' close points are measured without cancellation; the
pool draw covers every class (the first and the last, singletons cycling),
numeric labels and indices of any dtype are read as integers, and the
one-line errors name what is wrong."""

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from dml_pipelines.core.models.ccp_proxies import dataset_labels, draw_pool, pool_loader
from dml_pipelines.core.models.kcenter import greedy_k_center


def test_one_pick_is_the_farthest_item_from_the_seeds():
    pool = torch.tensor([[[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]]])
    seeds = torch.zeros(1, 1, 2)
    picks, where = greedy_k_center(pool, seeds, 1)
    assert where.tolist() == [[1]] and picks.tolist() == [[[3.0, 4.0]]]


def test_shapes_are_checked_one_by_one():
    pool = torch.zeros(2, 3, 4)
    bad = (torch.zeros(2, 4), torch.zeros(2, 1, 4, 1), torch.zeros(3, 1, 4))
    for seeds in (*bad, torch.zeros(2, 1, 5)):
        with pytest.raises(ValueError, match=r"^greedy_k_center: pool \(2, 3, 4\)"):
            greedy_k_center(pool, seeds, 1)
    with pytest.raises(ValueError, match=r"^greedy_k_center: pool \(3, 4\)"):
        greedy_k_center(torch.zeros(3, 4), torch.zeros(2, 1, 4), 1)


def test_double_seeds_against_float_pool_and_close_points():
    """Seeds in another dtype are cast; a candidate 1e-4 from a seed (far from
    the origin) is nearer than one 2e-4 away: the float32 expansion
    ‖x‖² + ‖q‖² − 2x·q could not tell them apart."""
    base = torch.full((1, 1, 8), 10.0)
    near = base.expand(1, 28, 8) + 0.5e-4  # 30 candidates: the mm path of cdist
    pool = torch.cat([near, base + 1e-4, base + 2e-4], dim=1)
    _, where = greedy_k_center(pool, base.double(), 1)
    assert where.tolist() == [[29]]


# -- draw_pool ---------------------------------------------------------------------
def test_every_class_pool_cycles_through_all_its_items_singletons_included():
    """per_class larger than every class: each row is its class's items, each
    once, in a random order, then the same order again (docstring: taken
    cyclically); the first class (items 0, 1) and a one-item class included."""
    labels = np.array([0, 0, 1, 1, 1, 2])
    idx = draw_pool(labels, 3, 6, np.random.default_rng(3))
    assert sorted(idx[0][:2]) == [0, 1] and sorted(idx[1][:3]) == [2, 3, 4]
    assert idx[2].tolist() == [5] * 6
    for c, n in ((0, 2), (1, 3)):
        assert idx[c].tolist() == idx[c][:n].tolist() * (6 // n)


def test_an_empty_last_class_is_an_error_and_at_most_five_are_named():
    """bincount stops at the largest label present: the empty classes above it
    are errors too. The message lists the first five empty classes."""
    with pytest.raises(ValueError) as err:
        draw_pool(np.array([0, 0, 1]), 3, 2, np.random.default_rng(0))
    assert str(err.value) == "ccp proxy pool: classes [2] have no training image"
    with pytest.raises(ValueError) as err:
        draw_pool(np.array([0, 8]), 9, 2, np.random.default_rng(0))
    assert str(err.value) == (
        "ccp proxy pool: classes [1, 2, 3, 4, 5] have no training image"
    )


def test_whole_valued_labels_of_any_numeric_dtype_draw_the_int64_pool():
    """Labels read as floats (a table column with missing values filled) or as
    a torch tensor are class indices: the same generator draws the same pool."""
    labels = np.array([1, 0, 2, 2, 0, 1, 1])
    want = draw_pool(labels, 3, 4, np.random.default_rng(7))
    for other in (labels.astype(np.float64), torch.tensor(labels), labels.tolist()):
        got = draw_pool(other, 3, 4, np.random.default_rng(7))
        assert np.array_equal(got, want)


# -- dataset_labels and pool_loader -------------------------------------------------
def test_dataset_labels_are_int64_class_indices_whatever_the_stored_dtype():
    images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    for stored in (torch.uint8, torch.int32, torch.float32):
        ds = TensorDataset(images, torch.tensor([2, 0, 1, 1]).to(stored))
        got = dataset_labels(ds)
        assert got.dtype == np.int64 and got.tolist() == [2, 0, 1, 1]
        assert np.bincount(got).tolist() == [1, 2, 1]  # usable as indices


def test_dataset_without_labels_is_a_one_line_error_naming_its_type():
    with pytest.raises(ValueError) as err:
        dataset_labels([1, 2, 3])
    assert str(err.value) == (
        "ccp: the training dataset list exposes no labels "
        "(.labels or a TensorDataset) for the proxy pool"
    )


def test_pool_loader_reads_whole_valued_float_indices_as_positions():
    images = torch.arange(5 * 3 * 2 * 2, dtype=torch.uint8).reshape(5, 3, 2, 2)
    ds = TensorDataset(images, torch.tensor([0, 1, 0, 1, 2]))
    idx = np.array([[4.0, 0.0], [2.0, 3.0]])
    ((x, y),) = list(pool_loader(ds, idx, 4, False, 0))
    assert torch.equal(x, images[[4, 0, 2, 3]]) and y.tolist() == [2, 0, 0, 1]
