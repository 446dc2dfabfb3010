"""What a run prints at its end, and the project-wide compute settings.

* ``RunSummary`` (Kedro hook): ``kedro run`` ends with one short table of the
  runs it made (method, dataset, seed, R@1 and MAP@R in percent), from the
  metrics files it saved.
* ``python -m dml_pipelines.run_summary [summary.json]`` prints the report's
  combined numbers (R@1 and MAP@R per method and dataset, mean ± std over seeds)
  and the path of the report; ``make run`` ends with it. ``--experiments``
  prints ``dvc exp show`` narrow: the parameters that differ and R@1 / MAP@R of
  the methods they touch (``make exp-show``).
* ``ComputeSettings`` (Kedro hook): the ``compute`` block
  (``conf/base/parameters_compute.yml``: ``num_threads``, ``num_workers``)
  becomes ``DML_NUM_THREADS`` / ``DML_NUM_WORKERS`` for the run, unless the
  variable is already set (``core/engine/threads.py``). The block is no part of
  any DVC stage's parameters (``.dvcignore``): changing it never re-runs a stage.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from dml_pipelines.core.engine.threads import THREADS_ENV, WORKERS_ENV

log = logging.getLogger(__name__)

SUMMARY = Path("data/08_reporting/report/summary.json")
REPORT = Path("data/08_reporting/report/combined.md")
COMPUTE_FILE = "conf/base/parameters_compute.yml"
#: the compute keys, their variables and the smallest number each takes
COMPUTE_KEYS = {"num_threads": (THREADS_ENV, 1), "num_workers": (WORKERS_ENV, 0)}
METRICS = (("recall@1", "R@1"), ("map@r", "MAP@R"))


def compute_environment(block: Mapping[str, Any] | None) -> dict[str, str]:
    """The environment variables the ``compute`` block sets (``auto`` or
    ``null``: none). Raises ``ValueError`` (one line naming the key) on an
    unknown key or a value that is neither ``auto`` nor a count."""
    out = {}
    for key, value in (block or {}).items():
        if key not in COMPUTE_KEYS:
            raise ValueError(
                f"compute.{key} ({COMPUTE_FILE}): unknown key; "
                f"valid: {', '.join(COMPUTE_KEYS)}"
            )
        env, least = COMPUTE_KEYS[key]
        if value is None or value == "auto":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(
                f"compute.{key} ({COMPUTE_FILE}): {value!r}; expected auto or "
                f"an integer >= {least}"
            )
        out[env] = str(value)
    return out


class ComputeSettings:
    """Export the ``compute`` block as ``DML_NUM_THREADS``/``DML_NUM_WORKERS``
    for the pipeline run (a variable already set wins) and restore the
    environment afterwards."""

    def __init__(self) -> None:
        self._set: list[str] = []

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        block = catalog.load("params:compute") if "params:compute" in catalog else {}
        wanted = compute_environment(block)
        self._set = [k for k in wanted if k not in os.environ]
        for key in self._set:
            os.environ[key] = wanted[key]

    def _restore(self) -> None:
        for key in self._set:
            os.environ.pop(key, None)
        self._set = []

    @hook_impl
    def after_pipeline_run(self, run_params, run_result, pipeline, catalog) -> None:
        self._restore()

    @hook_impl
    def on_pipeline_error(self, error, run_params, pipeline, catalog) -> None:
        self._restore()


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * float(value):.1f}"


def _table(header: list[str], rows: Iterable[list[str]]) -> str:
    rows = [header, *rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def runs_table(runs: Iterable[Mapping[str, Any]]) -> str:
    """One line per run's metrics dict: method, dataset, seed[/fold], R@1 and
    MAP@R (percent)."""
    rows = []
    for m in runs:
        run = str(m.get("seed", "—"))
        if m.get("fold") is not None:
            run += f"/fold{m['fold']}"
        rows.append(
            [str(m.get("method", "?")), str(m.get("dataset", "?")), run]
            + [_pct(m.get(key)) for key, _ in METRICS]
        )
    return _table(["method", "dataset", "seed", *(lab for _, lab in METRICS)], rows)


def combined_summary(summary: Mapping[str, Any], per_table: int = 3) -> str:
    """The report's ``summary.json`` (dataset -> method -> metric -> mean, std,
    n; percent) as tables of ``per_table`` datasets (under 120 columns): a row
    per method, R@1 and MAP@R per dataset."""
    names = list(summary)
    if len(names) > per_table:
        return "\n\n".join(
            combined_summary({d: summary[d] for d in names[i : i + per_table]})
            for i in range(0, len(names), per_table)
        )
    datasets = names
    methods = list(dict.fromkeys(m for d in datasets for m in summary[d]))
    header = ["method"] + [f"{d} {lab}" for d in datasets for _, lab in METRICS]

    def cell(dataset: str, method: str, key: str) -> str:
        st = summary[dataset].get(method, {}).get(key)
        if not st:
            return "—"
        text = f"{st['mean']:.1f}"
        return text + (f" ± {st['std']:.1f}" if st.get("std") is not None else "")

    rows = [
        [m] + [cell(d, m, key) for d in datasets for key, _ in METRICS] for m in methods
    ]
    return _table(header, rows)


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def _exp_rows(show: list[dict]) -> list[tuple[str, dict, dict]]:
    """(label, flat parameters, report summary) per row of ``dvc exp show
    --json``: the workspace, each baseline commit and its experiments."""
    out = []

    def add(label: str, data: dict | None) -> None:
        data = data or {}
        params: dict[str, Any] = {}
        for entry in (data.get("params") or {}).values():
            params.update(_flat(entry.get("data") or {}))
        summary = (data.get("metrics") or {}).get(SUMMARY.as_posix()) or {}
        out.append((label, params, summary.get("data") or {}))

    for row in show:
        rev = row.get("rev", "?")
        add(rev if rev == "workspace" else row.get("name") or rev[:7], row.get("data"))
        for exp in row.get("experiments") or []:
            for rev in exp.get("revs") or []:
                add(rev.get("name") or rev.get("rev", "?")[:7], rev.get("data"))
    return out


def experiments_table(show: list[dict], width: int = 48) -> str:
    """``dvc exp show --json`` as one narrow table: per experiment, the
    parameters that differ between the rows (``key=value``, cut at ``width``)
    and R@1 / MAP@R of the report (percent) for the methods whose numbers or
    parameters differ, one line per experiment and method."""
    rows = _exp_rows(show)
    keys = sorted({k for _, p, _ in rows for k in p})
    changed = [k for k in keys if len({repr(p.get(k)) for _, p, _ in rows}) > 1]
    datasets = list(dict.fromkeys(d for _, _, s in rows for d in s))
    pairs = {(d, m) for _, _, s in rows for d in s for m in s[d]}
    methods = sorted(
        {
            m
            for d, m in pairs
            if len({repr(s.get(d, {}).get(m)) for _, _, s in rows}) > 1
        }
        | {k.split(".")[0] for k in changed} & {m for _, m in pairs}
    ) or sorted({m for _, m in pairs})

    def cell(summary: dict, dataset: str, method: str, key: str) -> str:
        st = summary.get(dataset, {}).get(method, {}).get(key)
        return f"{st['mean']:.1f}" if st else "—"

    lines = []
    for label, params, summary in rows:
        text = ", ".join(f"{k}={params.get(k)}" for k in changed if k in params)
        text = text if len(text) <= width else text[: width - 1] + "…"
        for method in methods or ["—"]:
            lines.append(
                [label, text or "-", method]
                + [
                    cell(summary, d, method, key)
                    for d in datasets
                    for key, _ in METRICS
                ]
            )
    header = ["experiment", "changed parameters", "method"]
    header += [f"{d} {lab}" for d in datasets for _, lab in METRICS]
    return _table(header, lines)


class RunSummary:
    """``kedro run`` ends with the metrics of the runs it made (one table)."""

    def __init__(self) -> None:
        self._runs: list[Mapping[str, Any]] = []

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        self._runs = []

    @hook_impl
    def after_dataset_saved(self, dataset_name, data, node) -> None:
        if dataset_name.rsplit(".", 1)[-1] == "metrics" and isinstance(data, dict):
            self._runs.append(data)

    @hook_impl
    def after_pipeline_run(self, run_params, run_result, pipeline, catalog) -> None:
        if self._runs:
            log.info("Runs made (percent):\n%s", runs_table(self._runs))


def main(argv: list[str] | None = None) -> int:
    """Print the combined R@1 / MAP@R table of ``summary.json`` and the report's
    path (``make run``); ``--experiments``: the experiments side by side
    (``make exp-show``)."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--experiments"]:
        import subprocess

        show = subprocess.run(
            ["dvc", "exp", "show", "--json", "--no-fetch", *args[1:]],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        print(experiments_table(json.loads(show)))
        return 0
    path = Path(args[0]) if args else SUMMARY
    if not path.exists():
        print(f"{path}: not found (run `dvc repro` first)", file=sys.stderr)
        return 1
    summary = json.loads(path.read_text())
    print("R@1 and MAP@R (percent, mean ± std over seeds):")
    print(combined_summary(summary))
    report = path.with_name(REPORT.name)
    print(f"\nReport: {report}\nPaper tables: {path.with_name('paper_tables.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
