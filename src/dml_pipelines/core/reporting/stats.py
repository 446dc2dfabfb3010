"""Statistics over seeds: mean, sample standard deviation and a 95% confidence
interval of the mean (Student's t, n − 1 degrees of freedom) when there are at
least three seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: fewest seeds for which a confidence interval is reported
MIN_SEEDS_FOR_CI = 3


@dataclass(frozen=True)
class SeedStats:
    """Summary of one metric over seeds (same unit as the values).

    Attributes:
        mean: the mean.
        std: sample standard deviation (ddof = 1); ``None`` for one value.
        n: number of values.
        ci95: ``(low, high)`` 95% t-interval of the mean when ``n >= 3``, else
            ``None``.
    """

    mean: float
    std: float | None
    n: int
    ci95: tuple[float, float] | None

    def scaled(self, factor: float) -> SeedStats:
        """The same summary with every value multiplied by ``factor``."""
        ci = None if self.ci95 is None else tuple(v * factor for v in self.ci95)
        std = None if self.std is None else self.std * factor
        return SeedStats(self.mean * factor, std, self.n, ci)

    def format(self, digits: int = 2) -> str:
        """``mean ± std [low, high]`` (``mean`` alone for one value)."""
        text = f"{self.mean:.{digits}f}"
        if self.std is not None:
            text += f" ± {self.std:.{digits}f}"
        if self.ci95 is not None:
            lo, hi = self.ci95
            text += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
        return text


def seed_stats(
    values: Sequence[float], bounds: tuple[float, float] | None = None
) -> SeedStats | None:
    """Mean, sample std and (n ≥ 3) the 95% t-interval of ``values``; ``None``
    when there is no finite value. Non-finite values are left out.

    ``bounds``: the metric's range (e.g. ``(0, 1)`` for Recall@K, MAP@R, NMI);
    the interval is clipped to it (the symmetric t-interval of a widely spread
    metric near 1 would otherwise reach past it)."""
    from scipy import stats

    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    n = len(arr)
    if n == 0:
        return None
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if n > 1 else None
    ci = None
    if n >= MIN_SEEDS_FOR_CI:
        half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
        ci = (mean - half, mean + half)
        if bounds is not None:
            ci = (max(ci[0], bounds[0]), min(ci[1], bounds[1]))
    return SeedStats(mean, std, n, ci)
