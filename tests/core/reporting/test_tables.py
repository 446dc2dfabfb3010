"""The combined table: every grid method on every grid dataset, mean ± std over
seeds with a 95% CI from three seeds, and the command for a missing run."""

import pandas as pd
import pytest

from dml_pipelines.core.reporting.tables import (
    combined_markdown,
    combined_table,
    summary_metrics,
)


def _runs():
    rows = []
    for seed, r1 in ((0, 0.5), (1, 0.6), (2, 0.7)):
        rows.append(
            {
                "dataset": "glyphs",
                "method": "contrastive_c1",
                "seed": seed,
                "protocol": "conventional",
                "backbone": "small_cnn",
                "dim": 64,
                "epochs": 20,
                "checkpoint_selection": "last",
                "recall@1": r1,
                "map@r": 0.3,
            }
        )
    rows.append({**rows[0], "protocol": "mlrc_separated", "recall@1": 0.01})
    return pd.DataFrame(rows)


def test_combined_table_has_every_method_with_seed_statistics():
    table = combined_table(
        _runs(),
        datasets=["glyphs", "digits"],
        methods=["contrastive_c1", "intra_batch"],
        seeds=[0, 1, 2],
    )
    r1 = table[(table.method == "contrastive_c1") & (table.metric == "recall@1")]
    assert r1[["n_seeds", "mean", "std"]].values.tolist() == [
        [3, pytest.approx(60.0), pytest.approx(10.0)]
    ]
    assert r1["ci95_low"].iloc[0] == pytest.approx(60 - 4.302652729911275 * 10 / 3**0.5)
    missing = table[(table.method == "intra_batch") & (table.dataset == "glyphs")]
    assert (
        missing["command"]
        .iloc[0]
        .startswith("dvc repro --glob 'run@intra_batch-glyphs-*'")
    )
    assert set(table.dataset) == {"glyphs", "digits"}
    md = combined_markdown(table)
    assert "| contrastive_c1 | 3 | small_cnn | 64 | 20 | last | 60.00 ± 10.00 [" in md
    assert (
        "| intra_batch | 0 | — |" in md and "`dvc repro --glob 'run@intra_batch-" in md
    )
    summary = summary_metrics(table)
    assert summary["glyphs"]["contrastive_c1"]["recall@1"]["n"] == 3


def test_protocol_differences_between_methods_are_listed():
    runs = _runs()
    other = runs.iloc[[0]].assign(method="triplet", backbone="resnet18")
    table = combined_table(
        pd.concat([runs, other]), datasets=["glyphs"], methods=[], seeds=[0]
    )
    md = combined_markdown(table)
    assert "backbone: small_cnn (contrastive_c1); resnet18 (triplet)" in md


def test_bninception_blocks_of_the_paper_tables_say_how_to_get_the_weights():
    """The report node on the project's paper results and no run: every
    BN-Inception block names the weights file, where it comes from and where to
    place it offline; other backbones' blocks do not."""
    from pathlib import Path

    import yaml

    from dml_pipelines.core.reporting.params import ReportParams
    from dml_pipelines.pipelines.reporting.nodes import build_paper_tables

    root = Path(__file__).resolve().parents[3]
    load = lambda rel: yaml.safe_load((root / rel).read_text())  # noqa: E731
    parameters = {}
    for path in sorted((root / "conf/base").glob("parameters*.yml")):
        parameters.update(yaml.safe_load(path.read_text()) or {})
    _, md = build_paper_tables(
        {},
        load("conf/base/paper_results.yml"),
        load("conf/grid.yaml"),
        parameters,
        ReportParams.model_validate(parameters["report"]),
    )
    lines = md.splitlines()
    blocks = [i for i, line in enumerate(lines) if line.startswith("### ")]
    bn = [i for i in blocks if " · bninception " in lines[i]]
    assert bn and len(bn) < len(blocks)
    for i in blocks:
        note = lines[i + 2]
        if i in bn:
            assert "`bn_inception-52deb4733.pth`" in note, note
            assert "<http://data.lip6.fr/cadene/pretrainedmodels/" in note, note
            assert "`$TORCH_HOME/hub/checkpoints/`" in note, note
            assert "backbone.args.weights" in note, note
        else:
            assert "bn_inception" not in note, note
