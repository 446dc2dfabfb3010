"""Loss registry. A loss builder is called as
``builder(embedding_size=D, num_classes=C, **args)`` and returns a module whose
``forward(embeddings (B, D), labels (B,)) -> scalar``. Proxy losses own their
proxies as parameters; the engine puts them in their own optimiser group."""

from __future__ import annotations

import importlib

from dml_pipelines.core.registry import Registry

LOSSES: Registry = Registry("loss")


def loss_modules() -> list[str]:
    """Stems of the modules of ``core/losses`` (discovered, not listed)."""
    import pkgutil

    return sorted(
        m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")
    )


def load_all() -> Registry:
    """Import every loss module (each registers itself) and return the registry."""
    for mod in loss_modules():
        importlib.import_module(f"{__name__}.{mod}")
    return LOSSES
