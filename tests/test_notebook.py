"""notebooks/explore_results.ipynb executes on the embedded default dataset
(glyphs, one tiny real run) with nbclient; any cell error fails the test."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.test_end_to_end import sh

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks/explore_results.ipynb"


@pytest.mark.slow
def test_explore_results_notebook_executes(project):
    budget = (
        "contrastive_c1.training.epochs=1,contrastive_c1.sampler.batches_per_epoch=2"
    )
    sh(
        [sys.executable, "-m", "kedro", "run", "--pipelines=contrastive_c1"]
        + ["--params", budget],
        project,
    )
    (project / "notebooks").mkdir()
    target = project / "notebooks" / NOTEBOOK.name
    shutil.copy(NOTEBOOK, target)
    nb = nbformat.read(target, as_version=4)
    NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(target.parent)}},
    ).execute()  # raises CellExecutionError on any error
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    tables = [
        o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})
    ]
    assert any("contrastive_c1" in t and "recall@1" in t for t in tables)
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the retrieval example and the projection
    # notebooks/README.md's example reads this run's files as written there
    readme = (ROOT / "notebooks/README.md").read_text()
    example = re.search(r"```python\n(.*?)```", readme, re.S)[1]
    proc = subprocess.run(
        [sys.executable, "-c", example], cwd=project, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.fullmatch(r"Recall@1 0\.\d{3}\n", proc.stdout), proc.stdout
