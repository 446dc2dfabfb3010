"""The experiment grid ``conf/grid.yaml``: loading and checking it.

DVC reads the grid's lists itself (``vars`` of ``dvc.yaml``), so a misspelt name
used to surface as a bare ``[Errno 2] No such file or directory`` on a path built
from it. The ``grid`` stage runs ``python -m dml_pipelines.grid`` before every
stage that expands the lists; a bad grid fails there with one line naming the
file, the key and the valid names. Torch-free (method configs only).
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

GRID = Path("conf") / "grid.yaml"
#: the parameters files whose ``datasets`` blocks name the known datasets
PARAMETERS = (Path("conf/base/parameters.yml"), Path("conf/local/parameters.yml"))
#: written by the ``grid`` stage once the grid is valid (constant content, so a
#: change of the grid alone re-runs no stage through this file)
CHECKED = Path("data/02_intermediate/grid_checked.json")
LISTS = (
    "embedded_datasets",
    "external_datasets",
    "datasets",
    "methods",
    "seeds",
    "mlrc_methods",
)


def read_yaml(path: Path, name: str | None = None) -> Any:
    """Parse ``path``; a missing file or a YAML error is one line naming the
    file (as ``name``, default the path) and the line of the error."""
    import yaml

    name = name or str(path)
    if not path.is_file():
        raise ValueError(f"{name}: no such file")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"{name}{where}: invalid YAML ({problem})") from None


def _unknown(source: str, key: str, bad: Any, valid: Iterable[str], what: str) -> str:
    valid = sorted(valid)
    close = difflib.get_close_matches(str(bad), valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{source}: {key}: {bad!r} is not {what}{hint}; valid: {', '.join(valid)}"


def check_grid(
    grid: Any,
    source: str,
    *,
    datasets: Iterable[str],
    methods: Iterable[str],
) -> dict[str, list]:
    """Check the grid's keys and names; return its lists.

    Args:
        grid: the parsed grid file.
        source: the file's name (in the messages).
        datasets: the dataset names with a ``datasets.<name>`` block.
        methods: the registered method names.

    Raises:
        ValueError: an unknown key, a list that is not a list, an unknown dataset
            or method, a seed that is not a non-negative integer, or ``datasets``
            other than ``embedded_datasets + external_datasets`` (one line).
    """
    if not isinstance(grid, Mapping):
        raise ValueError(f"{source}: expected a mapping of {', '.join(LISTS)}")
    for key in grid:
        if key not in LISTS:
            raise ValueError(_unknown(source, "key", key, LISTS, "a grid key"))
    out: dict[str, list] = {}
    for key in LISTS:
        value = grid.get(key, [])
        if not isinstance(value, list):
            raise ValueError(f"{source}: {key}: expected a list, got {value!r}")
        out[key] = value
    datasets, methods = set(datasets), set(methods)
    for key in ("embedded_datasets", "external_datasets", "datasets"):
        for i, name in enumerate(out[key]):
            if name not in datasets:
                raise ValueError(
                    _unknown(source, f"{key}[{i}]", name, datasets, "a dataset")
                )
    for key in ("methods", "mlrc_methods"):
        for i, name in enumerate(out[key]):
            if name not in methods:
                raise ValueError(
                    _unknown(source, f"{key}[{i}]", name, methods, "a method")
                )
    for i, seed in enumerate(out["seeds"]):
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(
                f"{source}: seeds[{i}]: {seed!r} is not a non-negative integer"
            )
    both = out["embedded_datasets"] + out["external_datasets"]
    if out["datasets"] != both:
        raise ValueError(
            f"{source}: datasets: {out['datasets']} must equal embedded_datasets + "
            f"external_datasets ({both})"
        )
    return out


def known_datasets(project: Path) -> set[str]:
    """Names of the ``datasets.<name>`` blocks of the parameters files."""
    names: set[str] = set()
    for rel in PARAMETERS:
        path = project / rel
        if path.is_file():
            block = (read_yaml(path, str(rel)) or {}).get("datasets") or {}
            names |= set(block)
    return names


def load_grid(project: Path = Path(".")) -> dict[str, list]:
    """``conf/grid.yaml`` of ``project``, checked (:func:`check_grid`)."""
    from dml_pipelines.core.methods.configs import method_configs

    return check_grid(
        read_yaml(project / GRID, str(GRID)),
        str(GRID),
        datasets=known_datasets(project),
        methods=method_configs(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dml_pipelines.grid [<out.json>]``: check the grid of the
    working directory; write ``out.json`` (default :data:`CHECKED`) when valid."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = Path(args[0]) if args else CHECKED
    try:
        load_grid(Path.cwd())
    except ValueError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"grid": str(GRID), "valid": True}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
