"""Training-step cost of ``xbn`` vs its plain baseline (specs/baselines.md §1.2:
the same pair loss with no memory, ``xbm.enabled: false``), and the cost of the
memory work alone at the official memory sizes.

* step: forward + backward + Adam step of the whole method on random 32×32
  images, small CNN, 64-d, batch 64 = 16 × 4, memory 1,024 (the embedded
  default), already full, so every timed step does the whole memory work. Rows:
  no memory, XBM, XBM + XBN, XBM + Adaptive XBN.
* memory work: on random unit vectors, batch 64 × D, for K_mem ∈ {8,192, 55,000}
  and D ∈ {128, 512}: (a) XBN (diagonal moment matching of the whole memory,
  plus the Kalman update when adaptive) + enqueue, (b) the C1 memory term
  forward + backward to the anchors, both through ``CrossBatchNorm``'s own code.
  Reported against the small-CNN step and (``--resnet``) a ResNet-50 step
  (batch 64, 224 px, ``weights=None``).

Time: median of the timed steps; the variants are interleaved in ``--rounds``
rounds and the fastest median per row is kept (a shared machine is noisy).
Threads: ``--threads`` (default 2, the 2-core CPU of the issue).

Usage: ``python benchmarks/xbn_step.py [--steps 10] [--rounds 3] [--resnet]
[--no-memory-table]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from dml_pipelines.core.engine.hooks import StepContext
from dml_pipelines.core.engine.optim import build_optimizer
from dml_pipelines.core.methods.configs import parse_method_config
from dml_pipelines.core.methods.registry import build_method

VARIANTS = {  # label -> overrides of the method block
    "no memory (baseline)": {"xbm": {"enabled": False}, "xbn": {"enabled": False}},
    "XBM": {"xbn": {"enabled": False}},
    "XBM + XBN": {},
    "XBM + Adaptive XBN": {"xbn": {"adaptive": True}},
}


def method_for(over: dict, backbone: str, dim: int, memory: int, classes: int):
    raw = {
        "method": "xbn",
        "backbone": {"name": backbone},
        "pooling": {"name": "gmp"},
        "embedding_dim": dim,
        "sampler": {"P": 16, "K": 4},
        "xbm": {"memory_size": memory, "start_iteration": 0},
        "training": {"device": "cpu"},
    }
    for key, value in over.items():
        raw[key] = {**raw.get(key, {}), **value}
    cfg = parse_method_config(raw)
    torch.manual_seed(0)
    return build_method(cfg, classes), cfg


def median_ms(fn, steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def step_fn(over: dict, backbone="small_cnn", size=32, dim=64, memory=1024):
    method, cfg = method_for(over, backbone, dim, memory, 60)
    opt = build_optimizer(method.param_groups(cfg.optimizer), cfg.optimizer)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, size, size, generator=g)
    y = torch.arange(16).repeat_interleave(4)
    state = {"t": 0}
    if method.xbm.enabled:  # start with a full memory
        while not method.memory.is_full:
            method.loss_on_embeddings(F.normalize(torch.randn(64, dim)), y, 0)

    def step():
        loss, _ = method.training_loss(x, y, StepContext(global_step=state["t"]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["t"] += 1

    return step


def memory_fns(memory: int, dim: int, adaptive: bool):
    over = {"xbn": {"adaptive": adaptive}}
    method, _ = method_for(over, "small_cnn", dim, memory, 100)
    y = torch.arange(16).repeat_interleave(4)
    g = torch.Generator().manual_seed(1)
    while not method.memory.is_full:
        method.memory.enqueue(F.normalize(torch.randn(64, dim, generator=g)), y)
    z = F.normalize(torch.randn(64, dim, generator=g)).requires_grad_(True)
    zd = z.detach()

    def update():  # XBN on the old memory, then enqueue (DEFAULT order)
        method.normalize_memory(zd)
        return method.memory.enqueue(zd, y)

    own = update()

    def memory_loss():
        feats, labels = method.memory.entries()
        loss = method.criterion(z, y, feats, labels, exclude_self=own)
        loss.backward()
        z.grad = None

    return update, memory_loss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resnet", action="store_true")
    ap.add_argument("--no-memory-table", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} threads, {args.steps} timed steps, {args.rounds} rounds\n"
    )
    steps = {k: step_fn(v) for k, v in VARIANTS.items()}
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for k, fn in steps.items():
            best[k] = min(best.get(k, float("inf")), median_ms(fn, args.steps))
    base = best["no memory (baseline)"]
    print("| step: small_cnn 32 px, 64-d, B 64, memory 1,024 | ms | ratio |")
    print("|---|---:|---:|")
    for k, ms in best.items():
        print(f"| {k} | {ms:.1f} | {ms / base:.2f} |")
    if args.no_memory_table:
        return
    refs = {"small_cnn 32 px step (no memory)": base}
    if args.resnet:
        fn = step_fn(VARIANTS["no memory (baseline)"], "resnet50", 224, 128)
        refs["resnet50 224 px step (no memory)"] = median_ms(fn, 1, warmup=1)
    print(
        "\n| memory work, B 64 | XBN + enqueue ms | adaptive ms | C1 memory term "
        "fwd+bwd ms | total ms (XBN) | " + " | ".join(f"/ {r}" for r in refs) + " |"
    )
    print("|---|---:|---:|---:|---:|" + "---:|" * len(refs))
    for memory in (8192, 55000):
        for dim in (128, 512):
            upd, mem = memory_fns(memory, dim, adaptive=False)
            upd_a, _ = memory_fns(memory, dim, adaptive=True)
            u = min(median_ms(upd, args.steps) for _ in range(args.rounds))
            ua = min(median_ms(upd_a, args.steps) for _ in range(args.rounds))
            m = min(median_ms(mem, args.steps) for _ in range(args.rounds))
            ratios = " | ".join(f"{(u + m) / r:.3g}" for r in refs.values())
            print(
                f"| K {memory:,}, D {dim} | {u:.1f} | {ua:.1f} | {m:.1f} | "
                f"{u + m:.1f} | {ratios} |"
            )
    print("\n" + ", ".join(f"{k}: {v:.0f} ms" for k, v in refs.items()))


if __name__ == "__main__":
    main()
