import pytest

from dml_pipelines.core.config import BaselineConfig
from dml_pipelines.core.layers import deep_merge
from dml_pipelines.core.methods.configs import parse_method_config
from dml_pipelines.params import DataParams, DatasetTable, RunParams, resolve_dataset


def raw(**kw):
    return deep_merge(
        {"method": "contrastive_c1", "loss": {"name": "contrastive_c1"}}, kw
    )


def test_unknown_key_is_a_one_line_error_naming_it():
    with pytest.raises(ValueError) as info:
        BaselineConfig.model_validate(raw(sampler={"PP": 3}))
    assert str(info.value) == "contrastive_c1.sampler.PP: unknown key"


def test_invalid_value_names_the_key_and_value():
    with pytest.raises(
        ValueError, match=r"contrastive_c1.training.epochs: .* \(got -1\)"
    ):
        BaselineConfig.model_validate(raw(training={"epochs": -1}))


def test_recipe_is_deep_merged_and_defaults_to_block():
    recipes = {"cub200": {"sampler": {"P": 8}, "embedding_dim": 128}}
    cfg = BaselineConfig.model_validate(raw(recipe="cub200", recipes=recipes))
    assert (cfg.sampler.P, cfg.sampler.K, cfg.embedding_dim) == (8, 4, 128)
    cfg = BaselineConfig.model_validate(raw(recipe="default", recipes=recipes))
    assert (cfg.sampler.P, cfg.embedding_dim) == (16, 64)
    auto = BaselineConfig.model_validate(raw(recipes=recipes))  # recipe: auto
    assert auto.recipe == "auto" and auto.sampler.P == 16
    assert auto.for_dataset("glyphs") is auto  # no recipe for glyphs: the block
    cub = auto.for_dataset("cub200")
    assert (cub.recipe, cub.sampler.P, cub.embedding_dim) == ("cub200", 8, 128)
    with pytest.raises(
        ValueError, match="recipe 'cub' is unknown; valid: auto, default"
    ):
        BaselineConfig.model_validate(raw(recipe="cub", recipes=recipes))


def test_recipe_values_are_validated_too():
    with pytest.raises(ValueError, match="recipes.x: .*sampler.P"):
        BaselineConfig.model_validate(raw(recipes={"x": {"sampler": {"P": 0}}}))


def test_component_names_and_arguments_are_checked():
    with pytest.raises(
        ValueError, match="backbone.name: unknown backbone 'vgg'; valid: .*googlenet"
    ):
        BaselineConfig.model_validate(raw(backbone={"name": "vgg"}))
    with pytest.raises(
        ValueError, match=r"loss.args: unknown argument\(s\) \['alpha'\]"
    ):
        BaselineConfig.model_validate(
            raw(loss={"name": "contrastive_c1", "args": {"alpha": 1}})
        )
    with pytest.raises(ValueError, match="optimizer.name"):
        BaselineConfig.model_validate(raw(optimizer={"name": "lbfgs2"}))


def test_unknown_method_lists_valid_ones():
    with pytest.raises(
        KeyError, match="unknown method 'ccpp'; valid: .*contrastive_c1"
    ):
        parse_method_config({"method": "ccpp"})


def test_dataset_resolution_names_key_and_path(tmp_path):
    table = DatasetTable.model_validate(
        {
            "csv": {"root": str(tmp_path), "recall_at": [1, 10]},
            "sop": {"root": "nowhere"},
        }
    )
    spec = resolve_dataset(
        DataParams.model_validate({"name": "csv", "cache_dir": "c"}), table
    )
    assert (
        spec.root == str(tmp_path) and spec.recall_at == [1, 10] and spec.name == "csv"
    )
    with pytest.raises(
        ValueError, match="data root nowhere for dataset 'sop' does not exist"
    ):
        resolve_dataset(
            DataParams.model_validate({"name": "sop", "cache_dir": "c"}), table
        )
    with pytest.raises(ValueError, match="datasets.cub200: no block"):
        resolve_dataset(
            DataParams.model_validate({"name": "cub200", "cache_dir": "c"}), table
        )
    with pytest.raises(ValueError, match="dataset 'cub' is unknown"):
        DataParams.model_validate({"name": "cub", "cache_dir": "c"})
    with pytest.raises(ValueError, match=r"datasets.csv.resize_shorter"):
        DatasetTable.model_validate({"csv": {"root": "x", "resize_shorter": 0}})


