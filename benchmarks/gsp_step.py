"""Training-step cost of ``gsp`` vs its plain baseline (specs/baselines.md §1.2:
the same base loss, C1 + cross-batch memory, with GAP pooling and no ZSR), and
the cost of the GSP layer itself vs GAP (specs/methods/gsp.md).

* step: forward + backward + Adam step of the whole method on random images,
  same backbone, batch, head (linear, no bias) and memory for every row; the
  memory is pre-filled and active. ``gsp`` is measured after its prototypes are
  initialised (the GSP path) and before (the GAP path of the first ~16 steps).
  Cases: small CNN 32×32, batch 64, D 64 (the embedded default); BN-Inception
  (random weights, frozen BN) 227×227, batch 32, D 128 (the MLRC recipe).
* layer: pooling + head on a (32, 1024, 7, 7) feature map, forward + backward,
  D 128, K 64 and 128, implicit and unrolled backward, vs GAP + head and vs
  GSP's floor: the head applied at every location (the costs need v_i = W f_i
  per location, spec §2), then averaged.

Time: median over the timed repetitions; the variants of a case are run in
interleaved rounds and the fastest median per variant is kept (the machine is
shared). Usage: ``python benchmarks/gsp_step.py [--quick | --large] [--rounds 3]
[--threads 1]`` (``--quick``: the small-CNN step only; ``--large``: add the
BN-Inception step).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from dml_pipelines.core.engine.optim import build_optimizer
from dml_pipelines.core.methods.configs import parse_method_config
from dml_pipelines.core.methods.registry import build_method
from dml_pipelines.core.models.gsp_pooling import GeneralizedSumPooling
from dml_pipelines.core.models.pooling import GlobalAvgPool

STEP_CASES = [  # label, backbone, freeze_bn, image size, P, K, D, K protos, reps
    ("small_cnn 32px B64 D64", "small_cnn", False, 32, 16, 4, 64, 64, 10),
    ("bninception 227px B32 D128", "bninception", True, 227, 8, 4, 128, 64, 2),
]
VARIANTS = ("plain", "gsp (GAP phase)", "gsp")


def _median_ms(step, warmup: int, reps: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def _step_fn(case, variant: str, classes: int = 60):
    label, backbone, freeze, size, p, k, d, protos, _ = case
    gsp = variant != "plain"
    cfg = parse_method_config(
        {
            "method": "gsp",
            "backbone": {"name": backbone, "freeze_bn": freeze},
            "pooling": {"name": "gsp", "args": {"num_prototypes": protos}}
            if gsp
            else {"name": "gap"},
            "embedding_dim": d,
            "zsr": {"enabled": gsp},
            "xbm": {"memory_batches": 10, "start_step": 0},
            "optimizer": {"name": "adam", "lr": 1e-5},
            "sampler": {"P": p, "K": k},
            "training": {"device": "cpu"},
        }
    )
    torch.manual_seed(0)
    method = build_method(cfg, classes).train()
    g = torch.Generator().manual_seed(0)
    for _ in range(10):  # a full, active memory
        emb = torch.nn.functional.normalize(torch.randn(p * k, d, generator=g), dim=1)
        method.memory.enqueue(emb, torch.randint(0, classes, (p * k,), generator=g))
    if variant == "gsp":
        method.embedder.pooling.initialized.fill_(True)
    optimizer = build_optimizer(method.param_groups(cfg.optimizer), cfg.optimizer)
    images = torch.randn(p * k, 3, size, size, generator=g)
    labels = torch.arange(p).repeat_interleave(k)

    def step():
        loss, _ = method.training_loss(images, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _layer_fn(pooling: str, protos: int = 64, backward: str = "implicit"):
    torch.manual_seed(0)
    head = torch.nn.Linear(1024, 128, bias=False)
    if pooling == "gap":
        pool = GlobalAvgPool()
    else:  # "floor": GSP before its prototypes exist = head per location + GAP
        pool = GeneralizedSumPooling(
            dim=128,
            num_prototypes=protos,
            backward=backward,
            init="memory_kcenter" if pooling == "floor" else "none",
        )
    fmap = torch.randn(32, 1024, 7, 7, requires_grad=True)

    def step():
        out = pool(fmap, head)
        loss = out["embedding"].square().sum()
        if "aux" in out:
            loss = loss + out["aux"].square().sum()
        loss.backward()

    return step


def _fastest(fns: dict, rounds: int, warmup: int, reps: int) -> dict[str, float]:
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], _median_ms(fn, warmup, reps))
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small CNN step only")
    parser.add_argument(
        "--large", action="store_true", help="add the BN-Inception step (slow)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {args.threads} thread(s), "
        f"{time.strftime('%Y-%m-%d')}\n"
    )
    print("| training step | plain ms | gsp, GAP phase ms | gsp ms | gsp / plain |")
    print("|---|---|---|---|---|")
    for case in STEP_CASES if args.large else STEP_CASES[:1]:
        fns = {v: _step_fn(case, v) for v in VARIANTS}
        rounds = args.rounds if case[1] == "small_cnn" else 1
        ms = _fastest(fns, rounds, warmup=1, reps=case[-1])
        print(
            f"| {case[0]} ({case[-1]} timed steps) | {ms['plain']:.1f} | "
            f"{ms['gsp (GAP phase)']:.1f} | {ms['gsp']:.1f} | "
            f"{ms['gsp'] / ms['plain']:.2f} |"
        )
    if args.quick:
        return
    print("\n| layer fwd + bwd, (32, 1024, 7, 7) -> D 128 | ms | vs GAP |")
    print("|---|---|---|")
    fns = {
        "GAP + head": _layer_fn("gap"),
        "head per location + GAP (GSP's floor)": _layer_fn("floor"),
    }
    for k in (64, 128):
        for backward in ("implicit", "unrolled"):
            fns[f"GSP K={k}, {backward}"] = _layer_fn("gsp", k, backward)
    ms = _fastest(fns, args.rounds, warmup=2, reps=10)
    for name, value in ms.items():
        print(f"| {name} | {value:.1f} | {value / ms['GAP + head']:.2f} |")


if __name__ == "__main__":
    main()
