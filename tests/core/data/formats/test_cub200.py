"""CUB-200-2011 reader on a format-exact miniature
(docs/datasets.md#cub-200-2011-cub200)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dml_pipelines.core.data import read_index
from dml_pipelines.core.data.formats.cub200 import read
from dml_pipelines.core.data.index import COLUMNS

from .fixtures import (
    build_cub,
    check_class_disjoint,
    check_fold_blocks,
    clone,
    drop_line,
    write_lines,
)


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    root = tmp_path_factory.mktemp("cub") / "CUB_200_2011"
    return root, build_cub(root)


def test_table_matches_the_archive(cub):
    root, info = cub
    table = read(root, expected_counts=info["expected_counts"])
    records = info["records"]
    assert list(table.columns) == COLUMNS
    assert isinstance(table.index, pd.RangeIndex) and len(table) == len(records)
    assert table["path"].tolist() == [r["path"] for r in records]
    assert table["label"].tolist() == [r["label"] for r in records]
    assert table["split"].tolist() == [r["split"] for r in records]
    boxes = np.array(
        [(x, y, x + w, y + h) for x, y, w, h in (r["xywh"] for r in records)]
    )
    np.testing.assert_array_equal(table[["x1", "y1", "x2", "y2"]].to_numpy(), boxes)
    assert table["super_label"].isna().all() and table["noisy_label"].isna().all()


def test_split_is_by_class_and_ignores_train_test_split(cub):
    root, info = cub
    assert (root / "train_test_split.txt").read_text().startswith("1 0")
    table = read(root, expected_counts=info["expected_counts"])
    assert set(table.loc[table["split"] == "train", "label"]) == set(range(1, 101))
    assert set(table.loc[table["split"] == "test", "label"]) == set(range(101, 201))
    check_class_disjoint(table)


def test_fold_blocks(cub):
    root, info = cub
    table = read(root, expected_counts=info["expected_counts"])
    check_fold_blocks(table, [0, 25, 50, 75, 100])
    three = read(root, expected_counts=info["expected_counts"], folds=3)
    check_fold_blocks(three, [0, 33, 66, 100])


def test_parent_root_and_dispatch(cub):
    root, info = cub
    table = read_index("cub200", root.parent, expected_counts=info["expected_counts"])
    assert table["path"].str.startswith("CUB_200_2011/images/").all()
    assert (root.parent / table["path"].iloc[0]).is_file()


def test_default_counts_fire_on_the_miniature(cub):
    root, info = cub
    found = info["expected_counts"]["train"]
    with pytest.raises(ValueError, match=rf"train expected 5864, found {found}"):
        read(root)


def test_count_check_fires_when_a_row_is_removed(tmp_path, cub):
    root, info = cub
    root = clone(root, tmp_path / "copy")
    drop_line(root / "images.txt", 0)
    with pytest.raises(ValueError) as err:
        read(root, expected_counts=info["expected_counts"])
    msg = str(err.value)
    n = info["expected_counts"]["train"]
    assert "images.txt" in msg and f"train expected {n}, found {n - 1}" in msg
    assert "\n" not in msg


def test_missing_image_raise_and_skip(tmp_path):
    info = build_cub(tmp_path)
    gone = info["records"][150]
    (tmp_path / gone["path"]).unlink()
    with pytest.raises(FileNotFoundError, match=gone["rel"]):
        read(tmp_path, expected_counts=info["expected_counts"])
    n = info["expected_counts"]["test"]
    both = rf"test expected {n} - 1 skipped = {n - 1}, found {n - 1}"
    with pytest.warns(UserWarning, match=both):
        table = read(
            tmp_path, expected_counts=info["expected_counts"], on_missing="skip"
        )
    assert len(table) == len(info["records"]) - 1
    assert gone["path"] not in set(table["path"])
    assert isinstance(table.index, pd.RangeIndex)


def test_missing_annotation_file_names_the_path(tmp_path):
    build_cub(tmp_path, images=False)
    (tmp_path / "image_class_labels.txt").unlink()
    with pytest.raises(FileNotFoundError) as err:
        read(tmp_path, expected_counts=None)
    msg = str(err.value)
    assert str(tmp_path / "image_class_labels.txt") in msg
    assert "images.txt, image_class_labels.txt, bounding_boxes.txt" in msg


@pytest.mark.parametrize(
    ("file", "row", "why"),
    [
        ("image_class_labels.txt", "7 seven", "class id 'seven' is not an integer"),
        ("image_class_labels.txt", "7 1 2", "expected 2 columns, found 3"),
        ("bounding_boxes.txt", "x 1 2 3 4", "image id 'x' is not an integer"),
        ("image_class_labels.txt", "7 201", "class id 201 is outside 1..200"),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path, file, row, why):
    build_cub(tmp_path, images=False)
    lines = (tmp_path / file).read_text().splitlines()
    lines = [ln for ln in lines if not ln.startswith("7 ")]
    write_lines(tmp_path / file, lines[:3] + [row] + lines[3:])
    with pytest.raises(ValueError, match=rf"{file} line 4: {why}"):
        read(tmp_path, expected_counts=None)


def test_image_without_label_is_an_error(tmp_path):
    build_cub(tmp_path, images=False)
    drop_line(tmp_path / "image_class_labels.txt", 0)
    with pytest.raises(
        ValueError, match=r"images.txt line \d+: image id \d+ has no row"
    ):
        read(tmp_path, expected_counts=None)


def test_bad_arguments(cub):
    root, _ = cub
    with pytest.raises(
        ValueError,
        match=r"unknown option\(s\) \['colour'\]; valid: class_split, folds, "
        "verify_images",
    ):
        read(root, colour=1)
    with pytest.raises(ValueError, match="expected_counts split 'val' is invalid"):
        read(root, expected_counts={"val": 3})
    with pytest.raises(ValueError, match="on_missing 'ignore' is invalid"):
        read(root, on_missing="ignore")
    with pytest.raises(ValueError, match="expected_counts must be 'default', a dict"):
        read(root, expected_counts="all")
    with pytest.raises(ValueError, match="folds must be an integer >= 2, got 1"):
        read(root, folds=1)
    with pytest.raises(ValueError, match="on_error 'ignore' is invalid"):
        read(root, on_error="ignore")
    with pytest.raises(ValueError, match="class_split 'thirds' is invalid; valid: "):
        read(root, class_split="thirds")
    with pytest.raises(ValueError, match="verify_images must be true or false"):
        read(root, verify_images="yes")


# --- issue 17: partial copies, header checks, skipped rows ---------------------------


def partial_copy(root, classes) -> list[dict]:
    """Rewrite the list files of a CUB miniature to hold only ``classes``."""
    info = build_cub(root)
    keep = [r for r in info["records"] if r["label"] in classes]
    write_lines(root / "images.txt", [f"{r['id']} {r['rel']}" for r in keep])
    write_lines(
        root / "image_class_labels.txt", [f"{r['id']} {r['label']}" for r in keep]
    )
    write_lines(
        root / "bounding_boxes.txt",
        [f"{r['id']} " + " ".join(f"{v:.1f}" for v in r["xywh"]) for r in keep],
    )
    return keep


def test_partial_copy_fails_on_an_empty_test_split_unless_split_in_halves(tmp_path):
    """An 8-class copy with expected_counts: null: the standard rule leaves the
    test split empty -> one-line error naming the dataset and the rule; halves ->
    classes 1-4 train, 5-8 test."""
    keep = partial_copy(tmp_path, range(1, 9))
    with pytest.raises(ValueError) as err:
        read(tmp_path, expected_counts=None)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(
        f"cub200: the test split is empty (train {len(keep)}, test 0, query 0"
    )
    assert "class_split=standard: classes <= 100 train" in msg
    assert "the copy holds 8 classes (1-8)" in msg
    assert "set datasets.cub200.options.class_split: halves" in msg
    table = read(tmp_path, expected_counts=None, class_split="halves")
    assert sorted(table.loc[table["split"] == "train", "label"].unique()) == [
        1,
        2,
        3,
        4,
    ]
    assert sorted(table.loc[table["split"] == "test", "label"].unique()) == [5, 6, 7, 8]
    assert len(table) == len(keep)
    check_class_disjoint(table)


def test_halves_gives_the_larger_half_to_train_and_standard_stays_default(cub):
    root, info = cub
    table = read(root, expected_counts=info["expected_counts"], class_split="halves")
    # 200 classes: halves is the standard split
    pd.testing.assert_frame_equal(
        table, read(root, expected_counts=info["expected_counts"])
    )


def test_corrupt_images_are_listed_in_one_error_or_skipped(tmp_path):
    info = build_cub(tmp_path)
    bad = [info["records"][i] for i in (3, 150, 151)]
    (tmp_path / bad[0]["path"]).write_bytes(b"not a jpeg at all")
    (tmp_path / bad[1]["path"]).write_bytes(b"")
    (tmp_path / bad[2]["path"]).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    counts = info["expected_counts"]
    with pytest.raises(ValueError) as err:
        read(tmp_path, expected_counts=counts)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"cub200: 3 of {len(info['records'])} images are not ")
    for r in bad:
        assert r["path"] in msg
    assert "set on_error: skip to drop them" in msg
    # verify_images: false defers the failure to the cache build
    assert len(read(tmp_path, expected_counts=counts, verify_images=False)) == len(
        info["records"]
    )
    with pytest.warns(UserWarning, match=r"skipped 3 unreadable image\(s\)"):
        table = read(tmp_path, expected_counts=counts, on_error="skip")
    assert len(table) == len(info["records"]) - 3
    assert not {r["path"] for r in bad} & set(table["path"])
    skipped = table.attrs["skipped"]
    assert [s["path"] for s in skipped] == [r["path"] for r in bad]
    assert [s["split"] for s in skipped] == ["train", "test", "test"]
    assert "empty file" in skipped[1]["reason"]


def test_more_than_ten_bad_files_name_the_first_ten_and_count(tmp_path):
    info = build_cub(tmp_path)
    for r in info["records"][:12]:
        (tmp_path / r["path"]).write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"12 of \d+ images .* and 2 more"):
        read(tmp_path, expected_counts=info["expected_counts"])
