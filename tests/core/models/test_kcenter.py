"""The one greedy k-center (``core/models/kcenter.py``) under the settings of its
two users: CCP's proxies (exact seed distances, the official update) and GSP's
prototypes (torch's default distances, distinct picks); docs/methods/ccp.md and
docs/methods/gsp.md."""

import torch

from dml_pipelines.core.methods import ccp as ccp_method
from dml_pipelines.core.models import gsp_pooling
from dml_pipelines.core.models.kcenter import DEFAULT, greedy_k_center


def brute(points, seeds, k, distinct):
    """Farthest-point selection written out: one candidate at a time."""
    chosen = []
    for _ in range(k):
        best, arg = None, None
        for j, x in enumerate(points):
            if distinct and j in chosen:
                continue
            d = min(float(((x - q) ** 2).sum()) for q in [*seeds, *points[chosen]])
            if best is None or d > best:
                best, arg = d, j
        chosen.append(arg)
    return chosen


def test_both_users_call_the_one_routine_and_equal_the_written_out_selection():
    assert ccp_method.greedy_k_center is greedy_k_center  # CCP's selection
    g = torch.Generator().manual_seed(5)
    pool = torch.randn(3, 30, 4, generator=g, dtype=torch.float64)
    seeds = torch.randn(3, 2, 4, generator=g, dtype=torch.float64)
    picks, where = greedy_k_center(pool, seeds, 5)
    for c in range(3):
        assert where[c].tolist() == brute(pool[c], seeds[c], 5, distinct=False)
        assert torch.equal(picks[c], pool[c, where[c]])
    idx = gsp_pooling.greedy_kcenter(pool[0], seeds[0], 5)
    assert idx.tolist() == brute(pool[0], seeds[0], 5, distinct=True)


def test_duplicates_ccp_repicks_the_first_item_gsp_picks_distinct_rows():
    """Three distinct rows, each twice: after three picks every distance is 0;
    the official update then takes the first index again, GSP's a new one."""
    rows = torch.tensor([[0.0, 3.0], [2.0, 0.0], [5.0, 5.0]])
    pool = torch.cat([rows, rows])[None]
    seeds = torch.zeros(1, 1, 2)
    _, official = greedy_k_center(pool, seeds, 5)
    assert official[0].tolist() == [2, 0, 1, 0, 0]
    _, distinct = greedy_k_center(pool, seeds, 5, DEFAULT, distinct=True)
    assert distinct[0].tolist() == [2, 0, 1, 3, 4]
    assert gsp_pooling.greedy_kcenter(pool[0], seeds[0], 0).tolist() == []
