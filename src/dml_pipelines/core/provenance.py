"""What a run is made of besides its config (docs/protocols.md, "What identifies
a run"): a digest of the source files training imports, and the library
versions it ran with.

``training_sources`` walks the ``import`` statements (function-local ones too)
from the training entry point, ``core/engine/run.py``, and from every method
and loss module (the registries load those by discovery, not by an import
statement). ``code_digest`` hashes those files' paths and bytes: a change to a
loss re-trains instead of resuming the old model; a change to the report or a
docstring outside them does not.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from importlib import metadata
from pathlib import Path

PACKAGE = "dml_pipelines"
SRC = Path(__file__).resolve().parents[1]  # .../src/dml_pipelines

#: where the training code starts (package-relative); registry-discovered
#: folders are added whole
ENTRY = ("core/engine/run.py",)
DISCOVERED = ("core/methods", "core/losses")

#: distributions named on the protocol card and in runs.csv
LIBRARIES = (
    "torch",
    "torchvision",
    "faiss-cpu",
    "kedro",
    "dvc",
    "pytorch-metric-learning",
    "numpy",
)


def module_file(name: str, src: Path = SRC) -> Path | None:
    """The file of module ``dml_pipelines.<...>`` under ``src`` (a package's
    ``__init__.py``), or ``None`` outside the package / not a file."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    path = src.joinpath(*parts[1:])
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def package_imports(path: Path, src: Path = SRC) -> set[str]:
    """``dml_pipelines`` modules that ``path`` imports anywhere (function-local
    and relative imports included; ``from m import x`` counts ``m`` and ``m.x``)."""
    module = ".".join((PACKAGE, *path.relative_to(src).with_suffix("").parts))
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join(parent + ([base] if base else []))
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {n for n in names if n.startswith(PACKAGE)}


def import_closure(start: list[Path], src: Path = SRC) -> list[Path]:
    """Every package file reachable from ``start`` by imports, sorted."""
    todo, seen = list(start), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo += [f for n in package_imports(path, src) if (f := module_file(n, src))]
    return sorted(seen)


def training_sources(src: Path = SRC) -> list[Path]:
    """The source files training imports (see the module docstring)."""
    start = [src / p for p in ENTRY]
    for folder in DISCOVERED:
        start += sorted((src / folder).glob("*.py"))
    return import_closure(start, src)


@functools.cache
def _digest(src: Path) -> str:
    h = hashlib.sha256()
    for path in training_sources(src):
        h.update(str(path.relative_to(src)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def code_digest(src: Path = SRC) -> str:
    """sha256 (16 hex) over the relative paths and bytes of
    ``training_sources`` (computed once per process)."""
    return _digest(src)


def library_versions() -> dict[str, str | None]:
    """Installed versions of ``LIBRARIES`` (``None``: not installed), and CUDA /
    cuDNN when torch uses them."""
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    import torch

    if torch.cuda.is_available():
        out["cuda"] = torch.version.cuda
        out["cudnn"] = str(torch.backends.cudnn.version())
    return out
