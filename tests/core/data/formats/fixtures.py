"""Format-exact miniature archives for the reader tests, written under ``tmp_path``.

Each builder writes the archive's real file formats (whitespace list files, CSV,
MATLAB struct arrays via ``scipy.io.savemat``, 8x8 JPEG images via Pillow) and
returns what the test needs to know about it (``expected_counts`` and the records).
"""

from __future__ import annotations

import functools
import io
import shutil
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image


@functools.cache
def jpeg_bytes() -> bytes:
    """One real 8x8 RGB JPEG, encoded once and copied to every image path."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 60)).save(buf, "JPEG")
    return buf.getvalue()


def write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes())


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def clone(src: Path, dst: Path) -> Path:
    """Copy an archive's annotation files to ``dst`` and symlink its image folders
    (every top-level folder except ``devkit``), so that a test may edit the
    annotations of a shared fixture without writing the images again."""
    dst.mkdir(parents=True)
    for entry in src.iterdir():
        if entry.is_file():
            shutil.copy2(entry, dst / entry.name)
        elif entry.name == "devkit":
            shutil.copytree(entry, dst / entry.name)
        else:
            (dst / entry.name).symlink_to(entry, target_is_directory=True)
    return dst


def drop_line(path: Path, index: int) -> str:
    """Remove line ``index`` (0-based) of a text file; return it."""
    lines = path.read_text().splitlines()
    removed = lines.pop(index)
    write_lines(path, lines)
    return removed


def counts(records: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        out[r["split"]] = out.get(r["split"], 0) + 1
    return out


# --- CUB-200-2011 ------------------------------------------------------------------


def build_cub(root: Path, *, images: bool = True) -> dict:
    """200 classes with 1-2 images each; labels/boxes files in reverse id order, and
    a ``train_test_split.txt`` that contradicts the DML split. ``images=False``
    writes the annotation files only (for tests that fail before the image check).
    """
    records = []
    for c in range(1, 201):
        for k in range(1 + (c % 3 == 0)):
            image_id = len(records) + 1
            rel = f"{c:03d}.Class_{c}/Class_{c}_{k:04d}_{image_id}.jpg"
            records.append(
                {
                    "id": image_id,
                    "rel": rel,
                    "path": f"images/{rel}",
                    "label": c,
                    "xywh": (float(c), k + 0.5, 10.0 + k, 20.0),
                    "split": "train" if c <= 100 else "test",
                }
            )
            if images:
                write_image(root / "images" / rel)
    write_lines(root / "images.txt", [f"{r['id']} {r['rel']}" for r in records])
    rev = records[::-1]
    write_lines(
        root / "image_class_labels.txt", [f"{r['id']} {r['label']}" for r in rev]
    )
    write_lines(
        root / "bounding_boxes.txt",
        [f"{r['id']} " + " ".join(f"{v:.1f}" for v in r["xywh"]) for r in rev],
    )
    write_lines(root / "classes.txt", [f"{c} {c:03d}.Class_{c}" for c in range(1, 201)])
    write_lines(
        root / "train_test_split.txt",
        [f"{r['id']} {int(r['label'] > 100)}" for r in records],
    )
    return {"records": records, "expected_counts": counts(records)}


# --- Cars196 -----------------------------------------------------------------------


def car_name(c: int) -> str:
    """Class names whose sorted order differs from the class ids; some hold '/'."""
    return f"Make {200 - c:03d} C/V {c} 2012" if c % 7 == 0 else f"Make {200 - c:03d}"


def car_records() -> list[dict]:
    """196 classes with 1-2 images each; the classification flag ``test`` alternates
    across images, so it mixes classes (as the real halves do)."""
    records = []
    for c in range(1, 197):
        for k in range(1 + (c % 4 == 0)):
            records.append(
                {
                    "label": c,
                    "box": (c, 3 + k, c + 10 + k, 300 + k),
                    "test": len(records) % 2,
                    "split": "train" if c <= 98 else "test",
                }
            )
    return records


def _mat_value(value):
    if isinstance(value, str):
        return value
    return np.array([[value]], dtype=np.uint16 if value > 255 else np.uint8)


def mat_struct(rows: list[dict]) -> np.ndarray:
    """A (1, N) MATLAB struct array with the rows' fields (as in the originals)."""
    fields = list(rows[0])
    arr = np.zeros((1, len(rows)), dtype=[(f, object) for f in fields])
    for i, row in enumerate(rows):
        arr[0, i] = tuple(_mat_value(row[f]) for f in fields)
    return arr


