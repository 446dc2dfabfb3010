"""The DVC stage ``params_guard``: fail when a root ``params.yaml`` exists.

The project reads its parameters from ``conf/base/parameters*.yml``; no stage
reads a root ``params.yaml``. ``dvc exp run -S contrastive_c1.optimizer.lr=X``
(no file name) fails, and DVC's hint (``-S +key=value``) writes the key into a
new root ``params.yaml``: the experiment would then "succeed" without changing
anything. This stage runs on every ``dvc repro`` / ``dvc exp run`` and turns
that into one line naming the form that works
(``-S 'conf/base/parameters_<method>.yml:<key>=<value>'``). Plain Python and
PyYAML only: it costs a fraction of a second.

    python -m dml_pipelines.params_guard [project root]
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml


def _leaves(tree: object, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(tree, dict) and tree:
        out = []
        for key, value in tree.items():
            out += _leaves(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    return [(prefix, tree)]


def _owner(root: Path, key: str) -> str:
    """The parameters file that holds the top-level ``key``."""
    own = root / "conf/base" / f"parameters_{key}.yml"
    if own.exists():
        return own.relative_to(root).as_posix()
    for path in sorted((root / "conf/base").glob("parameters*.yml")):
        if key in (yaml.safe_load(path.read_text()) or {}):
            return path.relative_to(root).as_posix()
    return f"conf/base/parameters_{key}.yml"


def root_params_error(root: Path) -> str | None:
    """The one-line error for a root ``params.yaml`` in ``root``, else ``None``."""
    path = root / "params.yaml"
    if not path.exists():
        return None
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        tree = None
    leaves = [(k, v) for k, v in _leaves(tree) if k] if isinstance(tree, dict) else []
    if leaves:
        forms = " ".join(
            f"-S '{_owner(root, k.split('.')[0])}:{k}={v}'" for k, v in leaves[:3]
        )
    else:
        forms = "-S 'conf/base/parameters_<method>.yml:<method>.optimizer.lr=0.0005'"
    return (
        "params.yaml: this project reads no root params.yaml (no stage uses it, so "
        f"the experiment would change nothing); delete it and run: dvc exp run {forms}"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    error = root_params_error(Path(args[0]) if args else Path.cwd())
    if error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
