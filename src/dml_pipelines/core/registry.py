"""A tiny name -> object registry (timm style) shared by every component family."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps registered names to builders; unknown names raise ``KeyError`` listing
    the valid ones.

    Args:
        kind: what the registry holds, used in error messages (e.g. ``"loss"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str, key: str | None = None) -> T:
        """Return the object registered as ``name``.

        Args:
            name: registered name.
            key: the config key the name came from, named in the error message.
        """
        try:
            return self._items[name]
        except KeyError:
            where = f"{key}: " if key else ""
            raise KeyError(
                f"{where}unknown {self.kind} {name!r}; valid: {', '.join(self.names())}"
            ) from None

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a test that registered a component of its own)."""
        self._items.pop(name, None)

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


def import_modules(package: str, keep: Callable[[str], bool] = bool) -> list[str]:
    """Import every public module of ``package`` whose stem passes ``keep`` (each
    registers its components on import); return the stems, sorted. The one
    discovery mechanism of the loss, method and method-config registries."""
    import importlib
    import pkgutil

    pkg = importlib.import_module(package)
    stems = sorted(
        m.name
        for m in pkgutil.iter_modules(pkg.__path__)
        if not m.name.startswith("_") and keep(m.name)
    )
    for stem in stems:
        importlib.import_module(f"{package}.{stem}")
    return stems


def check_args(
    builder: Callable[..., Any], args: dict[str, Any], key: str, skip: tuple = ()
) -> None:
    """Raise a one-line ``ValueError`` naming ``key`` if ``args`` holds a keyword
    that ``builder`` does not accept (``skip``: arguments the caller supplies)."""
    import inspect

    params = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(args) - set(params) - set(skip))
    if unknown:
        valid = ", ".join(n for n in params if n not in (*skip, "self"))
        raise ValueError(f"{key}: unknown argument(s) {unknown}; valid: {valid}")


def call_with_args(builder: Callable[..., Any], args: dict[str, Any], key: str) -> Any:
    """``builder(**args)`` after ``check_args`` (an unknown keyword is a one-line
    ``ValueError`` naming the config key, not a ``TypeError``)."""
    check_args(builder, args, key)
    return builder(**args)
