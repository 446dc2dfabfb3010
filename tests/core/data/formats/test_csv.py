"""Generic CSV reader (docs/datasets.md#generic-csv-csv)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dml_pipelines.core.data import read_index
from dml_pipelines.core.data.formats.csv import read
from dml_pipelines.core.data.index import COLUMNS

from .fixtures import build_csv, check_fold_blocks, write_image, write_lines

MAPPING = {"cat": 0, "dog": 1, "emu": 2, "fox": 3, "gnu": 4}


def test_string_labels_are_mapped_in_sorted_order(tmp_path):
    info = build_csv(tmp_path)
    table = read(tmp_path)
    assert list(table.columns) == COLUMNS
    assert isinstance(table.index, pd.RangeIndex)
    assert table.attrs["label_mapping"] == MAPPING
    records = info["records"]
    assert table["label"].tolist() == [MAPPING[r["label"]] for r in records]
    assert table["split"].tolist() == [r["split"] for r in records]
    assert table["path"].tolist() == [r["path"] for r in records]
    boxes = table[["x1", "y1", "x2", "y2"]].to_numpy()
    np.testing.assert_array_equal(boxes[0], [1, 2, 5, 6])
    np.testing.assert_array_equal(boxes[5], [1.5, 2, 3, 4])
    assert np.isnan(boxes[1]).all()
    # training classes cat, dog, gnu -> edges linspace(0, 3, 5).astype(int)
    check_fold_blocks(table, [0, 0, 1, 2, 3])


def test_root_may_be_the_file_or_a_folder_with_file_option(tmp_path):
    info = build_csv(tmp_path / "data", file="mine.csv")
    by_file = read_index("csv", info["path"], expected_counts=info["expected_counts"])
    by_option = read(tmp_path / "data", file="mine.csv")
    pd.testing.assert_frame_equal(by_file, by_option)
    info = build_csv(tmp_path / "top", file="sub/index.csv")
    table = read(tmp_path / "top", file="sub/index.csv")
    assert table["path"].str.startswith("sub/pics/").all()
    assert all((tmp_path / "top" / p).is_file() for p in table["path"])


def test_integer_labels_are_kept(tmp_path):
    for i in range(4):
        write_image(tmp_path / f"{i}.jpg")
    write_lines(
        tmp_path / "index.csv",
        [
            "path,label,split",
            "0.jpg,7,train",
            "1.jpg,3,train",
            "2.jpg,12,test",
            "3.jpg,12,test",
        ],
    )
    table = read(tmp_path, expected_counts={"train": 2, "test": 2})
    assert table["label"].tolist() == [7, 3, 12, 12]
    assert "label_mapping" not in table.attrs
    assert table[["x1", "y1", "x2", "y2"]].isna().all().all()
    with pytest.raises(ValueError, match="test expected 3, found 2"):
        read(tmp_path, expected_counts={"train": 2, "test": 3})


def test_missing_image_and_counts(tmp_path):
    info = build_csv(tmp_path)
    gone = info["records"][-1]["path"]
    (tmp_path / gone).unlink()
    with pytest.raises(FileNotFoundError, match=gone):
        read(tmp_path)
    with pytest.warns(UserWarning, match="gallery expected 2 - 1 skipped = 1, found 1"):
        table = read(
            tmp_path, expected_counts=info["expected_counts"], on_missing="skip"
        )
    assert len(table) == len(info["records"]) - 1


@pytest.mark.parametrize(
    ("row", "why"),
    [
        ("pics/dog/0.jpg,dog", "line 3: expected 7 columns, found 2"),
        ("pics/dog/0.jpg,dog,val,,,,", "line 3: split 'val' is invalid"),
        ("pics/dog/0.jpg,dog,train,1,2,,", "line 3: a box needs all of"),
        ("pics/dog/0.jpg,dog,train,1,2,a,4", "line 3: x2 'a' is not a number"),
        ("/abs/0.jpg,dog,train,,,,", "line 3: path '/abs/0.jpg' must be relative"),
        ("pics/dog/0.jpg,,train,,,,", "line 3: empty label"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, row, why):
    build_csv(tmp_path)
    path = tmp_path / "index.csv"
    lines = path.read_text().splitlines()
    write_lines(path, lines[:2] + [row] + lines[2:])
    with pytest.raises(ValueError, match=rf"index.csv {why}"):
        read(tmp_path)


@pytest.mark.parametrize(
    "header",
    [
        "pics/dog/0.jpg,dog,train",
        "path,label",
        "path,label,split,x1,y1",
        "path,label,split,kind",
    ],
)
def test_header_is_required(tmp_path, header):
    write_lines(tmp_path / "index.csv", [header, "pics/dog/0.jpg,dog,train"])
    with pytest.raises(ValueError, match=r"index.csv line 1 must be a header"):
        read(tmp_path)


def test_missing_file_and_options(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'index.csv'} not found"):
        read(tmp_path)
    with pytest.raises(
        ValueError, match=r"unknown option\(s\) \['sep'\]; valid: file, folds"
    ):
        read(tmp_path, sep=";")
