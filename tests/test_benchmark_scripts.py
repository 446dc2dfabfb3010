"""The throughput benchmarks run on a CPU in a tiny setting: the training one
prints its four runners side by side (benchmarks/train_throughput.py), the
augmentation one both paths (benchmarks/device_augment.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str, timeout: int) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"},
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.mark.slow
def test_train_throughput_tiny_prints_the_four_runners():
    proc = run_script(
        "benchmarks/train_throughput.py",
        "--tiny",
        "--repeats",
        "1",
        "--device",
        "cpu",
        timeout=600,
    )
    table = [ln for ln in proc.stdout.splitlines() if ln.startswith("| small")]
    runners = [ln.split("|")[2].strip() for ln in table]
    assert runners == [
        "train_model (default settings)",
        "train_model, augment_on: device",
        "same method, device-resident batches (ceiling)",
        "plain PyTorch step",
    ]
    for line in table:
        cells = [c.strip() for c in line.split("|")[3:-1]]
        median, low, high = (float(c) for c in cells[:3])
        assert 0 < low <= median <= high  # images/s of real epochs
    assert "ceiling" in table[2] and table[2].rstrip("| ").endswith("1.00")


def test_device_augment_benchmark_shows_both_paths_equal_on_a_cpu():
    proc = run_script(
        "benchmarks/device_augment.py",
        *("--images", "12", "--batches", "1", "--rounds", "1", "--device", "cpu"),
        timeout=300,
    )
    rows = [
        [c.strip() for c in ln.split("|")[1:-1]]
        for ln in proc.stdout.splitlines()
        if ln.startswith("| loader") or ln.startswith("| device")
    ]
    assert [r[0] for r in rows] == ["loader", "device (cpu)"]
    assert float(rows[0][1]) > 0 and float(rows[1][1]) > 0 and float(rows[1][2]) > 0
    assert rows[1][4] == "0 / 0.000"  # the same pixels on either path
