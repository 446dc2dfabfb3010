"""Torch-free registry of method config models.

Every module ``core/methods/<name>_config.py`` registers the pydantic model of its
method with ``register_config(<name>)``; ``method_configs()`` imports them all
(discovered by file name, no list to keep in sync) and returns ``name -> model``.
Kedro's wiring reads this registry without importing torch; a test may register
a method of its own (config here, builder in ``methods.registry.METHODS``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dml_pipelines.core.registry import Registry, import_modules

METHOD_CONFIGS: Registry = Registry("method")

CONFIG_SUFFIX = "_config"


def register_config(name: str) -> Callable[[Any], Any]:
    """Class decorator: register a ``MethodConfig`` subclass as method ``name``."""
    return METHOD_CONFIGS.register(name)


def is_config_module(stem: str) -> bool:
    """``*_config`` modules hold configs; every other module of the package
    except the template's own (``base``, ``configs``, ``registry``) a method."""
    return stem.endswith(CONFIG_SUFFIX)


def method_configs() -> dict[str, Any]:
    """Import every ``*_config`` module (each registers itself); ``name -> model``."""
    import_modules(__package__, is_config_module)
    return {name: METHOD_CONFIGS.get(name) for name in METHOD_CONFIGS.names()}


def config_for(name: Any) -> Any:
    """The config model of method ``name``; ``KeyError`` listing the valid ones."""
    method_configs()
    return METHOD_CONFIGS.get(name, key="method")


def parse_method_config(raw: dict[str, Any]) -> Any:
    """Validate a method block with the config model registered for its
    ``method`` (``core/methods/<name>_config.py``)."""
    name = raw.get("method") if isinstance(raw, dict) else None
    return config_for(name).model_validate(raw)
