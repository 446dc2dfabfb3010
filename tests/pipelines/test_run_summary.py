"""What a run prints (issue #29 items 1, 4, 7): ``kedro run`` applies the
``compute`` block (threads named in the log) and ends with the metrics of the
runs it made; Kedro's per-dataset lines are off; ``make run`` and ``make
exp-show`` print narrow tables (``dml_pipelines.run_summary``)."""

import json
import logging
import logging.config
import os

import pytest
import yaml

from dml_pipelines.core.engine import threads
from dml_pipelines.run_summary import (
    combined_summary,
    compute_environment,
    experiments_table,
    main,
)
from tests.conftest import ROOT
from tests.pipelines.conftest import run

TINY = {
    "dataset": "digits",
    "contrastive_c1": {"training": {"epochs": 1}, "sampler": {"batches_per_epoch": 2}},
}


@pytest.mark.slow
def test_kedro_run_applies_the_compute_block_and_ends_with_a_summary(
    project, monkeypatch, caplog
):
    for name in (threads.THREADS_ENV, threads.WORKERS_ENV, "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    with caplog.at_level(logging.INFO):
        run(project, "contrastive_c1", {**TINY, "compute": {"num_threads": 1}})
    assert "training threads: 1 (DML_NUM_THREADS)" in caplog.text
    assert threads.THREADS_ENV not in os.environ  # restored after the run
    summary = caplog.text[caplog.text.index("Runs made (percent):") :]
    lines = summary.splitlines()
    assert lines[1].split() == ["method", "dataset", "seed", "R@1", "MAP@R"]
    assert lines[3].split()[:3] == ["contrastive_c1", "digits", "0"]


def test_a_bad_compute_value_is_a_one_line_error():
    assert compute_environment({"num_threads": "auto", "num_workers": 0}) == {
        "DML_NUM_WORKERS": "0"
    }
    with pytest.raises(ValueError, match=r"^compute.num_threads \(conf/base/para"):
        compute_environment({"num_threads": 0})
    with pytest.raises(ValueError, match=r"^compute.threads .*unknown key"):
        compute_environment({"threads": 1})


def test_kedro_dataset_lines_are_off_by_default():
    config = yaml.safe_load((ROOT / "conf/logging.yml").read_text())
    logging.config.dictConfig(config)
    try:
        assert not logging.getLogger("kedro.io.data_catalog").isEnabledFor(logging.INFO)
        assert logging.getLogger("kedro.runner").isEnabledFor(logging.INFO)
        assert logging.getLogger("dml_pipelines.core.engine").isEnabledFor(logging.INFO)
    finally:
        logging.getLogger("kedro.io.data_catalog").setLevel(logging.NOTSET)


def summary(methods, datasets=("glyphs", "digits"), shift=0.0):
    return {
        d: {
            m: {
                "recall@1": {
                    "mean": 50.0 + i + (shift if i == 0 else 0),
                    "std": 1.25,
                    "n": 3,
                },
                "map@r": {"mean": 20.0 + i, "std": 0.5, "n": 3},
                "nmi": {"mean": 60.0, "std": 0.1, "n": 3},
            }
            for i, m in enumerate(methods)
        }
        for d in datasets
    }


METHODS = ["contrastive_c1", "intra_batch", "gsp", "xbn", "pfml", "ccp"]


def test_make_run_ends_with_a_narrow_table_and_the_report_path(tmp_path, capsys):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary(METHODS)))
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if str(tmp_path) not in line]
    assert max(map(len, table)) <= 120
    rows = {line.split("  ")[0]: line.split() for line in table[3:9]}
    assert list(rows) == METHODS
    assert rows["gsp"][1:4] == ["52.0", "±", "1.2"]  # noqa: RUF001
    assert f"Report: {tmp_path / 'combined.md'}" in out
    four = combined_summary(summary(METHODS, ("glyphs", "digits", "cub200", "sop")))
    assert max(map(len, four.splitlines())) <= 120


def test_experiments_side_by_side_fit_160_columns():
    """``dvc exp show --json`` rows: the baseline and an experiment changing one
    learning rate; only that key and that method's numbers are shown."""

    def row(lr, shift, name=None, rev="abc1234567"):
        params = {
            f"conf/base/parameters_{m}.yml": {
                "data": {m: {"optimizer": {"lr": lr if m == METHODS[0] else 1e-4}}}
            }
            for m in METHODS
        }
        metrics = {
            "data/08_reporting/report/summary.json": {
                "data": summary(METHODS, shift=shift)
            }
        }
        return {
            "rev": rev,
            "name": name,
            "data": {"params": params, "metrics": metrics},
        }

    base = row(0.001, 0.0, name="main")
    base["experiments"] = [{"revs": [row(0.0005, 2.0, name="ashen-sale")]}]
    table = experiments_table([base])
    lines = table.splitlines()
    assert max(map(len, lines)) <= 160
    assert lines[0].split()[:3] == ["experiment", "changed", "parameters"]
    assert lines[2].split() == [
        "main",
        "contrastive_c1.optimizer.lr=0.001",
        "contrastive_c1",
        "50.0",
        "20.0",
        "50.0",
        "20.0",
    ]
    assert lines[3].split()[:4] == [
        "ashen-sale",
        "contrastive_c1.optimizer.lr=0.0005",
        "contrastive_c1",
        "52.0",
    ]
    assert len(lines) == 4  # one method: the one the change touches
