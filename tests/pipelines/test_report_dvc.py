"""`dvc repro` on a fresh copy (embedded dataset, three seeds) produces the
report, and an experiment run with the documented `dvc exp run -S` form is read
back from the experiments table."""

import json
import re

import pytest

from tests.test_end_to_end import ROOT, make_dvc_repo, sh


@pytest.fixture(autouse=True)
def _in_project():
    """Override tests/pipelines' scratch Kedro project: this test makes its own."""


@pytest.mark.slow
def test_dvc_repro_produces_the_report_and_exp_run_reads_back(tmp_path):
    grid = {
        "embedded_datasets": ["digits"],
        "external_datasets": [],
        "datasets": ["digits"],
        "methods": ["contrastive_c1"],
        "seeds": [0, 1, 2],
        "mlrc_methods": [],
    }
    repo = make_dvc_repo(tmp_path, grid)
    out = sh(["dvc", "repro"], repo).stdout
    assert "Running stage 'report_dataset@digits'" in out, out
    assert "Running stage 'report'" in out, out
    rep = repo / "data/08_reporting/report"
    combined = (rep / "combined.md").read_text()
    line = next(ln for ln in combined.splitlines() if ln.startswith("| contrastive_c1"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == "3" and cells[-1] == "seeds 0 1 2", line
    # R@1: mean ± std [95% CI] over the three seeds
    assert " ± " in cells[6] and cells[6].endswith("]"), line
    papers = (rep / "paper_tables.md").read_text()
    assert "**not available**" in papers
    assert "— `for S in 0 1 2; do kedro run --pipelines=intra_batch" in papers
    for name in ("recall_at_k.png", "training_curves.png", "projection.png"):
        assert (rep / "datasets/digits" / name).stat().st_size > 10_000, name
    assert (rep / "datasets/digits/retrieval/contrastive_c1.png").exists()
    assert "didn't change" in sh(["dvc", "repro"], repo).stdout
    # commit dvc.lock: the cached summary.json is then readable for this revision
    sh(["git", "add", "-A"], repo)
    sh(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"],
        repo,
    )

    # the README's form: -S '<params file>:<key>=<value>'
    sh(
        [
            "dvc",
            "exp",
            "run",
            "-S",
            "conf/base/parameters_contrastive_c1.yml:contrastive_c1.optimizer.lr=0.0005",
        ],
        repo,
    )
    shown = json.loads(sh(["dvc", "exp", "show", "--json"], repo).stdout)
    exps = [
        e
        for base in shown
        for e in (base.get("experiments") or [])
        for e in (e.get("revs") or [])
    ]
    assert exps, shown
    # every metrics file of the committed revision is readable (no "!" cells)
    committed = next(b for b in shown if b["rev"] != "workspace")
    metrics = committed["data"]["metrics"]
    runs = [
        f"data/08_reporting/digits/contrastive_c1/seed{s}/metrics.json"
        for s in range(3)
    ]
    assert set(runs) <= set(metrics), sorted(metrics)
    for name, entry in metrics.items():
        assert "error" not in entry and entry.get("data"), (name, entry)
    assert metrics[runs[0]]["data"]["recall@1"] > 0
    data = exps[0]["data"]
    lr = data["params"]["conf/base/parameters_contrastive_c1.yml"]["data"]
    assert lr["contrastive_c1"]["optimizer"]["lr"] == 0.0005
    summary = data["metrics"]["data/08_reporting/report/summary.json"]["data"]
    assert summary["digits"]["contrastive_c1"]["recall@1"]["n"] == 3
    table = sh(["make", "-s", "-f", str(ROOT / "Makefile"), "exp-show"], repo).stdout
    lines = table.splitlines()
    assert max(map(len, lines)) <= 160, table
    header = re.split(r"\s{2,}", lines[0].strip())
    assert header == ["experiment", "changed parameters", "method"] + [
        "digits R@1",
        "digits MAP@R",
    ], table
    rows = {
        cells[0]: cells
        for cells in (re.split(r"\s{2,}", ln.strip()) for ln in lines[2:])
    }
    branch = sh(["git", "branch", "--show-current"], repo).stdout.strip()
    base = rows[branch]
    exp = next(v for k, v in rows.items() if k not in (branch, "workspace"))
    lr = "contrastive_c1.optimizer.lr="
    assert (base[1], exp[1]) == (lr + "0.001", lr + "0.0005"), table
    # the committed revision and the experiment both show R@1 (no "!")
    assert float(base[3]) > 0 and float(exp[3]) > 0, table
