"""The required report test: a fabricated run of one paper row appears beside
the reported number when its protocol card matches, and is not matched when the
protocol differs (a 128-d run against a 512-d row)."""

import json

import pandas as pd
import pytest

from dml_pipelines.core.reporting.match import match_runs, run_command
from dml_pipelines.core.reporting.runs import collect_runs
from dml_pipelines.core.reporting.tables import paper_table_rows, paper_tables_markdown

# one row of the PFML paper table (ResNet-50, 512-d, conventional)
CONFIG = {
    "papers": {
        "pfml": {
            "title": "PFML",
            "tables": {"resnet50_512": {"title": "ResNet-50 512-d", "available": True}},
        },
        "gsp": {
            "title": "GSP",
            "tables": {"main_results": {"title": "Main", "available": False}},
        },
    },
    "rows": [
        {
            "paper": "pfml",
            "table": "resnet50_512",
            "method": "PFML",
            "pipeline": "pfml",
            "dataset": "cub200",
            "backbone": "resnet50",
            "dim": 512,
            "protocol": "conventional",
            "setting": None,
            "metric": metric,
            "value": value,
            "std": std,
            "confidence": "confirmed",
            "source": "test",
            "note": None,
        }
        for metric, value, std in (("R@1", 73.4, 0.3), ("R@2", 82.4, 0.1))
    ],
}


def _card(dim, seed, **extra):
    return {
        "dataset": "cub200",
        "method": "pfml",
        "recipe": "cub200",
        "fold": None,
        "backbone": "resnet50",
        "pretrained": True,
        "freeze_bn": False,
        "pooling": "gap",
        "embedding_dim": dim,
        "epochs": 60,
        "checkpoint_selection": "last",
        "seed": seed,
        **extra,
    }


def _metrics(r1, r2, seed):
    return {
        "dataset": "cub200",
        "method": "pfml",
        "protocol": "conventional",
        "seed": seed,
        "fold": None,
        "recall@1": r1,
        "recall@2": r2,
        "map@r": 0.25,
    }


def _write_run(root, seed, dim, r1, r2, **card):
    run = root / "cub200" / "pfml" / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(_metrics(r1, r2, seed)))
    (run / "protocol_card.json").write_text(json.dumps(_card(dim, seed, **card)))


def _files(root):
    """What the catalog's partitioned dataset hands the node: path -> JSON."""
    base = root / "cub200"
    return {
        str(p.relative_to(base).with_suffix("")): json.loads(p.read_text())
        for p in base.rglob("*.json")
    }


def _table(root):
    runs = collect_runs("cub200", _files(root), "data/08_reporting/cub200")
    return paper_table_rows(
        CONFIG, runs, seeds=[0, 1, 2], method_blocks={"pfml": {}}, source="t.yml"
    )


