"""The project's kedro-viz settings (`dml_pipelines/viz.py`), without a browser:
only `kedro viz ...` processes are changed, and kedro-viz's page folder is
replaced by a copy whose index.html writes the starting view."""

import json
import re

from kedro_viz.api import apps
from kedro_viz.integrations.deployment import base_deployer

from dml_pipelines.viz import PREFERENCES, install, preferences_script, with_preferences


def test_the_script_seeds_the_preferences_first_in_head_once():
    page = "<html><head><title>x</title></head><body></body></html>"
    out = with_preferences(page)
    assert out.startswith("<html><head>\n<script>") and with_preferences(out) == out
    prefs = json.loads(re.search(r"d=(\{.*?\}),s=", preferences_script())[1])
    assert prefs == PREFERENCES
    assert prefs["expandAllPipelines"] is True and prefs["showFeatureHints"] is False


def test_only_kedro_viz_processes_are_changed(tmp_path, monkeypatch):
    original = apps._HTML_DIR
    monkeypatch.setattr(apps, "_HTML_DIR", original)
    monkeypatch.setattr(base_deployer, "_HTML_DIR", base_deployer._HTML_DIR)
    assert not install(["kedro", "run"], tmp_path)
    assert apps._HTML_DIR == original and not (tmp_path / ".viz").exists()
    assert install(["kedro", "viz", "build"], tmp_path)
    page = tmp_path / ".viz/html"
    assert apps._HTML_DIR == page and base_deployer._HTML_DIR == page
    assert preferences_script() in (page / "index.html").read_text()
    assets = page / "assets"
    assert assets.is_symlink() and assets.resolve() == (original / "assets").resolve()
    before = (page / "index.html").stat().st_mtime_ns
    assert install(["kedro", "viz", "run"], tmp_path)  # a second process: kept
    assert (page / "index.html").stat().st_mtime_ns == before
