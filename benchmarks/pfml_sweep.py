"""PFML settings chosen on VALIDATION classes of `glyphs` (docs/methods/pfml.md,
"Tuning"), against its plain baseline `proxy_anchor` under the same budget.

Each run trains on three quarters of the glyph TRAINING classes (the MLRC fold
model: `fold_block != F`) through the core API `train_model` and is scored on
the held-out quarter after the LAST epoch (Recall@1 and MAP@R, leave-one-out);
the test split is never read. A variant is a deep-merged override of the
method's block in `conf/base/parameters_<method>.yml`, written as JSON.

    python benchmarks/pfml_sweep.py --fold 0 --seeds 0 1 --epochs 20 \
        --run pfml '{}' --run pfml '{"alpha": 3}' --run proxy_anchor '{}'
    python benchmarks/pfml_sweep.py --label-noise 0.2 ...   # noisy training labels

One JSON line per run is printed (and appended to `--out` when given).

`--dataset glyphs_tune` runs the same on the glyph set for choosing defaults
(docs/datasets.md#glyphs_tune; built by the `data` pipeline when missing), so
that a default chosen there is checked on `glyphs` (benchmarks/default_checks.py):

    python benchmarks/pfml_sweep.py --dataset glyphs_tune --fold 3 --seeds 0 1 2 \
        --run pfml '{}' --run pfml '{"delta": 0.5}' --run proxy_anchor '{}'
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import yaml

from dml_pipelines.core.engine.run import train_model
from dml_pipelines.core.layers import deep_merge
from dml_pipelines.core.methods.configs import parse_method_config
from dml_pipelines.params import RunParams
from plain_reference import prepared

ROOT = Path(__file__).resolve().parents[1]


def run_one(
    method, over, seed, fold, epochs, noise, table, cache, dataset="glyphs", threads=1
) -> dict:
    raw = yaml.safe_load((ROOT / f"conf/base/parameters_{method}.yml").read_text())
    training = {
        "epochs": epochs,
        "label_noise": noise,
        "early_stopping": None,
        "num_threads": threads,
    }
    merged = deep_merge(deep_merge(raw[method], over), {"training": training})
    cfg = RunParams(seed=seed, fold=fold).apply(
        parse_method_config(merged).for_dataset(dataset)
    )
    start = time.perf_counter()
    _, history = train_model(table, cache, cfg, checkpoint_dir=None)
    last = history.iloc[-1]
    return {
        "dataset": dataset,
        "method": method,
        "over": over,
        "seed": seed,
        "fold": fold,
        "epochs": epochs,
        "label_noise": noise,
        "recall@1": round(float(last["val/recall@1"]), 4),
        "map@r": round(float(last["val/map@r"]), 4),
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=["glyphs", "glyphs_tune"], default="glyphs")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--label-noise", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=1, help="training.num_threads")
    ap.add_argument(
        "--run",
        nargs=2,
        action="append",
        metavar=("METHOD", "JSON"),
        required=True,
        help="a method and its block override (JSON), repeatable",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    table, cache = prepared(args.dataset)
    print(f"# load {os.getloadavg()[0]:.1f}", flush=True)
    for seed in args.seeds:
        for method, over in args.run:
            row = run_one(
                method,
                json.loads(over),
                seed,
                args.fold,
                args.epochs,
                args.label_noise,
                table,
                cache,
                args.dataset,
                args.threads,
            )
            line = json.dumps(row)
            print(line, flush=True)
            if args.out is not None:
                with args.out.open("a") as f:
                    f.write(line + "\n")


if __name__ == "__main__":
    main()