def test_matching_run_appears_beside_the_reported_number(tmp_path):
    _write_run(tmp_path, 0, 512, 0.731, 0.820)
    rows = _table(tmp_path).set_index("metric")
    r1 = rows.loc["R@1"]
    assert r1["status"] == "matched" and r1["n_seeds"] == 1
    assert r1["reported"] == 73.4 and r1["reported_std"] == 0.3
    assert r1["reproduced"] == pytest.approx(73.1)
    assert rows.loc["R@2", "reproduced"] == pytest.approx(82.0)
    md = paper_tables_markdown(CONFIG, _table(tmp_path))
    line = next(ln for ln in md.splitlines() if ln.startswith("| PFML |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # method | R@1 reported | R@1 reproduced | R@2 reported | R@2 reproduced | ...
    assert cells[1:5] == ["73.4 ± 0.3", "73.10", "82.4 ± 0.1", "82.00"]
    assert cells[-1] == "matched (1 seed)"
    # the table the spec marks not available stays so
    assert "## GSP: Main\n\n**not available**" in md


def test_a_128d_run_does_not_match_a_512d_row(tmp_path):
    _write_run(tmp_path, 0, 128, 0.731, 0.820)
    rows = _table(tmp_path)
    assert set(rows["status"]) == {"protocol mismatch"}
    assert rows["reproduced"].isna().all() and (rows["n_seeds"] == 0).all()
    assert "dim run 128 vs row 512" in rows["mismatch"].iloc[0]
    # the command produces the 512-d run the row needs
    assert "pfml.embedding_dim=512" in rows["command"].iloc[0]
    md = paper_tables_markdown(CONFIG, rows)
    assert "— protocol mismatch (seed0 (conventional): dim run 128 vs row 512)" in md


def test_three_seeds_give_mean_std_and_ci_and_only_matching_seeds_count(tmp_path):
    for seed, r1 in ((0, 0.70), (1, 0.72), (2, 0.74)):
        _write_run(tmp_path, seed, 512, r1, 0.8)
    _write_run(tmp_path, 3, 512, 0.10, 0.1, backbone="bninception")
    r1 = _table(tmp_path).set_index("metric").loc["R@1"]
    assert r1["n_seeds"] == 3 and r1["reproduced"] == pytest.approx(72.0)
    assert r1["reproduced_std"] == pytest.approx(2.0)
    # t(0.975, 2) = 4.302652729911275; half-width = t * s / sqrt(3)
    half = 4.302652729911275 * 2.0 / 3**0.5
    assert r1["ci95_low"] == pytest.approx(72.0 - half)
    assert r1["ci95_high"] == pytest.approx(72.0 + half)
    assert (
        "seed3 (conventional): backbone run bninception vs row resnet50"
        in (r1["mismatch"])
    )


def test_no_run_gives_a_dash_and_the_command():
    runs = collect_runs("cub200", {}, "x")
    rows = paper_table_rows(
        CONFIG,
        runs,
        seeds=[0, 1],
        method_blocks={
            "pfml": {
                "backbone": {"name": "small_cnn"},
                "embedding_dim": 64,
                "recipes": {"cub200": {"backbone": {"name": "resnet50"}}},
            }
        },
    )
    assert set(rows["status"]) == {"no run"}
    assert rows["command"].iloc[0] == (
        "for S in 0 1; do kedro run --pipelines=pfml --params "
        "dataset=cub200,run.seed=$S,pfml.embedding_dim=512; done"
    )
    md = paper_tables_markdown(CONFIG, rows)
    assert "| PFML | 73.4 ± 0.3 | — | 82.4 ± 0.1 | — | confirmed | — `for S" in md


def _run(**kw):
    base = {
        "dataset": "cub200",
        "method": "pfml",
        "run": "seed0",
        "protocol": "conventional",
        "backbone": "resnet50",
        "dim": 512,
        "label_noise": None,
        "config": None,
    }
    return pd.DataFrame([{**base, **kw}])


def _row(**kw):
    return {**CONFIG["rows"][0], **kw}


def test_settings_label_noise_and_config_keys_must_hold():
    clean, noisy = _run(), _run(label_noise=0.2)
    assert len(match_runs(_row(setting="label_noise_20pct"), clean)[0]) == 0
    assert len(match_runs(_row(setting="label_noise_20pct"), noisy)[0]) == 1
    assert len(match_runs(_row(), noisy)[0]) == 0
    cpml = _run(config=json.dumps({"pfml": {"variant": "cpml", "alpha": 3}}))
    assert len(match_runs(_row(setting="variant=cpml"), cpml)[0]) == 1
    assert len(match_runs(_row(setting="alpha=1"), cpml)[0]) == 0
    _, why = match_runs(_row(setting="variant=cpml"), clean)
    assert "no config" in why[0]


def test_mlrc_rows_match_the_concatenated_and_separated_results():
    files = {
        "ccp/seed0/fold0/metrics": {"map@r": 0.1},
        "ccp/seed0/fold0/protocol_card": {
            "backbone": "bninception",
            "embedding_dim": 128,
        },
        "ccp/seed0/mlrc_metrics": {
            "folds": ["fold0", "fold1", "fold2", "fold3"],
            "mlrc_separated": {"map@r": 0.2},
            "mlrc_concatenated": {"map@r": 0.3},
        },
    }
    runs = collect_runs("sop", files, "x")
    assert list(runs["protocol"]) == ["mlrc_concatenated", "mlrc_separated"]
    assert list(runs["dim"]) == [512, 128]
    row = {
        **_row(),
        "pipeline": "ccp",
        "dataset": "sop",
        "backbone": "bninception",
        "protocol": "mlrc_concatenated",
    }
    matched, _ = match_runs(row, runs)
    assert matched["map@r"].tolist() == [0.3]
    matched, why = match_runs({**row, "protocol": "mlrc_separated", "dim": 512}, runs)
    assert matched.empty and any("dim run 128 vs row 512" in w for w in why)
    cmd = run_command({**row, "protocol": "mlrc_separated", "dim": 128}, [0], None)
    assert "run.fold=$F; done; kedro run --pipelines=ccp_mlrc" in cmd
    assert "ccp.embedding_dim=128" in cmd


def test_a_metrics_file_of_another_dataset_is_a_one_line_error():
    files = {"pfml/seed0/metrics": {"dataset": "cars196", "recall@1": 0.5}}
    with pytest.raises(ValueError, match=r"^x/pfml/seed0/metrics.json: dataset is"):
        collect_runs("cub200", files, "x")


def test_an_alias_runs_a_reported_method_as_a_variant_of_another_pipeline():
    config = {
        "papers": {"xbm": {"title": "XBM", "tables": {"t": {"available": True}}}},
        "rows": [
            {
                **CONFIG["rows"][0],
                "paper": "xbm",
                "table": "t",
                "method": "XBM",
                "pipeline": "xbm",
                "dataset": "sop",
                "backbone": "resnet50",
                "dim": 128,
            }
        ],
    }
    block = {"xbm": {"enabled": True}, "xbn": {"enabled": True}}
    runs = pd.concat(
        [
            _run(method="xbn", dataset="sop", dim=128, run=f"seed{i}", config=c)
            for i, c in enumerate(
                [
                    json.dumps(block),
                    json.dumps({**block, "xbn": {"enabled": False}}),
                ]
            )
        ],
        ignore_index=True,
    ).assign(**{"recall@1": [0.5, 0.8]})
    aliases = {"xbm": {"pipeline": "xbn", "setting": "xbn.enabled=false"}}
    rows = paper_table_rows(
        config, runs, seeds=[0], method_blocks={"xbn": block}, aliases=aliases
    )
    r1 = rows.iloc[0]
    assert r1["status"] == "matched" and r1["reproduced"] == pytest.approx(80.0)
    assert "seed0 (conventional): run has xbn.enabled=true, row false" in r1["mismatch"]
    none = paper_table_rows(
        config, runs.iloc[:1], seeds=[0], method_blocks={"xbn": block}, aliases=aliases
    ).iloc[0]
    assert none["command"].endswith(
        "--pipelines=xbn --params dataset=sop,run.seed=$S,xbn.backbone.name=resnet50,"
        "xbn.embedding_dim=128,xbn.xbn.enabled=false; done"
    )


def test_row_settings_tell_variants_of_one_pipeline_apart_and_null_pipelines():
    def row(method, pipeline="ccp"):
        return {**CONFIG["rows"][0], "method": method, "pipeline": pipeline}

    config = {
        "papers": CONFIG["papers"],
        "rows": [row("C1-CCP-L"), row("Triplet-CCP-L"), row("HIST", None)],
    }
    runs = _run(method="ccp", config=json.dumps({"base_loss": "triplet"})).assign(
        **{"recall@1": 0.7}
    )
    rows = paper_table_rows(
        config,
        runs,
        seeds=[0],
        method_blocks={"ccp": {"base_loss": "contrastive_c2"}},
        row_settings={
            "pfml": {
                "C1-CCP-L": "base_loss=contrastive_c1",
                "Triplet-CCP-L": "base_loss=triplet",
            }
        },
    ).set_index("method")
    assert rows.loc["Triplet-CCP-L", "status"] == "matched"
    assert rows.loc["C1-CCP-L", "status"] == "protocol mismatch"
    assert rows.loc["C1-CCP-L", "command"].endswith(
        ",ccp.base_loss=contrastive_c1; done"
    )
    assert rows.loc["HIST", "status"] == "no pipeline"
    assert (
        rows.loc["HIST", "command"] == "not implemented in this project (no pipeline)"
    )


def test_ccp_margin_recipes_are_labelled_and_never_averaged_together():
    row = {**CONFIG["rows"][0], "method": "C2-CCP-L", "pipeline": "ccp"}
    config = {"papers": CONFIG["papers"], "rows": [row]}

    def run(seed, recipe, r1):
        block = {"method": "ccp", "base_loss": "contrastive_c2", "recipe": recipe}
        return _run(method="ccp", run=f"seed{seed}", config=json.dumps(block)).assign(
            **{"recall@1": r1}
        )

    runs = pd.concat(
        [
            run(0, "cub200", 0.6),
            run(1, "cub200", 0.7),
            run(0, "cub200_released", 0.2),
            run(0, "auto", 0.1),  # no recipe applied: no label
        ],
        ignore_index=True,
    )
    rows = paper_table_rows(
        config,
        runs,
        seeds=[0, 1],
        method_blocks={"ccp": {"base_loss": "contrastive_c2"}},
        row_settings={"pfml": {"C2-CCP-L": "base_loss=contrastive_c2"}},
    )
    r1 = rows[rows["metric"] == "R@1"].set_index("setting")
    assert r1.loc["base_loss=contrastive_c2; recipe=cub200", "reproduced"] == (
        pytest.approx(65.0)
    )
    assert r1.loc["base_loss=contrastive_c2; recipe=cub200_released", "n_seeds"] == 1
    assert r1.loc["base_loss=contrastive_c2; recipe=cub200_released", "reproduced"] == (
        pytest.approx(20.0)
    )
    assert r1.loc["base_loss=contrastive_c2", "reproduced"] == pytest.approx(10.0)
    md = paper_tables_markdown(config, rows)
    assert "| C2-CCP-L (base_loss=contrastive_c2; recipe=cub200_released) | 73.4" in md
