"""Import the official TensorFlow ``framework`` package of GSP or CCP from a
checkout, in float64, without running its package ``__init__`` files.

The checkout is never modified: ``framework/`` is copied into a temporary
directory and the copy is patched there (float32 -> float64 in dtype
arguments, explicit dtypes for the few ``tf.ones`` / ``tf.eye`` calls that
default to float32). Only tools/official/make_fixtures.py uses this module; it
runs in the separate TensorFlow virtualenv (tools/official/setup_env.sh).
"""

from __future__ import annotations

import importlib
import re
import shutil
import sys
import tempfile
import types
from pathlib import Path

#: packages whose ``__init__`` pulls in datasets, metrics and models we do not
#: need (and, through them, cv2): imported as bare namespace packages
SKIP_INIT = ("solvers", "datasets", "metrics", "models")

#: (regex, replacement) applied to every .py file of the copy: float64 compute
FLOAT64_PATCHES = (
    (r"tf\.float32", "tf.float64"),
    (
        r"tf\.ones\(shape=\(tf\.shape\(features\)\[0\],\)\)",
        "tf.ones(shape=(tf.shape(features)[0],), dtype=tf.float64)",
    ),
    (
        r"tf\.eye\(num_samples, batch_shape=\[1\]\)",
        "tf.eye(num_samples, batch_shape=[1], dtype=tf.float64)",
    ),
    (
        r"tf\.linalg\.diag\(tf\.ones\(\[num_data\]\)\)",
        "tf.linalg.diag(tf.ones([num_data], dtype=tf.float64))",
    ),
    (
        r"tf\.eye\(tf\.shape\(ref_labels\)\[0\]\)",
        "tf.eye(tf.shape(ref_labels)[0], dtype=tf.float64)",
    ),
    (r"tf\.eye\(num_classes\)", "tf.eye(num_classes, dtype=tf.float64)"),
    (r"tf\.ones\(shape=power_shape\)", "tf.ones(shape=power_shape, dtype=tf.float64)"),
    # GSP's zero attributes while the memory fills
    (
        r"tf\.zeros\(shape=\(tf\.shape\(x_emb\)\[0\], self\._support_size\)\)",
        "tf.zeros(shape=(tf.shape(x_emb)[0], self._support_size), dtype=tf.float64)",
    ),
    # CCP's λ schedule: the λ = 0 branch of its tf.cond
    (r"false_fn=lambda: 0\.0\)", "false_fn=lambda: tf.constant(0.0, tf.float64))"),
)


def _stub_cv2() -> None:
    if "cv2" not in sys.modules:
        sys.modules["cv2"] = types.ModuleType("cv2")


def stage(framework_parent: Path, float64: bool = True) -> Path:
    """Copy ``framework_parent/framework`` into a fresh temp dir, patch the
    copy, and return the temp dir (to put on ``sys.path``)."""
    tmp = Path(tempfile.mkdtemp(prefix="official_framework_"))
    shutil.copytree(framework_parent / "framework", tmp / "framework")
    if float64:
        for py in (tmp / "framework").rglob("*.py"):
            text = py.read_text()
            for pattern, repl in FLOAT64_PATCHES:
                text = re.sub(pattern, repl, text)
            py.write_text(text)
    return tmp


def import_framework(framework_parent: Path, float64: bool = True):
    """Import the staged ``framework`` (a fresh copy each call; a previous
    ``framework`` is removed from ``sys.modules`` first) and return it."""
    import tensorflow as tf

    if float64:
        tf.keras.backend.set_floatx("float64")
    for name in [
        m for m in sys.modules if m == "framework" or m.startswith("framework.")
    ]:
        del sys.modules[name]
    _stub_cv2()
    root = stage(framework_parent, float64)
    sys.path.insert(0, str(root))
    pkg = types.ModuleType("framework")
    pkg.__path__ = [str(root / "framework")]
    sys.modules["framework"] = pkg
    for sub in SKIP_INIT:
        mod = types.ModuleType(f"framework.{sub}")
        mod.__path__ = [str(root / "framework" / sub)]
        sys.modules[f"framework.{sub}"] = mod
        setattr(pkg, sub, mod)
    for sub in ("configs", "utilities", "layers", "losses"):
        setattr(pkg, sub, importlib.import_module(f"framework.{sub}"))
    tf.summary.histogram = lambda *a, **k: None  # logging only
    return pkg


#: the PyTorch modules' float32 constants (GSP's transport layer), as float64
TORCH_FLOAT64_PATCHES = ((r"dtype=torch\.float32", "dtype=torch.float64"),)


def _scatter_stub() -> types.ModuleType:
    """``torch_scatter`` (a compiled extension the Intra-Batch MPN imports):
    the three reductions it uses, in plain torch, with its broadcasting of a
    1-D ``index`` along ``dim``."""
    import torch

    def _index(src, index, dim):
        dim = dim % src.dim()
        shape = [1] * src.dim()
        shape[dim] = -1
        return index.view(shape).expand_as(src), dim

    def _out(src, dim, dim_size, fill):
        size = list(src.shape)
        size[dim] = dim_size
        return torch.full(size, fill, dtype=src.dtype, device=src.device)

    def scatter_add(src, index, dim=-1, dim_size=None):
        idx, dim = _index(src, index, dim)
        return _out(src, dim, dim_size, 0.0).scatter_add(dim, idx, src)

    def scatter_mean(src, index, dim=-1, dim_size=None):
        idx, dim = _index(src, index, dim)
        total = _out(src, dim, dim_size, 0.0).scatter_add(dim, idx, src)
        count = _out(src, dim, dim_size, 0.0).scatter_add(
            dim, idx, torch.ones_like(src)
        )
        return total / count.clamp_min(1.0)

    def scatter_max(src, index, dim=-1, dim_size=None):
        idx, dim = _index(src, index, dim)
        out = _out(src, dim, dim_size, float("-inf"))
        out = out.scatter_reduce(dim, idx, src, reduce="amax", include_self=True)
        out = torch.where(torch.isinf(out), torch.zeros_like(out), out)
        return out, None  # the argmax is not used by the MPN

    mod = types.ModuleType("torch_scatter")
    mod.scatter_add, mod.scatter_mean, mod.scatter_max = (
        scatter_add,
        scatter_mean,
        scatter_max,
    )
    return mod


def import_torch_package(parent: Path, package: str, module: str, float64: bool = True):
    """Copy ``parent/package`` into a temp dir (float64 patches applied to the
    copy), register ``package`` as a bare namespace (its ``__init__`` is not
    run) and import ``package.module`` from it."""
    tmp = Path(tempfile.mkdtemp(prefix="official_torch_"))
    shutil.copytree(parent / package, tmp / package)
    if float64:
        for py in (tmp / package).rglob("*.py"):
            text = py.read_text()
            for pattern, repl in TORCH_FLOAT64_PATCHES:
                text = re.sub(pattern, repl, text)
            py.write_text(text)
    sys.modules.setdefault("torch_scatter", _scatter_stub())
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]
    pkg = types.ModuleType(package)
    pkg.__path__ = [str(tmp / package)]
    sys.modules[package] = pkg
    return importlib.import_module(f"{package}.{module}")
