"""Plain PyTorch + pytorch-metric-learning reference for the `contrastive_c1`
baseline on `glyphs` (no Kedro, no DVC, no project engine).

Same model (small CNN → GAP → Linear(256, 64) → L2), same data (the prepared
glyph cache), same P×K sampler (16 × 4), same loss (C1), same augmentation
(random affine ±10°, ±10 %, 0.9–1.1), same optimiser and budget (Adam 1e-3, 20
epochs). With ``--compare`` it also runs the Kedro pipeline for the same seeds
and prints both side by side (issue: "the machinery costs nothing").

    python benchmarks/plain_reference.py --seeds 0 1 --compare
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pytorch_metric_learning import distances, losses, reducers
from torch import nn
from torchvision.transforms import v2

from dml_pipelines.core.data.cache import ImageCache
from dml_pipelines.core.data.samplers import PKSampler

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"


def small_cnn(dim: int = 64) -> nn.Module:
    layers, cin = [], 3
    for i, cout in enumerate((32, 64, 128, 256)):
        layers += [
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
        if i < 3:
            layers.append(nn.MaxPool2d(2))
        cin = cout
    return nn.Sequential(
        *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, dim)
    )


def load(split: str, block: int | None = None, held_out: bool = False):
    """Images and labels of ``split``; with ``block``, only the training classes
    outside (``held_out=False``) or inside (``True``) that ``fold_block``."""
    table = pd.read_parquet(DATA / "02_intermediate/glyphs/index_table.parquet")
    cache = ImageCache.open(DATA / "03_primary/glyphs/cache_original")
    mask = table["split"] == split
    if block is not None:
        mask &= (table["fold_block"] == block) == held_out
    rows = table.index[mask].to_numpy()
    pos = cache.positions_of(rows)
    images = torch.from_numpy(np.stack([cache.image(p) for p in pos])).permute(
        0, 3, 1, 2
    )
    return images.contiguous(), table.loc[rows, "label"].to_numpy()


def retrieval(emb: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Leave-one-out Recall@1 and MAP@R (cosine)."""
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    order = np.argsort(-sim, axis=1, kind="stable")
    rel = labels[order] == labels[:, None]
    r = (labels[:, None] == labels[None, :]).sum(1) - 1
    keep = r > 0
    rel, r = rel[keep], r[keep]
    r1 = rel[:, 0].mean()
    ap = []
    for row, ri in zip(rel, r, strict=True):
        hits = row[:ri]
        prec = np.cumsum(hits) / np.arange(1, ri + 1)
        ap.append((prec * hits).sum() / ri)
    return float(r1), float(np.mean(ap))


def embed(model, images):
    model.eval()
    with torch.no_grad():
        x = images.float() / 255.0
        out = torch.cat([model((b - 0.5) / 0.5) for b in x.split(256)])
    return nn.functional.normalize(out, dim=1).numpy()


