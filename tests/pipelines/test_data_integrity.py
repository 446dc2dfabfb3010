"""Issue 17 (points 1-4) and issue 24 (points 9, 10, 12) through the real ``data``
pipeline and DVC: empty splits fail at ingestion, skipped images leave the index
table and the cache in agreement, ``dvc repro`` notices a new data root, a breach
of the CSV contract is a one-line error naming the file and line(s), and an
interrupted cache build leaves nothing behind after the next run."""

from __future__ import annotations

import io
import json
import os
import time

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from dml_pipelines.core.data.cache import ImageCache
from tests.pipelines.conftest import run
from tests.test_end_to_end import ROOT, make_dvc_repo, sh


def write_csv_dataset(root, *, classes=8, per_class=3, splits=None, seed=0):
    """A CSV dataset of ``classes`` colour classes (first half train, the rest
    test unless ``splits`` gives each class's split) with small JPEGs."""
    rng = np.random.default_rng(seed)
    lines = ["path,label,split"]
    for c in range(classes):
        split = splits[c] if splits else ("train" if c < classes // 2 else "test")
        colour = rng.integers(0, 256, 3)
        for i in range(per_class):
            rel = f"img/{c}/{i}.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            pixels = np.clip(colour + rng.normal(0, 20, (16, 16, 3)), 0, 255)
            Image.fromarray(pixels.astype("uint8")).save(root / rel, quality=90)
            lines.append(f"{rel},class_{c},{split}")
    (root / "index.csv").write_text("\n".join(lines) + "\n")
    return root


def write_local(project, block: dict) -> None:
    path = project / "conf/local/parameters.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"datasets": {"csv": block}}))


def test_an_all_train_csv_fails_at_ingestion_naming_the_rule(project):
    write_csv_dataset(project / "data/01_raw/csv", splits=["train"] * 8)
    with pytest.raises(ValueError) as err:
        run(project, "data", {"dataset": "csv"})
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("csv: the test split is empty (train 24, test 0")
    assert msg.endswith("the split listed in data/01_raw/csv/index.csv)")
    assert not (project / "data/02_intermediate/csv/index_table.parquet").exists()


def _corrupt(root) -> None:
    (root / "img/1/0.jpg").unlink()  # missing
    (root / "img/5/1.jpg").write_bytes(b"not an image")  # header check fails
    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, "JPEG")
    data = buf.getvalue()
    (root / "img/6/2.jpg").write_bytes(data[: len(data) // 3])  # decode fails


def test_skipped_images_leave_index_table_and_cache_in_agreement(project):
    root = write_csv_dataset(project / "data/01_raw/csv")
    _corrupt(root)
    write_local(
        project,
        {
            "on_missing": "skip",
            "on_error": "skip",
            "expected_counts": {"train": 12, "test": 12},
        },
    )
    with pytest.warns(UserWarning):
        out = run(project, "data", {"dataset": "csv"})
    table = pd.read_parquet(project / "data/02_intermediate/csv/index_table.parquet")
    manifest = json.loads(
        (project / "data/03_primary/csv/image_cache.json").read_text()
    )
    cache = ImageCache.open(manifest["directory"])
    assert len(table) == len(cache) == manifest["count"] == 21
    np.testing.assert_array_equal(table.index.to_numpy(), cache.row_ids)
    bad = {"img/1/0.jpg", "img/5/1.jpg", "img/6/2.jpg"}
    assert not bad & set(table["path"])
    skipped = out["skipped_images"].load()
    assert dict(zip(skipped["path"], skipped["stage"], strict=True)) == {
        "img/1/0.jpg": "ingest",
        "img/5/1.jpg": "ingest",
        "img/6/2.jpg": "decode",
    }
    listed = {"train": 12, "test": 12}
    for split, n in listed.items():
        assert (table["split"] == split).sum() + (skipped["split"] == split).sum() == n


def test_skipped_csv_is_written_beside_the_index_table(project):
    """Needs the ``skipped_images`` entry in conf/base/catalog.yml."""
    root = write_csv_dataset(project / "data/01_raw/csv")
    _corrupt(root)
    write_local(project, {"on_missing": "skip", "on_error": "skip"})
    with pytest.warns(UserWarning):
        run(project, "data", {"dataset": "csv"})
    path = project / "data/02_intermediate/csv/skipped.csv"
    assert path.is_file(), "conf/base/catalog.yml lacks the skipped_images entry"
    skipped = pd.read_csv(path)
    assert list(skipped.columns) == ["path", "label", "split", "stage", "reason"]
    assert sorted(skipped["path"]) == ["img/1/0.jpg", "img/5/1.jpg", "img/6/2.jpg"]


def _rewrite_csv(root, edit) -> None:
    """``edit(lines)`` -> the new lines of ``root/index.csv`` (header = line 1)."""
    path = root / "index.csv"
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")


def _numbered(lines, label_of=lambda c, i: str(c)):
    """Rows labelled with their class number (``img/<c>/<i>.jpg``)."""
    out = [lines[0]]
    for line in lines[1:]:
        rel, _, split = line.split(",")
        c, i = (int(part) for part in rel[len("img/") : -len(".jpg")].split("/"))
        out.append(f"{rel},{label_of(c, i)},{split}")
    return out


CSV = "data/01_raw/csv/index.csv"
BREACHES = {
    # rows: line 2 + 3c + i holds img/<c>/<i>.jpg of class c (8 classes x 3)
    "duplicate row": (
        lambda lines: [*lines, lines[1]],
        f"csv: malformed row in {CSV} line 26: duplicate row: repeats line 2 "
        "(img/0/0.jpg)",
    ),
    "one file in two splits": (
        lambda lines: [*lines, "./img/0/0.jpg,class_0,test"],
        f"csv: malformed row in {CSV} line 26: ./img/0/0.jpg is in split test here "
        "and in split train on line 2; a file belongs to one split",
    ),
    "6 and 6.0": (
        lambda lines: _numbered(lines, lambda c, i: "6.0" if (c, i) == (6, 1) else c),
        f"csv: malformed row in {CSV} line 21: label '6.0' and label '6' on line "
        "20 are the same number written differently (they would be two classes); "
        "write each label one way",
    ),
    "label beyond int64": (
        lambda lines: _numbered(lines, lambda c, i: 2**63 if c == 7 else c),
        f"csv: malformed row in {CSV} line 23: label 9223372036854775808 is beyond "
        "int64 (-9223372036854775808..9223372036854775807); use smaller ids or names",
    ),
}


@pytest.mark.parametrize("breach", list(BREACHES))
def test_a_csv_contract_breach_is_one_line_naming_the_lines(project, breach):
    root = write_csv_dataset(project / "data/01_raw/csv")
    edit, message = BREACHES[breach]
    _rewrite_csv(root, edit)
    with pytest.raises(ValueError) as err:
        run(project, "data", {"dataset": "csv"})
    assert str(err.value) == message
    assert not (project / "data/02_intermediate/csv/index_table.parquet").exists()


def test_a_latin1_csv_is_one_line_naming_the_file(project):
    root = write_csv_dataset(project / "data/01_raw/csv")
    text = (root / "index.csv").read_text().replace("class_3", "caf\u00e9")
    (root / "index.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError) as err:
        run(project, "data", {"dataset": "csv"})
    assert str(err.value) == (
        f"csv: {CSV} is not UTF-8 text (byte 0xe9 on line 11); save it as UTF-8, "
        "e.g. iconv -f latin1 -t utf-8"
    )


def test_an_image_that_fails_to_decode_names_its_csv_line(project):
    root = write_csv_dataset(project / "data/01_raw/csv")
    _corrupt(root)
    (root / "img/1/0.jpg").write_bytes((root / "img/1/1.jpg").read_bytes())
    (root / "img/5/1.jpg").write_bytes((root / "img/5/0.jpg").read_bytes())
    with pytest.raises(ValueError) as err:
        run(project, "data", {"dataset": "csv"})
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(
        f"cannot decode image img/6/2.jpg (row 20, {CSV} line 22): "
    ), msg


def test_the_next_data_run_removes_what_an_interrupted_build_left(project):
    """A build killed mid-way (no ``finally`` runs) leaves its temporary folder,
    or the swapped-out old cache, inside the DVC output data/03_primary/csv."""
    write_csv_dataset(project / "data/01_raw/csv")
    primary = project / "data/03_primary/csv"
    for left in (".cache_original.tmp-k1ll3d", ".cache_original.old-k1ll3d/previous"):
        (primary / left).mkdir(parents=True)
        (primary / left / "pixels.u8").write_bytes(b"\0" * 64)
    (primary / ".keep.tmp-other").mkdir()  # not a leftover of this cache
    run(project, "data", {"dataset": "csv"})
    assert sorted(p.name for p in primary.iterdir() if p.name.startswith(".")) == [
        ".keep.tmp-other"
    ]
    assert len(ImageCache.open(primary / "cache_original")) == 24


def _ran(out: str) -> set[str]:
    return {
        line.split("'")[1] for line in out.splitlines() if "Running stage '" in line
    }


@pytest.mark.slow
def test_dvc_repro_rebuilds_the_data_stage_when_the_data_root_changes(tmp_path):
    """A new root in conf/local, or a changed file under it, re-runs data_external;
    otherwise only the (cheap, always-run) extract stage runs. (The data stage and
    what it depends on are reproduced: the grid has no method to train.)"""
    grid = yaml.safe_load((ROOT / "conf/grid.yaml").read_text())
    grid.update(
        embedded_datasets=[], external_datasets=["csv"], datasets=[], methods=[]
    )
    repo = make_dvc_repo(tmp_path / "repo", grid)
    write_csv_dataset(repo / "data/01_raw/csv", classes=6)
    other = write_csv_dataset(tmp_path / "elsewhere", classes=4, seed=1)

    assert _ran(sh(["dvc", "repro", "data_external@csv"], repo).stdout) == {
        "extract@csv",
        "data_external@csv",
    }
    index = repo / "data/02_intermediate/csv/index_table.parquet"
    assert len(pd.read_parquet(index)) == 18

    write_local(repo, {"root": str(other)})
    assert "data_external@csv" in _ran(
        sh(["dvc", "repro", "data_external@csv"], repo).stdout
    )
    assert len(pd.read_parquet(index)) == 12
    record = json.loads((repo / "data/02_intermediate/csv/source.json").read_text())
    assert record["block"]["root"] == str(other)
    assert record["fingerprint"]["files"] == 13
    start = time.perf_counter()
    again = sh(["dvc", "repro", "data_external@csv"], repo).stdout
    assert _ran(again) == {"extract@csv"}, again
    assert "Stage 'data_external@csv' didn't change" in again
    print(f"no-op dvc repro: {time.perf_counter() - start:.1f} s")

    # a file rewritten under the root (same name) re-runs it too
    Image.new("RGB", (16, 16), (1, 2, 3)).save(other / "img/0/0.jpg", quality=90)
    assert "data_external@csv" in _ran(
        sh(["dvc", "repro", "data_external@csv"], repo).stdout
    )


def test_extract_stage_unpacks_new_archives_and_fingerprints_the_root(
    project, monkeypatch
):
    """``python -m dml_pipelines.pipelines.data.source`` (the ``extract`` stage):
    archives in data/00_archives/cub200 land in the default root; the record
    changes when a file under the root changes, not otherwise."""
    from dml_pipelines.core.data import extract
    from dml_pipelines.pipelines.data.source import main
    from tests.core.data.formats.fixtures import pack_download

    _, downloads, info = pack_download("cub200", "caltech", project / "tmp")
    (project / "data/00_archives").mkdir(parents=True)
    downloads.rename(project / "data/00_archives/cub200")
    unchecked = extract.Archive("CUB_200_2011.tgz", "tar")  # generated: no MD5
    monkeypatch.setitem(extract.LAYOUTS, "cub200", {"caltech": (unchecked,)})
    out = project / "data/02_intermediate/cub200/source.json"
    assert main(["cub200", str(out)]) == 0
    root = project / "data/01_raw/cub200/CUB_200_2011"
    assert (root / "images.txt").is_file()
    first = json.loads(out.read_text())
    assert first["block"]["root"] == "data/01_raw/cub200/CUB_200_2011"
    assert "recall_at" not in first["block"]
    assert first["fingerprint"]["files"] == len(info["records"]) + 5
    assert main(["cub200", str(out)]) == 0
    assert json.loads(out.read_text()) == first
    victim = root / "images" / info["records"][0]["rel"]
    os.utime(victim, ns=(0, victim.stat().st_mtime_ns + 1))
    assert main(["cub200", str(out)]) == 0
    assert json.loads(out.read_text())["fingerprint"] != first["fingerprint"]


def test_extract_stage_skips_md5_checks_for_a_repacked_copy(project, capsys):
    """Issue 24 point 11: the ``extract`` stage's no-checksum option is an empty
    ``no-checksum`` file beside the archives; the record says so."""
    from dml_pipelines.pipelines.data.source import main
    from tests.core.data.formats.fixtures import pack_download

    _, downloads, _ = pack_download("cub200", "caltech", project / "tmp")
    archives = project / "data/00_archives/cub200"
    archives.parent.mkdir(parents=True)
    downloads.rename(archives)  # re-packed: not the published MD5
    out = project / "data/02_intermediate/cub200/source.json"
    assert main(["cub200", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has MD5 " in err
    assert err.rstrip().endswith(
        "(a re-packed copy: skip the MD5 check with --no-checksum, or in the "
        "extract stage with an empty file data/00_archives/cub200/no-checksum)"
    )
    (archives / "no-checksum").touch()
    assert main(["cub200", str(out)]) == 0
    assert json.loads(out.read_text())["archives"] == {"CUB_200_2011.tgz": "skipped"}
    assert (project / "data/01_raw/cub200/CUB_200_2011/images.txt").is_file()


def test_extract_stage_finds_the_inshop_download_as_distributed(project):
    """Issue 24 point 11: In-Shop as distributed (``Img/img.zip``, ``Eval/``,
    ``Anno/`` in the benchmark's folder), copied into data/00_archives/inshop."""
    from dml_pipelines.core.data import read_index
    from dml_pipelines.pipelines.data.source import main
    from tests.core.data.formats.fixtures import distribute_inshop, pack_download

    unpacked, flat, info = pack_download("inshop", "deepfashion", project / "tmp")
    top = project / "data/00_archives/inshop/In-shop Clothes Retrieval Benchmark"
    distribute_inshop(flat, top)
    out = project / "data/02_intermediate/inshop/source.json"
    assert main(["inshop", str(out)]) == 0
    assert json.loads(out.read_text())["archives"] == {
        "img.zip": "none published",
        "list_eval_partition.txt": "none published",
        "list_bbox_inshop.txt": "none published",
    }
    counts = info["expected_counts"]
    pd.testing.assert_frame_equal(
        read_index("inshop", project / "data/01_raw/inshop", expected_counts=counts),
        read_index("inshop", unpacked, expected_counts=counts),
    )


def test_extract_stage_names_a_missing_root_in_one_line(project, capsys):
    from dml_pipelines.pipelines.data.source import main

    write_local_root = project / "conf/local/parameters.yml"
    write_local_root.write_text("datasets:\n  sop:\n    root: /no/such/folder\n")
    assert main(["sop", str(project / "out.json")]) == 1
    err = capsys.readouterr().err
    assert err == (
        "Error: data root /no/such/folder for dataset 'sop' does not exist "
        "(set datasets.sop.root in conf/local/parameters.yml)\n"
    )
