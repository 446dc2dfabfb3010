"""The precedence of a run's parameters (docs/protocols.md, "What identifies a
run"): for a method block,

    block as written in conf/base  <  the dataset's recipe  <  conf/local
    <  the command line (``--params``)

so an explicit ``--params intra_batch.training.epochs=2`` wins over the recipe
of ``dataset=cub200``. ``layer_block`` applies the layers and says which layer
set each key; ``unknown_runtime_keys`` finds command-line keys that match no
parameter. Torch-free, Kedro-free: the project's config loader calls it.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any

#: keys of a method block that choose the recipe rather than set a value
RECIPE_KEYS = ("recipe", "recipes")


@dataclass(frozen=True)
class Setting:
    """One resolved key of a method block that a layer above conf/base set."""

    key: str  # dotted, inside the block: ``training.epochs``
    value: Any
    source: str  # ``recipe cub200`` | ``conf/local`` | ``command line``
    base: Any  # the value in the block as written (``None`` when absent)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``override`` wins; neither input is modified."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def nest_dotted(params: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "a": {"c": 2}}`` -> ``{"a": {"b": 1, "c": 2}}``: dotted
    keys split into nested blocks as Kedro's ``--params`` does (values of the
    nested spelling and of the dotted one are merged; a dotted key wins where
    both set the same leaf)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            value = nest_dotted(value)
        for part in reversed(str(key).split(".")[1:]):
            value = {part: value}
        head = str(key).split(".")[0]
        if isinstance(value, dict) and isinstance(out.get(head), dict):
            out[head] = deep_merge(out[head], value)
        else:
            out[head] = value
    return out


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (an empty dict is a leaf)."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def is_method_block(name: str, value: Any) -> bool:
    """A top-level parameter block of a method or baseline: ``{method: name, ...}``."""
    return isinstance(value, dict) and value.get("method") == name


def chosen_recipe(name: str, block: dict[str, Any], dataset: str) -> str | None:
    """The recipe a run on ``dataset`` applies: ``auto`` -> the recipe named
    after the dataset if any, ``default`` -> none, any other name -> that one.

    Raises:
        ValueError: an unknown recipe name (one line naming ``<name>.recipe``).
    """
    recipe = block.get("recipe", "auto")
    recipes = block.get("recipes") or {}
    if recipe == "default":
        return None
    if recipe == "auto":
        return dataset if dataset in recipes else None
    if recipe not in recipes:
        valid = ", ".join(["auto", "default", *sorted(recipes)])
        raise ValueError(f"{name}.recipe: {recipe!r} is unknown; valid: {valid}")
    return recipe


def _body(block: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (block or {}).items() if k not in RECIPE_KEYS}


def layer_block(
    name: str,
    base: dict[str, Any],
    local: dict[str, Any] | None,
    cli: dict[str, Any] | None,
    dataset: str,
) -> tuple[dict[str, Any], list[Setting]]:
    """The method block ``name`` of a run on ``dataset``, layered.

    Args:
        name: the block's name (= its ``method``).
        base: the block as written in conf/base.
        local: its conf/local overrides (``None``: none).
        cli: its command-line overrides (``None``: none).
        dataset: the run's dataset (``auto`` picks the recipe of that name).

    Returns:
        The resolved block — with a recipe applied it names the recipe and empties
        its entry (``recipes.<name>: {}``: the values are in the block, so
        validating it again never re-applies the recipe over the layers above;
        the other recipes stay, for the report's commands) — and the settings
        that the recipe, conf/local and the command line made, in that order
        (later ones win).
    """
    # the recipe choice and the recipe table may themselves be overridden
    meta = deep_merge(deep_merge(base, local or {}), cli or {})
    recipe = chosen_recipe(name, meta, dataset)
    layers: list[tuple[str, dict[str, Any]]] = []
    if recipe is not None:
        layers.append((f"recipe {recipe}", meta["recipes"][recipe] or {}))
    layers += [("conf/local", _body(local)), ("command line", _body(cli))]
    out = _body(base)
    flat_base = flatten(out)
    settings: dict[str, Setting] = {}
    for source, over in layers:
        out = deep_merge(out, over)
        for key, value in flatten(over).items():
            settings[key] = Setting(key, value, source, flat_base.get(key))
    if recipe is None:
        out.update({k: meta[k] for k in RECIPE_KEYS if k in meta})
    else:
        out.update(recipe=recipe, recipes={**meta["recipes"], recipe: {}})
    return out, list(settings.values())


def unknown_runtime_keys(
    runtime: dict[str, Any], parameters: dict[str, Any], resolver_keys: set[str]
) -> list[str]:
    """One line per command-line key that matches nothing: neither a key that a
    ``${runtime_params:...}`` resolver reads (``dataset``, ``run.seed``) nor a
    top-level parameter block. Each line suggests the closest valid name."""
    known_top = sorted(set(parameters) | {k.split(".")[0] for k in resolver_keys})
    out = []
    for key in flatten(runtime):
        top = key.split(".")[0]
        if key in resolver_keys or top in parameters:
            continue
        close = get_close_matches(top, known_top, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        out.append(f"--params {key}: no parameter {top!r}{hint}")
    return out
