"""The one greedy k-center (farthest-point selection; docs/methods/ccp.md and
docs/methods/gsp.md, "Prototype initialisation"), used by CCP's proxy
(re-)selection and GSP's prototype initialisation.

Both official codes call the same ``greedyKCenter``; the two uses here keep the
arithmetic each had, which the official-code fixtures pin (the order of the
chosen rows): CCP (the defaults) takes exact seed distances and lets a picked
item's distance fall to 0 (the official update); GSP
(``gsp_pooling.greedy_kcenter``) takes torch's default ``cdist`` and never
picks an item twice.
"""

from __future__ import annotations

import torch

#: ``torch.cdist`` modes of the seed distances: exact differences (CCP) or the
#: matrix-product form for more than 25 rows (torch's default; GSP)
EXACT, DEFAULT = "donot_use_mm_for_euclid_dist", "use_mm_for_euclid_dist_if_necessary"


def greedy_k_center(
    pool: torch.Tensor,
    seeds: torch.Tensor,
    k: int,
    compute_mode: str = EXACT,
    distinct: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Farthest-point selection per class, seeded (seeds are not kept).

    Args:
        pool: (C, b, D) candidate embeddings of each class (C = 1: one set).
        seeds: (C, S, D) the seeds of each class (S ≥ 1; zeros at CCP's first
            initialisation: the first pick is then the largest-norm item).
        k: picks per class (M).
        compute_mode: how ``torch.cdist`` computes the seed distances
            (:data:`EXACT` or :data:`DEFAULT`).
        distinct: a picked item is never picked again (its distance is set to
            −1); otherwise it is 0, as in the official update.

    Returns:
        The picks (C, k, D) (rows of ``pool``, copied exactly) and their pool
        positions (C, k). Each step takes j* = argmax_j min_q ‖x_j − q‖² over the
        seeds and the items already picked (first index on ties).
    """
    if pool.ndim != 3 or seeds.ndim != 3 or seeds.shape[::2] != pool.shape[::2]:
        raise ValueError(
            f"greedy_k_center: pool {tuple(pool.shape)} and seeds "
            f"{tuple(seeds.shape)} must be (C, b, D) and (C, S, D)"
        )
    if k < 1 or k > pool.shape[1]:
        raise ValueError(f"greedy_k_center: k = {k} picks from {pool.shape[1]} items")
    mind = torch.cdist(pool, seeds.to(pool.dtype), compute_mode=compute_mode)
    mind = mind.square().amin(dim=2)  # (C, b)
    rows = torch.arange(pool.shape[0], device=pool.device)
    picks = torch.empty(pool.shape[0], k, dtype=torch.long, device=pool.device)
    for m in range(k):
        j = mind.argmax(dim=1)
        picks[:, m] = j
        d = (pool - pool[rows, j][:, None]).square().sum(dim=2)
        mind = torch.minimum(mind, d)
        if distinct:
            mind[rows, j] = -1.0
    return pool[rows[:, None], picks], picks
