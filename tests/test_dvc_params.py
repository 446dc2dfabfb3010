"""DVC and the parameters files (issue #29 items 2, 3, 5): a clean checkout is
up to date with its committed ``dvc.lock`` as far as parameters go, every float
survives DVC rewriting a parameters file, the compute settings are no part of
any stage, and a root ``params.yaml`` is a one-line error (README
"Experiments")."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DVC = shutil.which("dvc")
pytestmark = pytest.mark.skipif(DVC is None, reason="dvc is not installed")


def sh(args, cwd, check=True):
    res = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise AssertionError(f"{args}: {res.stdout}\n{res.stderr}")
    return res


def status(repo: Path) -> dict:
    return json.loads(sh([DVC, "status", "--json"], repo).stdout)


def changed_config(report: dict) -> dict[str, dict]:
    """Per stage, the changed dependencies that are not pipeline data: the
    parameters files and the committed sources (``data/`` is absent in a fresh
    clone, so those entries are expected)."""
    out = {}
    for stage, changes in report.items():
        for change in changes:
            if isinstance(change, dict):
                deps = change.get("changed deps", {})
                mine = {k: v for k, v in deps.items() if not k.startswith("data/")}
                if mine:
                    out[stage] = mine
    return out


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A fresh clone of the committed project (no data, no DVC cache)."""
    repo = tmp_path_factory.mktemp("clone") / "repo"
    sh(["git", "clone", "-q", str(ROOT), str(repo)], ROOT)
    return repo


@pytest.mark.parametrize(
    "path", sorted(p.name for p in (ROOT / "conf/base").glob("parameters*.yml"))
)
def test_every_float_survives_dvc_rewriting_the_file(tmp_path, path):
    """``dvc exp run -S`` rewrites a parameters file with ruamel's round-trip
    dumper, which reprints some 16-digit exponents as another number
    (2.551918610962277e-09 became 2.551918610962275e-09): the values must not
    change however often that happens."""
    from dvc.utils.serialize import modify_yaml

    copy = tmp_path / path
    shutil.copy(ROOT / "conf/base" / path, copy)
    before = yaml.safe_load(copy.read_text())
    for _ in range(3):
        with modify_yaml(copy):
            pass
    assert yaml.safe_load(copy.read_text()) == before


def floats(tree):
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in floats(v)]
    if isinstance(tree, list):
        return [x for v in tree for x in floats(v)]
    return [tree] if isinstance(tree, float) else []


def test_every_float_survives_dvc_rewriting_the_lock(tmp_path):
    """DVC writes a parameter into dvc.lock as Python's repr and then reloads and
    rewrites the whole lock through ruamel's round-trip dumper on every stage it
    locks: each value must come back unchanged (1.563663718906821e-05 came back
    as 1.563663718906813e-05, so the stage looked modified)."""
    from dvc.utils.serialize import dump_yaml, modify_yaml, parse_yaml

    values = [
        x
        for path in sorted((ROOT / "conf/base").glob("parameters*.yml"))
        for x in floats(yaml.safe_load(path.read_text()))
    ]
    lock = tmp_path / "dvc.lock"
    dump_yaml(lock, {"stages": {"s": {"params": {"p.yml": {"v": values}}}}})
    for _ in range(5):
        with modify_yaml(lock):
            pass
    back = parse_yaml(lock.read_text(), "lock")["stages"]["s"]["params"]["p.yml"]["v"]
    assert back == values


@pytest.mark.slow
def test_a_clean_checkout_has_the_parameters_of_its_dvc_lock(clone):
    """On a pristine clone no stage has a changed parameter (before the fix,
    ``conf/base/parameters_intra_batch.yml: modified`` re-ran the intra_batch
    runs and the report on every ``dvc repro``)."""
    params = {
        stage: deps
        for stage, deps in changed_config(status(clone)).items()
        if any(k.startswith("conf/") for k in deps)
    }
    assert params == {}


@pytest.mark.slow
def test_compute_settings_never_make_dvc_rerun_a_stage(clone, tmp_path):
    """Threads and loader processes (``conf/base/parameters_compute.yml``) change
    no result: editing them changes no stage's status, while a method
    parameter does."""
    repo = tmp_path / "repo"
    sh(["git", "clone", "-q", str(clone), str(repo)], tmp_path)
    before = status(repo)
    compute = repo / "conf/base/parameters_compute.yml"
    block = yaml.safe_load(compute.read_text())
    block["compute"] = {"num_threads": 1, "num_workers": 2}
    compute.write_text(yaml.safe_dump(block))
    assert status(repo) == before
    method = repo / "conf/base/parameters_contrastive_c1.yml"
    method.write_text(method.read_text().replace("epochs: 20", "epochs: 19", 1))
    changed = changed_config(status(repo))["run@contrastive_c1-glyphs-0"]
    assert changed["conf/base/parameters_contrastive_c1.yml"] == {
        "contrastive_c1": "modified"
    }


@pytest.mark.slow
def test_a_root_params_yaml_is_a_one_line_error(clone, tmp_path):
    """``dvc exp run -S +key=value`` (DVC's hint for the form users guess) writes
    a root params.yaml no stage reads: the experiment fails with one line naming
    the form that works instead of reporting success."""
    repo = tmp_path / "repo"
    sh(["git", "clone", "-q", str(clone), str(repo)], tmp_path)
    res = sh(
        [
            DVC,
            "exp",
            "run",
            "params_guard",
            "-S",
            "+contrastive_c1.optimizer.lr=0.0005",
        ],
        repo,
        check=False,
    )
    assert (repo / "params.yaml").exists()  # DVC wrote it
    assert res.returncode != 0
    wanted = (
        "dvc exp run -S 'conf/base/parameters_contrastive_c1.yml:"
        "contrastive_c1.optimizer.lr=0.0005'"
    )
    lines = [line for line in res.stderr.splitlines() if "params.yaml:" in line]
    assert len(lines) == 1 and wanted in lines[0], res.stdout + res.stderr
    (repo / "params.yaml").unlink()
    ok = sh([DVC, "repro", "params_guard"], repo)
    assert "Running stage 'params_guard'" in ok.stdout
