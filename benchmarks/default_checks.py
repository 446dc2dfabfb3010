"""Every paper's embedded default against its own plain baseline on the REPORTED
set `glyphs`, same budget on both sides (docs/benchmarks.md, "Each paper's
default against its plain baseline").

Both sides of a pair train through the core API `train_model` with the method's
block from `conf/base/parameters_<method>.yml` (the `glyphs` recipe resolution,
seed S, one compute thread) and are scored on the TEST split (60 unseen classes,
leave-one-out Recall@1 and MAP@R) of the selected checkpoint: the last epoch,
or for ccp (and its baseline) the validation-selected one, as the block says.

Pairs (method default, then its baseline, a deep-merged override of the block):

* `gsp`          vs the block's `plain` recipe (GAP pooling, no ZSR; same C1 loss
                 and cross-batch memory);
* `ccp`          vs multi-proxy C2 without the outer loop (`instance_patience`
                 above the epoch budget: the proxies are selected once and never
                 projected; same validation selection);
* `pfml`         vs `proxy_anchor` (its plain baseline, docs/methods/pfml.md);
* `xbn`          vs the same block with no memory (`xbm` and `xbn` off);
* `intra_batch`  vs its backbone trained with the same smoothed CE and no
                 message passing (`losses: [backbone_ce]`).

One CSV row per run is appended to `--out` as it finishes (a partial sweep is
still reportable); at the end Markdown tables (mean ± sample std over seeds, and
the paired difference method − baseline). `--summarize CSV...` prints the
tables of recorded rows without training.

    python benchmarks/default_checks.py --seeds 0 1 2 --out default_checks.csv
    python benchmarks/default_checks.py --pairs pfml --seeds 0 1 \
        --label-noise 0.2 0.4 --out pfml_noise.csv
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from dml_pipelines.core.layers import deep_merge  # noqa: E402
from dml_pipelines.core.methods.configs import parse_method_config  # noqa: E402
from dml_pipelines.params import RunParams  # noqa: E402

NO_OUTER_LOOP = {"instance_patience": 10_000}
"""ccp's baseline: an instance never ends within the budget, so CCP's proxy
re-selection and projection never run."""

PAIRS: dict[str, tuple[tuple[str, str, dict], tuple[str, str, dict]]] = {
    "gsp": (("gsp", "default", {}), ("gsp", "plain (GAP)", {"recipe": "plain"})),
    "ccp": (
        ("ccp", "default", {}),
        ("ccp", "multi-proxy C2, no outer loop", NO_OUTER_LOOP),
    ),
    "pfml": (("pfml", "default", {}), ("proxy_anchor", "default", {})),
    "xbn": (
        ("xbn", "default (XBM + XBN)", {}),
        ("xbn", "no memory", {"xbm": {"enabled": False}, "xbn": {"enabled": False}}),
    ),
    "intra_batch": (
        ("intra_batch", "default (MPN)", {}),
        ("intra_batch", "backbone CE only", {"losses": ["backbone_ce"]}),
    ),
}
FIELDS = [
    "pair",
    "side",
    "method",
    "variant",
    "label_noise",
    "seed",
    "recall@1",
    "map@r",
    "selected_epoch",
    "seconds",
    "override",
]


def run_one(
    method: str,
    over: dict,
    seed: int,
    noise: float,
    table,
    cache,
    threads: int,
    epochs: int | None = None,
) -> dict:
    """Train one configuration and score its selected checkpoint on the test split."""
    from dml_pipelines.core.engine.assemble import method_from_state
    from dml_pipelines.core.engine.embed import embedding_set
    from dml_pipelines.core.engine.run import train_model
    from dml_pipelines.core.evaluation.report import evaluate_set

    raw = yaml.safe_load((ROOT / f"conf/base/parameters_{method}.yml").read_text())
    training = {"num_threads": threads}
    if noise:
        training["label_noise"] = noise
    if epochs is not None:  # smoke runs only; the checks use the block's budget
        training["epochs"] = epochs
    merged = deep_merge(deep_merge(raw[method], over), {"training": training})
    cfg = RunParams(seed=seed).apply(parse_method_config(merged).for_dataset("glyphs"))
    start = time.perf_counter()
    state, _ = train_model(table, cache, cfg, checkpoint_dir=None)
    model = method_from_state(state, cfg, len(state["classes"]))
    es = embedding_set(model, table, cache, cfg, leave=False)
    metrics = evaluate_set(es, recall_at=(1,))
    if isinstance(metrics, tuple):
        metrics = metrics[0]
    return {
        "recall@1": round(float(metrics["recall@1"]), 4),
        "map@r": round(float(metrics["map@r"]), 4),
        "selected_epoch": state.get("selected_epoch"),
        "seconds": round(time.perf_counter() - start, 1),
    }


def _fmt(s: pd.Series) -> str:
    return f"{s.mean():.3f} ± {s.std():.3f}" if len(s) > 1 else f"{s.mean():.3f}"


def summary(df: pd.DataFrame) -> str:
    """Markdown tables: mean ± sample std over seeds per (pair, noise, side), then
    the paired difference method − baseline over the seeds both sides ran."""
    rows = []
    keys = ["pair", "label_noise", "side", "method", "variant"]
    for key, g in df.groupby(keys, sort=False):
        per_seed = ", ".join(
            f"{r['recall@1']:.3f} / {r['map@r']:.3f}" for _, r in g.iterrows()
        )
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "seeds": " ".join(str(s) for s in g["seed"]),
                "Recall@1": _fmt(g["recall@1"]),
                "MAP@R": _fmt(g["map@r"]),
                "per seed R@1 / MAP@R": per_seed,
            }
        )
    deltas = []
    for (pair, noise), g in df.groupby(["pair", "label_noise"], sort=False):
        wide = g.pivot_table(
            index="seed", columns="side", values=["recall@1", "map@r"]
        ).dropna()
        if wide.empty or "baseline" not in wide["recall@1"]:
            continue
        d = wide.xs("method", axis=1, level=1) - wide.xs("baseline", axis=1, level=1)
        deltas.append(
            {
                "pair": pair,
                "label_noise": noise,
                "seeds": " ".join(str(s) for s in wide.index),
                "Δ Recall@1 (method − baseline)": _fmt(d["recall@1"]),
                "Δ MAP@R": _fmt(d["map@r"]),
                "seeds won (R@1)": f"{int((d['recall@1'] > 0).sum())}/{len(d)}",
            }
        )
    out = pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
    if deltas:
        out += "\n\n" + pd.DataFrame(deltas).to_markdown(
            index=False, disable_numparse=True
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--label-noise", type=float, nargs="+", default=[0.0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--sides",
        nargs="+",
        default=["method", "baseline"],
        choices=["method", "baseline"],
        help="train only these sides of each pair (e.g. after a change of the "
        "method's default, when the baseline's training code is unchanged)",
    )
    ap.add_argument(
        "--epochs", type=int, default=None, help="override (smoke runs only)"
    )
    ap.add_argument("--out", type=Path, default=None, help="CSV, one row per run")
    ap.add_argument(
        "--summarize",
        type=Path,
        nargs="+",
        default=None,
        help="print the tables of recorded CSVs and exit (no training)",
    )
    args = ap.parse_args()
    if args.summarize:
        print(summary(pd.concat(pd.read_csv(p) for p in args.summarize)))
        return
    import plain_reference as plain

    table, cache = plain.prepared()
    print(
        f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC · "
        f"{platform.processor() or platform.machine()} · {os.cpu_count()} CPUs · "
        f"load {os.getloadavg()[0]:.1f} · {args.threads} thread(s)",
        flush=True,
    )
    if args.out is not None and not args.out.exists():
        with args.out.open("w", newline="") as f:
            csv.DictWriter(f, FIELDS).writeheader()
    rows = []
    # seeds outermost: a sweep cut short still has every pair on the first seeds
    for seed in args.seeds:
        for noise in args.label_noise:
            for pair in args.pairs:
                for side, (method, variant, over) in zip(
                    ("method", "baseline"), PAIRS[pair], strict=True
                ):
                    if side not in args.sides:
                        continue
                    res = run_one(
                        method,
                        over,
                        seed,
                        noise,
                        table,
                        cache,
                        args.threads,
                        args.epochs,
                    )
                    row = {
                        "pair": pair,
                        "side": side,
                        "method": method,
                        "variant": variant,
                        "label_noise": noise,
                        "seed": seed,
                        **res,
                        "override": json.dumps(over),
                    }
                    rows.append(row)
                    print(row, flush=True)
                    if args.out is not None:
                        with args.out.open("a", newline="") as f:
                            csv.DictWriter(f, FIELDS).writerow(row)
    print()
    print(summary(pd.DataFrame(rows)))


if __name__ == "__main__":
    main()
