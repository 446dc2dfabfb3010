"""Training-step cost of ``pfml`` vs its plain baseline ``proxy_anchor``
(specs/baselines.md §1.2), and the potential-field loss alone at SOP and CUB scale
(issue 14).

* step: forward + backward + optimiser step of the whole method on random images,
  same backbone, batch and optimiser (AdamW) for both rows: small CNN at 32×32,
  64-d, batch 64 = 16 × 4, C = 60 (glyphs), pfml with M = 15; ``--resnet`` adds
  ResNet-50 (``weights=None``) at 224×224, 512-d, batch 60 = 10 × 6, C = 100.
* loss: embeddings (B, 512) → loss → backward into the embeddings and proxies,
  B = 180 (30 × 6): SOP scale (C = 11,318, pfml M = 2) and CUB scale (C = 100,
  M = 15), with the DEFAULT ``proxy_proxy: batch_classes``; ProxyAnchor
  (one proxy per class) beside it; ``all`` at CUB scale for its cost.

Every measurement runs in a fresh subprocess (``_measure`` of
``intra_batch_step.py``: median time after warm-up; "+peak MB" from VmHWM with
``MALLOC_MMAP_THRESHOLD_`` set, in a separate run). Time: the fastest median of
``--rounds`` runs.

Usage: ``python benchmarks/pfml_step.py [--rounds 3] [--resnet] [--only CUB]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from intra_batch_step import _measure

STEP_CASES = {  # label: backbone, image size, P, K, C, dim, timed steps
    "small_cnn 32px B64 C60": ("small_cnn", 32, 16, 4, 60, 64, 10),
    "resnet50 224px B60 C100": ("resnet50", 224, 10, 6, 100, 512, 2),
}
LOSS_CASES = {  # label: C, M, proxy_proxy (M None: ProxyAnchor)
    "SOP ProxyAnchor": (11318, None, ""),
    "SOP pfml M=2": (11318, 2, "batch_classes"),
    "CUB ProxyAnchor": (100, None, ""),
    "CUB pfml M=15": (100, 15, "batch_classes"),
    "CUB pfml M=15 proxy_proxy=all": (100, 15, "all"),
}


def _config(method: str, backbone: str, p: int, k: int, dim: int):
    from dml_pipelines.core.methods.configs import parse_method_config

    raw = {
        "method": method,
        "backbone": {"name": backbone},
        "embedding_dim": dim,
        "optimizer": {"name": "adamw", "lr": 1e-4, "weight_decay": 1e-4},
        "sampler": {"P": p, "K": k},
        "training": {"device": "cpu"},
    }
    if method == "proxy_anchor":
        raw["loss"] = {"name": "proxy_anchor"}
        raw["optimizer"]["loss_lr_mult"] = 100.0
    return parse_method_config(raw)


def _step_case(label: str, method_name: str, mem: bool) -> dict[str, float]:
    import torch

    from dml_pipelines.core.engine.optim import build_optimizer
    from dml_pipelines.core.methods.registry import build_method

    backbone, size, p, k, c, dim, steps = STEP_CASES[label]
    cfg = _config(method_name, backbone, p, k, dim)
    torch.manual_seed(0)
    method = build_method(cfg, c).train()
    optimizer = build_optimizer(method.param_groups(cfg.optimizer), cfg.optimizer)
    images = torch.randn(p * k, 3, size, size)
    labels = torch.randperm(c)[:p].repeat_interleave(k)

    def step():
        loss, _ = method.training_loss(images, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _measure(step, warmup=1, reps=1 if mem else steps)


def _loss_case(label: str, mem: bool) -> dict[str, float]:
    import torch
    from pytorch_metric_learning.losses import ProxyAnchorLoss

    from dml_pipelines.core.losses.pfml import PotentialFieldLoss

    c, m, pp = LOSS_CASES[label]
    torch.manual_seed(0)
    if m is None:
        loss = ProxyAnchorLoss(num_classes=c, embedding_size=512)
    else:
        loss = PotentialFieldLoss(512, c, proxies_per_class=m, proxy_proxy=pp)
    x = torch.nn.functional.normalize(torch.randn(180, 512), dim=1)
    x.requires_grad_(True)
    labels = torch.randperm(c)[:30].repeat_interleave(6)

    def step():
        x.grad = None
        loss.zero_grad(set_to_none=True)
        loss(x, labels).backward()

    return _measure(step, warmup=1 if mem else 2, reps=1 if mem else 10)


def _one(args: list[str], mem: bool) -> dict[str, float]:
    env = dict(os.environ)
    if mem:
        env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    else:
        env.pop("MALLOC_MMAP_THRESHOLD_", None)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _spawn(args: list[str], rounds: int) -> dict[str, float]:
    ms = min(_one(args, mem=False)["ms"] for _ in range(rounds))
    return {"ms": ms, "delta_mb": _one(args, mem=True)["delta_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--resnet", action="store_true", help="add ResNet-50 step")
    parser.add_argument("--only", default="", help="rows whose label has this")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
        mem = "MALLOC_MMAP_THRESHOLD_" in os.environ
        kind, *rest = args.child
        out = _step_case(*rest, mem) if kind == "step" else _loss_case(*rest, mem)
        print(json.dumps(out))
        return
    import torch

    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {os.environ.get('BENCH_THREADS', '2')} threads, "
        f"{time.strftime('%Y-%m-%d %H:%M')}\n"
    )
    print("| training step | proxy_anchor ms | pfml ms | ratio |")
    print("|---|---|---|---|")
    for label, case in STEP_CASES.items():
        if (case[0] == "resnet50" and not args.resnet) or args.only not in label:
            continue
        rounds = args.rounds if case[0] == "small_cnn" else 1
        base = _spawn(["step", label, "proxy_anchor"], rounds)
        pfml = _spawn(["step", label, "pfml"], rounds)
        print(
            f"| {label} ({case[-1]} timed steps) | {base['ms']:.1f} "
            f"(+{base['delta_mb']:.0f} MB) | {pfml['ms']:.1f} "
            f"(+{pfml['delta_mb']:.0f} MB) | {pfml['ms'] / base['ms']:.2f} |"
        )
    print("\n| loss fwd + bwd, B = 180, d = 512 | C | M | ms | +peak MB |")
    print("|---|---|---|---|---|")
    for label, (c, m, _) in LOSS_CASES.items():
        if args.only not in label:
            continue
        r = _spawn(["loss", label], args.rounds)
        print(f"| {label} | {c} | {m or 1} | {r['ms']:.2f} | {r['delta_mb']:.1f} |")


if __name__ == "__main__":
    main()
