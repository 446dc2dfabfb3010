"""Embedding normalisations (docs/protocols.md#what-is-ranked): one registry that
the method config (``normalization: <name>``), the embedder and the evaluation
read. Each normalisation declares its own code, on a (B, D) tensor (training and
embedding) and on an (N, D) array (evaluation).

Torch-free at import (the config validates names without torch); the tensor code
imports torch when it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator

from dml_pipelines.core.registry import Registry


@dataclass(frozen=True)
class Normalization:
    """One normalisation.

    Attributes:
        tensor: (B, D) tensor -> (B, D) tensor.
        floor: on arrays, each row is divided by max(‖v‖, floor); ``None``
            leaves the rows as they are.
        unit_norm: the rows come out of unit length (kNN may rank by inner
            product; the bf16 backend applies).
    """

    tensor: Callable[[Any], Any]
    floor: float | None
    unit_norm: bool

    def array(self, x: np.ndarray, *, inplace: bool = False) -> np.ndarray:
        """(N, D) -> (N, D) float32; ``inplace`` divides ``x`` itself when it is
        a float32 array (for fresh copies: saves one N×D array)."""
        inplace = inplace and isinstance(x, np.ndarray) and x.dtype == np.float32
        x = np.asarray(x, dtype=np.float32)
        if self.floor is None:
            return x
        # row norms without an N×D temporary
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
        return np.divide(x, np.maximum(norms, self.floor), out=x if inplace else None)


def _unit(x: Any) -> Any:
    from torch.nn.functional import normalize

    return normalize(x, dim=1)


def _clip(x: Any) -> Any:
    from dml_pipelines.core.ops import clip_to_ball

    return clip_to_ball(x)


NORMALIZATIONS: Registry[Normalization] = Registry("normalization")
#: v / ‖v‖
NORMALIZATIONS.register("l2")(
    Normalization(_unit, np.finfo(np.float32).tiny, unit_norm=True)
)
#: v / max(1, ‖v‖): the projection onto the unit ball (GSP's and CCP's N(v))
NORMALIZATIONS.register("lipschitz")(Normalization(_clip, 1.0, unit_norm=False))
#: the embedding as it is
NORMALIZATIONS.register("none")(Normalization(lambda x: x, None, unit_norm=False))


def check_name(name: str) -> str:
    """``name`` when the registry holds it; else a ``ValueError`` listing the
    valid names."""
    if name not in NORMALIZATIONS:
        raise ValueError(f"must be one of {', '.join(NORMALIZATIONS.names())}")
    return name


#: a config field naming a normalisation of the registry
NormalizationName = Annotated[str, AfterValidator(check_name)]


def get_normalization(name: str) -> Normalization:
    """The normalisation ``name``; a one-line ``ValueError`` naming the key
    ``normalization`` and the valid names otherwise."""
    try:
        return NORMALIZATIONS.get(check_name(name))
    except ValueError as exc:
        raise ValueError(f"normalization: {name!r} {exc}") from None
