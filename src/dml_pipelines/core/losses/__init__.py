"""Loss registry. A loss builder is called as
``builder(embedding_size=D, num_classes=C, **args)`` and returns a module whose
``forward(embeddings (B, D), labels (B,)) -> scalar``. Proxy losses own their
proxies as parameters; the engine puts them in their own optimiser group."""

from __future__ import annotations

import importlib

from dml_pipelines.core.registry import Registry

LOSSES: Registry = Registry("loss")

LOSS_MODULES = (
    "contrastive_c1",
    "contrastive_c2",
    "triplet",
    "multi_similarity",
    "proxy_anchor",
    "proxy_nca_pp",
    "soft_triple",
)


def load_all() -> Registry:
    """Import every loss module (each registers itself) and return the registry."""
    for mod in LOSS_MODULES:
        importlib.import_module(f"{__name__}.{mod}")
    return LOSSES
