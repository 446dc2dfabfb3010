"""Methods: a model, a criterion and callbacks, built by name
(``build_method(config, num_classes)``). Importing this package is torch-free
(the config registry ``configs`` is read by the Kedro wiring); ``build_method``
is imported lazily."""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "build_method":
        from dml_pipelines.core.methods.registry import build_method

        return build_method
    raise AttributeError(name)
