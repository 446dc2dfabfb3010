import pytest

from dml_pipelines.core.config import (
    BaselineConfig,
    DataParams,
    deep_merge,
    parse_method_config,
)


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
    for name in ("default", "glyphs"):  # a dataset without a recipe keeps the block
        cfg = BaselineConfig.model_validate(raw(recipe=name, recipes=recipes))
        assert (cfg.sampler.P, cfg.embedding_dim) == (16, 64)
    with pytest.raises(
        ValueError, match="recipe 'cub' is unknown; valid: default, cub200"
    ):
        BaselineConfig.model_validate(raw(recipe="cub", recipes=recipes))


def test_recipe_values_are_validated_too():
    with pytest.raises(ValueError, match="sampler.P"):
        BaselineConfig.model_validate(
            raw(recipe="x", recipes={"x": {"sampler": {"P": 0}}})
        )


def test_component_names_and_arguments_are_checked():
    with pytest.raises(
        ValueError, match="backbone.name: unknown backbone 'vgg'; valid: googlenet"
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
    with pytest.raises(KeyError, match="unknown method 'ccpp'; valid: contrastive_c1"):
        parse_method_config({"method": "ccpp"})


def test_data_params_pick_the_dataset_block(tmp_path):
    data = DataParams.model_validate(
        {
            "name": "csv",
            "cache_dir": "c",
            "datasets": {"csv": {"root": str(tmp_path), "recall_at": [1, 10]}},
        }
    )
    assert data.root == str(tmp_path) and data.recall_at == [1, 10]
    with pytest.raises(ValueError, match="does not exist"):
        DataParams.model_validate(
            {
                "name": "sop",
                "cache_dir": "c",
                "datasets": {"sop": {"root": str(tmp_path / "x")}},
            }
        )
