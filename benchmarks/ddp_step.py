"""Multi-process training step on CPU (gloo): 2 processes vs 1 at the same
global batch, to measure what the batch-wide gathers and the gradient
all-reduce cost.

Each row: one training step (forward, the method's gathers, backward, gradient
averaging, optimiser step) of ``contrastive_c1`` with a 512-d embedding on
random 32×32 images, global batch 64 (16 classes × 4), small CNN; 1 process
takes the whole batch with 2 intra-op threads, each of 2 processes takes 32
images with 1 thread (the same 2 cores). Time: median of the timed steps after
warm-up, read on rank 0. "gather + all-reduce" is the time of those collectives
alone in the 2-process run (embeddings 32×512 gathered, labels, one flat
gradient all-reduce).

Usage: ``python benchmarks/ddp_step.py [--steps 20]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dml_pipelines.core.engine.distributed import Dist, current, spawn
from dml_pipelines.core.engine.hooks import StepContext
from dml_pipelines.core.methods.configs import parse_method_config
from dml_pipelines.core.methods.registry import build_method

GLOBAL_BATCH = 64


def _setup(world: int):
    cfg = parse_method_config(
        {
            "method": "contrastive_c1",
            "loss": {"name": "contrastive_c1"},
            "embedding_dim": 512,
            "training": {"device": "cpu"},
        }
    )
    torch.manual_seed(0)
    method = build_method(cfg, 16).train()
    opt = torch.optim.Adam(method.parameters(), lr=1e-3)
    b = GLOBAL_BATCH // world
    g = torch.Generator().manual_seed(1)
    images = torch.randn(GLOBAL_BATCH, 3, 32, 32, generator=g)
    labels = torch.arange(16).repeat_interleave(4)
    return method, opt, images, labels, b


def _time_steps(dist: Dist, steps: int) -> tuple[float, float]:
    method, opt, images, labels, b = _setup(dist.world_size)
    x = images[dist.rank * b : (dist.rank + 1) * b]
    y = labels[dist.rank * b : (dist.rank + 1) * b]
    ctx = StepContext(dist=dist)
    times, comm = [], []
    for i in range(steps + 3):
        dist.barrier()
        t0 = time.perf_counter()
        loss, _ = method.training_loss(x, y, ctx)
        opt.zero_grad()
        loss.backward()
        dist.average_gradients(list(method.parameters()))
        opt.step()
        dist.barrier()
        t1 = time.perf_counter()
        if dist.active:  # the collectives alone, same sizes
            e = torch.randn(b, 512)
            dist.barrier()
            c0 = time.perf_counter()
            dist.all_gather(e)
            dist.all_gather(y)
            dist.average_gradients(list(method.parameters()))
            comm_t = time.perf_counter() - c0
        else:
            comm_t = 0.0
        if i >= 3:
            times.append(t1 - t0)
            comm.append(comm_t)
    return statistics.median(times), statistics.median(comm)


def _rank(rank: int, world: int, steps: int, out: str) -> None:
    torch.set_num_threads(1)
    step, comm = _time_steps(current(), steps)
    if rank == 0:
        Path(out).write_text(f"{step} {comm}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(2)
    one, _ = _time_steps(Dist(), args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "r0")
        spawn(_rank, 2, (args.steps, out))
        two, comm = map(float, Path(out).read_text().split())
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, torch {torch.__version__}")
    print(f"global batch {GLOBAL_BATCH}, dim 512, small_cnn 32px, {args.steps} steps")
    print("| setting | step ms | × 1 process | gather + all-reduce ms |")
    print("|---|---:|---:|---:|")
    print(f"| 1 process, 2 threads | {one * 1e3:.1f} | 1.00 | — |")
    row = f"{two * 1e3:.1f} | {two / one:.2f} | {comm * 1e3:.1f}"
    print(f"| 2 processes (gloo), 1 thread each | {row} |")


if __name__ == "__main__":
    main()
