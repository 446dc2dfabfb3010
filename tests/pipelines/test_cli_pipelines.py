"""``kedro run`` pipeline selection through the project CLI (a subprocess, as a
user types it): an unknown name is one line listing the valid names, and the
singular ``--pipeline=NAME`` / ``-p NAME`` works without Kedro's deprecation
warning."""

import subprocess
import sys

import pytest


def _kedro(project, *args):
    return subprocess.run(
        [sys.executable, "-m", "kedro", "run", *args],
        cwd=project,
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("--pipelines=nope",),
        ("--pipeline=nope",),
        ("-p", "nope"),
        ("--pipelines=data,nope",),
    ],
)
def test_unknown_pipeline_is_one_line_listing_the_valid_names(project, args):
    proc = _kedro(project, *args)
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "deprecated" not in out
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error: ")]
    assert errors == [proc.stderr.strip().splitlines()[-1]]
    line = errors[0]
    assert line.startswith("Error: unknown pipeline 'nope'; valid: ")
    valid = line.split("valid: ", 1)[1].split(", ")
    assert {"__default__", "data", "report", "contrastive_c1", "ccp_mlrc"} <= set(valid)
    assert valid == sorted(valid)
    assert not (project / "data").exists()  # nothing ran


def test_a_near_miss_names_the_closest_pipeline(project):
    proc = _kedro(project, "--pipelines=contrastive_c")
    assert proc.returncode == 1
    assert "unknown pipeline 'contrastive_c' (did you mean 'contrastive_c" in (
        proc.stderr
    )


def test_singular_pipeline_option_runs_without_a_deprecation_warning(project):
    proc = _kedro(project, "--pipeline=data", "--params", "dataset=digits")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "deprecated" not in proc.stdout + proc.stderr
    assert (project / "data/02_intermediate/digits/index_table.parquet").exists()


def test_a_pipeline_run_before_its_inputs_exist_is_one_line(project):
    """The report on a fresh clone (no cache, no runs yet): one line naming the
    missing input and how to produce it, no traceback from inside Kedro."""
    proc = _kedro(project, "--pipelines=report")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: image_cache: ") and "does not exist yet" in line
    assert "data/03_primary/glyphs/image_cache.json" in line and "dvc repro" in line