def run_plain(
    seed: int,
    epochs: int,
    validation_block: int | None = None,
    schedule: str = "constant",
) -> dict:
    """Train and score; with ``validation_block``, train on the training classes
    outside that class block and score on the block (never the test split).
    ``schedule``: ``constant`` lr or ``cosine`` (decay to 0 over the epochs)."""
    start = time.perf_counter()
    if validation_block is None:
        train_x, train_y = load("train")
        test_x, test_y = load("test")
    else:
        train_x, train_y = load("train", validation_block, held_out=False)
        test_x, test_y = load("train", validation_block, held_out=True)
    _, y = np.unique(train_y, return_inverse=True)
    torch.manual_seed(seed)
    model = small_cnn()
    loss_fn = losses.ContrastiveLoss(
        pos_margin=1,
        neg_margin=0.5,
        distance=distances.CosineSimilarity(),
        reducer=reducers.SumReducer(),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        if schedule == "cosine"
        else None
    )
    aug = v2.RandomAffine(
        degrees=10,
        translate=(0.1, 0.1),
        scale=(0.9, 1.1),
        interpolation=v2.InterpolationMode.BILINEAR,
    )
    sampler = PKSampler(y, 16, 4, seed=seed)
    untrained = retrieval(embed(model, test_x), test_y)
    labels = torch.as_tensor(y)
    for epoch in range(epochs):
        model.train()
        sampler.set_epoch(epoch)
        for batch in sampler:
            imgs = torch.stack([aug(train_x[i]) for i in batch]).float() / 255.0
            out = nn.functional.normalize(model((imgs - 0.5) / 0.5), dim=1)
            loss = loss_fn(out, labels[batch]) / len(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if sched is not None:
            sched.step()
    r1, mapr = retrieval(embed(model, test_x), test_y)
    return {
        "seed": seed,
        "recall@1": r1,
        "map@r": mapr,
        "untrained_recall@1": untrained[0],
        "seconds": time.perf_counter() - start,
    }


def run_pipeline(seed: int, epochs: int) -> dict:
    """`kedro run --pipelines=contrastive_c1` (training + evaluation) in a scratch
    copy of the project that reuses the prepared glyph data."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in ("conf", "pyproject.toml", ".telemetry"):
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp / name)
        (tmp / "src").mkdir()
        for layer in ("02_intermediate/glyphs", "03_primary/glyphs"):
            (tmp / "data" / layer).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(DATA / layer, tmp / "data" / layer)
        block = "contrastive_c1.training"
        params = f"dataset=glyphs,{block}.seed={seed},{block}.epochs={epochs}"
        cmd = [
            sys.executable,
            "-m",
            "kedro",
            "run",
            "--pipelines=contrastive_c1",
            "--tags=training,evaluation",
            "--params",
            params,
        ]
        start = time.perf_counter()
        subprocess.run(
            cmd,
            cwd=tmp,
            check=True,
            capture_output=True,
            env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"},
        )
        seconds = time.perf_counter() - start
        m = json.loads(
            (
                tmp / "data/08_reporting/glyphs/contrastive_c1/seed0/metrics.json"
            ).read_text()
        )
    return {
        "seed": seed,
        "recall@1": m["recall@1"],
        "map@r": m["map@r"],
        "untrained_recall@1": m["untrained"]["recall@1"],
        "seconds": seconds,
    }


def ensure_data(dataset: str = "glyphs") -> None:
    """Prepare ``dataset``'s index table and cache with the project's data pipeline
    if missing (the embedded sets: ``glyphs``, ``glyphs_tune``)."""
    if not (DATA / f"03_primary/{dataset}/cache_original").exists():
        subprocess.run(
            [sys.executable, "-m", "kedro", "run", "--pipelines=data", "--params"]
            + [f"dataset={dataset}"],
            cwd=ROOT,
            check=True,
            env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"},
        )


def prepared(dataset: str = "glyphs") -> tuple[pd.DataFrame, ImageCache]:
    """``dataset``'s index table and original-size cache, built first if missing."""
    ensure_data(dataset)
    table = pd.read_parquet(DATA / f"02_intermediate/{dataset}/index_table.parquet")
    return table, ImageCache.open(DATA / f"03_primary/{dataset}/cache_original")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument(
        "--compare", action="store_true", help="also run the Kedro pipeline"
    )
    args = ap.parse_args()
    ensure_data()
    rows = []
    for seed in args.seeds:
        rows.append({"runner": "plain script", **run_plain(seed, args.epochs)})
        if args.compare:
            rows.append({"runner": "kedro pipeline", **run_pipeline(seed, args.epochs)})
    df = pd.DataFrame(rows)
    print(
        df.to_markdown(index=False, floatfmt=".4f")
        if _has_tabulate()
        else df.to_string(index=False)
    )
    mean = df.groupby("runner")[
        ["recall@1", "map@r", "untrained_recall@1", "seconds"]
    ].mean()
    print("\nmean over seeds")
    print(mean.to_string(float_format=lambda v: f"{v:.4f}"))
    if args.compare:
        d = mean.loc["kedro pipeline"] - mean.loc["plain script"]
        ratio = (
            mean.loc["kedro pipeline", "seconds"] / mean.loc["plain script", "seconds"]
        )
        print(
            f"\npipeline − script: recall@1 {100 * d['recall@1']:+.2f} pts, "
            f"map@r {100 * d['map@r']:+.2f} pts; wall time ratio {ratio:.2f}×"
        )


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
