"""Loading the golden fixtures of ``tests/fixtures/official/`` (written by
``tools/official/make_fixtures.py`` from the authors' code; docs/methods/gsp.md,
"Golden fixtures") and comparing against them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official"
#: relative tolerance against the official float64 runs
RTOL = 1e-6


def load(name: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of one fixture file."""
    with np.load(FIXTURES / name) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(str(arrays.pop("meta"))), arrays


def case(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, torch.Tensor]:
    """The arrays ``prefix/<key>`` as float64 / int64 tensors keyed ``<key>``."""
    out = {}
    for k, v in arrays.items():
        if k.startswith(prefix + "/"):
            out[k[len(prefix) + 1 :]] = torch.from_numpy(np.array(v))
    return out


def rel_error(actual, expected) -> float:
    """max |actual − expected| / max |expected| (scale-relative)."""
    a = torch.as_tensor(actual, dtype=torch.float64).detach()
    e = torch.as_tensor(expected, dtype=torch.float64)
    return float((a - e).abs().max() / e.abs().max().clamp_min(1e-300))


def assert_matches(actual, expected, what: str, rtol: float = RTOL) -> None:
    err = rel_error(actual, expected)
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol:g}"
