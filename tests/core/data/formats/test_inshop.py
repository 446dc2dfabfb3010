"""In-Shop reader on miniatures of its layouts
(docs/datasets.md#in-shop-clothes-retrieval-inshop)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dml_pipelines.core.data import read_index
from dml_pipelines.core.data.formats.inshop import read
from dml_pipelines.core.data.index import COLUMNS

from .fixtures import (
    INSHOP_TEST_ITEMS,
    INSHOP_TRAIN_ITEMS,
    build_inshop,
    check_class_disjoint,
    check_fold_blocks,
    drop_line,
)


@pytest.mark.parametrize("archive", [False, True])
@pytest.mark.parametrize("image_root", ["img", "img_highres"])
def test_table_matches_the_partition(tmp_path, archive, image_root):
    info = build_inshop(
        tmp_path,
        archive=archive,
        image_root=image_root,
        highres_size=None if image_root == "img" else (8, 8),
    )
    opts = {} if image_root == "img" else {"image_root": image_root}
    table = read(tmp_path, expected_counts=info["expected_counts"], **opts)
    records = info["records"]
    assert list(table.columns) == COLUMNS
    assert isinstance(table.index, pd.RangeIndex)
    assert table["path"].tolist() == [r["path"] for r in records]
    prefix = ("Img/" if archive else "") + image_root + "/"
    assert table["path"].str.startswith(prefix).all()
    assert table["label"].tolist() == [r["label"] for r in records]
    assert table["split"].tolist() == [r["split"] for r in records]
    assert table["super_label"].tolist() == [r["super"] for r in records]
    boxes = np.array([r["box"] for r in records])
    np.testing.assert_array_equal(table[["x1", "y1", "x2", "y2"]].to_numpy(), boxes)
    assert table.attrs["bbox_image_root"] == image_root


@pytest.mark.parametrize("archive", [False, True])
def test_highres_boxes_are_rescaled_by_the_measured_size_ratio(tmp_path, archive):
    """Issue 17 point 6: low-res boxes rescaled to 24x16 high-res images (8x8
    low-res): x by 3, y by 2."""
    info = build_inshop(
        tmp_path, archive=archive, image_root="img_highres", highres_size=(24, 16)
    )
    table = read(
        tmp_path, expected_counts=info["expected_counts"], image_root="img_highres"
    )
    boxes = np.array([r["box"] for r in info["records"]]) * [3, 2, 3, 2]
    np.testing.assert_allclose(table[["x1", "y1", "x2", "y2"]].to_numpy(), boxes)
    assert table.attrs["bbox_image_root"] == "img_highres"


def test_highres_without_lowres_folder_clears_the_boxes(tmp_path):
    info = build_inshop(tmp_path, image_root="img_highres")
    with pytest.warns(UserWarning, match="boxes cleared: the low-resolution folder"):
        table = read(
            tmp_path, expected_counts=info["expected_counts"], image_root="img_highres"
        )
    assert table[["x1", "y1", "x2", "y2"]].isna().all().all()


def test_query_gallery_keep_original_item_ids(tmp_path):
    info = build_inshop(tmp_path)
    table = read(tmp_path, expected_counts=info["expected_counts"])
    train = set(table.loc[table["split"] == "train", "label"])
    query = set(table.loc[table["split"] == "query", "label"])
    gallery = set(table.loc[table["split"] == "gallery", "label"])
    assert train == set(INSHOP_TRAIN_ITEMS)
    assert query == gallery == set(INSHOP_TEST_ITEMS)
    assert not train & (query | gallery)
    check_class_disjoint(table)
    # 5 training items: linspace(0, 5, 5).astype(int) = [0, 1, 2, 3, 5]
    check_fold_blocks(table, [0, 1, 2, 3, 5])


def test_counts(tmp_path):
    info = build_inshop(tmp_path)
    with pytest.raises(
        ValueError, match="train expected 25882, found 10; query expected"
    ):
        read_index("inshop", tmp_path)
    drop_line(tmp_path / "Eval/list_eval_partition.txt", 2)
    n = info["expected_counts"]["train"]
    with pytest.raises(
        ValueError,
        match=rf"list_eval_partition.txt .*train expected {n}, found {n - 1}",
    ):
        read(tmp_path, expected_counts=info["expected_counts"])


def test_missing_image_skip(tmp_path):
    info = build_inshop(tmp_path)
    gone = next(r["path"] for r in info["records"] if r["split"] == "gallery")
    (tmp_path / gone).unlink()
    with pytest.raises(FileNotFoundError, match=gone):
        read(tmp_path, expected_counts=info["expected_counts"])
    n = info["expected_counts"]["gallery"]
    with pytest.warns(
        UserWarning, match=rf"gallery expected {n} - 1 skipped = {n - 1}"
    ):
        table = read(
            tmp_path, expected_counts=info["expected_counts"], on_missing="skip"
        )
    assert len(table) == len(info["records"]) - 1


def test_missing_files_and_folders(tmp_path):
    build_inshop(tmp_path)
    with pytest.raises(FileNotFoundError, match="img_highres or .*Img/img_highres"):
        read(tmp_path, image_root="img_highres")
    with pytest.raises(
        ValueError, match="image_root 'hi' is invalid; valid: img, img_h"
    ):
        read(tmp_path, image_root="hi")
    (tmp_path / "Anno/list_bbox_inshop.txt").unlink()
    with pytest.raises(FileNotFoundError) as err:
        read(tmp_path)
    assert str(tmp_path / "Anno/list_bbox_inshop.txt") in str(err.value)
    assert "Eval/list_eval_partition.txt, Anno/list_bbox_inshop.txt" in str(err.value)


@pytest.mark.parametrize(
    ("row", "why"),
    [
        ("img/MEN/x/id_00000099/01_1_front.jpg id_00000099", "expected 3 columns"),
        ("img/MEN/x/id_00000099/01_1_front.jpg 99 train", "does not start with 'id_'"),
        ("img/MEN/x/id_00000099/01_1_front.jpg id_0000zz99 train", "not an integer"),
        ("img/MEN/x/id_00000099/01_1_front.jpg id_00000099 val", "evaluation_status"),
    ],
)
def test_malformed_partition_row(tmp_path, row, why):
    build_inshop(tmp_path)
    path = tmp_path / "Eval/list_eval_partition.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3] + [row] + lines[3:]) + "\n")
    with pytest.raises(ValueError, match=rf"list_eval_partition.txt line 4: .*{why}"):
        read(tmp_path, expected_counts=None)


def test_image_without_box_row(tmp_path):
    build_inshop(tmp_path)
    drop_line(tmp_path / "Anno/list_bbox_inshop.txt", 2)
    with pytest.raises(ValueError, match=r"line \d+: image img/.* has no row in"):
        read(tmp_path, expected_counts=None)
