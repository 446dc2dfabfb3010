"""House rules that code review would otherwise have to remember."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import yaml
from kedro.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "dml_pipelines"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_never_imports_kedro_or_the_pipelines_layer():
    bad = []
    for path in (SRC / "core").rglob("*.py"):
        for name in _imports(path):
            if name.split(".")[0] in {
                "kedro",
                "kedro_datasets",
                "dvc",
            } or name.startswith("dml_pipelines.pipelines"):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, bad


def test_pipeline_modules_are_cheap_to_import():
    code = (
        "import sys, dml_pipelines.pipeline_registry as r; r.register_pipelines(); "
        "print(sorted(m for m in ('torch', 'faiss', 'torchvision')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_every_pipeline_folder_exposes_create_pipeline():
    for folder in sorted(
        p
        for p in (SRC / "pipelines").iterdir()
        if p.is_dir() and (p / "__init__.py").exists()
    ):
        if folder.name == "__pycache__":
            continue
        mod = importlib.import_module(f"dml_pipelines.pipelines.{folder.name}")
        assert isinstance(mod.create_pipeline(), Pipeline), folder.name


def test_registry_has_data_and_one_namespaced_pipeline_per_method():
    from dml_pipelines.core.methods.configs import method_configs

    METHOD_CONFIGS = method_configs()
    from dml_pipelines.pipeline_registry import register_pipelines

    pipes = register_pipelines()
    assert {"data", *METHOD_CONFIGS} <= set(pipes)
    for name in METHOD_CONFIGS:
        nodes = [n for n in pipes[name].nodes if n.namespace == name]
        assert {n.name.split(".")[-1] for n in nodes} >= {
            "build_augmentation",
            "train_method",
            "extract_embeddings",
            "evaluate_retrieval",
            "cluster_embeddings",
            "report_metrics",
            "write_protocol_card",
        }
        # every node is explicitly named (no hash suffixes)
        assert all(
            n.name.split(".")[-1].replace("_", "").isalpha() for n in pipes[name].nodes
        )
        assert (ROOT / "conf" / "base" / f"parameters_{name}.yml").exists()


def test_augmentation_is_its_own_node_between_the_cache_and_training():
    from dml_pipelines.pipeline_registry import register_pipelines

    pipe = register_pipelines()["contrastive_c1"]
    by_name = {n.name: n for n in pipe.nodes}
    aug = by_name["contrastive_c1.build_augmentation"]
    assert "image_cache" in aug.inputs and aug.outputs == [
        "contrastive_c1.augmentation"
    ]
    assert "training" in aug.tags
    assert (
        "contrastive_c1.augmentation" in by_name["contrastive_c1.train_method"].inputs
    )
    catalog = yaml.safe_load((ROOT / "conf/base/catalog.yml").read_text())
    path = catalog["{method}.augmentation"]["filepath"]
    assert path.startswith("data/05_model_input/") and path.endswith(
        "/{method}/${run_dir:${runtime_params:run.seed, 0},"
        "${runtime_params:run.fold, none}}/augmentation.json"
    )


def test_default_pipeline_is_the_lineage_of_the_grid_with_the_report_last():
    from dml_pipelines.pipeline_registry import register_pipelines

    grid = yaml.safe_load((ROOT / "conf" / "grid.yaml").read_text())
    pipes = register_pipelines()
    default = pipes["__default__"]
    names = [n.name for n in default.nodes]  # topologically sorted (run order)
    expected = set(pipes["data"].nodes) | set(pipes["report"].nodes)
    for method in grid["methods"]:
        expected |= set(pipes[method].nodes)
    assert {n.name for n in expected} <= set(names)
    namespaces = {n.namespace for n in default.nodes}
    others = set(pipes) - {"data", "report", "__default__", *grid["methods"]}
    assert not namespaces & {o for o in others if not o.endswith("_mlrc")}
    # lineage: ingestion -> augmentation -> training -> embedding -> evaluation
    # -> clustering -> report; the report runs after every method's last node
    order = {name: i for i, name in enumerate(names)}
    for m in grid["methods"]:
        chain = [
            "prepare_images",
            f"{m}.build_augmentation",
            f"{m}.train_method",
            f"{m}.extract_embeddings",
            f"{m}.cluster_embeddings",
            f"{m}.report_metrics",
            f"{m}.aggregate_seeds",
            "report.collect_runs",
        ]
        assert [order[c] for c in chain] == sorted(order[c] for c in chain), m
        assert order[f"{m}.write_protocol_card"] < order["report.await_runs"]
    for reader in (
        "collect_runs",
        "plot_training_curves",
        "plot_projection",
        "plot_retrieval_sheets",
    ):
        assert "report.runs_finished" in default.nodes[order[f"report.{reader}"]].inputs
    # `kedro run --pipelines=report` alone does not wait for anything
    assert "report.runs_finished" not in pipes["report"].all_inputs()


def test_registry_reads_the_grid_from_the_working_directory(tmp_path, monkeypatch):
    from dml_pipelines.pipeline_registry import register_pipelines

    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "grid.yaml").write_text("methods: [triplet, nosuch]\n")
    monkeypatch.chdir(tmp_path)
    default = register_pipelines()["__default__"]
    namespaces = {n.namespace for n in default.nodes} - {None}
    assert namespaces == {"triplet", "report"}


def test_dvc_grid_agrees_with_the_vars_file_and_the_registry():
    from dml_pipelines.core.methods.configs import method_configs
    from dml_pipelines.params import DATASETS

    METHOD_CONFIGS = method_configs()

    grid = yaml.safe_load((ROOT / "conf" / "grid.yaml").read_text())
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert dvc["vars"] == ["conf/grid.yaml"]
    stages = dvc["stages"]
    assert stages["data"]["matrix"]["dataset"] == "${embedded_datasets}"
    # one Kedro process per run: training and evaluation in one stage
    run = stages["run"]
    assert run["matrix"] == {
        "method": "${methods}",
        "dataset": "${datasets}",
        "seed": "${seeds}",
    }
    assert "run.seed=${item.seed}" in run["cmd"]
    assert "--tags=training,evaluation" in run["cmd"]
    for key in ("outs", "metrics"):
        assert all("seed${item.seed}" in str(o) for o in run[key])
    assert run["cmd"].startswith("kedro run --pipelines=${item.method}")
    assert not {"train", "evaluate", "aggregate"} & set(stages)
    assert set(grid["methods"]) <= set(METHOD_CONFIGS)
    assert grid["seeds"] and all(isinstance(s, int) for s in grid["seeds"])
    assert isinstance(grid["mlrc_methods"], list)
    assert set(grid["mlrc_methods"]) <= set(METHOD_CONFIGS)
    assert stages["train_fold"]["matrix"]["fold"] == [0, 1, 2, 3]
    assert "run.fold=${item.fold}" in stages["train_fold"]["cmd"]
    assert stages["mlrc"]["cmd"].startswith("kedro run --pipelines=${item.method}_mlrc")
    assert stages["data_external"]["matrix"]["dataset"] == "${external_datasets}"
    assert grid["datasets"] == grid["embedded_datasets"] + grid["external_datasets"]
    assert set(grid["datasets"]) <= set(DATASETS)
    assert set(grid["embedded_datasets"]) <= {"digits", "glyphs"}
    persisted = [o for o in run["outs"] if isinstance(o, dict)]
    assert any(v.get("persist") for o in persisted for v in o.values())


def test_training_stages_depend_on_every_source_file_training_imports():
    """A code change must re-run the runs it can change: every file that the
    training and evaluation nodes import (transitively; all methods and losses,
    which the registries load) is a dependency of the ``run`` and ``train_fold``
    stages (the file, or a folder above it)."""
    from dml_pipelines.core.provenance import (
        import_closure,
        module_file,
        training_sources,
    )

    nodes = [
        module_file(f"dml_pipelines.pipelines.{p}.nodes", SRC)
        for p in ("training", "evaluation")
    ]
    seen = set(import_closure(nodes, SRC)) | set(training_sources(SRC))
    assert len(seen) > 60  # the walk reached the engine, models, evaluation, ...
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage in ("run", "train_fold"):
        deps = [d for d in stages[stage]["deps"] if d.startswith("src/")]
        missing = sorted(
            rel
            for rel in (str(p.relative_to(ROOT)) for p in seen)
            if not any(rel == d or rel.startswith(d + "/") for d in deps)
        )
        assert not missing, (stage, missing)


def test_dvcignore_and_telemetry_are_committed_settings():
    assert "__pycache__/" in (ROOT / ".dvcignore").read_text()
    assert "*.pyc" in (ROOT / ".dvcignore").read_text()
    assert "consent: false" in (ROOT / ".telemetry").read_text()
    assert "kedro_telemetry" not in (ROOT / "pyproject.toml").read_text()


def test_ci_calls_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_published_method_has_a_docs_page():
    """Each method module of ``core/methods`` (the published methods; the
    baselines share ``baselines_config.py``) has ``docs/methods/<name>.md``
    naming its pipeline command and parameters file."""
    template = {"__init__", "base", "configs", "registry"}
    methods = sorted(
        p.stem
        for p in (SRC / "core" / "methods").glob("*.py")
        if p.stem not in template and not p.stem.endswith("_config")
    )
    assert "intra_batch" in methods and len(methods) == 5, methods
    for name in methods:
        page = ROOT / "docs" / "methods" / f"{name}.md"
        assert page.is_file(), page
        text = page.read_text()
        assert f"--pipelines={name}" in text, name
        assert f"conf/base/parameters_{name}.yml" in text, name
