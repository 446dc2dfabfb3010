"""The training-throughput benchmark runs on a CPU in its tiny setting and
prints the three runners side by side (benchmarks/train_throughput.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_throughput_tiny_prints_the_three_runners():
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/train_throughput.py",
            "--tiny",
            "--repeats",
            "1",
            "--device",
            "cpu",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = [ln for ln in proc.stdout.splitlines() if ln.startswith("| small")]
    runners = [ln.split("|")[2].strip() for ln in table]
    assert runners == [
        "train_model (default settings)",
        "same method, device-resident batches (ceiling)",
        "plain PyTorch step",
    ]
    for line in table:
        cells = [c.strip() for c in line.split("|")[3:-1]]
        median, low, high = (float(c) for c in cells[:3])
        assert 0 < low <= median <= high  # images/s of real epochs
    assert "ceiling" in table[1] and table[1].rstrip("| ").endswith("1.00")
