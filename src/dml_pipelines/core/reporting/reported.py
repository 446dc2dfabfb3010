"""The papers' reported numbers as data (``conf/base/paper_results.yml``).

The papers' tables, transcribed, nest paper -> table -> rows, one row per
method × dataset with one column per metric. ``flatten_spec`` turns it
into one record per (paper, table, method, dataset, backbone, dim, protocol,
setting, metric): the form kept in the project's config. Tables left empty (no
numbers transcribed) are kept as ``available: false`` and are never filled in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

#: what identifies a row of a paper's table (besides the paper and the table)
_ROW_ID = ("method", "pipeline", "dataset", "backbone", "dim", "protocol", "setting")
#: keys of a spec row that are not metrics
ROW_KEYS = (*_ROW_ID, "source", "confidence", "note")
PROTOCOLS = ("conventional", "mlrc_concatenated", "mlrc_separated")
CONFIDENCES = ("confirmed", "third_party", "approximate", "unconfirmed")
#: what identifies a reported number (a paper-table row and its metric)
ID_KEYS = ("paper", "table", *_ROW_ID, "metric")
#: the columns of one reported record, in order
RECORD_KEYS = (
    *ID_KEYS,
    "value",
    "std",
    "confidence",
    "source",
    "note",
)
_FIXED = {
    "P@1": "precision@1",
    "RP": "r_precision",
    "MAP@R": "map@r",
    "NMI": "nmi",
    "F1": "f1",
}


def metrics_key(metric: str) -> str | None:
    """The key of a paper metric in a run's ``metrics.json`` (``R@4`` ->
    ``recall@4``, ``MAP@R`` -> ``map@r``); ``None`` for numbers no run records
    (``train_steps_k``, PaddleClas's ``mAP``)."""
    m = re.fullmatch(r"R@(\d+)", metric)
    if m:
        return f"recall@{m.group(1)}"
    return _FIXED.get(metric)


def _metric_columns(row: Mapping[str, Any]) -> list[str]:
    return [k for k in row if k not in ROW_KEYS and not k.endswith("_std")]


def flatten_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's nested tables as config: ``{"tables": [...], "rows": [...]}``.

    Args:
        spec: the parsed ``paper_results.yaml`` (paper -> table -> list of rows).

    Returns:
        ``tables``: one ``{paper, table, available}`` per table, in spec order;
        ``rows``: one record (``RECORD_KEYS``) per row and metric, values as
        printed (percentages), ``std`` from ``<metric>_std`` or ``None``.
    """
    tables, rows = [], []
    for paper, paper_tables in spec.items():
        for table, spec_rows in (paper_tables or {}).items():
            tables.append(
                {"paper": paper, "table": table, "available": bool(spec_rows)}
            )
            for row in spec_rows or []:
                for metric in _metric_columns(row):
                    rows.append(
                        {
                            "paper": paper,
                            "table": table,
                            **{k: row.get(k) for k in ROW_KEYS if k not in ("note",)},
                            "metric": metric,
                            "value": row[metric],
                            "std": row.get(f"{metric}_std"),
                            "note": row.get("note"),
                        }
                    )
    rows = [{k: r.get(k) for k in RECORD_KEYS} for r in rows]
    return {"tables": tables, "rows": rows}


def reported_frame(config: Mapping[str, Any], source: str) -> pd.DataFrame:
    """The reported records of ``paper_results.yml`` as a validated table.

    Args:
        config: the parsed file (``papers``: paper -> ``{title, tables}``;
            ``rows``: records with ``RECORD_KEYS``).
        source: the file's name, for error messages.

    Returns:
        One row per record, columns ``RECORD_KEYS`` plus ``available``.

    Raises:
        ValueError: a missing or unknown key, an unknown paper/table, protocol or
            confidence, or a row in a table marked not available (one line naming
            ``source`` and the key).
    """
    papers = config.get("papers")
    if not isinstance(papers, Mapping):
        raise ValueError(f"{source}: papers: missing (paper -> title, tables)")
    known = {
        (p, t): bool(spec.get("available"))
        for p, block in papers.items()
        for t, spec in (block.get("tables") or {}).items()
    }
    records = config.get("rows") or []
    for i, rec in enumerate(records):
        where = f"{source}: rows[{i}]"
        missing = [k for k in RECORD_KEYS if k not in rec]
        extra = sorted(set(rec) - set(RECORD_KEYS))
        if missing or extra:
            raise ValueError(f"{where}: missing keys {missing}, unknown keys {extra}")
        key = (rec["paper"], rec["table"])
        if key not in known:
            raise ValueError(f"{where}: unknown table {'/'.join(key)}")
        if not known[key]:
            raise ValueError(f"{where}: table {'/'.join(key)} is marked not available")
        if rec["protocol"] not in PROTOCOLS:
            raise ValueError(
                f"{where}.protocol: {rec['protocol']!r}; valid: {', '.join(PROTOCOLS)}"
            )
        if rec["confidence"] not in CONFIDENCES:
            raise ValueError(
                f"{where}.confidence: {rec['confidence']!r}; "
                f"valid: {', '.join(CONFIDENCES)}"
            )
        if not isinstance(rec["value"], int | float):
            raise ValueError(f"{where}.value: not a number ({rec['value']!r})")
    frame = pd.DataFrame(list(records), columns=list(RECORD_KEYS))
    frame["available"] = True
    return frame


def table_catalogue(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every table of ``paper_results.yml`` in file order: ``paper``, ``table``,
    ``title``, ``paper_title``, ``available``."""
    out = []
    for paper, block in config["papers"].items():
        for table, spec in (block.get("tables") or {}).items():
            out.append(
                {
                    "paper": paper,
                    "table": table,
                    "paper_title": block.get("title", paper),
                    "title": spec.get("title", table),
                    "available": bool(spec.get("available")),
                }
            )
    return out
