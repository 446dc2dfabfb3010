"""Where the training augmentation runs: in the loader, or on the training device.

``training.augment_on: loader`` crops, resizes and flips every image in the loader
processes; ``device`` lets the loader only cut the crop box (no interpolation) and
pack the boxes into one buffer, and the training device resizes and flips the
batch (``Transforms.train_batch``). This script measures both halves on
benchmark-sized images: synthetic ~500×375 images cached at their original size,
the ``intra_batch`` preset (RandomResizedCrop 227 + flip, the CUB recipe's input),
batches of 54.

Rows:

* ``loader work``: images/s of one loader process (one thread, as a loader worker
  runs) doing its part of each path; a loader with W workers feeds about W× this;
* ``device work``: images/s of ``train_batch`` on the device, host-to-device copy
  of the packed buffer included (CUDA synchronised);
* ``MB to device / batch``: bytes the batch carries to the device (the loader
  path sends the 227² crops, the device path the uncut boxes);
* ``max |Δ| / mean |Δ|``: pixel difference (0–255) between the two paths' batches
  for the same seed (0 on a CPU: the same ops; on CUDA the interpolation kernel
  differs).

    python benchmarks/device_augment.py            # CPU here; CUDA where present
    python benchmarks/device_augment.py --images 64 --batches 2   # quick
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from dml_pipelines.core.data.cache import build_cache
from dml_pipelines.core.data.loader import make_loader
from dml_pipelines.core.data.transforms import build_transforms
from dml_pipelines.core.engine.device import resolve_device

BATCH = 54


def make_cache(folder: Path, n: int):
    """``n`` smooth random images (500×375, every fifth 375×500), cached at their
    original size."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        w, h = (375, 500) if i % 5 == 4 else (500, 375)
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        img = np.stack(
            [127 + 100 * np.sin(x / rng.uniform(20, 90) + y / rng.uniform(20, 90))] * 3,
            axis=-1,
        ) + rng.normal(0, 10, (h, w, 3))
        rel = f"img/{i:04d}.png"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / rel)
        rows.append({"path": rel, "label": i % 10, "split": "train"})
    table = pd.DataFrame(rows)
    return build_cache(table, folder, folder / "cache", resize_shorter=None)


def batches_of(n: int, count: int) -> list[list[int]]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, n, BATCH).tolist() for _ in range(count)]


def loader_for(cache, transforms, batches, augment_on):
    return make_loader(
        cache,
        np.arange(len(cache)),
        np.zeros(len(cache), dtype=np.int64),
        transforms,
        batch_sampler=batches,
        train=True,
        seed=0,
        augment_on=augment_on,
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(cache, batches, device: torch.device, rounds: int) -> list[dict]:
    t = build_transforms("intra_batch")
    images = BATCH * len(batches)
    torch.set_num_threads(1)  # the loader side runs as one loader worker does
    plain = loader_for(cache, t, batches, None)
    packed = loader_for(cache, t, batches, device)
    best = {"loader": np.inf, "device": np.inf}
    for _ in range(rounds):
        start = time.perf_counter()
        loader_out = list(plain)
        best["loader"] = min(best["loader"], time.perf_counter() - start)
        start = time.perf_counter()
        packed_out = list(packed.loader)  # the loader half only
        best["device"] = min(best["device"], time.perf_counter() - start)
    torch.set_num_threads(os.cpu_count() or 1)
    device_best = np.inf
    for _ in range(rounds):
        sync(device)
        start = time.perf_counter()
        device_out = [
            t.train_batch(buffer.to(device, non_blocking=True), shapes, params)
            for (buffer, shapes, params), _ in packed_out
        ]
        sync(device)
        device_best = min(device_best, time.perf_counter() - start)
    diff = torch.cat(
        [
            (a.cpu().int() - b.int()).abs().flatten()
            for a, (b, _) in zip(device_out, loader_out, strict=True)
        ]
    ).float()
    mb_loader = np.mean([x.numel() for x, _ in loader_out]) / 2**20
    mb_device = np.mean([b.numel() for (b, _, _), _ in packed_out]) / 2**20
    return [
        {
            "augment_on": "loader",
            "loader work img/s": images / best["loader"],
            "device work img/s": "—",
            "MB to device / batch": mb_loader,
            "max |Δ| / mean |Δ|": "(reference)",
        },
        {
            "augment_on": f"device ({device.type})",
            "loader work img/s": images / best["device"],
            "device work img/s": f"{images / device_best:.0f}",
            "MB to device / batch": mb_device,
            "max |Δ| / mean |Δ|": f"{diff.max():.0f} / {diff.mean():.3f}",
        },
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args()
    device = resolve_device(args.device)
    print(
        f"# {datetime.datetime.now():%Y-%m-%d %H:%M} · "
        f"{platform.processor() or platform.machine()} · device {device} · "
        f"torch {torch.__version__} · load {os.getloadavg()[0]:.1f} · "
        f"{args.batches} batches of {BATCH}, best of {args.rounds}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        cache = make_cache(Path(tmp), args.images)
        rows = measure(
            cache, batches_of(args.images, args.batches), device, args.rounds
        )
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    main()
