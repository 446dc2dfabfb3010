"""`conf/grid.yaml` is checked before DVC expands it (docs: conf/grid.yaml's
header, `dml_pipelines/grid.py`): a misspelt name is one line naming the key
and the valid names, not a bare `[Errno 2]` on a path built from it."""

import shutil

import pytest
import yaml

from dml_pipelines.grid import load_grid, main
from tests.test_end_to_end import ROOT, make_dvc_repo, sh

GOOD = {
    "embedded_datasets": ["glyphs", "digits"],
    "external_datasets": [],
    "datasets": ["glyphs", "digits"],
    "methods": ["contrastive_c1"],
    "seeds": [0],
    "mlrc_methods": [],
}


def test_dvc_repro_with_a_misspelt_dataset_stops_at_the_grid_stage(tmp_path):
    repo = make_dvc_repo(tmp_path, {**GOOD, "datasets": ["glyphs", "digts"]})
    proc = sh(["dvc", "repro"], repo, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert (
        "Error: conf/grid.yaml: datasets[1]: 'digts' is not a dataset (did you "
        "mean 'digits'?); valid: cars196, csv, cub200, digits, glyphs" in out
    ), out
    assert "Errno" not in out and "Running stage 'data@" not in out, out


def test_the_project_grid_is_valid():
    assert (
        load_grid(ROOT)["methods"]
        == yaml.safe_load((ROOT / "conf/grid.yaml").read_text())["methods"]
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            {**GOOD, "methods": ["contrastiv_c1"]},
            "methods[0]: 'contrastiv_c1' is not a method (did you mean "
            "'contrastive_c1'?); valid: ccp, contrastive_c1,",
        ),
        (
            {**GOOD, "mlrc_methods": ["nosuch"]},
            "mlrc_methods[0]: 'nosuch' is not a method; valid:",
        ),
        (
            {**{k: v for k, v in GOOD.items() if k != "seeds"}, "seed": [0]},
            "key: 'seed' is not a grid key (did you mean 'seeds'?)",
        ),
        ({**GOOD, "seeds": [0, "1"]}, "seeds[1]: '1' is not a non-negative integer"),
        ({**GOOD, "seeds": 0}, "seeds: expected a list, got 0"),
        (
            {**GOOD, "datasets": ["glyphs"]},
            "datasets: ['glyphs'] must equal embedded_datasets + external_datasets",
        ),
        (
            "methods: [a, b\nseeds: [0]\n",
            "conf/grid.yaml:2: invalid YAML (expected ',' or ']'",
        ),
    ],
)
def test_bad_grids_are_one_line_errors(tmp_path, monkeypatch, capsys, text, message):
    shutil.copytree(
        ROOT / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("local")
    )
    grid = text if isinstance(text, str) else yaml.safe_dump(text)
    (tmp_path / "conf/grid.yaml").write_text(grid)
    monkeypatch.chdir(tmp_path)
    assert main([str(tmp_path / "checked.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: conf/grid.yaml") and err.count("\n") == 1, err
    assert message in err, err
    assert not (tmp_path / "checked.json").exists()
    (tmp_path / "conf/grid.yaml").write_text(yaml.safe_dump(GOOD))
    assert main([str(tmp_path / "checked.json")]) == 0
    assert (tmp_path / "checked.json").exists()
