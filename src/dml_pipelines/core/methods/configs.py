"""Torch-free registry of method config models.

Every module ``core/methods/<name>_config.py`` registers the pydantic model of its
method with ``register_config(<name>)``; ``method_configs()`` imports them all
(discovered by file name, no list to keep in sync) and returns ``name -> model``.
Kedro's wiring reads this registry without importing torch; a test may register
a method of its own (config here, builder in ``methods.registry.METHODS``).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from dml_pipelines.core.registry import Registry

METHOD_CONFIGS: Registry = Registry("method")

CONFIG_SUFFIX = "_config"


def register_config(name: str) -> Callable[[Any], Any]:
    """Class decorator: register a ``MethodConfig`` subclass as method ``name``."""
    return METHOD_CONFIGS.register(name)


def package_modules(config: bool) -> list[str]:
    """Stems of the modules of ``core/methods`` that are (``config=True``) or are
    not config modules (``*_config.py``); private modules are skipped."""
    import dml_pipelines.core.methods as pkg

    return sorted(
        m.name
        for m in pkgutil.iter_modules(pkg.__path__)
        if m.name.endswith(CONFIG_SUFFIX) == config and not m.name.startswith("_")
    )


def config_modules() -> list[str]:
    """Stems of the ``*_config.py`` modules of ``core/methods``."""
    return package_modules(config=True)


def method_configs() -> dict[str, Any]:
    """Import every ``*_config`` module (each registers itself); ``name -> model``."""
    for mod in config_modules():
        importlib.import_module(f"dml_pipelines.core.methods.{mod}")
    return {name: METHOD_CONFIGS.get(name) for name in METHOD_CONFIGS.names()}


def config_for(name: Any) -> Any:
    """The config model of method ``name``; ``KeyError`` listing the valid ones."""
    method_configs()
    return METHOD_CONFIGS.get(name, key="method")
