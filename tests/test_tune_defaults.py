"""benchmarks/tune_defaults.py (docs/benchmarks.md, "Defaults chosen on
`glyphs_tune`"): every candidate is a valid block on the tuning set and changes
only what its name says; the decision rule is the paired mean against the
sample std of the paired differences, on both metrics; claims share the work."""

import json
import sys

import pytest
import yaml

from dml_pipelines.core.layers import deep_merge
from dml_pipelines.core.methods.configs import parse_method_config
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import tune_defaults as td  # noqa: E402


def _cfg(method, over):
    raw = yaml.safe_load((ROOT / f"conf/base/parameters_{method}.yml").read_text())
    merged = deep_merge(raw[method], over)
    return parse_method_config(merged).for_dataset("glyphs_tune")


@pytest.mark.parametrize(
    ("block", "variant"),
    [(b, v) for b, vs in td.CANDIDATES.items() for v in vs],
)
def test_every_candidate_is_a_valid_block_at_the_same_budget(block, variant):
    method, over = td.CANDIDATES[block][variant]
    cfg = _cfg(method, over)  # a typo'd key would be a one-line config error
    base = _cfg(block, {})
    assert cfg.training.epochs == base.training.epochs == 20
    assert cfg.sampler == base.sampler and cfg.embedding_dim == base.embedding_dim


def _rows(block, variant, r1, mapr):
    return [
        {"block": block, "variant": variant, "fold": f, "recall@1": a, "map@r": b}
        for f, (a, b) in enumerate(zip(r1, mapr, strict=True))
    ]


def test_the_verdict_is_the_paired_mean_against_the_paired_std(tmp_path):
    rows = (
        _rows("m", "default", [0.80, 0.90, 0.70], [0.40, 0.50, 0.30])
        # +2 points on every fold (std 0): wins beyond the spread on both
        + _rows("m", "steady", [0.82, 0.92, 0.72], [0.42, 0.52, 0.32])
        # R@1 differences +4, 0, +2 (mean 2 = std 2): not beyond the spread
        + _rows("m", "noisy", [0.84, 0.90, 0.72], [0.42, 0.52, 0.32])
        # −3 on every fold: loses beyond the spread
        + _rows("m", "worse", [0.77, 0.87, 0.67], [0.37, 0.47, 0.27])
    )
    path = tmp_path / "sweep.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = {
        line.split("|")[2].strip(): line
        for line in td.summarize([path]).splitlines()
        if line.startswith("| m ")
    }
    assert "80.00 ± 10.00" in table["default"]  # mean ± sample std, percent
    assert "+2.00 ± 0.00 / +2.00 ± 0.00" in table["steady"]
    assert table["steady"].rstrip(" |").endswith("wins beyond the spread")
    assert "+2.00 ± 2.00" in table["noisy"]
    assert table["noisy"].rstrip(" |").endswith("inside the spread")
    assert table["worse"].rstrip(" |").endswith("loses beyond the spread")


def test_a_run_is_claimed_once_and_recorded_runs_are_skipped(tmp_path):
    out = tmp_path / "sweep.jsonl"
    assert td._claim(out, "pfml", "delta 0.5", 0)
    assert not td._claim(out, "pfml", "delta 0.5", 0)  # another process has it
    assert td._claim(out, "pfml", "delta 0.5", 1)
    out.write_text(json.dumps({"block": "pfml", "variant": "x", "fold": 2}) + "\n")
    assert td._done(out) == {("pfml", "x", 2)}
    assert td._claim(None, "pfml", "x", 0)  # no --out: nothing to share
