"""Training throughput: steady-state epoch images/s of ``train_model`` (the
project's whole data path: cache → augmentation → loader → step) against the
same method stepping on device-resident batches (the method's own ceiling) and a
plain-PyTorch step of the same network, side by side.

Setups:

* ``small``: the embedded default of ``contrastive_c1`` (small CNN, 64-d, batch
  64 = 16 × 4) on synthetic 32 px glyph-like images;
* ``resnet50``: ``intra_batch`` with its CUB recipe (ResNet-50 with random
  weights, 512-d, batch 54, 227 px crops of ~300 px JPEG-decoded images, RAdam)
  on synthetic images; the plain step is torchvision ResNet-50 + a 512-d head +
  label-smoothed cross-entropy, with bf16 autocast and channels_last on CUDA
  (the best plain setting measured on an H200).

``train_model`` runs twice: with the default settings (``augment_on: auto``: the
crop is resized on the device on CUDA, in the loader on a CPU) and with the other
augmentation path.

Each setup runs ``--repeats`` times (fresh model, same data); the table gives
the median and the spread (min–max) of the steady-state epoch images/s (epochs
after the first; the first pays start-up) and how many epochs were more than 3×
slower than the median (the thread-oversubscription symptom). Device: CUDA when
present, else CPU (threads: ``core/engine/threads.py``).

    python benchmarks/train_throughput.py                  # small, 5 repeats
    python benchmarks/train_throughput.py --setups small resnet50 --tiny
    python benchmarks/train_throughput.py --setups resnet50 --images 1920  # GPU
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from PIL import Image

from dml_pipelines.core.data.cache import build_cache
from dml_pipelines.core.data.loader import make_loader
from dml_pipelines.core.engine.assemble import assemble_run, build_for_training
from dml_pipelines.core.engine.device import resolve_device
from dml_pipelines.core.engine.run import train_model
from dml_pipelines.core.engine.threads import configure_threads, training_threads
from dml_pipelines.core.engine.trainer import Trainer
from dml_pipelines.core.engine.training_data import pk_sampler, run_transforms
from dml_pipelines.core.methods.configs import parse_method_config

ROOT = Path(__file__).resolve().parents[1]

SETUPS = {
    # name: (method, recipe, image side, images per class, extension)
    "small": ("contrastive_c1", "default", 32, 8, "png"),
    "resnet50": ("intra_batch", "cub200", 300, 9, "jpg"),
}


def make_dataset(folder: Path, side: int, classes: int, per_class: int, ext: str):
    """Class-coloured noisy images (side × ~0.8 side) and their index table."""
    rng = np.random.default_rng(0)
    rows = []
    h = max(8, int(side * 0.8))
    for c in range(classes):
        colour = rng.integers(0, 256, 3)
        for i in range(per_class):
            img = np.clip(colour + rng.normal(0, 40, (h, side, 3)), 0, 255)
            rel = f"img/{c:03d}_{i:02d}.{ext}"
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.astype("uint8")).save(folder / rel)
            rows.append({"path": rel, "label": c, "split": "train"})
    table = pd.DataFrame(rows)
    cache = build_cache(table, folder, folder / "cache", resize_shorter=None)
    return table, cache


def config(name: str, epochs: int, device: str, augment_on: str = "auto"):
    method, recipe, *_ = SETUPS[name]
    raw = yaml.safe_load((ROOT / f"conf/base/parameters_{method}.yml").read_text())
    block = raw[method]
    block["recipe"] = recipe
    cfg = parse_method_config(block)
    dump = cfg.model_dump(mode="json")
    dump["backbone"]["pretrained"] = False  # nothing is downloaded
    dump["training"].update(
        epochs=epochs, device=device, checkpoint_selection="last", augment_on=augment_on
    )
    dump["training"]["early_stopping"] = None
    dump["recipe"], dump["recipes"] = "default", {}
    if "lr_drops" in dump:  # reload-best drops need a selected checkpoint
        dump["lr_drops"] = []
    return type(cfg).model_validate(dump)


def steady(seconds: list[float], images: int) -> list[float]:
    """Images/s of every epoch after the first."""
    return [images / s for s in seconds[1:]]


def pipeline_run(table, cache, cfg) -> list[float]:
    _, history = train_model(table, cache, cfg, checkpoint_dir=None)
    return history["seconds"].tolist()


def resident_batches(table, cache, cfg, device):
    """One epoch of the real loader's batches, moved to the device once."""
    labels = table["label"].to_numpy(np.int64)
    sampler = pk_sampler(labels, cfg)
    t = run_transforms(cfg)
    loader = make_loader(
        cache,
        cache.positions_of(table.index.to_numpy()),
        labels,
        t,
        batch_sampler=sampler,
        train=True,
    )
    return [(x.to(device), y.to(device)) for x, y in loader], t


