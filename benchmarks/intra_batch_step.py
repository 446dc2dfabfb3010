"""Training-step cost of ``intra_batch`` vs its plain baseline (specs/baselines.md
§1.2: the same recipe with the MPN off, ``losses: [backbone_ce]``), and the cost of
the MPN term alone at the released settings (specs/methods/intra_batch.md §6).

* step: forward + backward + optimiser step of the whole method on random images,
  same backbone, batch and optimiser for both rows (small CNN at 32×32, batch 64,
  Adam; ResNet-50 with ``weights=None`` at 227×227, batch 54, RAdam).
* MPN term: e (B, 512) → MPN → BN-neck classifier → CE_ε, forward + backward, train
  mode (dropout on), C = the dataset's training classes.

Every measurement runs in a fresh subprocess. Time: the median over the timed
steps after warm-up, default allocator; the small cases are repeated in
``--rounds`` interleaved rounds and the fastest median is kept (a shared machine is
noisy). Memory: a separate subprocess with ``MALLOC_MMAP_THRESHOLD_=131072`` (large
buffers are mmapped and returned to the OS on free, so RSS follows live memory;
this slows the step, hence the separate run); after one warm-up step the kernel's
peak-RSS counter is reset (``/proc/self/clear_refs``) and "+peak MB" is ``VmHWM``
after one more step minus ``VmRSS`` before it (activations, gradients,
temporaries; not the weights, optimiser state or imports).

Usage: ``python benchmarks/intra_batch_step.py [--quick] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

STEP_CASES = [  # label, backbone, image size, P, K, C, mpn, optimiser, steps
    ("small_cnn 32px B64", "small_cnn", 32, 16, 4, 60, (1, 2, False), "adam", 10),
    ("resnet50 227px B54", "resnet50", 227, 6, 9, 100, (1, 2, False), "radam", 2),
]
MPN_CASES = [  # label, B, layers, heads, cat, C
    ("CUB L1 H2", 54, 1, 2, False, 100),
    ("In-Shop L1 H4", 56, 1, 4, False, 3997),
    ("Cars L2 H8 cat", 70, 2, 8, True, 98),
    ("SOP-MPN L1 H8", 90, 1, 8, False, 11318),
    ("B=512 L1 H8", 512, 1, 8, False, 100),
    ("B=512 L2 H8 cat", 512, 2, 8, True, 100),
]


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _measure(step, warmup: int, reps: int) -> dict[str, float]:
    for _ in range(warmup):
        step()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to current RSS
    before = _status_kb("VmRSS")
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {
        "ms": 1000 * statistics.median(times),
        "delta_mb": (_status_kb("VmHWM") - before) / 1024,
    }


def _run_step_case(index: int, losses: list[str], mem: bool) -> dict[str, float]:
    import torch

    from dml_pipelines.core.engine.optim import build_optimizer
    from dml_pipelines.core.methods.configs import parse_method_config
    from dml_pipelines.core.methods.registry import build_method

    label, backbone, size, p, k, c, (layers, heads, cat), opt, steps = STEP_CASES[index]
    cfg = parse_method_config(
        {
            "method": "intra_batch",
            "backbone": {"name": backbone},
            "pooling": {"name": "gmp"},
            "embedding_dim": 64 if backbone == "small_cnn" else 512,
            "mpn": {"layers": layers, "heads": heads, "cat": cat},
            "losses": losses,
            "optimizer": {"name": opt, "lr": 1e-4},
            "sampler": {"P": p, "K": k},
            "training": {"device": "cpu"},
        }
    )
    torch.manual_seed(0)
    method = build_method(cfg, c).train()
    optimizer = build_optimizer(method.param_groups(cfg.optimizer), cfg.optimizer)
    images = torch.randn(p * k, 3, size, size)
    labels = torch.randint(0, c, (p * k,))

    def step():
        loss, _ = method.training_loss(images, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _measure(step, warmup=1, reps=1 if mem else steps)


def _run_mpn_case(index: int, mem: bool) -> dict[str, float]:
    import torch

    from dml_pipelines.core.losses.label_smoothed_ce import label_smoothed_ce
    from dml_pipelines.core.models.bn_neck import BNNeckClassifier
    from dml_pipelines.core.models.mpn import MessagePassingNetwork

    label, b, layers, heads, cat, c = MPN_CASES[index]
    torch.manual_seed(0)
    mpn = MessagePassingNetwork(512, layers=layers, heads=heads, cat=cat).train()
    clf = BNNeckClassifier(mpn.out_dim, c).train()
    e = torch.nn.functional.normalize(torch.randn(b, 512), dim=1).requires_grad_(True)
    labels = torch.randint(0, c, (b,))

    def step():
        label_smoothed_ce(clf(mpn(e)), labels, 0.2).backward()

    return _measure(step, warmup=1 if mem else 3, reps=1 if mem else 20)


def _child(kind: str, index: int, arg: str) -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    mem = "MALLOC_MMAP_THRESHOLD_" in os.environ
    if kind == "step":
        out = _run_step_case(index, arg.split(","), mem)
    else:
        out = _run_mpn_case(index, mem)
    print(json.dumps(out))


def _spawn(kind: str, index: int, arg: str = "", rounds: int = 1) -> dict[str, float]:
    """Fastest median time over ``rounds`` runs, and the peak of a memory run."""
    ms = min(_one(kind, index, arg, mem=False)["ms"] for _ in range(rounds))
    return {"ms": ms, "delta_mb": _one(kind, index, arg, mem=True)["delta_mb"]}


def _one(kind: str, index: int, arg: str, mem: bool) -> dict[str, float]:
    env = dict(os.environ)
    if mem:
        env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    else:
        env.pop("MALLOC_MMAP_THRESHOLD_", None)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(index), arg],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small CNN step only")
    parser.add_argument("--rounds", type=int, default=3, help="small-case repeats")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]), args.child[2])
        return
    import torch

    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {os.environ.get('BENCH_THREADS', '2')} threads, "
        f"{time.strftime('%Y-%m-%d')}\n"
    )
    print("| training step | plain (backbone_ce) ms | intra_batch ms | ratio |")
    print("|---|---|---|---|")
    cases = STEP_CASES[:1] if args.quick else STEP_CASES
    for i, case in enumerate(cases):
        rounds = args.rounds if case[1] == "small_cnn" else 1
        plain = _spawn("step", i, "backbone_ce", rounds)
        full = _spawn("step", i, "backbone_ce,mpn_ce", rounds)
        print(
            f"| {case[0]} ({case[-1]} timed steps) | {plain['ms']:.1f} "
            f"(+{plain['delta_mb']:.0f} MB) | {full['ms']:.1f} "
            f"(+{full['delta_mb']:.0f} MB) | {full['ms'] / plain['ms']:.2f} |"
        )
    print("\n| MPN term (fwd + bwd), d = 512 | B | C | ms | +peak MB |")
    print("|---|---|---|---|---|")
    for i, case in enumerate(MPN_CASES):
        r = _spawn("mpn", i, rounds=args.rounds)
        print(
            f"| {case[0]} | {case[1]} | {case[5]} | {r['ms']:.2f} | "
            f"{r['delta_mb']:.1f} |"
        )


if __name__ == "__main__":
    main()
