"""Embedded-data defaults chosen on VALIDATION classes: the project's
`contrastive_c1` settings against the plain PyTorch + pytorch-metric-learning
script (`benchmarks/plain_reference.py`) with the same network, batch and
epochs.

Validation classes are carved from the glyph TRAINING classes (the class block
`fold_block == 3`, a quarter of them); both sides train on the other three
quarters and are scored on the held-out quarter after the last epoch (Recall@1
and MAP@R, leave-one-out). The test split is never read.

Project variants (overrides of the `contrastive_c1` block in
`conf/base/parameters_contrastive_c1.yml`, through the core API `train_model`):

* `default`     the block as committed;
* `constant`    constant learning rate (no scheduler);
* `cosine`      + cosine learning-rate decay to 0 over the epochs;
* `l2_margins`  PML's ContrastiveLoss margins on L2 distance (pos 0, neg 1;
                the `contrastive_c2` loss with PML's defaults);
* `aug_weak`    affine ±5°, ±5 %, 0.95–1.05;  `aug_strong` ±15°, ±15 %, 0.85–1.15;
* `cosine_aug_strong` both.

Plain-script variants: `plain` (as `plain_reference.py`: constant lr) and
`plain_cosine`.

Prints one row per (side, variant, seed) and a summary table (mean ± sample std
over the seeds) as Markdown.

    python benchmarks/embedded_sweep.py --seeds 0 1 2 --epochs 20
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import plain_reference as plain  # noqa: E402
from dml_pipelines.core.layers import deep_merge  # noqa: E402

VAL_BLOCK = 3

VARIANTS: dict[str, dict] = {
    "default": {},
    "constant": {"training": {"scheduler": None}},
    "cosine": {
        "training": {
            "scheduler": {
                "name": "cosine_warmup",
                "args": {"total_epochs": "EPOCHS", "min_factor": 0.0},
            }
        }
    },
    "l2_margins": {
        "loss": {
            "name": "contrastive_c2",
            "args": {"pos_margin": 0.0, "neg_margin": 1.0},
        }
    },
    "aug_weak": {
        "transforms": {
            "args": {"degrees": 5.0, "translate": 0.05, "affine_scale": [0.95, 1.05]}
        }
    },
    "aug_strong": {
        "transforms": {
            "args": {"degrees": 15.0, "translate": 0.15, "affine_scale": [0.85, 1.15]}
        }
    },
}
PLAIN = {"plain": "constant", "plain_cosine": "cosine"}


VARIANTS["cosine_aug_strong"] = deep_merge(VARIANTS["cosine"], VARIANTS["aug_strong"])


def fill(obj, epochs: int):
    if isinstance(obj, dict):
        return {k: fill(v, epochs) for k, v in obj.items()}
    return epochs if obj == "EPOCHS" else obj


def project_run(
    variant: str, seed: int, epochs: int, table, cache, threads: int | None = None
) -> dict:
    from dml_pipelines.core.engine.run import train_model
    from dml_pipelines.core.methods.configs import parse_method_config
    from dml_pipelines.params import RunParams

    raw = yaml.safe_load(
        (ROOT / "conf/base/parameters_contrastive_c1.yml").read_text()
    )["contrastive_c1"]
    over = fill(VARIANTS[variant], epochs)
    over = deep_merge(
        over,
        {
            "training": {
                "epochs": epochs,
                "checkpoint_selection": "validation",
                "validation_fold": VAL_BLOCK,
                "num_threads": threads,
                # score the LAST epoch (same budget as the script), not the best
                "early_stopping": None,
            }
        },
    )
    merged = deep_merge(raw, over)
    if "loss" in over:  # another loss: its own arguments only
        merged["loss"] = copy.deepcopy(over["loss"])
    cfg = parse_method_config(merged).for_dataset("glyphs")
    cfg = RunParams(seed=seed).apply(cfg)
    start = time.perf_counter()
    _, history = train_model(table, cache, cfg, checkpoint_dir=None)
    last = history.iloc[-1]
    return {
        "recall@1": float(last["val/recall@1"]),
        "map@r": float(last["val/map@r"]),
        "seconds": time.perf_counter() - start,
    }


def plain_run(schedule: str, seed: int, epochs: int) -> dict:
    out = plain.run_plain(seed, epochs, validation_block=VAL_BLOCK, schedule=schedule)
    return {k: out[k] for k in ("recall@1", "map@r", "seconds")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument(
        "--variants", nargs="+", default=[*VARIANTS, *PLAIN], help="which to run"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="compute threads of both sides (default: the project's rule)",
    )
    args = ap.parse_args()
    unknown = set(args.variants) - set(VARIANTS) - set(PLAIN)
    if unknown:
        ap.error(f"unknown variants {sorted(unknown)}; valid: {[*VARIANTS, *PLAIN]}")
    table, cache = plain.prepared()
    print(
        f"# {datetime.date.today()} · {platform.processor() or platform.machine()}"
        f" · {os.cpu_count()} CPUs · load {os.getloadavg()[0]:.1f} · "
        f"{args.epochs} epochs · validation block {VAL_BLOCK}",
        flush=True,
    )
    rows = []
    for variant in args.variants:
        for seed in args.seeds:
            if variant in PLAIN:
                if args.threads:
                    torch.set_num_threads(args.threads)
                res = plain_run(PLAIN[variant], seed, args.epochs)
                side = "plain script"
            else:
                res = project_run(
                    variant, seed, args.epochs, table, cache, args.threads
                )
                side = "project"
            rows.append({"side": side, "variant": variant, "seed": seed, **res})
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    print(df.to_markdown(index=False, floatfmt=".4f"))
    summary = df.groupby(["side", "variant"], sort=False).agg(
        n=("seed", "size"),
        r1_mean=("recall@1", "mean"),
        r1_std=("recall@1", "std"),
        mapr_mean=("map@r", "mean"),
        mapr_std=("map@r", "std"),
        seconds=("seconds", "mean"),
    )
    print()
    print(summary.reset_index().to_markdown(index=False, floatfmt=".4f"))


if __name__ == "__main__":
    main()
