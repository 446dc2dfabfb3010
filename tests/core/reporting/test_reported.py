"""The papers' tables in the project's config (``conf/base/paper_results.yml``):
the numbers as converted from the papers' nested tables, a lossless round trip
through ``flatten_spec``, tables without numbers kept as not available, and
one-line errors."""

import copy
import functools
import hashlib
import itertools
import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from dml_pipelines.core.reporting.reported import (
    ID_KEYS,
    RECORD_KEYS,
    ROW_KEYS,
    flatten_spec,
    metrics_key,
    reported_frame,
)

ROOT = Path(__file__).resolve().parents[3]
CONF = ROOT / "conf/base/paper_results.yml"
#: SHA-256 of the config's ``rows`` (canonical JSON) when they were converted
#: from the papers' nested tables; a changed number, key or order changes it
ROWS_SHA256 = "fd55ff949e3ca03c6967031c4744092398643a375cdc37906098515ef834ef5c"


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def _parsed(path: Path):
    return yaml.load(path.read_text(), Loader=_LOADER)


def _conf():
    return copy.deepcopy(_parsed(CONF))


def _nested(conf):
    """The config's records folded back into the nested form ``flatten_spec``
    reads: paper -> table -> one row per table row, one column per metric."""
    nested = {
        paper: {table: [] for table in block["tables"]}
        for paper, block in conf["papers"].items()
    }
    row_of = [*ID_KEYS[:-1], "source", "confidence", "note"]
    for key, records in itertools.groupby(
        conf["rows"], key=lambda r: tuple(r[k] for k in row_of)
    ):
        ident = dict(zip(row_of, key, strict=True))
        row = {k: ident[k] for k in ROW_KEYS if ident[k] is not None}
        for record in records:
            row[record["metric"]] = record["value"]
            if record["std"] is not None:
                row[f"{record['metric']}_std"] = record["std"]
        nested[ident["paper"]][ident["table"]].append(row)
    return nested


def test_config_holds_the_converted_numbers():
    rows = _conf()["rows"]
    canonical = json.dumps(rows, sort_keys=True, separators=(",", ":"))
    assert hashlib.sha256(canonical.encode()).hexdigest() == ROWS_SHA256, (
        "conf/base/paper_results.yml rows changed: check every number against "
        "the papers' tables, then update ROWS_SHA256"
    )
    assert len(rows) == 650
    assert Counter(r["paper"] for r in rows) == {
        "ccp": 350,
        "pfml": 183,
        "mlrc": 48,
        "xbm": 36,
        "intra_batch": 25,
        "rdml": 8,
    }


def test_config_round_trips_through_flatten_spec():
    conf = _conf()
    flat = flatten_spec(_nested(conf))
    assert flat["rows"] == conf["rows"]
    tables = {
        (p, t): block["available"]
        for p, v in conf["papers"].items()
        for t, block in v["tables"].items()
    }
    assert tables == {(t["paper"], t["table"]): t["available"] for t in flat["tables"]}


def test_not_available_tables_stay_marked_and_hold_no_rows():
    conf = _conf()
    empty = {
        (p, t)
        for p, v in conf["papers"].items()
        for t, block in v["tables"].items()
        if not block["available"]
    }
    assert {
        ("gsp", "main_results"),
        ("adaptive_xbn", "main_results"),
        ("intra_batch", "paper_table1_baselines"),
    } <= empty
    frame = reported_frame(conf, "paper_results.yml")
    assert not {(r.paper, r.table) for r in frame.itertuples()} & empty
    assert list(frame.columns[: len(RECORD_KEYS)]) == list(RECORD_KEYS)
    pfml = frame[
        (frame.method == "PFML")
        & (frame.table == "resnet50_512")
        & (frame.dataset == "cub200")
        & (frame.metric == "R@1")
    ]
    assert pfml[["value", "std", "dim"]].values.tolist() == [[73.4, 0.3, 512]]


def test_flatten_keeps_std_and_setting():
    spec = {
        "p": {
            "t": [
                {
                    "method": "M",
                    "pipeline": "m",
                    "dataset": "sop",
                    "backbone": "resnet50",
                    "dim": 512,
                    "protocol": "conventional",
                    "setting": "alpha=1",
                    "R@1": 80.0,
                    "R@1_std": 0.2,
                    "NMI": 90.1,
                    "source": "s",
                    "confidence": "confirmed",
                }
            ],
            "empty": [],
        }
    }
    flat = flatten_spec(spec)
    assert [(r["metric"], r["value"], r["std"]) for r in flat["rows"]] == [
        ("R@1", 80.0, 0.2),
        ("NMI", 90.1, None),
    ]
    assert flat["rows"][0]["setting"] == "alpha=1"
    assert flat["tables"][1] == {"paper": "p", "table": "empty", "available": False}


def test_metric_keys():
    assert metrics_key("R@1000") == "recall@1000"
    assert metrics_key("MAP@R") == "map@r" and metrics_key("RP") == "r_precision"
    assert metrics_key("train_steps_k") is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.pop("dim"), r"^f.yml: rows\[0\]: missing keys \['dim'\]"),
        (lambda r: r.update(protocol="mlrc"), r"^f.yml: rows\[0\].protocol: 'mlrc'"),
        (
            lambda r: r.update(table="nope"),
            r"^f.yml: rows\[0\]: unknown table pfml/nope",
        ),
        (lambda r: r.update(value="70"), r"^f.yml: rows\[0\].value: not a number"),
        (
            lambda r: r.update(paper="gsp", table="main_results"),
            r"^f.yml: rows\[0\]: table gsp/main_results is marked not available",
        ),
    ],
)
def test_bad_records_are_one_line_errors_naming_file_and_key(edit, message):
    conf = _conf()
    row = next(r for r in conf["rows"] if r["paper"] == "pfml")
    edit(row)
    conf["rows"] = [row]
    with pytest.raises(ValueError, match=message) as err:
        reported_frame(conf, "f.yml")
    assert "\n" not in str(err.value)