def class_names_cell() -> np.ndarray:
    cell = np.empty((1, 196), dtype=object)
    for c in range(1, 197):
        cell[0, c - 1] = car_name(c)
    return cell


def _box_fields(r: dict) -> dict:
    return dict(
        zip(("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"), r["box"], strict=True)
    )


def build_cars(
    root: Path,
    layout: str,
    *,
    test_annos_in: str = "root",
    header: bool = False,
    images: bool = True,
) -> dict:
    """Write the ``original``, ``devkit`` or ``kaggle`` layout of the same images.

    Args:
        root: where to write.
        layout: ``original``, ``devkit`` or ``kaggle``.
        test_annos_in: devkit only: ``root`` or ``devkit`` for the test annotations.
        header: kaggle only: whether the annotation CSVs start with a header line.
        images: ``False`` writes the annotation files only.
    """
    write = write_image if images else lambda path: None
    root.mkdir(parents=True, exist_ok=True)
    records = car_records()
    if layout == "original":
        rows = []
        for i, r in enumerate(records, 1):
            rel = f"car_ims/{i:06d}.jpg"
            write(root / rel)
            rows.append(
                {
                    "relative_im_path": rel,
                    **_box_fields(r),
                    "class": r["label"],
                    "test": r["test"],
                }
            )
        scipy.io.savemat(
            root / "cars_annos.mat",
            {"annotations": mat_struct(rows), "class_names": class_names_cell()},
        )
    elif layout == "devkit":
        (root / "devkit").mkdir(parents=True)
        scipy.io.savemat(
            root / "devkit/cars_meta.mat", {"class_names": class_names_cell()}
        )
        test_dir = root / "devkit" if test_annos_in == "devkit" else root
        for half, folder, annos in (
            (0, "cars_train", root / "devkit/cars_train_annos.mat"),
            (1, "cars_test", test_dir / "cars_test_annos_withlabels.mat"),
        ):
            rows = []
            for r in (r for r in records if r["test"] == half):
                fname = f"{len(rows) + 1:05d}.jpg"
                write(root / folder / fname)
                rows.append({**_box_fields(r), "class": r["label"], "fname": fname})
            scipy.io.savemat(annos, {"annotations": mat_struct(rows)})
    elif layout == "kaggle":
        write_lines(root / "names.csv", [car_name(c) for c in range(1, 197)])
        for half, folder in ((0, "train"), (1, "test")):
            lines = ["fname,x1,y1,x2,y2,class"] if header else []
            half_records = [r for r in records if r["test"] == half]
            for i, r in enumerate(half_records, 1):
                fname = f"{i:05d}.jpg"
                name = car_name(r["label"]).replace("/", "-")
                write(root / "car_data/car_data" / folder / name / fname)
                lines.append(
                    f"{fname}," + ",".join(map(str, r["box"])) + f",{r['label']}"
                )
            write_lines(root / f"anno_{folder}.csv", lines)
    else:
        raise ValueError(layout)
    return {"records": records, "expected_counts": counts(records)}


# --- Stanford Online Products --------------------------------------------------------

SOP_CATEGORIES = ("bicycle", "chair", "lamp")


def build_sop(root: Path) -> dict:
    """Train classes 1-6, test classes 7-11, 1-3 images each, header lines."""
    records = []
    for c in range(1, 12):
        for k in range(1 + c % 3):
            cat = SOP_CATEGORIES[c % 3]
            records.append(
                {
                    "id": len(records) + 1,
                    "label": c,
                    "super": c % 3 + 1,
                    "path": f"{cat}_final/{111085122870 + c}_{k}.JPG",
                    "split": "train" if c <= 6 else "test",
                }
            )
            write_image(root / records[-1]["path"])
    for split, name in (("train", "Ebay_train.txt"), ("test", "Ebay_test.txt")):
        write_lines(
            root / name,
            ["image_id class_id super_class_id path"]
            + [
                f"{r['id']} {r['label']} {r['super']} {r['path']}"
                for r in records
                if r["split"] == split
            ],
        )
    write_lines(root / "Ebay_info.txt", ["image_id class_id super_class_id path"])
    return {"records": records, "expected_counts": counts(records)}


