"""What identifies a run (docs/protocols.md, "What identifies a run"): the
resolved config without the settings that cannot change a result, its one hash,
and the keys in which two resolved configs differ."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from dml_pipelines.core.layers import flatten

#: settings of a method block that cannot change a result (how fast, how
#: verbose): left out of a run's identity, so changing them neither discards a
#: checkpoint nor relabels a result (docs/protocols.md, "What identifies a run")
NON_IDENTITY_KEYS = ("training.num_threads", "training.num_workers")


def run_identity(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved config (``model_dump(mode="json")``) without ``NON_IDENTITY_KEYS``
    and without ``recipes`` (the applied recipe's values are in the block and its
    name in ``recipe``; the other datasets' recipes do not change this run)."""
    out = {
        k: dict(v) if isinstance(v, dict) else v
        for k, v in config.items()
        if k != "recipes"
    }
    for key in NON_IDENTITY_KEYS:
        block, _, leaf = key.partition(".")
        if isinstance(out.get(block), dict):
            out[block].pop(leaf, None)
    return out


def config_hash(config: dict[str, Any], *extra: str, length: int = 12) -> str:
    """The one hash of a resolved config's identity (``run_identity``), with
    ``extra`` strings (data fingerprint, code digest) appended: sha256, hex."""
    text = json.dumps(run_identity(config), sort_keys=True, default=str)
    return hashlib.sha256("|".join((text, *extra)).encode()).hexdigest()[:length]


def identity_differences(
    trained: dict[str, Any], current: dict[str, Any], limit: int = 3
) -> list[str]:
    """Dotted keys whose values differ between two resolved configs' identities,
    as ``key: <current> now, <trained> trained`` (at most ``limit``, then a count)."""
    a, b = flatten(run_identity(trained)), flatten(run_identity(current))
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    out = [f"{k}: {b.get(k)!r} now, {a.get(k)!r} trained" for k in keys[:limit]]
    return out + ([f"+{len(keys) - limit} more"] if len(keys) > limit else [])
