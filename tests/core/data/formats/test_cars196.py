"""Cars196 reader on miniatures of its three layouts
(docs/datasets.md#cars196-cars196)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.io

from dml_pipelines.core.data import read_index
from dml_pipelines.core.data.formats.cars196 import read
from dml_pipelines.core.data.index import COLUMNS

from .fixtures import (
    build_cars,
    car_name,
    check_class_disjoint,
    check_fold_blocks,
    clone,
    drop_line,
    mat_struct,
)

LAYOUTS = ("original", "devkit", "kaggle")
BOX = ["x1", "y1", "x2", "y2"]


@pytest.fixture(scope="module")
def cars(tmp_path_factory):
    """The same 196-class miniature written in each layout."""
    out = {}
    for layout in LAYOUTS:
        root = tmp_path_factory.mktemp(layout)
        out[layout] = (root, build_cars(root, layout))
    return out


def canonical(table: pd.DataFrame) -> pd.DataFrame:
    """Drop ``path``, sort by label then box (all layouts agree)."""
    return (
        table.drop(columns="path").sort_values(["label", *BOX]).reset_index(drop=True)
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_matches_the_records(cars, layout):
    root, info = cars[layout]
    table = read(root, expected_counts=info["expected_counts"])
    assert table.attrs["layout"] == layout
    assert list(table.columns) == COLUMNS
    assert isinstance(table.index, pd.RangeIndex)
    records = info["records"]
    want = pd.DataFrame(
        [(r["label"], r["split"], *r["box"]) for r in records],
        columns=["label", "split", *BOX],
    ).sort_values(["label", *BOX], ignore_index=True)
    got = canonical(table)
    assert got["label"].tolist() == want["label"].tolist()
    assert got["split"].tolist() == want["split"].tolist()
    np.testing.assert_array_equal(got[BOX].to_numpy(), want[BOX].to_numpy(float))
    assert set(table.loc[table["split"] == "train", "label"]) == set(range(1, 99))
    assert set(table.loc[table["split"] == "test", "label"]) == set(range(99, 197))
    check_class_disjoint(table)
    check_fold_blocks(table, [0, 24, 49, 73, 98])
    assert all((root / p).is_file() for p in table["path"])


def test_three_layouts_give_identical_tables(cars):
    tables = [
        canonical(read(root, expected_counts=info["expected_counts"]))
        for root, info in cars.values()
    ]
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pd.testing.assert_frame_equal(tables[0], tables[2])


def test_kaggle_paths_use_class_names_with_slash_replaced(cars):
    root, info = cars["kaggle"]
    table = read(root, expected_counts=info["expected_counts"])
    row = table[table["label"] == 7].iloc[0]
    assert "/" in car_name(7)
    folder = car_name(7).replace("/", "-")
    assert row["path"].startswith("car_data/car_data/")
    assert f"/{folder}/" in row["path"]


def test_kaggle_with_header_and_devkit_test_annos_in_devkit(tmp_path, cars):
    reference = canonical(read(cars["original"][0], expected_counts=None))
    root = clone(cars["kaggle"][0], tmp_path / "k")
    build_cars(tmp_path / "k_header", "kaggle", header=True, images=False)
    for name in ("anno_train.csv", "anno_test.csv"):
        header = (tmp_path / "k_header" / name).read_text()
        assert header.startswith("fname,x1,y1,x2,y2,class\n")
        (root / name).write_text(header)
    table = read(root, expected_counts=cars["kaggle"][1]["expected_counts"])
    pd.testing.assert_frame_equal(canonical(table), reference)
    root = clone(cars["devkit"][0], tmp_path / "d")
    test_annos = "cars_test_annos_withlabels.mat"
    (root / test_annos).rename(root / "devkit" / test_annos)
    table = read(root, expected_counts=cars["devkit"][1]["expected_counts"])
    pd.testing.assert_frame_equal(canonical(table), reference)


def test_default_counts_and_dispatch(cars):
    root, info = cars["original"]
    with pytest.raises(ValueError, match="train expected 8054, found"):
        read_index("cars196", root)
    assert len(read_index("cars196", root, expected_counts=None)) == len(
        info["records"]
    )


def test_count_check_fires_when_a_row_is_removed(tmp_path, cars):
    root, info = cars["kaggle"]
    root = clone(root, tmp_path / "copy")
    removed = drop_line(root / "anno_test.csv", 0)
    n = {s: info["expected_counts"][s] for s in ("train", "test")}
    label = int(removed.rsplit(",", 1)[1])
    split = "train" if label <= 98 else "test"
    with pytest.raises(ValueError) as err:
        read(root, expected_counts=info["expected_counts"])
    assert "anno_train.csv + anno_test.csv" in str(err.value)
    assert f"{split} expected {n[split]}, found {n[split] - 1}" in str(err.value)


def test_count_check_fires_when_a_mat_record_is_removed(tmp_path, cars):
    root, info = cars["original"]
    root = clone(root, tmp_path / "copy")
    mat = scipy.io.loadmat(root / "cars_annos.mat")
    scipy.io.savemat(
        root / "cars_annos.mat", {"annotations": mat["annotations"][:, 1:]}
    )
    n = info["expected_counts"]["train"]
    with pytest.raises(
        ValueError, match=rf"cars_annos.mat .*train expected {n}, found {n - 1}"
    ):
        read(root, expected_counts=info["expected_counts"])


def test_missing_image_skip_reports_both_numbers(tmp_path):
    info = build_cars(tmp_path, "devkit")
    (tmp_path / "cars_test/00001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"cars_test/00001.jpg"):
        read(tmp_path, expected_counts=info["expected_counts"])
    n = info["expected_counts"]["train"]
    with pytest.warns(UserWarning, match=rf"train expected {n} - 1 skipped = {n - 1}"):
        table = read(
            tmp_path, expected_counts=info["expected_counts"], on_missing="skip"
        )
    assert len(table) == len(info["records"]) - 1
    assert "cars_test/00001.jpg" not in set(table["path"])


def test_unknown_layout_lists_the_expected_files(tmp_path):
    (tmp_path / "something.txt").write_text("x")
    with pytest.raises(FileNotFoundError) as err:
        read(tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg and "\n" not in msg
    for name in ("cars_annos.mat", "devkit/cars_train_annos.mat", "anno_train.csv"):
        assert name in msg


def test_devkit_without_test_annotations(tmp_path):
    build_cars(tmp_path, "devkit", images=False)
    (tmp_path / "cars_test_annos_withlabels.mat").unlink()
    with pytest.raises(FileNotFoundError, match="cars_test_annos_withlabels.mat"):
        read(tmp_path, expected_counts=None)


def test_kaggle_missing_names_file(tmp_path):
    build_cars(tmp_path, "kaggle", images=False)
    (tmp_path / "names.csv").unlink()
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'names.csv'} not found"):
        read(tmp_path, expected_counts=None)


def test_malformed_rows_name_file_and_line(tmp_path):
    build_cars(tmp_path, "kaggle", images=False)
    path = tmp_path / "anno_train.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + ["00999.jpg,1,2,3,4,x"] + lines[2:]) + "\n")
    with pytest.raises(ValueError, match=r"anno_train.csv line 3: class 'x' is not"):
        read(tmp_path, expected_counts=None)
    path.write_text("\n".join(lines[:1] + ["00999.jpg,1,2,3,4"] + lines[1:]) + "\n")
    with pytest.raises(ValueError, match=r"anno_train.csv line 2: expected 6 columns"):
        read(tmp_path, expected_counts=None)


def test_malformed_mat_record(tmp_path):
    build_cars(tmp_path, "original", images=False)
    rows = [
        {
            "relative_im_path": "car_ims/000001.jpg",
            "bbox_x1": 1,
            "bbox_y1": 1,
            "bbox_x2": 5,
            "bbox_y2": 5,
            "class": 200,
            "test": 0,
        },
    ]
    scipy.io.savemat(tmp_path / "cars_annos.mat", {"annotations": mat_struct(rows)})
    with pytest.raises(ValueError, match=r"class 200 of car_ims/000001.jpg .* 1..196"):
        read(tmp_path, expected_counts=None)
    scipy.io.savemat(tmp_path / "cars_annos.mat", {"annotations": np.zeros(3)})
    with pytest.raises(ValueError, match="no struct array 'annotations'"):
        read(tmp_path, expected_counts=None)


def test_layout_option(cars):
    root, info = cars["kaggle"]
    assert read(root, expected_counts=None, layout="kaggle").attrs["layout"] == "kaggle"
    with pytest.raises(
        ValueError, match="layout 'x' is invalid; valid: auto, original"
    ):
        read(root, layout="x")
    with pytest.raises(FileNotFoundError, match="cars_annos.mat"):
        read(root, layout="original")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['bbox'\]"):
        read(root, bbox=True)


def test_partial_copy_needs_class_split_halves(tmp_path):
    """Issue 17 point 1: the images of classes 21-196 are absent (a partial
    extraction, on_missing: skip): the standard rule leaves the test split empty;
    halves splits the 20 classes present 1-10 / 11-20."""
    build_cars(tmp_path, "original")
    for rel in sorted((tmp_path / "car_ims").iterdir())[30:]:
        rel.unlink()
    with (
        pytest.warns(UserWarning, match="skipped"),
        pytest.raises(
            ValueError,
            match=r"cars196: the test split is empty .*class_split=standard: "
            r"classes <= 98 train.*the copy holds \d+ classes \(1-\d+\)",
        ),
    ):
        read(tmp_path, expected_counts=None, on_missing="skip")
    with pytest.warns(UserWarning, match="skipped"):
        table = read(
            tmp_path, expected_counts=None, on_missing="skip", class_split="halves"
        )
    classes = sorted(table["label"].unique())
    n_train = (len(classes) + 1) // 2
    assert (
        sorted(table.loc[table["split"] == "train", "label"].unique())
        == (classes[:n_train])
    )
    assert (
        sorted(table.loc[table["split"] == "test", "label"].unique())
        == (classes[n_train:])
    )
    check_class_disjoint(table)
