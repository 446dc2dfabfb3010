"""Shared fixtures of the evaluation tests: small synthetic embedding sets."""

from __future__ import annotations

import numpy as np
import pytest

# Worked example (docs/protocols.md#retrieval-metrics): seven 2-D unit vectors (angles
# in degrees) and labels A/B/C.
WORKED_ANGLES = [0, 11, 52, 28, 107, 66, 205]
WORKED_LABELS = [0, 0, 0, 1, 1, 1, 2]


def clustered(
    n: int, classes: int, dim: int, *, noise: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) float32 points around ``classes`` Gaussian centres, unit-normalised,
    with random class sizes (some classes may have a single member)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    centres = rng.standard_normal((classes, dim))
    x = centres[labels] + noise * rng.standard_normal((n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels.astype(np.int64)


@pytest.fixture
def worked_example() -> tuple[np.ndarray, np.ndarray]:
    """The worked-example fixture as (7, 2) float32 unit vectors and (7,) labels."""
    a = np.deg2rad(np.asarray(WORKED_ANGLES, dtype=np.float64))
    x = np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)
    return x, np.asarray(WORKED_LABELS, dtype=np.int64)


@pytest.fixture
def make_clustered():
    """The ``clustered(n, classes, dim, noise=, seed=)`` factory."""
    return clustered