def ceiling_run(table, cache, cfg, device) -> tuple[list[float], int]:
    batches, t = resident_batches(table, cache, cfg, device)
    method = build_for_training(cfg, int(table["label"].nunique()))
    trainer = Trainer(assemble_run(cfg, method, batches, t.normalize))
    history = trainer.fit()
    return history["seconds"].tolist(), sum(len(y) for _, y in batches)


def plain_run(table, cache, cfg, device, epochs) -> tuple[list[float], int]:
    """Plain PyTorch: the setup's network, RAdam + label-smoothed CE (ResNet-50)
    or Adam + the C1 loss (small CNN), on the same device-resident uint8
    batches, normalised per step; bf16 autocast + channels_last on CUDA."""
    import torchvision
    from pytorch_metric_learning import distances, losses, reducers
    from torch import nn

    batches, t = resident_batches(table, cache, cfg, device)
    classes = int(table["label"].nunique())
    torch.manual_seed(0)
    if cfg.backbone.name == "resnet50":
        net = torchvision.models.resnet50(weights=None)
        net.fc = nn.Linear(2048, cfg.embedding_dim)
        head = nn.Linear(cfg.embedding_dim, classes)
        model = nn.Sequential(net, head).to(device)

        def loss_fn(x, y):
            return nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)

        opt = torch.optim.RAdam(model.parameters(), lr=1e-4)
    else:
        import sys

        sys.path.insert(0, str(ROOT / "benchmarks"))
        from plain_reference import small_cnn

        model = small_cnn(cfg.embedding_dim).to(device)
        c1 = losses.ContrastiveLoss(
            pos_margin=1,
            neg_margin=0.5,
            distance=distances.CosineSimilarity(),
            reducer=reducers.SumReducer(),
        )

        def loss_fn(x, y):
            return c1(nn.functional.normalize(model(x), dim=1), y) / len(y)

        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for x, y in batches:
            x = t.normalize(x, True)  # per step, as any training loop does
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = loss_fn(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds, sum(len(y) for _, y in batches)


def summary(values: list[float]) -> dict[str, float]:
    med = statistics.median(values)
    return {
        "median": med,
        "min": min(values),
        "max": max(values),
        "slow_epochs": sum(v < med / 3 for v in values),
        "n": len(values),
    }


def run_setup(name, args, device, work: Path):
    method, recipe, side, per_class, ext = SETUPS[name]
    classes = args.images // per_class
    folder = work / name
    table, cache = make_dataset(folder, side, classes, per_class, ext)
    n = len(table)
    cfg = config(name, args.epochs, args.device)
    # the augmentation path the default does not take (auto: device on CUDA)
    other = "loader" if device.type == "cuda" else "device"
    cfg_other = config(name, args.epochs, args.device, other)
    rows = []
    pipe, pipe_other, ceil, plain = [], [], [], []
    for rep in range(args.repeats):
        pipe += steady(pipeline_run(table, cache, cfg), n)
        pipe_other += steady(pipeline_run(table, cache, cfg_other), n)
        secs, m = ceiling_run(table, cache, cfg, device)
        ceil += steady(secs, m)
        secs, m = plain_run(table, cache, cfg, device, args.epochs)
        plain += steady(secs, m)
        print(f"{name} repeat {rep + 1}/{args.repeats} done", flush=True)
    for runner, values in (
        ("train_model (default settings)", pipe),
        (f"train_model, augment_on: {other}", pipe_other),
        ("same method, device-resident batches (ceiling)", ceil),
        ("plain PyTorch step", plain),
    ):
        rows.append({"setup": name, "runner": runner, **summary(values)})
    ref = {r["runner"]: r["median"] for r in rows}
    for r in rows:
        r["x_ceiling"] = (
            r["median"] / ref["same method, device-resident batches (ceiling)"]
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setups", nargs="+", default=["small"], choices=list(SETUPS))
    ap.add_argument("--images", type=int, default=None, help="images per setup")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument(
        "--tiny", action="store_true", help="a few images and epochs (the test)"
    )
    args = ap.parse_args()
    if args.tiny:
        args.epochs, args.repeats = 2, min(args.repeats, 2)
    device = resolve_device(args.device)
    threads = configure_threads(training_threads(None, 0))
    print(
        f"# {datetime.datetime.now():%Y-%m-%d %H:%M} · "
        f"{platform.processor() or platform.machine()} · device {device} · "
        f"torch {torch.__version__} · {threads} threads · "
        f"load {os.getloadavg()[0]:.1f} · {args.epochs} epochs × {args.repeats}",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.setups:
            default = {"small": 1280, "resnet50": 216}[name]
            if args.tiny:
                default = {"small": 128, "resnet50": 54}[name]
            a = argparse.Namespace(**{**vars(args), "images": args.images or default})
            rows += run_setup(name, a, device, Path(tmp))
    df = pd.DataFrame(rows)
    print(df.to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    main()
