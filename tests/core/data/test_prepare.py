"""Index table, cache and skipped rows agree (core/data/prepare.py; issue 17 pt 3)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dml_pipelines.core.data import read_index
from dml_pipelines.core.data.prepare import SKIPPED_COLUMNS, prepare_dataset


def _jpeg(seed: int, size=(12, 10)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def root(tmp_path):
    """A CSV dataset of 4 train and 4 test classes, 3 images each; one missing
    file, one file that is not an image, one JPEG truncated in its pixel data."""
    lines = ["path,label,split"]
    for c in range(8):
        for i in range(3):
            rel = f"img/{c}/{i}.jpg"
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_bytes(_jpeg(10 * c + i))
            lines.append(f"{rel},{c},{'train' if c < 4 else 'test'}")
    (tmp_path / "index.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "img/1/0.jpg").unlink()
    (tmp_path / "img/5/1.jpg").write_bytes(b"GIF89a garbage")
    data = _jpeg(999, size=(64, 64))
    (tmp_path / "img/6/2.jpg").write_bytes(data[: len(data) // 3])
    return tmp_path


def test_skip_keeps_index_cache_and_counts_in_agreement(root, tmp_path):
    with pytest.warns(UserWarning, match=r"skipped 1 missing and 1 unreadable"):
        table = read_index(
            "csv",
            root,
            expected_counts={"train": 12, "test": 12},
            on_missing="skip",
            on_error="skip",
        )
    assert len(table) == 22  # the truncated JPEG passes the header check
    with pytest.warns(UserWarning, match=r"build_cache: skipped 1 of 22"):
        kept, cache, skipped = prepare_dataset(
            table, root, tmp_path / "cache", name="csv", on_error="skip"
        )
    assert len(kept) == len(cache) == 21
    np.testing.assert_array_equal(kept.index.to_numpy(), cache.row_ids)
    np.testing.assert_array_equal(cache.positions_of(kept.index), np.arange(21))
    assert "img/6/2.jpg" not in set(kept["path"])
    assert list(skipped.columns) == SKIPPED_COLUMNS
    rows = skipped.to_dict("records")
    assert [(r["path"], r["split"], r["stage"]) for r in rows] == [
        ("img/1/0.jpg", "train", "ingest"),
        ("img/5/1.jpg", "test", "ingest"),
        ("img/6/2.jpg", "test", "decode"),
    ]
    assert rows[0]["reason"] == "missing" and rows[0]["label"] == 1
    # the counts: listed = kept + skipped, per split
    for split, listed in (("train", 12), ("test", 12)):
        assert (kept["split"] == split).sum() + (skipped["split"] == split).sum() == (
            listed
        )
    assert "skipped" not in kept.attrs


def test_raise_stops_at_the_header_check_with_one_line(root):
    with pytest.raises(ValueError) as err:
        read_index("csv", root, expected_counts=None, on_missing="skip")
    msg = str(err.value)
    assert msg.startswith("csv: 1 of 23 images are not readable images: img/5/1.jpg")
    assert "\n" not in msg


def test_a_split_emptied_by_decode_errors_is_an_error(tmp_path):
    lines = ["path,label,split"]
    for c, split in ((0, "train"), (0, "train"), (1, "test")):
        rel = f"img/{len(lines)}.jpg"
        (tmp_path / "img").mkdir(exist_ok=True)
        data = _jpeg(len(lines), size=(64, 64))
        (tmp_path / rel).write_bytes(
            data if split == "train" else data[: len(data) // 3]
        )
        lines.append(f"{rel},{c},{split}")
    (tmp_path / "index.csv").write_text("\n".join(lines) + "\n")
    table = read_index("csv", tmp_path, expected_counts=None)
    with (
        pytest.warns(UserWarning, match="build_cache: skipped 1 of 3"),
        pytest.raises(ValueError, match=r"csv: the test split is empty .*on_error"),
    ):
        prepare_dataset(
            table, tmp_path, tmp_path / "cache", name="csv", on_error="skip"
        )
