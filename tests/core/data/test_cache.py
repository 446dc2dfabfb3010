"""Tests of the prepared-image cache (core/data/cache.py)."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torchvision.transforms.v2.functional as TF
from PIL import Image

from dml_pipelines.core.data.cache import (
    ImageCache,
    build_cache,
    decode_image,
    resized_size,
    to_rgb,
)


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    grad = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256])
    noise = rng.integers(0, 40, (3, h, w))
    return np.clip(grad + noise, 0, 255).astype(np.uint8).transpose(1, 2, 0)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Images of several modes and sizes; returns the dataset root."""
    root = tmp_path / "root"
    (root / "img").mkdir(parents=True)
    Image.fromarray(_rgb(30, 40, 0)).save(root / "img/rgb.jpg", quality=90)
    Image.fromarray(_rgb(50, 24, 1)[..., 0]).save(root / "img/grey.png")
    Image.fromarray(_rgb(33, 45, 2)).convert("CMYK").save(root / "img/cmyk.jpg")
    rgba = np.dstack([_rgb(20, 28, 3), np.full((20, 28), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "img/rgba.png")
    Image.fromarray(_rgb(26, 26, 4)).convert("P").save(root / "img/palette.png")
    return root


def _table(paths: list[str], boxes=None, index=None) -> pd.DataFrame:
    n = len(paths)
    box = np.full((n, 4), np.nan) if boxes is None else np.asarray(boxes, float)
    t = pd.DataFrame(
        {"path": paths, "label": np.arange(n), "split": ["train"] * n},
        index=index,
    )
    for j, c in enumerate(("x1", "y1", "x2", "y2")):
        t[c] = box[:, j]
    return t


PATHS = [
    "img/rgb.jpg",
    "img/grey.png",
    "img/cmyk.jpg",
    "img/rgba.png",
    "img/palette.png",
]


def _reference(path: Path, size: int | None = None, box=None) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    if box is not None:
        img = img.crop(box)
    if size is not None:
        img = TF.resize(img, [size])  # torchvision Resize on PIL: the reference code
    return np.asarray(img)


def test_round_trip_native_size_converts_every_mode_to_rgb(root, tmp_path):
    cache = build_cache(_table(PATHS), root, tmp_path / "cache")
    assert len(cache) == len(PATHS)
    np.testing.assert_array_equal(cache.row_ids, np.arange(len(PATHS)))
    for pos, rel in enumerate(PATHS):
        img = cache.image(pos)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        np.testing.assert_array_equal(img, _reference(root / rel))
        assert not img.flags.writeable
    grey = cache.image(1)
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])  # grey → 3 equal channels


def test_resize_shorter_matches_torchvision_resize_of_pil(root, tmp_path):
    cache = build_cache(_table(PATHS), root, tmp_path / "cache", resize_shorter=17)
    for pos, rel in enumerate(PATHS):
        ref = _reference(root / rel, size=17)
        assert min(ref.shape[:2]) == 17
        np.testing.assert_array_equal(cache.image(pos), ref)
    assert resized_size(500, 375, 256) == (341, 256)
    assert resized_size(375, 500, 256) == (256, 341)
    assert cache.meta["resize_shorter"] == 17


def test_bbox_crop_is_clipped_and_applied_before_resize(root, tmp_path):
    boxes = [
        [5, 3, 25, 20],  # inside the 40x30 image
        [np.nan] * 4,  # no box: whole image
        [-10, -5, 100.4, 10.2],  # clipped; 10.2 ceils to 11
    ]
    paths = ["img/rgb.jpg", "img/grey.png", "img/cmyk.jpg"]
    t = _table(paths, boxes)
    native = build_cache(t, root, tmp_path / "a", use_bbox=True)
    np.testing.assert_array_equal(
        native.image(0), _reference(root / paths[0], box=(5, 3, 25, 20))
    )
    np.testing.assert_array_equal(native.image(1), _reference(root / paths[1]))
    np.testing.assert_array_equal(
        native.image(2), _reference(root / paths[2], box=(0, 0, 45, 11))
    )
    assert native.meta["rows_without_box"] == 1
    small = build_cache(t, root, tmp_path / "b", use_bbox=True, resize_shorter=8)
    np.testing.assert_array_equal(
        small.image(0), _reference(root / paths[0], 8, box=(5, 3, 25, 20))
    )
    off = build_cache(t, root, tmp_path / "c", use_bbox=False)
    assert off.image(0).shape == (30, 40, 3)  # boxes ignored unless use_bbox


def test_partial_or_empty_box_is_an_error(root, tmp_path):
    t = _table(["img/rgb.jpg"], [[1, 2, np.nan, 4]])
    with pytest.raises(ValueError, match=r"row 0 \(img/rgb.jpg\) has a partial box"):
        build_cache(t, root, tmp_path / "c", use_bbox=True)
    t = _table(["img/rgb.jpg"], [[50, 50, 60, 60]])
    with pytest.raises(ValueError, match=r"img/rgb.jpg \(row 0\).*empty"):
        build_cache(t, root, tmp_path / "c", use_bbox=True)


