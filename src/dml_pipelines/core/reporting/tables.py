"""Reported vs reproduced tables (one per paper table) and the combined table of
all methods on each dataset, as Markdown and as long CSV frames.

Values are printed as in the papers: percentages. A reproduced value is the mean
± sample std over the matching runs' seeds, with a 95% confidence interval when
there are at least three seeds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pandas as pd

from dml_pipelines.core.models.weights import bninception_note
from dml_pipelines.core.reporting.match import _find_key, match_runs, run_command
from dml_pipelines.core.reporting.reported import (
    ID_KEYS,
    metrics_key,
    reported_frame,
    table_catalogue,
)
from dml_pipelines.core.reporting.stats import seed_stats

DATASET_LABELS = {
    "cub200": "CUB-200-2011",
    "cars196": "Cars196",
    "sop": "SOP",
    "inshop": "In-Shop",
}
PROTOCOL_LABELS = {
    "conventional": "conventional",
    "mlrc_concatenated": "MLRC 512D (concatenated)",
    "mlrc_separated": "MLRC 128D (separated)",
}
#: columns of the combined table after Recall@K, in order (key, label)
#: range of every reported metric (fractions: Recall@K, P@1, RP, MAP@R, NMI, F1),
#: to which the 95% interval is clipped
UNIT_RANGE = (0.0, 1.0)
COMBINED_METRICS = (
    ("precision@1", "P@1"),
    ("r_precision", "RP"),
    ("map@r", "MAP@R"),
    ("nmi", "NMI"),
    ("f1", "F1"),
)
#: protocol-card fields compared across the methods of the combined table
PROTOCOL_FIELDS = (
    "backbone",
    "pretrained",
    "freeze_bn",
    "pooling",
    "dim",
    "cache_resize_shorter",
    "transforms",
    "batch",
    "epochs",
    "checkpoint_selection",
)
PAPER_COLUMNS = (
    *ID_KEYS,
    "reported",
    "reported_std",
    "confidence",
    "reproduced",
    "reproduced_std",
    "ci95_low",
    "ci95_high",
    "n_seeds",
    "status",
    "mismatch",
    "command",
)


def _fmt(value: float | None, std: float | None = None) -> str:
    if value is None or pd.isna(value):
        return "—"
    text = str(value)
    return text if std is None or pd.isna(std) else f"{text} ± {std:g}"


def _md(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _row_status(
    rec: Mapping[str, Any],
    runs: pd.DataFrame,
    seeds: Sequence[int],
    method_blocks: Mapping[str, Any],
) -> dict[str, Any]:
    matched, reasons = match_runs(rec, runs)
    pipeline = rec["pipeline"]
    block = method_blocks.get(pipeline) if pipeline else None
    if pipeline is None:
        status = "no pipeline"
    elif not matched.empty:
        status = "matched"
    elif reasons:
        status = "protocol mismatch"
    elif block is None:
        status = "method not built yet"
    else:
        status = "no run"
    command = "" if status == "matched" else run_command(rec, seeds, block)
    return {
        "matched": matched,
        "status": status,
        "mismatch": "; ".join(reasons),
        "command": command,
    }


def paper_table_rows(
    config: Mapping[str, Any],
    runs: pd.DataFrame,
    *,
    seeds: Sequence[int],
    method_blocks: Mapping[str, Any],
    aliases: Mapping[str, Mapping[str, Any]] | None = None,
    row_settings: Mapping[str, Mapping[str, str]] | None = None,
    source: str = "paper_results.yml",
) -> pd.DataFrame:
    """Every reported number beside its reproduction (long form).

    Args:
        config: the parsed ``paper_results.yml``.
        runs: the runs of every dataset (``collect_runs`` rows, concatenated).
        seeds: the grid's seeds (for the commands of missing runs).
        method_blocks: ``{method: its parameter block}`` of the methods the
            project has.
        aliases: ``{reported pipeline: {pipeline, setting}}`` for a reported
            method the project runs as a variant of another pipeline (``xbm``:
            ``xbn`` with ``xbn.enabled=false``).
        row_settings: ``{paper: {method: setting}}``, settings a row implies
            that the spec does not carry (CCP's variants of one pipeline differ
            in ``base_loss``).
        source: the config's file name, for error messages.

    Returns:
        One row per reported number, columns ``PAPER_COLUMNS``; ``reproduced`` is
        the mean over the matching runs (percent), ``status`` one of ``matched``,
        ``protocol mismatch``, ``no run``, ``method not built yet``, ``no
        pipeline``, ``not recorded by runs``.
    """
    reported = reported_frame(config, source)
    out = []
    keys = ["paper", "table", "method", "dataset", "backbone", "dim", "protocol"]
    for _, group in reported.groupby(keys + ["setting"], sort=False, dropna=False):
        first = group.iloc[0].to_dict()
        for key in ("pipeline", "setting"):
            first[key] = None if pd.isna(first[key]) else first[key]
        alias = (aliases or {}).get(first["pipeline"]) or {}
        implied = (row_settings or {}).get(first["paper"], {}).get(first["method"])
        extra = [alias.get("setting"), implied, first["setting"]]
        first["pipeline"] = alias.get("pipeline", first["pipeline"])
        first["setting"] = "; ".join(x for x in extra if x) or None
        state = _row_status(first, runs, seeds, method_blocks)
        for recipe, matched in _by_recipe(state["matched"]):
            out += _rows(group, first, state, matched, recipe, keys)
    return pd.DataFrame(out, columns=list(PAPER_COLUMNS))


def _by_recipe(matched: pd.DataFrame) -> Iterator[tuple[str | None, pd.DataFrame]]:
    """The matched runs per recipe their resolved block applied (CCP's margin
    recipes: ``cub200`` = the supplement's margins, ``cub200_released`` = the
    released code's), so that a row never averages two recipes; ``None``: the
    runs record none (or nothing matched)."""
    if matched.empty or "config" not in matched:
        yield None, matched
        return
    names = [
        None if not isinstance(c, str) else _recipe_of(json.loads(c))
        for c in matched["config"]
    ]
    for name in dict.fromkeys(names):
        yield name, matched[[n == name for n in names]]


def _recipe_of(config: Mapping[str, Any]) -> str | None:
    """The recipe a resolved block applied (``auto`` / ``default``: none)."""
    found = {v for _, v in _find_key(dict(config), "recipe") if isinstance(v, str)}
    return "+".join(sorted(found - {"auto", "default"})) or None


def _rows(
    group: pd.DataFrame,
    first: Mapping[str, Any],
    state: Mapping[str, Any],
    matched: pd.DataFrame,
    recipe: str | None,
    keys: Sequence[str],
) -> list[dict[str, Any]]:
    """The rows of one reported group reproduced by ``matched`` (of ``recipe``,
    which labels the row's setting)."""
    setting = first["setting"]
    if recipe is not None:
        setting = "; ".join(x for x in (setting, f"recipe={recipe}") if x)
    out = []
    for _, rec in group.iterrows():
        key = metrics_key(rec["metric"])
        values = matched[key].tolist() if key and key in matched else []
        st = seed_stats(values, UNIT_RANGE)
        st = st.scaled(100.0) if st else None
        status = state["status"]
        if key is None and status == "matched":
            status = "not recorded by runs"
        out.append(
            {
                **{k: first[k] for k in (*keys, "pipeline")},
                "setting": setting,
                "metric": rec["metric"],
                "reported": rec["value"],
                "reported_std": rec["std"],
                "confidence": rec["confidence"],
                "reproduced": st.mean if st else None,
                "reproduced_std": st.std if st else None,
                "ci95_low": st.ci95[0] if st and st.ci95 else None,
                "ci95_high": st.ci95[1] if st and st.ci95 else None,
                "n_seeds": st.n if st else 0,
                "status": status,
                "mismatch": state["mismatch"],
                "command": state["command"],
            }
        )
    return out


def _reproduced_cell(r: Mapping[str, Any]) -> str:
    if r["reproduced"] is None or pd.isna(r["reproduced"]):
        return "—"
    text = f"{r['reproduced']:.2f}"
    if r["reproduced_std"] is not None and not pd.isna(r["reproduced_std"]):
        text += f" ± {r['reproduced_std']:.2f}"
    if r["ci95_low"] is not None and not pd.isna(r["ci95_low"]):
        text += f" [{r['ci95_low']:.2f}, {r['ci95_high']:.2f}]"
    return text


def _run_cell(r: Mapping[str, Any]) -> str:
    status = r["status"]
    if status == "matched":
        n = int(r["n_seeds"])
        return f"matched ({n} seed{'' if n == 1 else 's'})"
    if status == "no pipeline":
        return "— not implemented in this project"
    text = f"— `{r['command']}`"
    if status == "protocol mismatch":
        text = f"— protocol mismatch ({r['mismatch']}); to run: `{r['command']}`"
    elif status == "method not built yet":
        text = f"— method not built yet; then: `{r['command']}`"
    return text


def paper_tables_markdown(config: Mapping[str, Any], rows: pd.DataFrame) -> str:
    """The paper tables as Markdown: per table, one block per dataset, protocol,
    backbone and dimension, methods in the paper's order, each metric's reported
    and reproduced values side by side, and how to produce a missing run."""
    parts = [
        "# Reported vs reproduced",
        "",
        "Reported: the paper's number (percent; ± its std over runs where given). "
        "Reproduced: mean ± sample std over the seeds of the runs whose protocol "
        "card matches the row (method, dataset, protocol, backbone, dimension, "
        "setting), [95% CI] with ≥ 3 seeds. `—`: no such run yet, with the command "
        "that produces it (run from the project root; `S` loops over the seeds).",
    ]
    for t in table_catalogue(config):
        parts += ["", f"## {t['paper_title']}: {t['title']}", ""]
        if not t["available"]:
            note = config["papers"][t["paper"]]["tables"][t["table"]].get("note", "")
            parts.append(f"**not available**: {note}" if note else "**not available**")
            continue
        sub = rows[(rows["paper"] == t["paper"]) & (rows["table"] == t["table"])]
        block_keys = ["dataset", "protocol", "backbone", "dim"]
        for key, block in sub.groupby(block_keys, sort=False, dropna=False):
            dataset, protocol, backbone, dim = key
            label = DATASET_LABELS.get(dataset, dataset)
            parts += [
                f"### {label} · {PROTOCOL_LABELS.get(protocol, protocol)} · "
                f"{backbone} {dim}-d",
                "",
            ]
            if backbone == "bninception":
                parts += [bninception_note(), ""]
            metrics = list(dict.fromkeys(block["metric"]))
            header = ["method"]
            for m in metrics:
                header += [f"{m} reported", f"{m} reproduced"]
            header += ["confidence", "run"]
            lines = []
            for _, grp in block.groupby(
                ["method", "setting"], sort=False, dropna=False
            ):
                first = grp.iloc[0]
                name = first["method"]
                if first["setting"] is not None and not pd.isna(first["setting"]):
                    name += f" ({first['setting']})"
                cells = [name]
                by_metric = {r["metric"]: r for _, r in grp.iterrows()}
                for m in metrics:
                    r = by_metric.get(m)
                    if r is None:
                        cells += ["", ""]
                        continue
                    cells += [
                        _fmt(r["reported"], r["reported_std"]),
                        _reproduced_cell(r),
                    ]
                cells += [first["confidence"], _run_cell(first)]
                lines.append(cells)
            parts += [_md(header, lines), ""]
    return "\n".join(parts).rstrip() + "\n"


def combined_table(
    runs: pd.DataFrame,
    *,
    datasets: Sequence[str],
    methods: Sequence[str],
    seeds: Sequence[int],
) -> pd.DataFrame:
    """All methods on each dataset under the conventional protocol: mean ± std
    (and 95% CI with ≥ 3 seeds) of every metric over the seeds, long form.

    Args:
        runs: the runs table of every dataset.
        datasets: the grid's datasets (rows for each, run or not).
        methods: the grid's methods.
        seeds: the grid's seeds: the runs averaged (a run of another seed, made
            by hand, is left out) and the command of a missing run.

    Returns:
        Columns ``dataset``, ``method``, ``n_seeds``, ``seeds``, the protocol
        fields (``PROTOCOL_FIELDS``; joined with ``/`` when seeds disagree),
        ``metric``, ``mean``, ``std``, ``ci95_low``, ``ci95_high`` (percent) and
        ``command`` (for a method without runs: one row, metric empty).
    """
    conv = runs
    if not runs.empty:
        conv = runs[(runs["protocol"] == "conventional") & runs["seed"].isin(seeds)]
    ds_all = list(dict.fromkeys([*datasets, *conv.get("dataset", [])]))
    out = []
    for dataset in ds_all:
        here = conv[conv["dataset"] == dataset] if not conv.empty else conv
        ms = list(dict.fromkeys([*methods, *here.get("method", [])]))
        for method in ms:
            mine = here[here["method"] == method] if not here.empty else here
            base = {"dataset": dataset, "method": method}
            if mine.empty:
                loop = " ".join(str(s) for s in seeds)
                out.append(
                    {
                        **base,
                        "n_seeds": 0,
                        "command": f"dvc repro --glob 'run@{method}-{dataset}-*'"
                        f" (or: for S in {loop}; do kedro run --pipelines={method} "
                        "--params "
                        f"dataset={dataset},run.seed=$S; done)",
                    }
                )
                continue
            fields = {
                f: "/".join(dict.fromkeys(str(v) for v in mine.get(f, [None])))
                for f in PROTOCOL_FIELDS
            }
            keys = sorted(
                (c for c in mine.columns if c.startswith("recall@")),
                key=lambda c: int(c.split("@")[1]),
            ) + [k for k, _ in COMBINED_METRICS]
            for key in keys:
                if key not in mine or mine[key].isna().all():
                    continue
                st = seed_stats(mine[key].tolist(), UNIT_RANGE).scaled(100.0)
                out.append(
                    {
                        **base,
                        "n_seeds": len(mine),
                        "seeds": " ".join(str(s) for s in sorted(mine["seed"])),
                        **fields,
                        "metric": key,
                        "mean": st.mean,
                        "std": st.std,
                        "ci95_low": st.ci95[0] if st.ci95 else None,
                        "ci95_high": st.ci95[1] if st.ci95 else None,
                        "command": "",
                    }
                )
    cols = [
        "dataset",
        "method",
        "n_seeds",
        "seeds",
        *PROTOCOL_FIELDS,
        "metric",
        "mean",
        "std",
        "ci95_low",
        "ci95_high",
        "command",
    ]
    return pd.DataFrame(out, columns=cols)


def combined_markdown(combined: pd.DataFrame) -> str:
    """The combined table as Markdown: one table per dataset, one row per
    method, ``mean ± std [95% CI]`` per metric; the protocol fields that differ
    between the methods are listed under each table."""
    parts = [
        "# All methods per dataset (conventional protocol)",
        "",
        "Mean ± sample std over seeds (percent), [95% CI] with ≥ 3 seeds. `—`: the "
        "method has no run on the dataset yet, with the command that produces it.",
    ]
    labels = dict(COMBINED_METRICS)
    for dataset, block in combined.groupby("dataset", sort=False):
        parts += ["", f"## {DATASET_LABELS.get(dataset, dataset)} (`{dataset}`)", ""]
        metrics = [m for m in dict.fromkeys(block["metric"]) if isinstance(m, str)]
        header = ["method", "seeds", "backbone", "dim", "epochs", "selection"]
        header += [labels.get(m, m.replace("recall@", "R@")) for m in metrics]
        header.append("run")
        lines, differing = [], {}
        for method, grp in block.groupby("method", sort=False):
            first = grp.iloc[0]
            if first["n_seeds"] == 0:
                missing = [method, "0"] + ["—"] * (4 + len(metrics))
                lines.append(missing + [f"— `{first['command']}`"])
                continue
            for f in PROTOCOL_FIELDS:
                differing.setdefault(f, {}).setdefault(str(first[f]), []).append(method)
            cells = {r["metric"]: _fmt_stats(r) for _, r in grp.iterrows()}
            lines.append(
                [method, str(first["n_seeds"])]
                + [first[f] for f in ("backbone", "dim", "epochs")]
                + [first["checkpoint_selection"]]
                + [cells.get(m, "—") for m in metrics]
                + [f"seeds {first['seeds']}"]
            )
        parts.append(_md(header, lines))
        notes = [
            f"{f}: " + "; ".join(f"{v} ({', '.join(ms)})" for v, ms in values.items())
            for f, values in differing.items()
            if len(values) > 1
        ]
        parts += [
            "",
            "Protocol differs between methods in "
            + (" | ".join(notes) if notes else "nothing: a common protocol")
            + ".",
        ]
    return "\n".join(parts).rstrip() + "\n"


def _fmt_stats(r: Mapping[str, Any]) -> str:
    text = f"{r['mean']:.2f}"
    if r["std"] is not None and not pd.isna(r["std"]):
        text += f" ± {r['std']:.2f}"
    if r["ci95_low"] is not None and not pd.isna(r["ci95_low"]):
        text += f" [{r['ci95_low']:.2f}, {r['ci95_high']:.2f}]"
    return text


def summary_metrics(combined: pd.DataFrame) -> dict[str, Any]:
    """The combined table as nested JSON for ``dvc metrics``:
    ``dataset -> method -> metric -> {mean, std, n}`` (percent, 4 decimals)."""
    out: dict[str, Any] = {}
    for _, r in combined.dropna(subset=["metric"]).iterrows():
        std = None if pd.isna(r["std"]) else round(float(r["std"]), 4)
        out.setdefault(r["dataset"], {}).setdefault(r["method"], {})[r["metric"]] = {
            "mean": round(float(r["mean"]), 4),
            "std": std,
            "n": int(r["n_seeds"]),
        }
    return out
