"""Stanford Online Products reader on a miniature
(docs/datasets.md#stanford-online-products-sop)."""

from __future__ import annotations

import pandas as pd
import pytest

from dml_pipelines.core.data import read_index
from dml_pipelines.core.data.formats.sop import read
from dml_pipelines.core.data.index import COLUMNS

from .fixtures import (
    build_sop,
    check_class_disjoint,
    check_fold_blocks,
    drop_line,
    write_lines,
)


@pytest.fixture(scope="module")
def sop(tmp_path_factory):
    root = tmp_path_factory.mktemp("sop") / "Stanford_Online_Products"
    return root, build_sop(root)


def test_table_matches_the_lists(sop):
    root, info = sop
    table = read(root, expected_counts=info["expected_counts"])
    records = info["records"]
    assert list(table.columns) == COLUMNS
    assert isinstance(table.index, pd.RangeIndex)
    assert table["path"].tolist() == [r["path"] for r in records]
    assert table["label"].tolist() == [r["label"] for r in records]
    assert table["super_label"].tolist() == [r["super"] for r in records]
    assert table["split"].tolist() == [r["split"] for r in records]
    assert table[["x1", "y1", "x2", "y2"]].isna().all().all()
    check_class_disjoint(table)
    # 6 training classes: linspace(0, 6, 5).astype(int) = [0, 1, 3, 4, 6]
    check_fold_blocks(table, [0, 1, 3, 4, 6])


def test_parent_root_and_default_counts(sop):
    root, info = sop
    table = read_index("sop", root.parent, expected_counts=info["expected_counts"])
    assert table["path"].str.startswith("Stanford_Online_Products/").all()
    with pytest.raises(
        ValueError, match="train expected 59551, found 12; test expected"
    ):
        read(root)


def test_count_check_fires_when_a_row_is_removed(tmp_path):
    info = build_sop(tmp_path)
    drop_line(tmp_path / "Ebay_test.txt", 1)
    n = info["expected_counts"]["test"]
    with pytest.raises(
        ValueError, match=rf"Ebay_train.txt .*test expected {n}, found {n - 1}"
    ):
        read(tmp_path, expected_counts=info["expected_counts"])


def test_missing_image_skip(tmp_path):
    info = build_sop(tmp_path)
    gone = info["records"][0]["path"]
    (tmp_path / gone).unlink()
    with pytest.raises(FileNotFoundError, match=gone):
        read(tmp_path, expected_counts=info["expected_counts"])
    n = info["expected_counts"]["train"]
    with pytest.warns(UserWarning, match=rf"train expected {n} - 1 skipped = {n - 1}"):
        table = read(
            tmp_path, expected_counts=info["expected_counts"], on_missing="skip"
        )
    assert gone not in set(table["path"]) and len(table) == len(info["records"]) - 1


def test_missing_list_file(tmp_path):
    build_sop(tmp_path)
    (tmp_path / "Ebay_test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"Ebay_test.txt not found; expected"):
        read(tmp_path, expected_counts=None)


def test_malformed_row_names_file_and_line(tmp_path):
    build_sop(tmp_path)
    path = tmp_path / "Ebay_train.txt"
    lines = path.read_text().splitlines()
    write_lines(path, lines[:2] + ["99 x 1 bicycle_final/1_0.JPG"] + lines[2:])
    with pytest.raises(ValueError, match=r"Ebay_train.txt line 3: class_id 'x'"):
        read(tmp_path, expected_counts=None)
    write_lines(path, lines[:2] + ["99 1 1"] + lines[2:])
    with pytest.raises(ValueError, match=r"Ebay_train.txt line 3: expected 4 columns"):
        read(tmp_path, expected_counts=None)