@pytest.fixture
def broken_root(root: Path) -> Path:
    buf = io.BytesIO()
    Image.fromarray(_rgb(60, 80, 5)).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    (root / "img/truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "img/corrupt.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (root / "img/empty.jpg").write_bytes(b"")
    return root


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("truncated.jpg", "truncated"),
        ("corrupt.jpg", "cannot identify"),
        ("empty.jpg", "empty file"),
        ("missing.jpg", "file not found"),
    ],
)
def test_unreadable_image_raises_one_line_error_naming_file_and_row(
    broken_root, tmp_path, name, why
):
    t = _table(["img/rgb.jpg", f"img/{name}"], index=[10, 11])
    with pytest.raises(ValueError) as err:
        build_cache(t, broken_root, tmp_path / "cache")
    msg = str(err.value)
    assert f"img/{name} (row 11)" in msg and why in msg and "\n" not in msg
    assert err.value.__cause__ is None
    assert not (tmp_path / "cache").exists()
    assert not list(tmp_path.glob(".cache.tmp-*"))  # temp dir removed


def test_skip_mode_warns_records_and_keeps_the_other_rows(broken_root, tmp_path):
    paths = ["img/rgb.jpg", "img/truncated.jpg", "img/grey.png", "img/missing.jpg"]
    with pytest.warns(UserWarning, match=r"skipped 2 of 4 images.*img/truncated.jpg"):
        cache = build_cache(_table(paths), broken_root, tmp_path / "c", on_error="skip")
    np.testing.assert_array_equal(cache.row_ids, [0, 2])
    np.testing.assert_array_equal(cache.image(1), _reference(broken_root / paths[2]))
    skipped = cache.meta["skipped"]
    assert [s["row_id"] for s in skipped] == [1, 3]
    assert [s["path"] for s in skipped] == [paths[1], paths[3]]
    assert cache.manifest()["skipped"] == skipped
    with pytest.raises(KeyError, match=r"3 \(skipped at build: file not found\)"):
        cache.positions_of([0, 3])


def test_parallel_decoding_keeps_table_order(root, tmp_path):
    paths = PATHS * 8  # 40 rows, several worker chunks
    t = _table(paths, index=np.arange(100, 140))
    serial = build_cache(t, root, tmp_path / "s", resize_shorter=12)
    parallel = build_cache(t, root, tmp_path / "p", resize_shorter=12, num_workers=2)
    np.testing.assert_array_equal(serial.row_ids, parallel.row_ids)
    for i in range(len(paths)):
        np.testing.assert_array_equal(serial.image(i), parallel.image(i))
    assert (tmp_path / "s/pixels.u8").read_bytes() == (
        tmp_path / "p/pixels.u8"
    ).read_bytes()


def test_positions_of_maps_row_ids_and_names_missing_ones(root, tmp_path):
    t = _table(PATHS, index=[40, 7, 12, 3, 99])
    cache = build_cache(t, root, tmp_path / "c")
    np.testing.assert_array_equal(cache.positions_of([3, 40, 99, 7]), [3, 0, 4, 1])
    assert cache.positions_of([]).shape == (0,)
    with pytest.raises(KeyError, match=r"2 row ids not cached: 5, 8"):
        cache.positions_of([40, 5, 8])


def test_files_meta_and_manifest(root, tmp_path):
    cache = build_cache(_table(PATHS), root, tmp_path / "c", resize_shorter=9)
    names = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert names == [
        "digests.npy",
        "meta.json",
        "offsets.npy",
        "pixels.u8",
        "row_ids.npy",
    ]
    offsets = np.load(tmp_path / "c/offsets.npy")
    assert offsets.dtype == np.int64 and offsets.shape == (len(PATHS), 4)
    meta = json.loads((tmp_path / "c/meta.json").read_text())
    assert meta["count"] == len(PATHS) and meta["format_version"] == 1
    manifest = cache.manifest()
    assert json.loads(json.dumps(manifest)) == manifest
    assert manifest["resize_shorter"] == 9 and manifest["use_bbox"] is False
    assert manifest["directory"] == str(tmp_path / "c")


def test_pickle_reopens_instead_of_copying_pixels(root, tmp_path):
    cache = build_cache(_table(PATHS), root, tmp_path / "c")
    blob = pickle.dumps(cache)
    assert len(blob) < 1000
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again.image(3), cache.image(3))


