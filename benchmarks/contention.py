"""Epoch time of the glyph run under CPU contention: 1 thread, 2 threads and the
project's default thread policy (``core/engine/threads.py``), with 0, 1 and 3
competing busy processes.

Each measurement is a fresh Python process (the default policy reads the
machine's load at its start, as a ``kedro run`` does) that trains the embedded
default of ``contrastive_c1`` on the glyph cache (``kedro run --pipelines=data``
builds it when missing) for ``--epochs`` epochs without checkpoints; its time is
the median of the epochs after the first. The competitors are Python busy loops
started before the measurement and stopped after it. Settings alternate within
each repeat, so slow phases of a shared machine hit every setting alike. The
table gives the median over repeats, the ratio to the best setting of the row
(target of the default: at most 1.25) and the threads the default chose.

    python benchmarks/contention.py                      # 3 repeats, 3 epochs
    python benchmarks/contention.py --repeats 1 --epochs 2 --competitors 0
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("1", "2", "default")
BUSY = "while True: pass"


def child(setting: str, epochs: int) -> None:
    """One measurement (in this process): print the epoch seconds and threads."""
    import pandas as pd
    import torch
    import yaml

    from dml_pipelines.core.data.cache import ImageCache
    from dml_pipelines.core.engine.run import train_model
    from dml_pipelines.core.methods.configs import parse_method_config
    from dml_pipelines.params import RunParams

    raw = yaml.safe_load((ROOT / "conf/base/parameters_contrastive_c1.yml").read_text())
    block = raw["contrastive_c1"]
    block["training"].update(
        epochs=epochs,
        device="cpu",
        num_threads=None if setting == "default" else int(setting),
    )
    cfg = RunParams(seed=0).apply(parse_method_config(block).for_dataset("glyphs"))
    table = pd.read_parquet(ROOT / "data/02_intermediate/glyphs/index_table.parquet")
    cache = ImageCache.open(ROOT / "data/03_primary/glyphs/cache_original")
    _, history = train_model(table, cache, cfg, checkpoint_dir=None)
    print(
        json.dumps(
            {"seconds": history["seconds"].tolist(), "threads": torch.get_num_threads()}
        )
    )


def measure(setting: str, competitors: int, epochs: int) -> dict:
    """Run ``child`` in a fresh process beside ``competitors`` busy loops."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DML_QUIET": "1"}
    for name in ("DML_NUM_THREADS", "OMP_NUM_THREADS"):
        env.pop(name, None)  # the default policy decides alone
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(competitors)]
    try:
        time.sleep(1.0 if competitors else 0.0)  # the competitors are running
        out = subprocess.run(
            [sys.executable, __file__, "--child", setting, "--epochs", str(epochs)],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    result = json.loads(out.strip().splitlines()[-1])
    steady = result["seconds"][1:] or result["seconds"]
    return {"epoch_s": statistics.median(steady), "threads": result["threads"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--competitors", type=int, nargs="+", default=[0, 1, 3])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.epochs)
        return
    # a SIGTERM runs the `finally` of measure: no busy loop outlives the script
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from plain_reference import ensure_data

    ensure_data()
    print(
        f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC · "
        f"{platform.processor() or platform.machine()} · {os.cpu_count()} CPUs · "
        f"load {os.getloadavg()[0]:.1f} at start · {args.epochs} epochs, "
        f"{args.repeats} repeats",
        flush=True,
    )
    print(
        "| competitors | 1 thread (s/epoch) | 2 threads | default | default threads "
        "| default / best | load (1 min) |"
    )
    print("|---:|---:|---:|---:|---|---:|---:|")
    for n in args.competitors:
        times = {s: [] for s in SETTINGS}
        chosen = []
        loads = []
        for _ in range(args.repeats):
            for setting in SETTINGS:
                res = measure(setting, n, args.epochs)
                times[setting].append(res["epoch_s"])
                if setting == "default":
                    chosen.append(res["threads"])
                loads.append(os.getloadavg()[0])
        med = {s: statistics.median(v) for s, v in times.items()}
        ratio = med["default"] / min(med.values())
        print(
            f"| {n} | {med['1']:.2f} | {med['2']:.2f} | {med['default']:.2f} | "
            f"{','.join(map(str, chosen))} | {ratio:.2f} | "
            f"{min(loads):.1f}–{max(loads):.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
