"""Method registry: ``build_method(cfg, num_classes)`` gives the method module.

Method modules are discovered: every module of ``core/methods`` that is not a
config module (``*_config``), ``base``, ``configs`` or ``registry`` is imported
and registers its builder with ``@METHODS.register(<name>)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dml_pipelines.core.losses import load_all as load_losses
from dml_pipelines.core.methods.base import LossMethod, Method
from dml_pipelines.core.methods.configs import is_config_module, method_configs
from dml_pipelines.core.models.embedder import build_embedder
from dml_pipelines.core.registry import (
    Registry,
    call_with_args,
    import_modules,
)

if TYPE_CHECKING:
    from dml_pipelines.core.config import MethodConfig

METHODS: Registry = Registry("method")

#: modules of core/methods that hold no method
NOT_METHODS = ("base", "configs", "registry")


def build_loss(cfg: Any, num_classes: int) -> Any:
    """The loss named by ``cfg.loss`` for ``num_classes`` training classes."""
    builder = load_losses().get(cfg.loss.name, key="loss.name")
    args = {"embedding_size": cfg.embedding_dim, "num_classes": num_classes}
    return call_with_args(builder, {**args, **cfg.loss.args}, "loss.args")


def _build_baseline(cfg: Any, num_classes: int) -> Method:
    return LossMethod(build_embedder(cfg), build_loss(cfg, num_classes))


def is_method_module(stem: str) -> bool:
    """Modules of ``core/methods`` that hold a method."""
    return not is_config_module(stem) and stem not in NOT_METHODS


def load_all() -> Registry:
    """Import every method module (each registers itself) and register the
    baselines (every ``BaselineConfig`` entry of the config registry)."""
    from dml_pipelines.core.config import BaselineConfig

    import_modules(__package__, is_method_module)
    for name, model in method_configs().items():
        if issubclass(model, BaselineConfig) and name not in METHODS:
            METHODS.register(name)(_build_baseline)
    return METHODS


def build_method(cfg: MethodConfig, num_classes: int) -> Method:
    """Build the method named ``cfg.method`` for ``num_classes`` training classes."""
    return load_all().get(cfg.method, key="method")(cfg, num_classes)
