"""Costs of ``ccp`` (specs/methods/ccp.md) against its plain baseline (the same
pair loss without proxies or projection, specs/baselines.md §1.2).

* step: forward + backward (+ the method's ``on_before_optimizer_step``) + Adam step on
  random images, same backbone, batch and optimiser for every row: the plain C2
  baseline, CCP in its first instance (λ = 0) and CCP after a projection (λ > 0,
  the regulariser on every network weight). Small CNN at 32×32, batch 64, C = 45
  training classes (glyphs under the validation hold-out), M = 8.
* loss at SOP scale: the proxy + 0.1·batch loss alone (fwd + bwd) for a batch of
  32 (8 × 4) against 11,318 × 4 proxies, d = 128, for each pair loss.
* projection step at SOP scale: 11,318 classes, b = 7, M = 4, d = 128: the pool
  draw over the 59,551 training labels, a synthetic embedding function (a fixed
  table of raw vectors per image, through a 128×128 linear map, in batches of
  128) and the batched greedy k-center.

Time: the median of the timed repetitions, best of ``--rounds`` interleaved
rounds (a shared machine is noisy). Memory: ``+peak MB`` = the kernel's peak RSS
(``VmHWM``, reset through ``/proc/self/clear_refs`` after a warm-up) minus the RSS
before the timed part; large buffers are mmapped (``MALLOC_MMAP_THRESHOLD_``) so
RSS follows live memory.

Usage: ``python benchmarks/ccp_step.py [--rounds 3] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")
if os.environ.get("_CCP_BENCH_CHILD") is None:  # re-exec so malloc reads the env
    os.environ["_CCP_BENCH_CHILD"] = "1"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def measure(fn, reps: int, warmup: int = 1) -> tuple[float, float, float]:
    """(median wall ms, median CPU ms, +peak MB) of ``fn`` over ``reps`` calls.
    CPU time (all threads of the process) is robust to other load."""
    for _ in range(warmup):
        fn()
    Path("/proc/self/clear_refs").write_text("5")
    before = _kb("VmRSS")
    times, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    peak = (_kb("VmHWM") - before) / 1024
    return 1000 * statistics.median(times), 1000 * statistics.median(cpu), peak


def step_fn(method: str, lam: float):
    from dml_pipelines.core.engine.optim import build_optimizer
    from dml_pipelines.core.methods.configs import parse_method_config
    from dml_pipelines.core.methods.registry import build_method

    raw = {
        "method": method,
        "backbone": {"name": "small_cnn"},
        "embedding_dim": 64,
        "training": {"device": "cpu"},
    }
    if method == "ccp":
        raw.update(proxies_per_class=8, pool_per_class=12)
    else:
        raw.update(loss={"name": "contrastive_c2"})
    cfg = parse_method_config(raw)
    torch.manual_seed(0)
    m = build_method(cfg, 45).train()
    opt = build_optimizer(m.param_groups(cfg.optimizer), cfg.optimizer)
    images = torch.randn(64, 3, 32, 32)
    labels = torch.arange(16).repeat_interleave(4)
    if method == "ccp" and lam > 0:
        m.anchor.copy_from([p.detach() + 0.01 for p in m.network])
        m.lam.fill_(lam)

    def step():
        loss, _ = m.training_loss(images, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        m.on_before_optimizer_step(None)
        opt.step()

    return step


def sop_loss_fn(name: str):
    from dml_pipelines.core.losses import load_all
    from dml_pipelines.core.losses.ccp import ProxyPairLoss, proxy_labels

    c, m, d = 11318, 4, 128
    pair = load_all().get(name)(
        embedding_size=d, num_classes=c, distance="clip_to_ball"
    )
    loss = ProxyPairLoss(pair, 1.0, 0.1)
    g = torch.Generator().manual_seed(0)
    proxies = torch.randn(c * m, d, generator=g).requires_grad_()
    py = proxy_labels(c, m)
    labels = torch.randperm(c, generator=g)[:8].repeat_interleave(4)
    x = torch.randn(32, d, generator=g).requires_grad_()

    def step():
        value, _ = loss(x, labels, proxies, py)
        value.backward()
        x.grad = proxies.grad = None

    return step


def projection_fn():
    from dml_pipelines.core.models.ccp_proxies import (
        draw_pool,
        to_class_major,
        to_m_major,
    )
    from dml_pipelines.core.models.kcenter import greedy_k_center

    c, b, m, d, n = 11318, 7, 4, 128, 59551
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.arange(c), rng.integers(0, c, n - c)])
    table = torch.randn(n, d, generator=torch.Generator().manual_seed(0))
    lin = torch.nn.Linear(d, d, bias=False)
    seeds = torch.randn(c * m, d)
    parts: dict[str, list[float]] = {"draw": [], "embed": [], "k-center": []}

    @torch.no_grad()
    def step():
        t0 = time.perf_counter()
        idx = draw_pool(labels, c, b, rng)
        t1 = time.perf_counter()
        flat = torch.from_numpy(idx.reshape(-1))
        out = [lin(table[flat[i : i + 128]]) for i in range(0, len(flat), 128)]
        pool = torch.cat(out).reshape(c, b, d)
        t2 = time.perf_counter()
        picks, _ = greedy_k_center(pool, to_class_major(seeds, c), m)
        seeds.copy_(to_m_major(picks))
        t3 = time.perf_counter()
        for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            parts[k].append(1000 * v)

    return step, parts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{args.threads} threads, torch {torch.__version__}, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    cases = {
        "plain contrastive_c2": step_fn("contrastive_c2", 0.0),
        "ccp, lambda = 0": step_fn("ccp", 0.0),
        "ccp, lambda = 2e-4": step_fn("ccp", 2e-4),
    }
    best: dict[str, tuple[float, float, float]] = {}
    for _ in range(args.rounds):
        for label, fn in cases.items():
            got = measure(fn, reps=10)
            if label not in best or got[1] < best[label][1]:
                best[label] = got
    base = best["plain contrastive_c2"]
    print("\n| step (small_cnn 32px B64, C 45, M 8) | wall ms | CPU ms | MB | ratio |")
    print("|---|---|---|---|---|")
    for label, (ms, cpu, mb) in best.items():
        ratio = f"{ms / base[0]:.2f}x / {cpu / base[1]:.2f}x"
        print(f"| {label} | {ms:.1f} | {cpu:.1f} | {mb:.0f} | {ratio} |")

    print(
        "\n| loss at SOP scale (B 32, 11,318 x 4 proxies, d 128) | wall ms | CPU ms |"
    )
    print("|---|---|---|")
    for name in ("contrastive_c1", "contrastive_c2", "multi_similarity", "triplet"):
        try:
            ms, cpu, mb = measure(sop_loss_fn(name), reps=3)
        except RuntimeError as exc:  # e.g. an allocation the machine cannot make
            print(f"| {name} proxy + 0.1 batch | fails: {str(exc)[:90]} | |")
            continue
        print(f"| {name} proxy + 0.1 batch (+{mb:.0f} MB) | {ms:.1f} | {cpu:.1f} |")

    step, parts = projection_fn()
    ms, cpu, mb = measure(step, reps=3)
    print("\n| projection step at SOP scale (C 11,318, b 7, M 4, d 128) | wall ms |")
    print("|---|---|")
    for k, v in parts.items():
        print(f"| {k} | {statistics.median(v[1:]):.1f} |")
    print(f"| total (CPU {cpu:.1f} ms, +peak {mb:.0f} MB) | {ms:.1f} |")


if __name__ == "__main__":
    main()
