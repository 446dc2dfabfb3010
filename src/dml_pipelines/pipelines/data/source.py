"""The ``source@<dataset>`` DVC stage: unpack new archives, fingerprint the data root.

``python -m dml_pipelines.pipelines.data.source <dataset> <out.json>`` resolves the
run's parameters exactly as ``kedro run --params dataset=<dataset>`` does
(``conf/base`` + ``conf/local``), then:

1. if ``data/00_archives/<dataset>/`` holds the dataset's downloaded archives
   (directly or in sub-folders, such as In-Shop's ``Img/``, ``Eval/``, ``Anno/``),
   unpacks them into ``data/01_raw/<dataset>/`` (verified, atomic, skipped when
   already unpacked; ``dml_pipelines.core.data.extract``). The published MD5s
   are checked unless that folder holds a file named ``no-checksum`` (a re-packed
   copy; ``--no-checksum`` on the command line does the same); the archives'
   own CRCs are checked either way;
2. writes ``<out.json>``: the dataset's resolved block (root, options, checks) and
   a fingerprint of the root's files (paths, sizes, mtimes).

DVC runs this stage on every ``dvc repro`` (``always_changed``); the data stage
depends on the JSON file, so it re-runs exactly when the resolved block or the
files under the root changed, and a second ``dvc repro`` rebuilds nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ARCHIVES = "data/00_archives"
NO_CHECKSUM = "no-checksum"
"""A file of this name in ``data/00_archives/<dataset>/`` skips the MD5 checks."""
RAW = "data/01_raw"
SCORING_KEYS = ("recall_at",)
"""Keys of a dataset block that do not change the prepared data."""


def resolved_block(dataset: str, project: Path) -> dict[str, Any]:
    """``datasets.<dataset>`` after ``conf/local`` is merged, validated, without
    the keys that only change scoring (:data:`SCORING_KEYS`).

    Uses the project's config loader and settings (what ``kedro run`` uses) without
    creating a session, so no pipeline is imported.
    """
    from kedro.framework.project import settings
    from kedro.framework.startup import bootstrap_project

    from dml_pipelines.params import DatasetTable

    bootstrap_project(project)
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(project / settings.CONF_SOURCE),
        runtime_params={"dataset": dataset},
        **settings.CONFIG_LOADER_ARGS,
    )
    params = loader["parameters"]
    entry = DatasetTable.model_validate(params.get("datasets", {})).entry(dataset)
    return entry.model_dump(mode="json", exclude=set(SCORING_KEYS))


def source_record(
    dataset: str, project: Path, *, no_checksum: bool = False
) -> dict[str, Any]:
    """Unpack any new archives, then the record written for DVC.

    ``no_checksum`` (or a ``no-checksum`` file among the archives) skips the MD5
    checks of the archives; the record's ``archives`` says, per archive, how its
    MD5 was checked (``published``, ``skipped``, ``none published``)."""
    from dml_pipelines.core.data.extract import (
        LAYOUTS,
        extract_archives,
        md5_checks,
        no_checksums,
    )
    from dml_pipelines.core.data.fingerprint import source_fingerprint

    archives = project / ARCHIVES / dataset
    unchecked = no_checksum or (archives / NO_CHECKSUM).is_file()
    extracted = None
    if dataset in LAYOUTS and archives.is_dir() and any(archives.iterdir()):
        dest = extract_archives(
            dataset,
            [archives],
            project / RAW / dataset,
            checksums=no_checksums(dataset) if unchecked else None,
        )
        extracted = md5_checks(dest)
    block = resolved_block(dataset, project)
    root = Path(block["root"])
    if not root.is_absolute():
        root = project / root
    if not root.exists():
        raise FileNotFoundError(
            f"data root {block['root']} for dataset {dataset!r} does not exist "
            f"(set datasets.{dataset}.root in conf/local/parameters.yml)"
        )
    record = {
        "dataset": dataset,
        "block": block,
        "fingerprint": source_fingerprint(root),
    }
    if extracted is not None:
        record["archives"] = extracted
    return record


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    no_checksum = "--no-checksum" in args
    args = [a for a in args if a != "--no-checksum"]
    if len(args) != 2:
        print(
            "usage: python -m dml_pipelines.pipelines.data.source <dataset> "
            "<out.json> [--no-checksum]",
            file=sys.stderr,
        )
        return 2
    dataset, out = args
    try:
        record = source_record(dataset, Path.cwd(), no_checksum=no_checksum)
    except (ValueError, KeyError, FileNotFoundError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
