"""The ``evaluation`` block through ``kedro run``: one schema
(``core/evaluation/options.py``) for the nodes and ``evaluate()``, checked before
any node runs, its errors naming ``evaluation.<key>`` in one line."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("evaluation.knn_bakend=torch", "evaluation.knn_bakend: unknown key"),
        # the k-means seed the core refuses: refused before training, not after
        ("evaluation.seed=-1", "evaluation.seed: Input should be greater than or"),
    ],
)
def test_a_bad_evaluation_key_is_one_line_before_any_node_runs(
    project, params, message
):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kedro",
            "run",
            "--pipelines=contrastive_c1",
            "--params",
            params,
        ],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and message in last
    assert not (project / "data").exists()  # no node ran
