"""Calibrate the ``glyphs`` difficulty (specs/datasets.md §11.2 item 7).

Trains the ``contrastive_c1`` baseline exactly as the pipeline does (small CNN, 64-d,
batch 64 = 16 classes x 4 images, Adam lr 1e-3, 20 epochs, ``small`` augmentation)
on a glyph rendering and prints the untrained and trained test Recall@1 and MAP@R
(leave-one-out, cosine). Self-contained: plain PyTorch + pytorch-metric-learning; the
only project import is the glyph reader that renders the data.

Example::

    python benchmarks/calibrate_glyphs.py --seeds 0 1 --noise 0.05 0.30 --stroke 1.0
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.losses import ContrastiveLoss
from pytorch_metric_learning.reducers import SumReducer
from torch import nn
from torchvision.transforms import v2

from dml_pipelines.core.data.formats import glyphs


def small_cnn(dim: int = 64) -> nn.Module:
    """4 x [conv3x3 (no bias) -> BN -> ReLU], 3->32->64->128->256, max-pool after
    the first three blocks; GAP -> Linear(256, dim); L2 normalisation in forward."""
    layers: list[nn.Module] = []
    chans = [3, 32, 64, 128, 256]
    for i in range(4):
        layers += [
            nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
            nn.BatchNorm2d(chans[i + 1]),
            nn.ReLU(inplace=True),
        ]
        if i < 3:
            layers.append(nn.MaxPool2d(2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, dim)]
    return nn.Sequential(*layers)


def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(model(x), dim=1)


def load(root: Path, table) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, H, W) float in [0, 1] and (N,) labels."""
    imgs = [
        np.asarray(Image.open(root / p).convert("RGB")) for p in table["path"].tolist()
    ]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
    return x, torch.tensor(table["label"].to_numpy())


def normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - 0.5) / 0.5


def pk_batches(labels: np.ndarray, rng: np.random.Generator, p: int = 16, k: int = 4):
    """One epoch of P x K index batches: classes shuffled, images drawn without
    replacement within a class (reshuffled each epoch); floor(N / (P K)) full
    batches."""
    by_class = {
        c: rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)
    }
    pos = dict.fromkeys(by_class, 0)
    n_batches = len(labels) // (p * k)
    out = []
    queue: list[int] = []
    while len(out) < n_batches:
        if len(queue) < p:
            queue += list(rng.permutation(list(by_class)))
        batch, rest = [], []
        for c in queue:
            if len(batch) < p and c not in [b[0] for b in batch]:
                if pos[c] + k > len(by_class[c]):  # class exhausted: reshuffle it
                    by_class[c] = rng.permutation(by_class[c])
                    pos[c] = 0
                batch.append((c, by_class[c][pos[c] : pos[c] + k]))
                pos[c] += k
            else:
                rest.append(c)
        queue = rest
        out.append(np.concatenate([idx for _, idx in batch]))
    return out


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Leave-one-out cosine Recall@1 and MAP@R (MLRC; R = class count - 1)."""
    model.eval()
    e = torch.cat(
        [embed(model, normalise(x[i : i + 512])) for i in range(0, len(x), 512)]
    )
    sim = e @ e.T
    sim.fill_diagonal_(-float("inf"))
    counts = torch.bincount(y)[y] - 1
    r_max = int(counts.max())
    nn_idx = sim.topk(r_max, dim=1).indices
    rel = (y[nn_idx] == y[:, None]).float()
    recall1 = rel[:, 0].mean().item()
    ranks = torch.arange(1, r_max + 1, dtype=torch.float32)
    mask = (ranks[None, :] <= counts[:, None]).float()
    rel = rel * mask
    prec = rel.cumsum(1) / ranks
    map_r = ((prec * rel).sum(1) / counts.clamp(min=1)).mean().item()
    return recall1, map_r


def run(args: argparse.Namespace, seed: int, data_seed: int) -> dict:
    options = {
        "seed": data_seed,
        "noise_std_range": tuple(args.noise),
        "stroke_px": args.stroke,
    }
    for key in ("rotation_deg", "shear_deg", "size_jitter", "translate"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    root = Path(args.cache) / "_".join(f"{k}={v}" for k, v in sorted(options.items()))
    t0 = time.time()
    table = glyphs.read(root, **options)
    t_data = time.time() - t0
    xtr, ytr = load(root, table[table["split"] == "train"])
    xte, yte = load(root, table[table["split"] == "test"])

    torch.manual_seed(seed)
    model = small_cnn(64)
    loss_fn = ContrastiveLoss(
        pos_margin=1, neg_margin=0.5, distance=CosineSimilarity(), reducer=SumReducer()
    )
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=0)
    aug = v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1))
    untrained = evaluate(model, xte, yte)
    rng = np.random.default_rng(seed)
    ytr_np = ytr.numpy()
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for idx in pk_batches(ytr_np, rng):
            xb = torch.stack([aug(img) for img in xtr[idx]])
            yb = ytr[idx]
            loss = loss_fn(embed(model, normalise(xb)), yb) / len(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        if args.verbose:
            print(f"  epoch {epoch + 1}: loss {total:.3f}", flush=True)
    trained = evaluate(model, xte, yte)
    return {
        "seed": seed,
        "data_seed": data_seed,
        "untrained_r1": untrained[0],
        "untrained_map_r": untrained[1],
        "r1": trained[0],
        "map_r": trained[1],
        "data_s": t_data,
        "train_s": time.time() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument(
        "--data-seed", type=int, default=None, help="glyphs seed (default: = seed)"
    )
    ap.add_argument(
        "--noise", type=float, nargs=2, default=list(glyphs.DEFAULTS["noise_std_range"])
    )
    ap.add_argument("--stroke", type=float, default=glyphs.DEFAULTS["stroke_px"])
    ap.add_argument("--rotation-deg", type=float, default=None)
    ap.add_argument("--shear-deg", type=float, default=None)
    ap.add_argument("--size-jitter", type=float, default=None)
    ap.add_argument("--translate", type=float, default=None)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--cache", default=str(Path(tempfile.gettempdir()) / "glyphs_calib")
    )
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"noise={args.noise} stroke={args.stroke} epochs={args.epochs} lr={args.lr}",
        flush=True,
    )
    for seed in args.seeds:
        data_seed = seed if args.data_seed is None else args.data_seed
        r = run(args, seed, data_seed)
        print(
            f"seed {r['seed']} (data seed {r['data_seed']}): untrained R@1 "
            f"{r['untrained_r1']:.4f} MAP@R {r['untrained_map_r']:.4f} | trained R@1 "
            f"{r['r1']:.4f} MAP@R {r['map_r']:.4f} | data {r['data_s']:.1f}s "
            f"train {r['train_s']:.1f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()
