"""Unpacking downloaded archives (core/data/extract.py; issue 17 point 5)."""

from __future__ import annotations

import json
import os
import tarfile

import pandas as pd
import pytest

from dml_pipelines.core.data import read_index
from dml_pipelines.core.data.extract import (
    LAYOUTS,
    MARKER,
    extract_archives,
    main,
    md5sum,
)

from .formats.fixtures import distribute_inshop, pack_download

CASES = [
    ("cub200", "caltech", "CUB_200_2011"),
    ("cars196", "original", ""),
    ("cars196", "devkit", ""),
    ("sop", "cvgl", "Stanford_Online_Products"),
    ("inshop", "deepfashion", ""),
]


def no_checks(dataset: str) -> dict:
    """Every file of the dataset without an MD5 check (generated archives)."""
    return {a.name: None for arch in LAYOUTS[dataset].values() for a in arch}


@pytest.mark.parametrize(("dataset", "layout", "sub"), CASES)
def test_extracted_archives_give_the_same_index_as_the_unpacked_folder(
    tmp_path, dataset, layout, sub
):
    unpacked, downloads, info = pack_download(dataset, layout, tmp_path)
    dest = tmp_path / "data/01_raw" / dataset
    extract_archives(dataset, [downloads], dest, checksums=no_checks(dataset))
    counts = info["expected_counts"]
    want = read_index(dataset, unpacked, expected_counts=counts)
    got = read_index(dataset, dest / sub, expected_counts=counts)
    pd.testing.assert_frame_equal(got, want)
    marker = json.loads((dest / MARKER).read_text())
    assert marker["layout"] == layout
    assert {a["name"] for a in marker["archives"]} == {
        a.name for a in LAYOUTS[dataset][layout]
    }
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]


def test_checksums_are_verified_before_anything_is_unpacked(tmp_path):
    _, downloads, _ = pack_download("cub200", "caltech", tmp_path)
    dest = tmp_path / "raw"
    with pytest.raises(ValueError, match=r"CUB_200_2011.tgz has MD5 [0-9a-f]{32}, "):
        extract_archives("cub200", [downloads], dest)  # the published MD5
    assert not dest.exists()
    good = md5sum(downloads / "CUB_200_2011.tgz")
    extract_archives("cub200", [downloads], dest, checksums={"CUB_200_2011.tgz": good})
    assert (dest / "CUB_200_2011/images.txt").is_file()
    marker = json.loads((dest / MARKER).read_text())
    assert marker["archives"][0]["md5"] == good
    assert marker["archives"][0]["md5_check"] == "given"


def test_a_failed_extraction_never_looks_complete(tmp_path):
    _, downloads, _ = pack_download("cub200", "caltech", tmp_path)
    archive = downloads / "CUB_200_2011.tgz"
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])  # truncated download
    dest = tmp_path / "raw"
    with pytest.raises(ValueError, match="cub200: cannot unpack .*CUB_200_2011.tgz"):
        extract_archives("cub200", [downloads], dest, checksums=no_checks("cub200"))
    assert not dest.exists()
    assert list(tmp_path.glob(".raw.*")) == []


def test_second_call_is_a_noop_and_a_new_archive_replaces_the_folder(tmp_path):
    _, downloads, _ = pack_download("sop", "cvgl", tmp_path)
    dest = tmp_path / "raw"
    extract_archives("sop", [downloads], dest, checksums=no_checks("sop"))
    (dest / "sentinel").write_text("kept while the archives are unchanged")
    extract_archives("sop", [downloads], dest, checksums=no_checks("sop"))
    assert (dest / "sentinel").exists()
    archive = downloads / "Stanford_Online_Products.zip"
    os.utime(archive, ns=(1, 1))
    extract_archives("sop", [downloads], dest, checksums=no_checks("sop"))
    assert not (dest / "sentinel").exists()
    assert (dest / "Stanford_Online_Products/Ebay_train.txt").is_file()


