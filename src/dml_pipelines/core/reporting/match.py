"""Which runs reproduce a paper row: the protocol match, and the command that
produces the run when none does.

A run matches a reported row when its method is the row's pipeline, its dataset,
protocol (conventional, MLRC separated or concatenated), backbone and embedding
dimension are the row's (the dimension of an MLRC concatenated result is the
folds' dimensions summed), and the row's setting holds in the run's config
(``label_noise_20pct``: ``training.label_noise`` 0.2; ``key=value``: that key of
the method block; no setting: no label noise). Anything else is reported as a
mismatch naming the field, never silently compared.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

#: the fields a run must share with a reported row (run column, row key)
MATCH_FIELDS = (("protocol", "protocol"), ("backbone", "backbone"), ("dim", "dim"))
_NOISE = re.compile(r"label_noise_(\d+)pct")


def _find_key(block: Any, key: str, path: tuple[str, ...] = ()) -> list:
    """Every ``(dotted path, value)`` of a dotted ``key`` in a nested dict: the
    path itself when it resolves from the top, else every key named like its
    last part (recipes left out)."""
    node = block
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            break
        node = node[part]
    else:
        return [(key, node)]
    last, out = key.split(".")[-1], []
    if isinstance(block, Mapping):
        for k, v in block.items():
            if k == last:
                out.append((".".join((*path, k)), v))
            if k != "recipes":
                out.extend(_find_key(v, last, (*path, k)))
    return out


def setting_requirements(setting: str | None) -> list[tuple[str, Any]]:
    """The config keys and values a row's setting requires (dotted keys relative
    to the method block; several joined with ``;``). ``label_noise_<P>pct``
    requires ``training.label_noise`` = P / 100."""
    out = []
    for part in (setting or "").split(";"):
        part = part.strip()
        if not part:
            continue
        m = _NOISE.fullmatch(part)
        if m:
            out.append(("training.label_noise", int(m.group(1)) / 100))
            continue
        if "=" not in part:
            raise ValueError(
                f"setting {part!r}: expected label_noise_<P>pct or key=value"
            )
        key, value = part.split("=", 1)
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.append((key, parsed))
    return out


def _setting_holds(run: Mapping[str, Any], setting: str | None) -> str | None:
    """``None`` when the setting holds for the run, else the reason it does not."""
    noise = run.get("label_noise")
    noise = 0.0 if noise is None or pd.isna(noise) else float(noise)
    reqs = setting_requirements(setting)
    want = dict(reqs).get("training.label_noise", 0.0)
    if abs(noise - want) > 1e-9:
        return f"run has label_noise {noise:g}, row {want:g}"
    config = run.get("config")
    missing = config is None or (isinstance(config, float) and pd.isna(config))
    for key, value in reqs:
        if key == "training.label_noise":
            continue
        if missing:
            return f"the run's protocol card has no config to check {key}={value}"
        found = _find_key(json.loads(config), key)
        if not found:
            return f"the run's config has no key {key}"
        values = {json.dumps(v) for _, v in found}
        if values != {json.dumps(value)}:
            return f"run has {key}={', '.join(sorted(values))}, row {json.dumps(value)}"
    return None


def _same(a: Any, b: Any) -> bool:
    if a is None or (isinstance(a, float) and pd.isna(a)):
        return False
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def match_runs(
    row: Mapping[str, Any], runs: pd.DataFrame
) -> tuple[pd.DataFrame, list[str]]:
    """The runs that reproduce ``row`` under its protocol, and why the others
    (of the same method and dataset) do not.

    Args:
        row: a reported record (``pipeline``, ``dataset``, ``protocol``,
            ``backbone``, ``dim``, ``setting``).
        runs: the runs table (``collect_runs``), any datasets.

    Returns:
        The matching rows of ``runs`` and one reason per non-matching run
        (``seed1: dim run 128 vs row 512``).
    """
    if runs.empty or row.get("pipeline") is None:
        return runs.iloc[0:0], []
    same = runs[
        (runs["method"] == row["pipeline"]) & (runs["dataset"] == row["dataset"])
    ]
    keep, reasons = [], []
    for idx, run in same.iterrows():
        why = [
            f"{col} run {run[col]} vs row {row[key]}"
            for col, key in MATCH_FIELDS
            if not _same(run[col], row[key])
        ]
        setting = _setting_holds(run, row.get("setting"))
        if setting:
            why.append(setting)
        if why:
            reasons.append(f"{run['run']} ({run['protocol']}): {'; '.join(why)}")
        else:
            keep.append(idx)
    return same.loc[keep], reasons


def _resolved(block: Mapping[str, Any] | None, dataset: str) -> dict[str, Any]:
    """The method block with its ``recipes.<dataset>`` applied (shallow per
    top-level key, as the recipes are written), or ``{}``."""
    if not block:
        return {}
    recipe = (block.get("recipes") or {}).get(dataset) or {}
    out = dict(block)
    for k, v in recipe.items():
        out[k] = (
            {**out[k], **v}
            if isinstance(v, dict) and isinstance(out.get(k), dict)
            else v
        )
    return out


def run_command(
    row: Mapping[str, Any],
    seeds: Sequence[int],
    method_block: Mapping[str, Any] | None,
) -> str:
    """The exact command that produces the runs a reported row needs.

    Args:
        row: the reported record.
        seeds: the seeds of the grid (``conf/grid.yaml``).
        method_block: the method's parameter block (``parameters_<method>.yml``),
            to add ``--params`` overrides where its recipe for the dataset differs
            from the row (backbone, dimension, setting); ``None`` when the method
            is not in the project yet.

    Returns:
        A shell command line, or a sentence when the project has no pipeline
        for the row's method.
    """
    name = row.get("pipeline")
    if name is None:
        return "not implemented in this project (no pipeline)"
    cfg = _resolved(method_block, row["dataset"])
    mlrc = row["protocol"].startswith("mlrc")
    dim = int(row["dim"]) // 4 if row["protocol"] == "mlrc_concatenated" else row["dim"]
    overrides = [f"dataset={row['dataset']}", "run.seed=$S"]
    backbone = (cfg.get("backbone") or {}).get("name")
    if backbone != row["backbone"]:
        overrides.append(f"{name}.backbone.name={row['backbone']}")
    if cfg.get("embedding_dim") != dim:
        overrides.append(f"{name}.embedding_dim={dim}")
    for key, value in setting_requirements(row.get("setting")):
        found = _find_key(cfg, key) if key != "training.label_noise" else []
        key = found[0][0] if len(found) == 1 else key
        text = json.dumps(value) if isinstance(value, bool) else value
        overrides.append(f"{name}.{key}={text}")
    params = ",".join(overrides)
    loop = f"for S in {' '.join(str(s) for s in seeds)}; do "
    if not mlrc:
        return f"{loop}kedro run --pipelines={name} --params {params}; done"
    return (
        f"{loop}for F in 0 1 2 3; do kedro run --pipelines={name} --params "
        f"{params},run.fold=$F; done; kedro run --pipelines={name}_mlrc --params "
        f"dataset={row['dataset']},run.seed=$S; done"
    )
