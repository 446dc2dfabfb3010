"""Aggregation over the seed axis: mean ± sample standard deviation of every
numeric metric over runs that differ only in their seed."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def numeric_items(record: Mapping[str, Any]) -> dict[str, float]:
    """Top-level numeric (non-bool) entries of a metrics record."""
    return {
        k: float(v)
        for k, v in record.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def aggregate_runs(records: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``{run id: metrics record}`` -> per metric ``{mean, std, n, values}``.

    ``std`` is the sample standard deviation (ddof = 1; ``None`` for one run); a
    metric missing from some run is aggregated over the runs that have it (its
    ``n`` says how many). ``runs`` lists the run ids in order.
    """
    if not records:
        raise ValueError("aggregate: no metrics records to aggregate")
    runs = sorted(records)
    per_run = {r: numeric_items(records[r]) for r in runs}
    keys = sorted({k for m in per_run.values() for k in m})
    out: dict[str, Any] = {"runs": runs, "n_runs": len(runs), "metrics": {}}
    for key in keys:
        values = [per_run[r][key] for r in runs if key in per_run[r]]
        arr = np.asarray(values, dtype=np.float64)
        std = float(arr.std(ddof=1)) if len(arr) > 1 else None
        out["metrics"][key] = {
            "mean": float(arr.mean()),
            "std": std if std is None or math.isfinite(std) else None,
            "n": len(values),
            "values": values,
        }
    return out


def select_partitions(partitions: Mapping[str, Any], pattern: str) -> dict[str, Any]:
    """Partitions whose id matches ``pattern`` (a regular expression with one
    group, the key returned), e.g. ``r"^seed(\\d+)"`` or ``r"(fold\\d+)/?$"``."""
    import re

    out = {}
    for pid, value in partitions.items():
        m = re.search(pattern, pid.strip("/"))
        if m:
            out[m.group(1)] = value
    return dict(sorted(out.items()))


def load_all(partitions: Mapping[str, Any]) -> dict[str, Any]:
    """Call the lazy loaders of a ``PartitionedDataset`` (plain values pass)."""
    return {k: v() if callable(v) else v for k, v in partitions.items()}


__all__: Sequence[str] = (
    "aggregate_runs",
    "load_all",
    "numeric_items",
    "select_partitions",
)