def test_a_folder_not_written_by_extract_is_never_replaced(tmp_path):
    _, downloads, _ = pack_download("sop", "cvgl", tmp_path)
    dest = tmp_path / "raw"
    dest.mkdir()
    (dest / "my_notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="was not written by extract"):
        extract_archives("sop", [downloads], dest, checksums=no_checks("sop"))
    assert (dest / "my_notes.txt").read_text() == "mine"


def test_incomplete_downloads_list_each_layout(tmp_path):
    (tmp_path / "cars_annos.mat").write_bytes(b"x")
    with pytest.raises(ValueError) as err:
        extract_archives("cars196", [tmp_path], tmp_path / "raw")
    msg = str(err.value)
    assert "\n" not in msg
    assert "original: car_ims.tgz + cars_annos.mat" in msg
    assert "devkit: car_devkit.tgz + cars_train.tgz" in msg
    with pytest.raises(ValueError, match="no archives known for dataset 'csv'"):
        extract_archives("csv", [tmp_path], tmp_path / "raw")


def test_unsafe_member_paths_are_refused(tmp_path):
    (tmp_path / "evil.txt").write_text("x")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with tarfile.open(downloads / "CUB_200_2011.tgz", "w:gz") as tar:
        tar.add(tmp_path / "evil.txt", arcname="../evil.txt")
    with pytest.raises(ValueError, match="unsafe path '../evil.txt'"):
        extract_archives(
            "cub200", [downloads], tmp_path / "raw", checksums=no_checks("cub200")
        )
    assert not (tmp_path / "raw").exists()


def test_command_line(tmp_path, capsys):
    _, downloads, _ = pack_download("inshop", "deepfashion", tmp_path)
    dest = tmp_path / "raw"
    assert main(["inshop", str(downloads), "--dest", str(dest)]) == 0
    assert (dest / "Eval/list_eval_partition.txt").is_file()
    assert "inshop: archives unpacked into" in capsys.readouterr().out
    assert main(["cub200", str(downloads), "--dest", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: cub200: no complete set of archives")
    assert err.count("\n") == 1


def _flip_inside(archive, content: bytes) -> None:
    """Flip one bit of the first copy of ``content`` stored in ``archive``."""
    data = bytearray(archive.read_bytes())
    at = data.index(content) + len(content) // 2
    data[at] ^= 0x01
    archive.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("dataset", "layout", "archive", "member", "why"),
    [
        (
            "cub200",
            "caltech",
            "CUB_200_2011.tgz",
            "CUB_200_2011/images.txt",
            "BadGzipFile: CRC check failed",
        ),
        (
            "sop",
            "cvgl",
            "Stanford_Online_Products.zip",
            "Stanford_Online_Products/Ebay_train.txt",
            "BadZipFile: Bad CRC-32 for file",
        ),
    ],
)
def test_a_bit_flipped_archive_fails_without_md5_checks(
    tmp_path, capsys, dataset, layout, archive, member, why
):
    """Issue 24 point 11: without the MD5 (``--no-checksum``, a re-packed copy)
    the archive's own CRC still catches a flipped bit in a member's bytes (the
    archives are stored uncompressed so that the flip decodes silently)."""
    unpacked, downloads, _ = pack_download(dataset, layout, tmp_path)
    path = downloads / archive
    if archive.endswith(".tgz"):
        with tarfile.open(path, "w:gz", compresslevel=0) as tar:
            tar.add(unpacked, arcname=unpacked.name)
    _flip_inside(path, (unpacked.parent / member).read_bytes()[:64])
    dest = tmp_path / "raw"
    assert main([dataset, str(downloads), "--dest", str(dest), "--no-checksum"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"Error: {dataset}: cannot unpack {path}: {why}"), err
    assert err.count("\n") == 1
    assert not dest.exists()
    assert list(tmp_path.glob(".raw.*")) == []


def test_the_inshop_download_as_distributed_is_found(tmp_path):
    """The In-Shop files as distributed: ``Img/img.zip``, ``Eval/`` and ``Anno/``
    inside the benchmark's folder; a file found twice is refused."""
    unpacked, flat, info = pack_download("inshop", "deepfashion", tmp_path)
    top = tmp_path / "download" / "In-shop Clothes Retrieval Benchmark"
    distribute_inshop(flat, top)
    dest = tmp_path / "raw"
    extract_archives("inshop", [tmp_path / "download"], dest)
    counts = info["expected_counts"]
    pd.testing.assert_frame_equal(
        read_index("inshop", dest, expected_counts=counts),
        read_index("inshop", unpacked, expected_counts=counts),
    )
    (top / "img.zip").write_bytes((top / "Img/img.zip").read_bytes())
    with pytest.raises(ValueError, match=r"inshop: img.zip found 2 times: .*; pass"):
        extract_archives("inshop", [tmp_path / "download"], tmp_path / "raw2")


def test_an_interrupted_extraction_is_cleaned_up_by_the_next(tmp_path):
    """A killed extraction leaves ``.raw.tmp-*`` beside the destination (no
    ``finally`` runs); the next extraction of that destination removes it."""
    _, downloads, _ = pack_download("sop", "cvgl", tmp_path)
    dest = tmp_path / "raw"
    left = tmp_path / ".raw.tmp-k1ll3d" / "Stanford_Online_Products"
    left.mkdir(parents=True)
    (left / "Ebay_train.txt").write_text("half written")
    extract_archives("sop", [downloads], dest, checksums=no_checks("sop"))
    assert (dest / "Stanford_Online_Products/Ebay_train.txt").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
