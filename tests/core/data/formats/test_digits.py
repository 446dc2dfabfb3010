"""Tests of the ``digits`` reader (docs/datasets.md#digits)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dml_pipelines.core.data import read_index
from dml_pipelines.core.data.formats import digits
from dml_pipelines.core.data.index import COLUMNS, validate_index_table


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("digits")


@pytest.fixture(scope="module")
def table(root):
    return read_index("digits", root)


def test_counts_and_labels(table):
    assert list(table.columns) == COLUMNS
    validate_index_table(table)
    train = table[table["split"] == "train"]
    test = table[table["split"] == "test"]
    assert (len(train), len(test)) == (901, 896)
    assert sorted(train["label"].unique()) == [0, 1, 2, 3, 4]
    assert sorted(test["label"].unique()) == [5, 6, 7, 8, 9]
    assert train["fold_block"].notna().all() and test["fold_block"].isna().all()
    assert sorted(train["fold_block"].unique()) == [0, 1, 2, 3]
    assert table.loc[table["label"] == 4, "fold_block"].eq(3).all()


def test_pixels_match_sklearn(root, table):
    from sklearn.datasets import load_digits

    data = load_digits()
    for i in (0, 500, 1796):
        img = np.asarray(Image.open(root / table["path"].iloc[i]))
        assert img.shape == (8, 8) and img.dtype == np.uint8
        np.testing.assert_array_equal(img, np.round(data.images[i] * 255 / 16))
        assert table["label"].iloc[i] == data.target[i]


def test_reuses_files_and_rerenders_on_change(root, table):
    first = root / table["path"].iloc[0]
    mtime = first.stat().st_mtime_ns
    read_index("digits", root)
    assert first.stat().st_mtime_ns == mtime
    first.write_bytes(b"corrupt")
    again = read_index("digits", root)
    assert again.equals(table)
    assert np.asarray(Image.open(first)).shape == (8, 8)


def test_upsampling_is_nearest(tmp_path):
    t = digits.read(tmp_path, image_size=16)
    img = np.asarray(Image.open(tmp_path / t["path"].iloc[0]))
    assert img.shape == (16, 16)
    np.testing.assert_array_equal(img[::2, ::2], img[1::2, 1::2])
    assert (
        json.loads((tmp_path / "manifest.json").read_text())["params"]["image_size"]
        == 16
    )


def test_count_mismatch_names_dataset_and_both_counts(root):
    with pytest.raises(
        ValueError, match=r"digits: image counts .* train expected 900, found 901"
    ):
        read_index("digits", root, expected_counts={"train": 900, "test": 896})
    assert len(read_index("digits", root, expected_counts=None)) == 1797


def test_refuses_foreign_images_dir(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "mine.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="refusing"):
        digits.read(tmp_path)
