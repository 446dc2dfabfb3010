"""kedro-viz in a real browser: `kedro viz build` writes the static site, a local
server serves it on 127.0.0.1, headless Chromium renders it, and the rendered DOM
must hold the pipelines' nodes and datasets (not just an HTTP 200). The view it
opens on without URL parameters is the expanded lineage, with no tour
(`dml_pipelines/viz.py`); `kedro viz run` stopped by SIGTERM leaves no process."""

import html
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dml_pipelines.viz import preferences_script

ENV = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"}
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1600,1000",
    "--virtual-time-budget=30000",
)
_LABEL = re.compile(r'<text class="pipeline-node__text"[^>]*>([^<]*)</text>')
_ZOOM = re.compile(
    r'<g id="zoom-wrapper" class="pipeline-zoom-wrapper[^"]*"[^>]*'
    r'transform="[^"]*scale\(([0-9.]+)\)"'
)


def _chromium() -> str:
    """The Debian ``chromium`` binary; installed with apt-get when missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip("chromium is not installed and apt-get (as root) is unavailable")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(
                f"chromium cannot be installed ({' '.join(cmd)} failed: "
                f"{proc.stderr.strip().splitlines()[-1:]})"
            )
    return shutil.which("chromium")


def _free_port() -> int:
    """A free port below 49152: `kedro viz run` refuses the ephemeral range
    (ports above 49151) that binding to port 0 may hand out."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 49000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 49000")


@pytest.fixture
def site(project):
    """The built site served on 127.0.0.1; yields its base URL."""
    proc = subprocess.run(
        [sys.executable, "-m", "kedro", "viz", "build"],
        cwd=project,
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    build = project / "build"
    assert (build / "api/pipelines/report").exists()
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=build,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def _render(browser: str, url: str, profile: Path) -> str:
    """The DOM after a fresh profile (a first visit) has rendered ``url``."""
    proc = subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _labels(dom: str) -> list[str]:
    return [html.unescape(t) for t in _LABEL.findall(dom)]


def _rendered_labels(browser: str, url: str, profile: Path) -> list[str]:
    return _labels(_render(browser, url, profile))


#: one method's lineage, ingestion to clustering (node names)
LINEAGE = {
    "ingest_dataset",
    "prepare_images",
    "build_augmentation",
    "train_method",
    "extract_embeddings",
    "evaluate_retrieval",
    "cluster_embeddings",
}


@pytest.mark.slow
def test_lineage_renders_in_headless_chromium(site, tmp_path):
    browser = _chromium()
    report = _rendered_labels(
        browser, site + "?pid=report&expandAllPipelines=true", tmp_path / "p1"
    )
    assert {
        "collect_runs",
        "build_paper_tables",
        "build_combined_table",
        "plot_retrieval_sheets",
        "plot_projection",
        "report.paper_results",
        "report.paper_tables_md",
        "report.combined",
        "report.retrieval_sheets",
        "image_cache",
    } <= set(report), report
    method = _rendered_labels(
        browser,
        site + "?pid=contrastive_c1&expandAllPipelines=true",
        tmp_path / "p2",
    )
    assert LINEAGE | {
        "report_metrics",
        "contrastive_c1.metrics",
        "contrastive_c1.protocol_card",
        "contrastive_c1.augmentation",
    } <= set(method), method
    # the view it opens on (no URL parameters, first visit): every grid
    # method's lineage expanded into the report, no tour
    dom = _render(browser, site, tmp_path / "p3")
    default = _labels(dom)
    assert LINEAGE | {
        "await_runs",
        "collect_runs",
        "build_combined_table",
        "xbn.augmentation",
        "pfml.metrics",
        "report.combined",
    } <= set(default), default
    assert "feature-hints" not in dom
    # fitted to the window: about 0.20 (top down); left to right gave 0.14
    (zoom,) = _ZOOM.findall(dom)
    assert float(zoom) >= 0.15, zoom


def _session_processes(sid: int) -> list[int]:
    """Processes of session ``sid`` still alive (zombies excluded)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_kedro_viz_run_serves_the_view_and_stops_without_leftovers(project):
    port = _free_port()
    log = project / "viz_run.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kedro", "viz", "run", "--no-browser"]
        + ["--port", str(port)],
        cwd=project,
        env=ENV,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        page = None
        for _ in range(300):
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/", timeout=2
                ) as r:
                    page = r.read().decode()
                break
            except OSError:
                assert proc.poll() is None, log.read_text()[-3000:]
                time.sleep(1)
        assert page is not None and preferences_script() in page
        assert len(_session_processes(proc.pid)) >= 2  # kedro-viz's server process
        proc.send_signal(signal.SIGTERM)  # as a supervisor or `kill` stops it
        proc.wait(timeout=30)
        for _ in range(30):
            left = _session_processes(proc.pid)
            if not left:
                break
            time.sleep(0.5)
        assert not left, f"processes left after kedro viz run stopped: {left}"
    finally:
        for pid in _session_processes(proc.pid):
            os.kill(pid, signal.SIGKILL)
