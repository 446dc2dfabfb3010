"""The runs of one dataset as one table: each run's metrics file beside its
protocol card.

Input: the JSON files under ``data/08_reporting/<dataset>/`` keyed by their path
without ``.json`` (``<method>/seed<S>[/fold<F>]/metrics``, ``.../protocol_card``,
``<method>/seed<S>/mlrc_metrics``). A conventional run gives one row; an MLRC
evaluation gives two (``mlrc_separated``: dim = the fold model's; and
``mlrc_concatenated``: dim = folds × that), described by the card of its first
fold model. Fold models themselves are not results and give no row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

#: protocol-card fields copied into the runs table (missing ones stay empty)
CARD_FIELDS = (
    "recipe",
    "backbone",
    "pretrained",
    "freeze_bn",
    "pooling",
    "embedding_dim",
    "cache_resize_shorter",
    "use_bbox",
    "transforms",
    "batch",
    "epochs",
    "warmup_epochs",
    "optimizer",
    "checkpoint_selection",
    "selection_metric",
    "selected_on",
    "label_noise",
    "params_hash",
    "device",
    "git_commit",
    "code_digest",
    "data_fingerprint",
    "libraries",
    "wall_time_s",
)
#: metric keys kept (plus every ``recall@K``)
METRICS = ("precision@1", "r_precision", "map@r", "nmi", "ami", "f1")
RUN_COLUMNS = ("dataset", "method", "seed", "fold", "run", "protocol", "dim")
_RUN = re.compile(r"^(?P<method>[^/]+)/seed(?P<seed>\d+)(?:/fold(?P<fold>\d+))?/")


def _metric_items(record: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in record.items()
        if (k in METRICS or k.startswith("recall@"))
        and isinstance(v, int | float)
        and not isinstance(v, bool)
    }


def _config_fields(card: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` (the resolved method block, when the card has one) as JSON and
    its hash, so that settings of a paper row can be matched against it."""
    from dml_pipelines.core.identity import config_hash

    config = card.get("config")
    if config is None:
        return {"config": None}
    out = {"config": json.dumps(config, sort_keys=True, default=str)}
    if card.get("params_hash") is None:
        out["params_hash"] = config_hash(config)
    return out


def libraries_text(libraries: Mapping[str, Any] | None) -> str | None:
    """``{"torch": "2.14.1", ...}`` as ``torch==2.14.1; ...`` (one CSV cell)."""
    if not libraries:
        return None
    return "; ".join(f"{k}=={v}" for k, v in libraries.items() if v is not None)


def _card_fields(card: Mapping[str, Any]) -> dict[str, Any]:
    fields = {k: card.get(k) for k in CARD_FIELDS}
    if isinstance(fields["libraries"], Mapping):
        fields["libraries"] = libraries_text(fields["libraries"])
    return {**fields, **_config_fields(card), "has_card": bool(card)}


def collect_runs(dataset: str, files: Mapping[str, Any], source: str) -> pd.DataFrame:
    """One row per result of ``dataset``: run identity, protocol card, metrics.

    Args:
        dataset: the dataset name (every row's ``dataset``).
        files: ``{path without .json: parsed JSON}`` under the dataset's
            reporting folder (values may be callables returning it).
        source: the folder's name, for error messages.

    Returns:
        Columns ``RUN_COLUMNS``, ``CARD_FIELDS``, ``config``, ``has_card`` and one
        per metric (fractions, as in ``metrics.json``); sorted by method, protocol,
        seed.

    Raises:
        ValueError: a metrics file names another dataset or method than its path
            (one line naming the file).
    """
    loaded = {k: v() if callable(v) else v for k, v in files.items()}
    rows = []
    for pid, record in sorted(loaded.items()):
        m = _RUN.match(pid + "/")
        name = pid.rsplit("/", 1)[-1]
        if not m or name not in ("metrics", "mlrc_metrics"):
            continue
        method, seed, fold = m["method"], int(m["seed"]), m["fold"]
        if fold is not None and name == "metrics":
            continue  # a fold model: part of an MLRC result, not a result
        for key, expected in (("dataset", dataset), ("method", method)):
            if key in record and record[key] != expected:
                raise ValueError(
                    f"{source}/{pid}.json: {key} is {record[key]!r}, "
                    f"its path says {expected!r}"
                )
        base = {"dataset": dataset, "method": method, "seed": seed, "fold": None}
        if name == "metrics":
            card = loaded.get(f"{method}/seed{seed}/protocol_card") or {}
            fields = _card_fields(card)
            rows.append(
                {
                    **base,
                    "run": f"seed{seed}",
                    "protocol": record.get("protocol", "conventional"),
                    **fields,
                    "dim": fields["embedding_dim"],
                    **_metric_items(record),
                }
            )
            continue
        folds = record.get("folds") or []
        first = f"{method}/seed{seed}/{folds[0]}/protocol_card" if folds else ""
        card = loaded.get(first) or {}
        fields = _card_fields(card)
        fold_dim = fields["embedding_dim"]
        for protocol, dim in (
            ("mlrc_separated", fold_dim),
            ("mlrc_concatenated", None if fold_dim is None else fold_dim * len(folds)),
        ):
            rows.append(
                {
                    **base,
                    "run": f"seed{seed}/mlrc",
                    "protocol": protocol,
                    **fields,
                    "dim": dim,
                    **_metric_items(record.get(protocol) or {}),
                }
            )
    frame = pd.DataFrame(rows)
    for col in (*RUN_COLUMNS, *CARD_FIELDS, "config", "has_card"):
        if col not in frame:
            frame[col] = None
    if frame.empty:
        return frame
    return frame.sort_values(["method", "protocol", "seed"], kind="stable").reset_index(
        drop=True
    )
