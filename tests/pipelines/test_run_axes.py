"""The run axes through Kedro: a fold run, two seeds with their aggregate, the
MLRC evaluation over four fold models, and a test-only method run by the real
pipeline factory."""

import json

import numpy as np
import pytest
import yaml

from dml_pipelines.core.evaluation import load_embeddings
from dml_pipelines.core.evaluation.protocols import evaluate
from tests.pipelines.conftest import run

BUDGET = {"training": {"epochs": 1}, "sampler": {"batches_per_epoch": 2}}


def _json(path):
    return json.loads(path.read_text())


@pytest.mark.slow
def test_fold_run_then_mlrc_concatenated_equals_independent_metric(project):
    params = {"dataset": "glyphs", "contrastive_c1": BUDGET}
    out = project / "data"
    for fold in range(4):
        run(project, "contrastive_c1", {**params, "run": {"fold": fold}})
    base = out / "07_model_output/glyphs/contrastive_c1/seed0"
    card = _json(
        out / "08_reporting/glyphs/contrastive_c1/seed0/fold2/protocol_card.json"
    )
    assert card["fold"] == 2 and card["checkpoint_selection"] == "validation"
    assert "fold_block 2" in card["selected_on"]
    metrics = _json(out / "08_reporting/glyphs/contrastive_c1/seed0/fold0/metrics.json")
    assert metrics["fold"] == 0 and metrics["selection_metric"] == "map@r (max)"

    run(project, "contrastive_c1_mlrc", params)
    mlrc = _json(out / "08_reporting/glyphs/contrastive_c1/seed0/mlrc_metrics.json")
    assert mlrc["folds"] == ["fold0", "fold1", "fold2", "fold3"]

    # independent: L2-normalise each fold's embeddings, concatenate, evaluate
    sets = [load_embeddings(base / f"fold{f}/test_embeddings.npz") for f in range(4)]
    order = np.argsort(sets[0].index)
    parts = []
    for es in sets:
        pos = np.argsort(es.index)
        assert np.array_equal(es.index[pos], sets[0].index[order])
        e = es.embeddings[pos]
        parts.append(e / np.linalg.norm(e, axis=1, keepdims=True))
    concat = np.concatenate(parts, axis=1)
    ref = evaluate(
        concat,
        sets[0].labels[order],
        recall_at=(1, 2, 4, 8),
        clustering=False,
    )
    got = mlrc["mlrc_concatenated"]
    assert got["embedding_dim"] == 4 * sets[0].embeddings.shape[1]
    # equal up to float32 near-ties (the two paths round the norms differently)
    for key in ("recall@1", "recall@8", "r_precision", "map@r"):
        assert abs(got[key] - ref[key]) < 1e-4, key


def test_two_seeds_and_their_aggregate(project):
    params = {"dataset": "digits", "contrastive_c1": BUDGET}
    for seed in (0, 1):
        run(project, "contrastive_c1", {**params, "run": {"seed": seed}})
    rep = project / "data/08_reporting/digits/contrastive_c1"
    m0, m1 = _json(rep / "seed0/metrics.json"), _json(rep / "seed1/metrics.json")
    assert (m0["seed"], m1["seed"]) == (0, 1) and m0["map@r"] != m1["map@r"]
    summary = _json(rep.parent / "seed_summary/contrastive_c1.json")
    assert summary["runs"] == ["seed0", "seed1"]
    agg = summary["metrics"]["map@r"]
    assert agg["n"] == 2
    assert abs(agg["mean"] - (m0["map@r"] + m1["map@r"]) / 2) < 1e-12
    assert abs(agg["std"] - np.std([m0["map@r"], m1["map@r"]], ddof=1)) < 1e-12


def test_test_only_method_runs_through_kedro(project):
    from tests.core.methods import toy_method

    toy_method.register()
    try:
        _run_toy(project, toy_method)
    finally:
        toy_method.unregister()


def _run_toy(project, toy_method):
    block = {
        "method": toy_method.NAME,
        "loss": {"name": "contrastive_c1"},
        "sampler": {"P": 5, "K": 4, "batches_per_epoch": 3},
        "memory_size": 40,
        "start_step": 1,
        "training": {"epochs": 2, "device": "cpu"},
    }
    conf = project / "conf/base" / f"parameters_{toy_method.NAME}.yml"
    conf.write_text(yaml.safe_dump({toy_method.NAME: block}))
    run(project, toy_method.NAME, {"dataset": "digits"})
    rep = project / f"data/08_reporting/digits/{toy_method.NAME}/seed0"
    metrics = _json(rep / "metrics.json")
    assert metrics["method"] == toy_method.NAME and 0 < metrics["recall@1"] <= 1
    history = (
        project / f"data/07_model_output/digits/{toy_method.NAME}/seed0"
        "/training_history.csv"
    ).read_text()
    assert len(history.splitlines()) == 3
