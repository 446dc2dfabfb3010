"""Behaviour guard: every method's embedded-data results, bit for bit.

Trains every registered method (the five papers and the baselines) on `glyphs`
and `digits` through the real entry point (the Kedro pipelines, in-process
`KedroSession`s) on a scratch copy of the checkout's tracked files, with a
short budget (a few epochs of six batches) and ONE compute thread (the thread
count changes float sums: docs/benchmarks.md "Threads under contention"), and
records, per run, a digest
of the test embeddings (array bytes), of the metrics files and of the training
history (wall-time columns left out).

A refactor that must not change behaviour (docs/architecture.md) is checked by
recording before and comparing after:

    python tools/behaviour_guard.py --save /tmp/guard_before.json
    ... change the code ...
    python tools/behaviour_guard.py --compare /tmp/guard_before.json

`--compare` prints one line per run (same / DIFFERENT, with the first differing
metric) and exits 1 when any run differs. `--methods`/`--datasets` narrow it.
Results depend on the machine's float kernels: compare on the machine that
recorded.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# a short budget that still crosses the methods' epoch-level logic (CCP's
# instance switches, XBN's memory start, schedulers): few batches an epoch
EPOCHS = {"default": 3, "ccp": 5}
BATCHES_PER_EPOCH = 6
# settings a method needs within that budget (its lr drops must fire in it)
EXTRA = {"intra_batch": {"lr_drops": [{"epoch": 2, "factor": 0.1}]}}
DATASETS = ("glyphs", "digits")
TIME_COLUMNS = ("seconds", "wall_time_s", "time")


def scratch_copy(dest: Path) -> None:
    """The checkout's tracked (and untracked, not ignored) files, no data."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        rel = Path(name.decode())
        src = ROOT / rel
        if not src.is_file() or rel.parts[0] in ("data", "notebooks"):
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    (dest / "data").mkdir(exist_ok=True)


def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def npz_digest(path: Path) -> str:
    import numpy as np

    h = hashlib.sha256()
    with np.load(path, allow_pickle=False) as z:
        for key in sorted(z.files):
            arr = np.ascontiguousarray(z[key])
            h.update(key.encode() + str(arr.dtype).encode() + str(arr.shape).encode())
            h.update(arr.tobytes())
    return h.hexdigest()[:16]


def history_digest(path: Path) -> str:
    import pandas as pd

    df = pd.read_csv(path)
    df = df.drop(columns=[c for c in df.columns if c in TIME_COLUMNS])
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.17g")
    return digest_bytes(buf.getvalue().encode())


def record_run(project: Path, dataset: str, method: str, full: bool = False) -> dict:
    """One run; ``full``: the block's own budget (every epoch and batch of the
    embedded default), still one thread."""
    from kedro.framework.session import KedroSession

    epochs = EPOCHS.get(method, EPOCHS["default"])
    block: dict = {"training": {"num_threads": 1}}
    if not full:
        block = {
            "training": {"epochs": epochs, "num_threads": 1},
            "sampler": {"batches_per_epoch": BATCHES_PER_EPOCH},
            **EXTRA.get(method, {}),
        }
    params = {"dataset": dataset, method: block}
    start = time.perf_counter()
    with KedroSession.create(project_path=project, runtime_params=params) as s:
        resolved = s.load_context().params[method]
        got = (resolved.training.epochs, resolved.sampler.batches_per_epoch)
        if not full and got != (epochs, BATCHES_PER_EPOCH):  # the overrides hold
            raise SystemExit(f"{method}: the guard's settings were not applied: {got}")
        epochs = resolved.training.epochs
        s.run(pipeline_names=[method])
    run_dir = f"{method}/seed0"
    out = project / "data/07_model_output" / dataset / run_dir
    rep = project / "data/08_reporting" / dataset / run_dir
    metrics = json.loads((rep / "metrics.json").read_text())
    return {
        "embeddings": npz_digest(out / "test_embeddings.npz"),
        "history": history_digest(out / "training_history.csv"),
        "retrieval": digest_bytes((rep / "retrieval_metrics.json").read_bytes()),
        "clustering": digest_bytes((rep / "clustering_metrics.json").read_bytes()),
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        "epochs": epochs,
        "seconds": round(time.perf_counter() - start, 1),
    }


def run_all(methods: list[str] | None, datasets: list[str], full: bool = False) -> dict:
    os.environ["KEDRO_DISABLE_TELEMETRY"] = "true"
    os.environ["DML_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="behaviour_guard_") as tmp:
        project = Path(tmp)
        scratch_copy(project)
        cwd = os.getcwd()
        os.chdir(project)
        try:
            bootstrap_project(project)
            from dml_pipelines.core.methods.configs import method_configs

            names = methods or sorted(method_configs())
            for dataset in datasets:
                with KedroSession.create(
                    project_path=project, runtime_params={"dataset": dataset}
                ) as s:
                    s.run(pipeline_names=["data"])
                for method in names:
                    key = f"{dataset}/{method}"
                    results[key] = record_run(project, dataset, method, full)
                    print(key, json.dumps(results[key]), flush=True)
        finally:
            os.chdir(cwd)
    return results


DIGEST_KEYS = ("embeddings", "history", "retrieval", "clustering")


def compare(before: dict, after: dict) -> list[str]:
    lines, bad = [], 0
    for key in sorted(set(before) | set(after)):
        b, a = before.get(key), after.get(key)
        if b is None or a is None:
            lines.append(f"{key}: only in {'after' if b is None else 'before'}")
            bad += 1
            continue
        diff = [k for k in DIGEST_KEYS if b[k] != a[k]]
        if not diff:
            lines.append(f"{key}: same ({', '.join(DIGEST_KEYS)})")
            continue
        bad += 1
        changed = [
            f"{m} {b['metrics'][m]!r} -> {a['metrics'].get(m)!r}"
            for m in b["metrics"]
            if b["metrics"][m] != a["metrics"].get(m)
        ]
        lines.append(
            f"{key}: DIFFERENT {diff}" + (f"; {changed[0]}" if changed else "")
        )
    lines.append(f"{len(set(before) | set(after)) - bad} same, {bad} different")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", type=Path, help="write the record to this file")
    group.add_argument("--compare", type=Path, help="compare with this record")
    ap.add_argument("--methods", nargs="+", help="default: every registered method")
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    ap.add_argument(
        "--full",
        action="store_true",
        help="each block's own budget (every epoch and batch), still one thread",
    )
    args = ap.parse_args()
    if args.compare and not args.compare.is_file():
        ap.error(f"--compare: no record at {args.compare}")
    results = run_all(args.methods, args.datasets, args.full)
    if args.save:
        args.save.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        print(f"saved {len(results)} runs to {args.save}")
        return 0
    before = json.loads(args.compare.read_text())
    if args.methods or args.datasets != list(DATASETS):
        before = {k: v for k, v in before.items() if k in results}
    lines = compare(before, results)
    print("\n".join(lines))
    return 0 if lines[-1].endswith(" 0 different") else 1


if __name__ == "__main__":
    sys.exit(main())
