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

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


def call_with_args(builder: Callable[..., Any], args: dict[str, Any], key: str) -> Any:
    """Call ``builder(**args)``, turning an unexpected-keyword ``TypeError`` into a
    one-line ``ValueError`` naming the config key."""
    import inspect

    sig = inspect.signature(builder)
    accepts_kwargs = any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()
    )
    if not accepts_kwargs:
        unknown = sorted(set(args) - set(sig.parameters))
        if unknown:
            valid = ", ".join(n for n in sig.parameters if n != "self")
            raise ValueError(f"{key}: unknown argument(s) {unknown}; valid: {valid}")
    return builder(**args)