# --- In-Shop ------------------------------------------------------------------------

INSHOP_TRAIN_ITEMS = (1, 2, 4, 7, 8)
INSHOP_TEST_ITEMS = (3, 5, 6, 9, 12)


def build_inshop(
    root: Path,
    *,
    archive: bool = False,
    image_root: str = "img",
    highres_size: tuple[int, int] | None = None,
) -> dict:
    """Train items with 2 images; test items with 1 query and 1-2 gallery images.

    Args:
        root: where to write.
        archive: images under ``Img/<image_root>/`` instead of ``<image_root>/``.
        image_root: ``img`` or ``img_highres``.
        highres_size: with ``img_highres``, also write the 8x8 low-resolution
            ``img/`` copies and make the high-resolution images this (width,
            height).
    """
    records = []
    for item in sorted(INSHOP_TRAIN_ITEMS + INSHOP_TEST_ITEMS):
        gender, cloth = ("WOMEN", "Dresses") if item % 2 else ("MEN", "Tees_Tanks")
        if item in INSHOP_TRAIN_ITEMS:
            splits = ["train", "train"]
        else:
            splits = ["query"] + ["gallery"] * (1 + item % 2)
        for k, split in enumerate(splits, 1):
            name = f"img/{gender}/{cloth}/id_{item:08d}/{k:02d}_{k}_front.jpg"
            rel = ("Img/" if archive else "") + image_root + name[3:]
            if highres_size is None:
                write_image(root / rel)
            else:
                write_image(root / ("Img/" if archive else "") / name)
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", highres_size, (9, 9, 9)).save(root / rel)
            records.append(
                {
                    "name": name,
                    "path": rel,
                    "label": item,
                    "split": split,
                    "super": 1 + item % 3,
                    "box": (10.0 + k, 20.0, 50.0 + k, 200.0),
                }
            )
    write_lines(
        root / "Eval/list_eval_partition.txt",
        [str(len(records)), "image_name item_id evaluation_status"]
        + [f"{r['name']}    id_{r['label']:08d}    {r['split']}" for r in records],
    )
    write_lines(
        root / "Anno/list_bbox_inshop.txt",
        [str(len(records)), "image_name  clothes_type  pose_type  x_1  y_1  x_2  y_2"]
        + [
            f"{r['name']}  {r['super']}  1  " + "  ".join(f"{v:g}" for v in r["box"])
            for r in records[::-1]
        ],
    )
    return {"records": records, "expected_counts": counts(records)}


# --- Generic CSV ----------------------------------------------------------------------


def build_csv(root: Path, file: str = "index.csv") -> dict:
    """String labels (mapping cat..gnu -> 0..4); some rows without a box."""
    rows = [
        ("dog", "train", "1,2,5,6"),
        ("gnu", "train", ""),
        ("cat", "train", "0,0,8,8"),
        ("dog", "train", ""),
        ("cat", "train", ""),
        ("emu", "test", "1.5,2,3,4"),
        ("emu", "test", ""),
        ("fox", "query", ""),
        ("fox", "gallery", ""),
        ("fox", "gallery", ""),
    ]
    csv_path = root / file
    lines = ["path,label,split,x1,y1,x2,y2"]
    records = []
    for i, (label, split, box) in enumerate(rows):
        rel = f"pics/{label}/{i}.jpg"
        write_image(csv_path.parent / rel)
        lines.append(f"{rel},{label},{split},{box or ',,,'}")
        records.append({"path": rel, "label": label, "split": split, "box": box})
    write_lines(csv_path, lines)
    return {"records": records, "expected_counts": counts(records), "path": csv_path}


# --- shared assertions ---------------------------------------------------------------


