"""Caches of several sizes side by side (issue 17 point 7): one sub-folder per
size, never a wrong one opened, stale ones removed (core/data/cache.py,
core/data/prepare.py)."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dml_pipelines.core.data.cache import (
    build_cache,
    cache_name,
    cache_path,
    find_caches,
    open_sized_cache,
    source_hash,
)
from dml_pipelines.core.data.prepare import prepare_caches


def write_images(root, sizes=((16, 20), (30, 12), (18, 18), (40, 24))):
    """One PNG per (height, width), two train and two test rows."""
    rows = []
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        rel = f"img/{i}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            root / rel
        )
        rows.append({"path": rel, "label": i, "split": "train" if i < 2 else "test"})
    return pd.DataFrame(rows)


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "raw"
    return root, write_images(root)


def test_cache_names_carry_the_size(tmp_path):
    assert cache_name(256) == "cache_r256"
    assert cache_name(None) == "cache_original"
    assert cache_path(tmp_path, 8) == tmp_path / "cache_r8"


def test_two_sizes_are_built_side_by_side_with_the_right_pixels(data, tmp_path):
    root, table = data
    folder = tmp_path / "primary"
    kept, caches, skipped = prepare_caches(table, root, folder, [None, 8], name="t")
    assert sorted(p.name for p in folder.iterdir()) == ["cache_original", "cache_r8"]
    assert list(caches) == [None, 8] and len(kept) == 4 and skipped.empty
    native, small = caches[None], caches[8]
    assert native.directory == folder / "cache_original"
    assert [tuple(s) for s in native.shapes] == [
        (16, 20, 3),
        (30, 12, 3),
        (18, 18, 3),
        (40, 24, 3),
    ]
    assert (small.shapes[:, :2].min(axis=1) == 8).all()  # every shorter side
    assert native.meta["resize_shorter"] is None and small.meta["resize_shorter"] == 8
    # both built from the same files: same source hash
    assert native.meta["source_hash"] == small.meta["source_hash"]
    assert find_caches(folder) == {None: native.directory, 8: small.directory}


def test_open_sized_cache_opens_only_the_size_asked_for(data, tmp_path):
    root, table = data
    folder = tmp_path / "primary"
    prepare_caches(table, root, folder, [8])
    assert open_sized_cache(folder, 8).meta["resize_shorter"] == 8
    with pytest.raises(FileNotFoundError) as err:
        open_sized_cache(
            folder,
            None,
            wanted_by="m.transforms.source_size: original",
            fix="build it: kedro run --pipelines=data --params dataset=x,"
            "cache_size=original",
        )
    msg = str(err.value)
    assert "\n" not in msg
    assert msg == (
        "m.transforms.source_size: original wants the image cache at the "
        f"original size, but {folder} holds only shorter side 8 (cache_r8); "
        "build it: kedro run --pipelines=data --params dataset=x,cache_size=original"
    )
    with pytest.raises(FileNotFoundError, match="holds no image cache; build it"):
        open_sized_cache(tmp_path / "nothing", 8)


def test_a_cache_in_a_folder_named_for_another_size_is_never_opened(data, tmp_path):
    root, table = data
    folder = tmp_path / "primary"
    build_cache(table, root, folder / "cache_r16", resize_shorter=8)  # mislabelled
    assert find_caches(folder) == {}
    with pytest.raises(FileNotFoundError, match="shorter side 16"):
        open_sized_cache(folder, 16)
    with pytest.raises(FileNotFoundError, match="shorter side 8"):
        open_sized_cache(folder, 8)


def test_a_cache_from_other_source_files_is_refused(data, tmp_path):
    root, table = data
    folder = tmp_path / "primary"
    _, caches, _ = prepare_caches(table, root, folder, [8])
    built = caches[8].meta["source_hash"]
    assert open_sized_cache(folder, 8, source_hash=built)
    with pytest.raises(ValueError, match="built from other source files"):
        open_sized_cache(folder, 8, source_hash="0" * 16, fix="rebuild it")


def test_source_hash_follows_rows_boxes_and_files(data):
    root, table = data
    first = source_hash(table, root, use_bbox=False)
    assert source_hash(table, root, use_bbox=False) == first
    assert source_hash(table.iloc[:3], root, use_bbox=False) != first
    assert source_hash(table, root, use_bbox=True) != first
    path = root / table["path"][0]
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    assert source_hash(table, root, use_bbox=False) != first


def test_a_rebuild_keeps_other_sizes_of_the_same_source_and_drops_stale_ones(
    data, tmp_path
):
    root, table = data
    folder = tmp_path / "primary"
    prepare_caches(table, root, folder, [None, 8])
    prepare_caches(table, root, folder, [None])  # same files: cache_r8 stays
    assert set(find_caches(folder)) == {None, 8}
    path = root / table["path"][0]
    Image.new("RGB", (10, 10), (1, 2, 3)).save(path)  # the source changed
    prepare_caches(table, root, folder, [None])
    assert set(find_caches(folder)) == {None}  # the stale 8-px cache is gone
    assert sorted(p.name for p in folder.iterdir()) == ["cache_original"]


def test_the_single_size_layout_is_migrated(data, tmp_path):
    root, table = data
    folder = tmp_path / "primary"
    build_cache(table, root, folder / "image_cache", resize_shorter=8)
    (folder / "image_cache.json").write_text(json.dumps({"directory": "x"}))
    prepare_caches(table, root, folder, [8])
    assert not (folder / "image_cache").exists()  # the old cache folder
    assert (folder / "image_cache.json").exists()  # the catalog's manifest stays
    with pytest.raises(ValueError, match="is itself an image cache"):
        prepare_caches(table, root, folder / "cache_r8", [8])
