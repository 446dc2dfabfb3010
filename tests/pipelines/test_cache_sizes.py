"""Issue 17 point 7 through Kedro: the ``data`` pipeline builds caches of
several sizes side by side, each run trains on the size its config asks for
(``transforms.source_size``), a missing size fails in one line with the command
that builds it, and the protocol card shows the size."""

from __future__ import annotations

import json

import pytest

from dml_pipelines.core.engine.trainer import load_checkpoint
from tests.pipelines.conftest import run
from tests.pipelines.test_data_integrity import write_csv_dataset

TINY = {"training": {"epochs": 1}, "sampler": {"P": 2, "K": 3, "batches_per_epoch": 2}}
TRAIN = ["training", "evaluation"]


def _params(**over):
    datasets = {"csv": {"expected_counts": None, **over.pop("csv", {})}}
    return {"dataset": "csv", "datasets": datasets, **over}


def _card(project, method):
    path = project / f"data/08_reporting/csv/{method}/seed0/protocol_card.json"
    return json.loads(path.read_text())


def _state(project, method):
    return load_checkpoint(
        project / f"data/06_models/csv/{method}/seed0/model_state.pt"
    )


def test_two_recipes_of_different_sizes_train_on_their_own_caches(project):
    write_csv_dataset(project / "data/01_raw/csv")  # 16x16 images, native cache
    run(project, "data", _params(cache_size=24))
    folder = project / "data/03_primary/csv"
    assert {p.name for p in folder.iterdir()} == {
        "cache_original",
        "cache_r24",
        "image_cache.json",
    }
    manifest = json.loads((folder / "image_cache.json").read_text())
    assert manifest["directory"] == "data/03_primary/csv/cache_original"
    assert manifest["resize_shorter"] is None
    assert {k: v["resize_shorter"] for k, v in manifest["caches"].items()} == {
        "cache_original": None,
        "cache_r24": 24,
    }

    # contrastive_c1's csv recipe asks for 24 px; triplet keeps the dataset's
    recipe = {"recipes": {"csv": {"transforms": {"source_size": 24}}}}
    run(project, "contrastive_c1", _params(contrastive_c1={**TINY, **recipe}), TRAIN)
    run(project, "triplet", _params(triplet=TINY), TRAIN)

    c1, tr = _card(project, "contrastive_c1"), _card(project, "triplet")
    assert c1["recipe"] == "csv"
    assert (c1["cache_resize_shorter"], c1["source_size"]) == (24, 24)
    assert (tr["cache_resize_shorter"], tr["source_size"]) == ("original", "dataset")
    assert c1["data_fingerprint"] != tr["data_fingerprint"]
    s1, s2 = _state(project, "contrastive_c1"), _state(project, "triplet")
    assert s1["cache"]["directory"] == "data/03_primary/csv/cache_r24"
    assert s2["cache"]["directory"] == "data/03_primary/csv/cache_original"
    # the augmentation dataset records the same source size
    aug = project / "data/05_model_input/csv/contrastive_c1/seed0/augmentation.json"
    assert json.loads(aug.read_text())["cache_resize_shorter"] == 24


def test_a_missing_size_fails_in_one_line_with_the_command_that_builds_it(project):
    write_csv_dataset(project / "data/01_raw/csv")
    sized = {"resize_shorter": 20}  # the dataset's own cache: shorter side 20
    run(project, "data", _params(csv=sized))
    wants_original = _params(
        csv=sized,
        contrastive_c1={**TINY, "transforms": {"source_size": "original"}},
    )
    with pytest.raises(FileNotFoundError) as err:
        run(project, "contrastive_c1", wants_original, TRAIN)
    assert str(err.value) == (
        "contrastive_c1.transforms.source_size: original wants the image cache at "
        "the original size, but data/03_primary/csv holds only shorter side 20 "
        "(cache_r20); build it: "
        "kedro run --pipelines=data --params dataset=csv,cache_size=original"
    )
    assert not (project / "data/06_models/csv/contrastive_c1/seed0").exists()

    # the command it names builds the size (and keeps the dataset's own)
    run(project, "data", _params(csv=sized, cache_size="original"))
    run(project, "contrastive_c1", wants_original, TRAIN)
    card = _card(project, "contrastive_c1")
    assert card["cache_resize_shorter"] == "original"
    assert card["source_size"] == "original"

    # a dataset size changed since the data run is refused, not silently used
    with pytest.raises(ValueError) as err:
        run(
            project, "triplet", _params(csv={"resize_shorter": 32}, triplet=TINY), TRAIN
        )
    assert str(err.value) == (
        "datasets.csv.resize_shorter: 32, but the dataset's cache was built at 20 "
        "(image_cache.json); rebuild it: kedro run --pipelines=data --params "
        "dataset=csv"
    )
