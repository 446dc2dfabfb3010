"""benchmarks/default_checks.py (docs/benchmarks.md): each baseline is its
method's embedded default with exactly the piece under test taken out, at the
same budget, and the summary is mean ± sample std over seeds."""

import sys

import pandas as pd
import pytest
import yaml

from dml_pipelines.core.layers import deep_merge
from dml_pipelines.core.methods.configs import parse_method_config
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import default_checks as dc  # noqa: E402


def _cfg(method, over):
    raw = yaml.safe_load((ROOT / f"conf/base/parameters_{method}.yml").read_text())
    return parse_method_config(deep_merge(raw[method], over)).for_dataset("glyphs")


def _diff(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


@pytest.mark.parametrize("pair", list(dc.PAIRS))
def test_baseline_differs_only_in_the_piece_under_test(pair):
    (m1, _, o1), (m2, _, o2) = dc.PAIRS[pair]
    a, b = _cfg(m1, o1), _cfg(m2, o2)
    assert a.training.epochs == b.training.epochs == 20  # same budget
    assert a.sampler == b.sampler and a.embedding_dim == b.embedding_dim
    diff = set(_diff(a.model_dump(), b.model_dump()))
    expected = {
        "gsp": {"pooling.name", "zsr.enabled"},
        "ccp": {"instance_patience"},
        "xbn": {"xbm.enabled", "xbn.enabled"},
        "intra_batch": {"losses"},
    }
    if pair == "pfml":  # another method: its plain baseline
        assert (a.method, b.method) == ("pfml", "proxy_anchor")
        return
    # the recipe name and table, and the defaults of the other pooling, aside
    skip = ("pooling.args", "recipe")
    assert {d for d in diff if not d.startswith(skip)} == expected[pair]
    if pair == "ccp":  # no instance can end inside the budget
        assert b.instance_patience > b.training.epochs >= a.instance_patience


def test_summary_is_mean_and_sample_std_over_seeds():
    rows = [
        {"pair": "x", "label_noise": 0.0, "side": "method", "method": "m"}
        | {"variant": "v", "seed": s, "recall@1": r, "map@r": r / 2}
        for s, r in ((0, 0.8), (1, 0.9), (2, 1.0))
    ]
    base = [
        r | {"side": "baseline", "recall@1": r["recall@1"] - d, "map@r": 0.4}
        for r, d in zip(rows, (0.1, -0.2, 0.4), strict=True)
    ]
    table = dc.summary(pd.DataFrame(rows + base))
    assert "0.900 ± 0.100" in table and "0.450 ± 0.050" in table
    assert "0.800 / 0.400, 0.900 / 0.450, 1.000 / 0.500" in table
    # paired differences: mean 0.1, sample std 0.3; the method wins on 2 of 3 seeds
    assert "0.100 ± 0.300" in table and "2/3" in table
