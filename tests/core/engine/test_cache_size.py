"""The cache size of a run (issue 17 point 7) at the core entry points:
``train_model`` refuses a cache of another size than ``transforms.source_size``,
records the one it used, and the data fingerprint and the protocol card carry
the size."""

from __future__ import annotations

import pytest

from dml_pipelines.core.data.fingerprint import data_fingerprint
from dml_pipelines.core.data.prepare import prepare_caches
from dml_pipelines.core.engine.run import train_model
from dml_pipelines.core.engine.training_data import check_source_size
from dml_pipelines.params import protocol_card
from tests.conftest import colour_classes
from tests.core.engine.conftest import make_cfg


@pytest.fixture
def caches(tmp_path):
    """A 4-class train / 2-class test set of 12x16 PNGs, cached at the original
    size and at shorter side 8."""
    root = tmp_path / "raw"
    table = colour_classes(root, (12, 16), per_class=3)
    _, built, _ = prepare_caches(table, root, tmp_path / "primary", [None, 8])
    return table, built


def _cfg(source_size="dataset"):
    return make_cfg(
        backbone={"args": {"channels": [4, 8]}},
        embedding_dim=4,
        sampler={"P": 2, "K": 2, "batches_per_epoch": 1},
        transforms={"preset": "small", "source_size": source_size},
        training={"epochs": 1, "amp": False},
    )


def test_train_model_refuses_a_cache_of_another_size(caches):
    table, built = caches
    with pytest.raises(ValueError) as err:
        train_model(table, built[None], _cfg(8), checkpoint_dir=None)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(
        "contrastive_c1.transforms.source_size: 8 wants the image cache at "
        "shorter side 8, but "
    )
    assert "holds images at the original size" in msg
    with pytest.raises(ValueError, match="at the original size, but .* shorter side 8"):
        check_source_size(built[8], _cfg("original"))
    check_source_size(built[8], _cfg("dataset"))  # the caller chose it


def test_train_model_records_the_cache_it_trained_on(caches):
    table, built = caches
    state, _ = train_model(table, built[8], _cfg(8), checkpoint_dir=None)
    assert state["cache"]["resize_shorter"] == 8
    assert state["cache"]["directory"].endswith("cache_r8")
    card = protocol_card(_cfg(8), state["cache"])
    assert card["cache_resize_shorter"] == 8 and card["source_size"] == 8
    state, _ = train_model(table, built[None], _cfg("original"), checkpoint_dir=None)
    card = protocol_card(_cfg("original"), state["cache"])
    assert card["cache_resize_shorter"] == "original"
    assert card["source_size"] == "original"
    assert state["data_fingerprint"] != data_fingerprint(
        table, table.index[table["split"] == "train"].to_numpy(), built[8]
    )


def test_the_data_fingerprint_differs_between_sizes(caches, tmp_path):
    table, built = caches
    rows = table.index[table["split"] == "train"].to_numpy()
    native = data_fingerprint(table, rows, built[None])
    small = data_fingerprint(table, rows, built[8])
    assert native != small
    # the same size rebuilt from the same files keeps its fingerprint
    _, again, _ = prepare_caches(table, tmp_path / "raw", tmp_path / "other", [8])
    assert data_fingerprint(table, rows, again[8]) == small
