"""Issue 17 (points 1-4) through the real ``data`` pipeline and DVC: empty splits
fail at ingestion, skipped images leave the index table and the cache in
agreement, and ``dvc repro`` notices a new data root."""

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
