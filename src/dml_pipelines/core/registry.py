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


def value_problem(default: Any, value: Any, same_length: bool = True) -> str | None:
    """Why ``value`` cannot stand where ``default`` is the default: same kind
    (flag, finite number, string, or sequence of numbers, of the same length
    with ``same_length``); ``None`` when it can (or when the default, ``None``,
    says nothing)."""
    import math

    def number(v: Any) -> bool:
        return (
            isinstance(v, int | float)
            and not isinstance(v, bool)
            and math.isfinite(float(v))
        )

    if isinstance(default, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(default, int | float):
        return None if number(value) else "must be a finite number"
    if isinstance(default, tuple | list):
        ok = isinstance(value, tuple | list) and all(number(v) for v in value)
        if not same_length:
            return None if ok else "must be a list of numbers"
        ok = ok and len(value) == len(default)
        return None if ok else f"must be a list of {len(default)} numbers"
    if isinstance(default, str):
        return None if isinstance(value, str) else "must be a string"
    return None


def check_args(
    builder: Callable[..., Any],
    args: dict[str, Any],
    key: str,
    skip: tuple = (),
    *,
    require: bool = False,
) -> None:
    """Raise a one-line ``ValueError`` naming ``key`` if ``args`` holds a keyword
    that ``builder`` does not accept (``skip``: arguments the caller supplies), or
    a value of another kind than the keyword's default (``value_problem``:
    ``margin: abc`` where the default is a number); with ``require``, also a
    keyword without a default that ``args`` lacks (a scheduler swapped in without
    its own arguments)."""
    import inspect

    params = inspect.signature(builder).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(args) - set(params) - set(skip))
        if unknown:
            valid = ", ".join(n for n in params if n not in (*skip, "self"))
            raise ValueError(f"{key}: unknown argument(s) {unknown}; valid: {valid}")
    if require:
        kinds = (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        )
        missing = [
            n
            for n, p in params.items()
            if p.kind in kinds
            and p.default is inspect.Parameter.empty
            and n not in (*skip, "self")
            and n not in args
        ]
        if missing:
            raise ValueError(f"{key}: missing argument(s) {missing}")
    for name, value in args.items():
        param = params.get(name)
        if param is None or param.default is inspect.Parameter.empty:
            continue
        why = value_problem(param.default, value, same_length=False)
        if why:
            raise ValueError(f"{key}.{name}: {why} (got {value!r})")


def call_with_args(builder: Callable[..., Any], args: dict[str, Any], key: str) -> Any:
    """``builder(**args)`` after ``check_args`` (an unknown keyword is a one-line
    ``ValueError`` naming the config key, not a ``TypeError``)."""
    check_args(builder, args, key)
    return builder(**args)
