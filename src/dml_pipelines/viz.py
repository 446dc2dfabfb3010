"""kedro-viz settings of the project: the view ``kedro viz`` opens on, and no
server process left behind.

kedro-viz opens on ``__default__`` with every namespace (one per method)
collapsed into a box and a first-visit tour over the canvas, so the lineage
ingestion → augmentation → training → embedding → evaluation → clustering →
report shows only after clicks. Here its page starts from :data:`PREFERENCES`
(a visitor's own saved settings still win): every namespace expanded and no
tour. kedro-viz fits the graph to the window: the expanded ``__default__`` (every
grid method, about 180 nodes and datasets) draws at about 0.20 of full size in a
1600 × 1000 window (0.25 at 1920 × 1080; kedro-viz's collapsed view: 0.21; left
to right instead of top down: 0.14). URL parameters
(``?pid=contrastive_c1&expandAllPipelines=true``: one method's lineage, larger)
still select other views.

kedro-viz's commands are global Kedro plugin commands, which a project's
``cli.py`` cannot replace, and ``kedro viz run`` serves from a separate process
(multiprocessing ``spawn``) that outlived a parent stopped by a signal. So
``settings.py`` calls :func:`install` in every process of a ``kedro viz ...``
command (a spawned process carries its parent's ``sys.argv``): it points
kedro-viz's page folder (``kedro viz run`` and ``kedro viz build``) at a copy
whose ``index.html`` carries the preferences, and a server process exits when its
parent is gone. Any other command is untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

#: kedro-viz settings the page starts from (keys of its saved ``KedroViz`` state)
PREFERENCES = {"expandAllPipelines": True, "showFeatureHints": False}
#: the copy of kedro-viz's page folder (``.viz/`` is git-ignored)
HTML_COPY = Path(".viz") / "html"


def preferences_script() -> str:
    """A ``<script>`` that writes :data:`PREFERENCES` into kedro-viz's saved
    state before the app reads it, keeping any setting already saved."""
    prefs = json.dumps(PREFERENCES, sort_keys=True)
    return (
        "<script>(function(){try{var k='KedroViz',d=" + prefs + ","
        "s=JSON.parse(window.localStorage.getItem(k)||'{}');"
        "for(var x in d){if(!(x in s)){s[x]=d[x];}}"
        "window.localStorage.setItem(k,JSON.stringify(s));}catch(e){}})();</script>"
    )


def with_preferences(html: str) -> str:
    """kedro-viz's ``index.html`` with :func:`preferences_script` first in
    ``<head>`` (idempotent)."""
    script = preferences_script()
    if script in html:
        return html
    if "<head>" not in html:
        raise ValueError("kedro-viz index.html has no <head>; cannot set the view")
    return html.replace("<head>", "<head>\n" + script, 1)


def page_copy(source: Path, target: Path) -> Path:
    """``target``: the page folder ``source`` with the preferences in its
    ``index.html``; every other entry links to ``source``'s. Rebuilt only when
    it differs (several processes of one command call this)."""
    index = with_preferences((source / "index.html").read_text(encoding="utf-8"))
    entries = sorted(e.name for e in source.iterdir())
    current = (
        target.is_dir()
        and sorted(e.name for e in target.iterdir()) == entries
        and (target / "index.html").read_text(encoding="utf-8") == index
    )
    if current:
        return target
    staging = target.with_name(f"{target.name}.{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in entries:
        if name != "index.html":
            (staging / name).symlink_to((source / name).resolve())
    (staging / "index.html").write_text(index, encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    try:
        staging.rename(target)
    except OSError:  # another process of the command made it first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _exit_with_parent(parent: int, period: float = 0.5) -> None:
    """Stop this process (SIGTERM to itself: uvicorn shuts down cleanly) once
    the process that spawned it has gone."""
    while os.getppid() == parent:
        time.sleep(period)
    os.kill(os.getpid(), signal.SIGTERM)


def install(argv: Sequence[str] | None = None, project: Path | None = None) -> bool:
    """In a process of ``kedro viz ...``: serve and build kedro-viz's page with
    :data:`PREFERENCES`, and in a spawned server process exit with the parent.

    Returns:
        Whether this is such a process (nothing is done otherwise).
    """
    import multiprocessing

    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] != "viz":
        return False
    from kedro_viz.api import apps
    from kedro_viz.integrations.deployment import base_deployer

    source = Path(base_deployer.__file__).parents[2] / "html"
    page = page_copy(source, (project or Path.cwd()) / HTML_COPY)
    apps._HTML_DIR = page
    base_deployer._HTML_DIR = page
    if multiprocessing.parent_process() is not None:
        watch = threading.Thread(
            target=_exit_with_parent, args=(os.getppid(),), daemon=True
        )
        watch.start()
    return True