def test_open_reports_missing_or_inconsistent_files(root, tmp_path):
    d = tmp_path / "c"
    build_cache(_table(PATHS), root, d)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageCache.open(tmp_path / "nowhere")
    pixels = (d / "pixels.u8").read_bytes()
    (d / "pixels.u8").write_bytes(pixels[:-5])
    with pytest.raises(
        ValueError, match=rf"image cache {d} is inconsistent: pixels.u8"
    ):
        ImageCache.open(d)
    (d / "pixels.u8").unlink()
    with pytest.raises(ValueError, match=r"incomplete: missing \['pixels.u8'\]"):
        ImageCache.open(d)
    (d / "pixels.u8").write_bytes(pixels)
    np.save(d / "row_ids.npy", np.arange(3, dtype=np.int64))
    with pytest.raises(ValueError, match="inconsistent: row_ids.npy"):
        ImageCache.open(d)


def test_rebuild_replaces_a_cache_but_never_a_foreign_directory(root, tmp_path):
    d = tmp_path / "c"
    build_cache(_table(PATHS), root, d)
    assert len(build_cache(_table(PATHS[:2]), root, d)) == 2
    with pytest.raises(ValueError):  # a failed rebuild leaves the old cache
        build_cache(_table(["img/missing.jpg"]), root, d)
    assert len(ImageCache.open(d)) == 2
    foreign = tmp_path / "data"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="is not an image cache; refusing"):
        build_cache(_table(PATHS), root, foreign)
    assert (foreign / "keep.txt").exists()


def test_invalid_options(root, tmp_path):
    with pytest.raises(
        ValueError, match="on_error 'ignore' is invalid; valid: raise, skip"
    ):
        build_cache(_table(PATHS), root, tmp_path / "c", on_error="ignore")
    with pytest.raises(ValueError, match="resize_shorter"):
        build_cache(_table(PATHS), root, tmp_path / "c", resize_shorter=0)
    with pytest.raises(FileNotFoundError, match="nothere"):
        build_cache(_table(PATHS), tmp_path / "nothere", tmp_path / "c")


# --- image details (issue 17 point 6) ------------------------------------------------


def _halves(h: int, w: int) -> np.ndarray:
    """Left half red, right half blue (upright content)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2, 0] = 255
    img[:, w // 2 :, 2] = 255
    return img


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_rotated_image_is_decoded_upright(tmp_path, fmt):
    """A 40x24 (w x h) photo stored sideways (24 x 40) with orientation 6
    ("rotate 90 degrees clockwise to display") decodes as the upright 40x24."""
    upright = Image.fromarray(_halves(24, 40))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / f"sideways.{fmt.lower()}"
    stored.save(path, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    assert Image.open(path).size == (24, 40)
    img = decode_image(path)
    assert img.shape == (24, 40, 3)
    left, right = img[:, :16].mean(axis=(0, 1)), img[:, 24:].mean(axis=(0, 1))
    assert left[0] > 200 and left[2] < 50, left
    assert right[2] > 200 and right[0] < 50, right
    # the box applies to the upright image
    crop = decode_image(path, box=(0, 0, 10, 24))
    assert crop.shape == (24, 10, 3) and crop[..., 0].mean() > 200


def test_cmyk_jpeg_decodes_to_rgb(tmp_path):
    cmyk = np.zeros((12, 16, 4), np.uint8)
    cmyk[:, :8] = (0, 255, 255, 0)  # red
    cmyk[:, 8:] = (255, 255, 0, 0)  # blue
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(cmyk, "CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    img = decode_image(path).astype(int)
    assert img.shape == (12, 16, 3)
    assert np.abs(img[:, :6] - [255, 0, 0]).max() < 30
    assert np.abs(img[:, 10:] - [0, 0, 255]).max() < 30


def test_16bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]] * 3, dtype=np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    img = decode_image(path)
    assert img.dtype == np.uint8 and img.shape == (3, 4, 3)
    np.testing.assert_array_equal(img[0, :, 0], [0, 1, 128, 255])
    np.testing.assert_array_equal(img[..., 0], img[..., 2])
    # an 8-bit range stored in mode I keeps its values
    np.testing.assert_array_equal(
        np.asarray(to_rgb(Image.fromarray(np.array([[0, 7, 255]], np.int32))))[0, :, 1],
        [0, 7, 255],
    )


def test_16bit_rgb_png_is_decoded(tmp_path):
    """A 48-bit RGB PNG (what scanners write): Pillow reads it as 8-bit RGB."""
    import struct
    import zlib

    rgb16 = np.zeros((2, 3, 3), ">u2")
    rgb16[..., 0] = 65535  # red
    raw = b"".join(b"\x00" + row.tobytes() for row in rgb16)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", 3, 2, 16, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path = tmp_path / "rgb48.png"
    path.write_bytes(png)
    img = decode_image(path)
    assert img.shape == (2, 3, 3)
    np.testing.assert_array_equal(img[..., 0], 255)
    np.testing.assert_array_equal(img[..., 1:], 0)
