"""Unpack the archives a user downloaded into a dataset root, verified and atomic.

Downloading stays the user's (licences). ``extract_archives`` finds the files of one
known layout (:data:`LAYOUTS`) among the given paths, checks each against its
published MD5 where one is published, and unpacks them into a temporary folder
beside the destination; only a complete extraction is renamed into place, with a
``.extracted.json`` marker naming the archives (name, size, MD5), so a partial
extraction never looks complete. Running it again with the same archives (same
names, sizes and modification times) is a no-op.

Command line (the one command after a download)::

    python -m dml_pipelines.core.data.extract cub200 ~/Downloads/CUB_200_2011.tgz

unpacks into ``data/01_raw/cub200/`` (``--dest`` to change it), which is the
default ``datasets.cub200.root`` of ``conf/base/parameters.yml``.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import shutil
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dml_pipelines.core.data._atomic import publish, staging_dir

MARKER = ".extracted.json"
NO_CHECKSUM_HINT = (
    "skip the MD5 check with --no-checksum, or in the extract stage with an empty "
    "file data/00_archives/{dataset}/no-checksum"
)


@dataclass(frozen=True)
class Archive:
    """One downloaded file of a layout.

    Args:
        name: the file name as downloaded.
        kind: ``tar`` (any compression), ``zip`` or ``file`` (copied as is).
        into: folder inside the destination it is unpacked or copied to.
        md5: the published MD5, ``None`` where none is published.
        url: where it is officially downloaded from (for messages and the README).
    """

    name: str
    kind: str
    into: str = ""
    md5: str | None = None
    url: str = ""


CUB_URL = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"
CARS_URL = "https://ai.stanford.edu/~jkrause/car196/"
SOP_URL = "https://cvgl.stanford.edu/projects/lifted_struct/"
INSHOP_URL = "https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html"

LAYOUTS: dict[str, dict[str, tuple[Archive, ...]]] = {
    "cub200": {
        "caltech": (
            Archive(
                "CUB_200_2011.tgz",
                "tar",
                md5="97eceeb196236b17998738112f37df78",
                url=CUB_URL,
            ),
        ),
    },
    "cars196": {
        "original": (
            Archive(
                "car_ims.tgz",
                "tar",
                md5="d5c8f0aa497503f355e17dc7886c3f14",
                url=CARS_URL,
            ),
            Archive(
                "cars_annos.mat",
                "file",
                md5="b407c6086d669747186bd1d764ff9dbc",
                url=CARS_URL,
            ),
        ),
        "devkit": (
            Archive(
                "car_devkit.tgz",
                "tar",
                md5="c3b158d763b6e2245038c8ad08e45376",
                url="https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz",
            ),
            Archive(
                "cars_train.tgz",
                "tar",
                md5="065e5b463ae28d29e77c1b4b166cfe61",
                url=CARS_URL,
            ),
            Archive(
                "cars_test.tgz",
                "tar",
                md5="4ce7ebf6a94d07f1952d94dd34c4d501",
                url=CARS_URL,
            ),
            Archive(
                "cars_test_annos_withlabels.mat",
                "file",
                md5="b0a2b23655a3edd16d84508592a98d10",
                url=CARS_URL,
            ),
        ),
    },
    "sop": {
        "cvgl": (
            Archive(
                "Stanford_Online_Products.zip",
                "zip",
                md5="7f73d41a2f44250d4779881525aea32e",
                url=SOP_URL,
            ),
        ),
    },
    "inshop": {
        "deepfashion": (
            Archive("img.zip", "zip", url=INSHOP_URL),
            Archive("list_eval_partition.txt", "file", into="Eval", url=INSHOP_URL),
            Archive("list_bbox_inshop.txt", "file", into="Anno", url=INSHOP_URL),
        ),
    },
}
"""dataset -> layout -> the files a user downloads. MD5s are the ones published
with the archives (and used by torchvision and pytorch-metric-learning); In-Shop
publishes none."""


def md5sum(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _safe_member(dataset: str, archive: Path, name: str) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts or parts[0] == "/" or ".." in parts or ":" in parts[0]:
        raise ValueError(
            f"{dataset}: {archive} holds an unsafe path {name!r}; refusing to unpack"
        )


def _unpack_tar(dataset: str, archive: Path, dest: Path) -> None:
    """Unpack a tar (any compression), then read the compressed stream to its end:
    ``tarfile`` stops at the end-of-archive blocks (or, silently, at a header
    garbled by corruption), before the gzip/bz2/xz trailer whose CRC covers the
    whole stream, so without this a bit-flipped archive unpacks "successfully"."""
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            _safe_member(dataset, archive, member.name)
        tar.extractall(dest, filter="data")
        while tar.fileobj.read(1 << 20):  # raises on a CRC or length mismatch
            pass


def _unpack_zip(dataset: str, archive: Path, dest: Path) -> None:
    """Unpack a zip; every member is read to its end, so its CRC-32 is checked
    (``zipfile`` raises ``BadZipFile`` on a mismatch)."""
    with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
            _safe_member(dataset, archive, name)
        z.extractall(dest)


def _copy_file(dataset: str, archive: Path, dest: Path) -> None:
    del dataset
    shutil.copy2(archive, dest / archive.name)


UNPACK_ERRORS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    EOFError,
    OSError,  # gzip.BadGzipFile (CRC), bz2
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,  # zip: a garbled compression method
    RuntimeError,  # zip: a garbled flag asking for a password
)
"""What a corrupt, truncated or bit-flipped archive raises while unpacking."""

UNPACK: dict[str, Callable[[str, Path, Path], None]] = {
    "tar": _unpack_tar,
    "zip": _unpack_zip,
    "file": _copy_file,
}


SEARCH_DEPTH = 2
"""Folder levels searched below a folder given: the In-Shop download as
distributed keeps its files in ``Img/``, ``Eval/`` and ``Anno/``, possibly inside
its ``In-shop Clothes Retrieval Benchmark/`` folder."""


def _files(sources: Sequence[str | Path]) -> dict[str, list[Path]]:
    """Basename -> paths of every file given, or found in a folder given or in
    its sub-folders (:data:`SEARCH_DEPTH` levels), shallowest first."""
    out: dict[str, list[Path]] = {}
    for src in map(Path, sources):
        level = [src]
        for _ in range(SEARCH_DEPTH + 2):  # the sources, then each level below
            folders = []
            for path in level:
                if path.is_file():
                    out.setdefault(path.name, []).append(path)
                elif path.is_dir():
                    folders.append(path)
            level = [p for folder in folders for p in sorted(folder.iterdir())]
    return out


def find_layout(
    dataset: str, sources: Sequence[str | Path]
) -> tuple[str, list[tuple[Archive, Path]]]:
    """The layout whose files are all among ``sources`` (files or folders).

    Raises:
        ValueError: unknown dataset, or no complete layout (lists each layout's
            files and what is missing).
    """
    if dataset not in LAYOUTS:
        raise ValueError(
            f"extract: no archives known for dataset {dataset!r}; "
            f"valid: {', '.join(LAYOUTS)}"
        )
    files = _files(sources)
    for layout, archives in LAYOUTS[dataset].items():
        if all(a.name in files for a in archives):
            for a in archives:
                if len(set(files[a.name])) > 1:
                    raise ValueError(
                        f"{dataset}: {a.name} found {len(files[a.name])} times: "
                        f"{', '.join(map(str, files[a.name]))}; pass only one"
                    )
            return layout, [(a, files[a.name][0]) for a in archives]
    expected = "; ".join(
        f"{layout}: {' + '.join(a.name for a in archives)}"
        for layout, archives in LAYOUTS[dataset].items()
    )
    where = ", ".join(str(s) for s in sources) or "(nothing given)"
    raise ValueError(
        f"{dataset}: no complete set of archives in {where}; expected {expected}"
    )


def _signature(found: list[tuple[Archive, Path]]) -> list[dict]:
    return [
        {"name": a.name, "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
        for a, p in found
    ]


def is_extracted(dest: Path, found: list[tuple[Archive, Path]]) -> bool:
    """Whether ``dest`` holds a complete extraction of exactly these files."""
    try:
        marker = json.loads((Path(dest) / MARKER).read_text())
    except (OSError, ValueError):
        return False
    sig = [{k: a[k] for k in ("name", "size", "mtime_ns")} for a in marker["archives"]]
    return sig == _signature(found)


def _md5_check(archive: Archive, overrides: Mapping[str, str | None]) -> str:
    """How ``archive``'s MD5 was checked: ``published``, ``given`` (an override),
    ``skipped`` (override ``None``) or ``none published``."""
    if archive.name in overrides:
        return "skipped" if overrides[archive.name] is None else "given"
    return "published" if archive.md5 else "none published"


def md5_checks(dest: str | Path) -> dict[str, str]:
    """Archive name -> how its MD5 was checked (``_md5_check``), from the marker
    of the extraction in ``dest`` (empty when there is none)."""
    try:
        marker = json.loads((Path(dest) / MARKER).read_text())
        return {a["name"]: a.get("md5_check", "unknown") for a in marker["archives"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def extract_archives(
    dataset: str,
    sources: Sequence[str | Path],
    dest: str | Path,
    *,
    checksums: Mapping[str, str | None] | None = None,
) -> Path:
    """Verify and unpack a dataset's downloaded archives into ``dest``.

    Args:
        dataset: ``cub200``, ``cars196``, ``sop`` or ``inshop``.
        sources: the downloaded files, or folders holding them.
        dest: the folder to fill (e.g. ``data/01_raw/cub200``); replaced as a
            whole when the archives changed; a non-empty folder without the
            marker (not written here) is never replaced.
        checksums: file name -> MD5 overriding the published ones (``None`` for a
            file skips its check), e.g. for a re-packed copy.

    Returns:
        ``dest``.

    Raises:
        ValueError: no complete layout among ``sources``, an MD5 mismatch, an
            archive that cannot be unpacked (corrupt, truncated; the gzip, bz2,
            xz and zip CRCs are checked even without an MD5) or holds unsafe
            member paths, or a foreign ``dest``.
    """
    dest = Path(dest)
    layout, found = find_layout(dataset, sources)
    if is_extracted(dest, found):
        return dest
    if dest.exists() and any(dest.iterdir()) and not (dest / MARKER).is_file():
        raise ValueError(
            f"{dataset}: {dest} exists and was not written by extract (no {MARKER}); "
            "refusing to replace it (move it away or pass another destination)"
        )
    overrides = dict(checksums or {})
    record = []
    for archive, path in found:
        want = overrides.get(archive.name, archive.md5)
        got = md5sum(path)
        if want is not None and got != want:
            raise ValueError(
                f"{dataset}: {path} has MD5 {got}, expected {want} (the published "
                f"checksum); download it again from {archive.url or 'its source'}"
                f" (a re-packed copy: {NO_CHECKSUM_HINT.format(dataset=dataset)})"
            )
        record.append(
            {
                **_signature([(archive, path)])[0],
                "md5": got,
                "md5_check": _md5_check(archive, overrides),
            }
        )
    tmp = staging_dir(dest)
    try:
        for archive, path in found:
            into = tmp / archive.into
            into.mkdir(parents=True, exist_ok=True)
            try:
                UNPACK[archive.kind](dataset, path, into)
            except UNPACK_ERRORS as e:
                why = " ".join(f"{type(e).__name__}: {e}".split())
                raise ValueError(f"{dataset}: cannot unpack {path}: {why}") from None
        marker = {"dataset": dataset, "layout": layout, "archives": record}
        (tmp / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
        publish(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def no_checksums(dataset: str) -> dict[str, None]:
    """``checksums`` that skip the MD5 check of every file of ``dataset``."""
    return {a.name: None for archives in LAYOUTS[dataset].values() for a in archives}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dml_pipelines.core.data.extract <dataset> <file or folder>...``"""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m dml_pipelines.core.data.extract",
        description="Verify and unpack a dataset's downloaded archives.",
    )
    parser.add_argument("dataset", choices=sorted(LAYOUTS))
    parser.add_argument("sources", nargs="+", help="downloaded files or folders")
    parser.add_argument("--dest", help="DEFAULT data/01_raw/<dataset>")
    parser.add_argument(
        "--no-checksum",
        action="store_true",
        help="skip the MD5 checks (a re-packed copy)",
    )
    args = parser.parse_args(argv)
    dest = Path(args.dest or f"data/01_raw/{args.dataset}")
    skip = no_checksums(args.dataset) if args.no_checksum else None
    try:
        extract_archives(args.dataset, args.sources, dest, checksums=skip)
    except (ValueError, FileNotFoundError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    print(f"{args.dataset}: archives unpacked into {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
