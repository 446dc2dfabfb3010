"""Training-loader throughput: the uint8 cache vs decoding the JPEG files every epoch.

Generates a synthetic set of JPEG images (~500×375, random shapes on smooth gradients
plus noise, quality 90), builds the cache with ``resize_shorter=256``, and times full
training epochs of the ``proxy_anchor`` preset (RandomResizedCrop 224 + flip) from:

* ``cache``: ``make_loader`` over the ``ImageCache``;
* ``decode+resize256``: an ImageFolder-style dataset that decodes each JPEG with PIL,
  resizes its shorter side to 256 (as the cache did) and applies the same
  ``train_sample`` (like for like);
* ``decode (original)``: the same, cropping directly from the original decode.

All three use the same batches, collate and per-sample seeds. Files and cache are read
from the page cache (warm). Prints a markdown table (best epoch of ``--repeats``).

Usage: python benchmarks/loader_throughput.py [--images 2000] [--workers 0 2]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from dml_pipelines.core.data.cache import build_cache, resized_size
from dml_pipelines.core.data.loader import (
    SeededBatches,
    collate_batch,
    make_loader,
    seed_worker,
)
from dml_pipelines.core.data.transforms import Transforms, build_transforms


def make_images(root: Path, n: int, seed: int = 0) -> list[str]:
    """Write ``n`` JPEGs (500×375 landscape, every fifth 375×500 portrait)."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    paths = [f"img/{i:05d}.jpg" for i in range(n)]
    if all((root / p).is_file() for p in paths):  # reuse a previous --workdir
        return paths
    for i in range(n):
        w, h = (375, 500) if i % 5 == 4 else (500, 375)
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        a = rng.uniform(0, 2 * np.pi, 3)
        base = [
            127
            + 100
            * np.sin(x / rng.uniform(40, 200) + a[c])
            * np.cos(y / rng.uniform(40, 200) + a[c])
            for c in range(3)
        ]
        img = np.stack(base, axis=-1) + rng.normal(0, 12, (h, w, 3))
        pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(pil)
        for _ in range(8):
            x0, y0 = rng.integers(0, w), rng.integers(0, h)
            box = (x0, y0, x0 + rng.integers(10, 150), y0 + rng.integers(10, 150))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
        pil.save(root / paths[i], quality=90)
    return paths


class JpegDataset(Dataset):
    """ImageFolder-style: decode with PIL every time, optional shorter-side resize,
    then the preset's ``train_sample``."""

    def __init__(
        self, root: Path, paths: list[str], labels: np.ndarray, t: Transforms, resize
    ) -> None:
        self.root, self.paths, self.labels = root, paths, labels
        self.transforms, self.resize = t, resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: tuple[int, int]) -> tuple[torch.Tensor, int]:
        i, seed = index
        with Image.open(self.root / self.paths[i]) as img:
            img = img.convert("RGB")
        if self.resize is not None:
            img = img.resize(resized_size(*img.size, self.resize), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)
        g = torch.Generator().manual_seed(seed)
        return self.transforms.train_sample(x, g), int(self.labels[i])


def epoch_batches(n: int, batch_size: int, seed: int) -> list[list[int]]:
    perm = np.random.default_rng(seed).permutation(n)
    return [
        perm[i : i + batch_size].tolist()
        for i in range(0, n - batch_size + 1, batch_size)
    ]


def time_epoch(loader: DataLoader) -> tuple[float, int]:
    t0 = time.perf_counter()
    count = sum(len(y) for _, y in loader)
    return time.perf_counter() - t0, count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--repeats", type=int, default=2, help="epochs timed per setting")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="loader_bench_"))
    root = work / "root"
    (root / "img").mkdir(parents=True, exist_ok=True)
    reused = all((root / f"img/{i:05d}.jpg").is_file() for i in range(args.images))
    t0 = time.perf_counter()
    paths = make_images(root, args.images)
    gen = "reused" if reused else f"generated in {time.perf_counter() - t0:.0f} s"
    labels = np.arange(args.images) % 100
    table = pd.DataFrame({"path": paths, "label": labels, "split": "train"})
    t0 = time.perf_counter()
    cache = build_cache(table, root, work / "cache", resize_shorter=256, num_workers=2)
    build_s = time.perf_counter() - t0
    jpeg_mb = sum((root / p).stat().st_size for p in paths) / 2**20
    cache_mb = (work / "cache/pixels.u8").stat().st_size / 2**20

    t = build_transforms("proxy_anchor")
    batches = epoch_batches(args.images, args.batch_size, seed=0)
    positions = cache.positions_of(table.index.to_numpy())
    results: dict[tuple[str, int], float] = {}
    for workers in args.workers:
        loaders = {
            "cache": make_loader(
                cache,
                positions,
                labels,
                t,
                batch_sampler=batches,
                train=True,
                num_workers=workers,
            ),
        }
        for name, resize in (("decode+resize256", 256), ("decode (original)", None)):
            extra = {"persistent_workers": True, "worker_init_fn": seed_worker}
            loaders[name] = DataLoader(
                JpegDataset(root, paths, labels, t, resize),
                batch_sampler=SeededBatches(batches, 0),
                num_workers=workers,
                collate_fn=collate_batch,
                **(extra if workers else {}),
            )
        for loader in loaders.values():  # start workers, warm the page cache
            next(iter(loader))
        for _ in range(args.repeats):  # interleaved, so background load hits all
            for name, loader in loaders.items():
                sec, count = time_epoch(loader)
                rate = count / sec
                results[(name, workers)] = max(results.get((name, workers), 0), rate)
        del loaders

    model = (
        subprocess.run(
            ["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        or platform.processor()
    )
    print("## Training-loader throughput (`benchmarks/loader_throughput.py`)\n")
    print(f"- Date: {datetime.date.today().isoformat()}")
    print(
        f"- Machine: {model}, {os.cpu_count()} CPU cores, no GPU; torch "
        f"{torch.__version__}, torch threads {torch.get_num_threads()}"
    )
    print(
        f"- Load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    print(
        f"- Data: {args.images} synthetic JPEGs ~500×375, quality 90 "
        f"({jpeg_mb:.0f} MiB); {gen}"
    )
    print(
        f"- Cache: resize_shorter=256, {cache_mb:.0f} MiB uint8; built in "
        f"{build_s:.1f} s with num_workers=2"
    )
    print(
        f"- Augmentation: `proxy_anchor` train (RandomResizedCrop 224 + flip), batch "
        f"{args.batch_size}, {len(batches)} batches/epoch; best of {args.repeats} "
        "epochs, files in the page cache\n"
    )
    print("| source | num_workers | images/s | × vs decode+resize256 |")
    print("|---|---:|---:|---:|")
    for workers in args.workers:
        ref = results[("decode+resize256", workers)]
        for name in ("cache", "decode+resize256", "decode (original)"):
            r = results[(name, workers)]
            print(f"| {name} | {workers} | {r:.0f} | {r / ref:.2f} |")


if __name__ == "__main__":
    main()
