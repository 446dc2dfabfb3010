"""Loss registry. A loss builder is called as
``builder(embedding_size=D, num_classes=C, **args)`` and returns a module whose
``forward(embeddings (B, D), labels (B,)) -> scalar``. Proxy losses own their
proxies as parameters; the engine puts them in their own optimiser group."""

from __future__ import annotations

from dml_pipelines.core.registry import Registry, import_modules

LOSSES: Registry = Registry("loss")


def load_all() -> Registry:
    """Import every loss module (each registers itself) and return the registry."""
    import_modules(__name__)
    return LOSSES
