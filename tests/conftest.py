import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")


@pytest.fixture
def project(tmp_path):
    """A scratch copy of the Kedro project (conf + pyproject; the package itself
    is installed), so runs write their data/ under tmp_path."""
    for name in ("conf", "pyproject.toml", ".telemetry", "dvc.yaml"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(
                src, tmp_path / name, ignore=shutil.ignore_patterns("local")
            )
        else:
            shutil.copy(src, tmp_path / name)
    (tmp_path / "conf" / "local").mkdir(exist_ok=True)
    (tmp_path / "src").mkdir()
    return tmp_path