def check_fold_blocks(table, edges: list[int]) -> None:
    """Training rows hold the block of their class rank under ``edges``
    (docs/datasets.md#mlrc-fold-blocks); other rows hold null; the blocks cover every
    training class once."""
    train = table["split"] == "train"
    classes = sorted(table.loc[train, "label"].unique())
    assert edges[-1] == len(classes)
    rank = {c: i for i, c in enumerate(classes)}
    for label, block in zip(
        table.loc[train, "label"], table.loc[train, "fold_block"], strict=True
    ):
        assert edges[block] <= rank[label] < edges[block + 1]
    assert table.loc[~train, "fold_block"].isna().all()
    per_block = table[train].groupby("fold_block")["label"].unique()
    assert sorted(c for cs in per_block for c in cs) == classes


def check_class_disjoint(table) -> None:
    train = set(table.loc[table["split"] == "train", "label"])
    other = set(table.loc[table["split"] != "train", "label"])
    assert train and other and not train & other


# --- downloaded archives (issue 17 point 5) ------------------------------------------


def pack_tar(archive: Path, base: Path, members: list[str]) -> Path:
    """A gzip tarball of ``base / member`` for each member (paths kept relative)."""
    import tarfile

    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for member in members:
            tar.add(base / member, arcname=member)
    return archive


def pack_zip(archive: Path, base: Path, members: list[str]) -> Path:
    """A zip of every file under ``base / member`` (paths relative to ``base``)."""
    import zipfile

    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as z:
        for member in members:
            src = base / member
            files = sorted(src.rglob("*")) if src.is_dir() else [src]
            for f in files:
                z.write(f, f.relative_to(base).as_posix())
    return archive


def pack_download(dataset: str, layout: str, tmp: Path) -> tuple[Path, Path, dict]:
    """Write a miniature of ``dataset``'s ``layout`` unpacked (as the reader reads
    it) and as the files a user downloads.

    Returns:
        ``(unpacked root, downloads folder, fixture info)``; the root is the
        folder ``read_index`` reads (``CUB_200_2011/``, ``Stanford_Online_Products/``
        or the dataset folder), as ``extract_archives`` lays it out under its
        destination.
    """
    src, downloads = tmp / "unpacked", tmp / "downloads"
    downloads.mkdir(parents=True)
    if dataset == "cub200":
        info = build_cub(src / "CUB_200_2011")
        pack_tar(downloads / "CUB_200_2011.tgz", src, ["CUB_200_2011"])
        return src / "CUB_200_2011", downloads, info
    if dataset == "sop":
        info = build_sop(src / "Stanford_Online_Products")
        pack_zip(
            downloads / "Stanford_Online_Products.zip",
            src,
            ["Stanford_Online_Products"],
        )
        return src / "Stanford_Online_Products", downloads, info
    if dataset == "inshop":
        info = build_inshop(src)
        pack_zip(downloads / "img.zip", src, ["img"])
        shutil.copy(src / "Eval/list_eval_partition.txt", downloads)
        shutil.copy(src / "Anno/list_bbox_inshop.txt", downloads)
        return src, downloads, info
    info = build_cars(src, layout)
    if layout == "original":
        pack_tar(downloads / "car_ims.tgz", src, ["car_ims"])
        shutil.copy(src / "cars_annos.mat", downloads)
    else:
        for name in ("devkit", "cars_train", "cars_test"):
            archive = "car_devkit.tgz" if name == "devkit" else f"{name}.tgz"
            pack_tar(downloads / archive, src, [name])
        shutil.copy(src / "cars_test_annos_withlabels.mat", downloads)
    return src, downloads, info


def distribute_inshop(downloads: Path, top: Path) -> None:
    """Move In-Shop's downloaded files into the folders they are distributed in:
    ``top/Img/img.zip``, ``top/Eval/...``, ``top/Anno/...``."""
    for name, into in (
        ("img.zip", "Img"),
        ("list_eval_partition.txt", "Eval"),
        ("list_bbox_inshop.txt", "Anno"),
    ):
        (top / into).mkdir(parents=True)
        (downloads / name).rename(top / into / name)
