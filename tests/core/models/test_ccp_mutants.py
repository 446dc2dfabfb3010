"""Kills surviving mutants of ``greedy_k_center`` (docs/mutation.md,
``ccp_proxies``): one pick is valid, malformed shapes are rejected, and the
candidates' close points are measured without cancellation."""

import pytest
import torch

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