def test_transforms_args_override_the_preset_and_reach_the_training_augmentation():
    """Augmentation strength as parameters (`transforms.args`): the resolved
    training transforms and the run's augmentation description carry them."""
    from dml_pipelines.core.engine.training_data import (
        augmentation,
        augmentation_transforms,
    )

    raw = {
        "method": "contrastive_c1",
        "loss": {"name": "contrastive_c1"},
        "transforms": {
            "preset": "small",
            "args": {"degrees": 15.0, "translate": 0.15, "affine_scale": [0.8, 1.2]},
        },
    }
    cfg = parse_method_config(raw)
    desc = augmentation(cfg, {})
    t = augmentation_transforms(desc, cfg, {})
    assert (t.degrees, t.translate, tuple(t.affine_scale)) == (15.0, 0.15, (0.8, 1.2))
    assert desc["transforms"]["degrees"] == 15.0
    default = augmentation(parse_method_config({**raw, "transforms": {}}), {})
    assert default["transforms"]["degrees"] == 10.0  # the `small` preset's


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"degres": 5}, "unknown option(s) ['degres']"),
        ({"degrees": "x"}, "args.degrees: must be a finite number (got 'x')"),
        ({"affine_scale": [1.0]}, "args.affine_scale: must be a list of 2 numbers"),
        ({"flip_p": True}, "args.flip_p: must be a finite number"),
    ],
)
def test_bad_transforms_args_are_one_line_errors_naming_the_key(args, message):
    raw = {
        "method": "contrastive_c1",
        "loss": {"name": "contrastive_c1"},
        "transforms": {"preset": "small", "args": args},
    }
    with pytest.raises(ValueError) as err:
        parse_method_config(raw)
    text = str(err.value)
    assert message in text and "\n" not in text
    assert text.startswith("contrastive_c1.transforms")


def test_recipes_are_checked_over_the_block_as_written_not_over_another_recipe():
    recipes = {
        "long": {"training": {"epochs": 100, "warmup_epochs": 50}},
        "short": {"training": {"epochs": 10}},  # valid over the block (warm-up 0)
    }
    # "short" over "long" would have 50 warm-up epochs of 10: not what is checked
    cfg = BaselineConfig.model_validate(raw(recipe="long", recipes=recipes))
    assert (cfg.training.epochs, cfg.training.warmup_epochs) == (100, 50)
    assert cfg.recipes == {**recipes, "long": {}}  # the applied entry is emptied
    # re-validating the resolved block (RunParams.apply: every run does) keeps it
    again = RunParams(seed=3).apply(cfg)
    assert (again.training.epochs, again.training.warmup_epochs, again.recipe) == (
        100,
        50,
        "long",
    )
    assert again.training.seed == 3
    short = BaselineConfig.model_validate(raw(recipes=recipes)).for_dataset("short")
    assert short.training.epochs == 10 and short.recipes["short"] == {}
    # a recipe invalid over the block as written is still refused, whichever is used
    bad = {**recipes, "broken": {"training": {"warmup_epochs": 30}}}  # > 20 epochs
    with pytest.raises(ValueError) as err:
        BaselineConfig.model_validate(raw(recipe="long", recipes=bad))
    msg = str(err.value)
    assert msg.startswith("contrastive_c1: recipes.broken: ") and "\n" not in msg
    assert "warmup_epochs must not exceed epochs" in msg


def test_config_imports_nothing_of_the_method_layer():
    """No cycle with ``core/methods/registry.py``: the config and the registry
    checks it runs (``core/components.py``) import no module of ``core/methods``,
    not even inside a function."""
    import ast
    from pathlib import Path

    core = Path(__file__).resolve().parents[2] / "src/dml_pipelines/core"
    for name in ("config.py", "components.py"):
        tree = ast.parse((core / name).read_text())
        imported = [
            n.module if isinstance(n, ast.ImportFrom) else a.name
            for n in ast.walk(tree)
            if isinstance(n, ast.Import | ast.ImportFrom)
            for a in n.names
        ]
        assert imported and not [
            m for m in imported if m and m.startswith("dml_pipelines.core.methods")
        ], (name, imported)
