"""``python -m dml_pipelines.train [kedro run options]``: the training entry
point ``torchrun`` launches, on one machine or several (``docs/distributed.md``)::

    torchrun --standalone --nproc-per-node=2 -m dml_pipelines.train \\
        --pipelines=contrastive_c1 --params dataset=digits
    torchrun --nnodes=2 --nproc-per-node=8 --rdzv-backend=c10d \\
        --rdzv-endpoint=HOST:PORT -m dml_pipelines.train --pipelines=gsp

The options are those of ``kedro run`` (the project's ``run`` command: same
one-line errors). Rank 0 runs that Kedro run as ``kedro run`` would, and writes
everything; each training node it reaches trains in all of torchrun's
processes (``core/engine/launch.py``), the other ranks training only.
Without torchrun (or with one process) this is ``kedro run``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the Kedro run of ``argv`` on rank 0 and serve its training jobs on
    the other ranks; returns the exit code."""
    from dml_pipelines.core.engine import launch

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        joined = launch.start()
    except ValueError as exc:  # torchrun's environment or options
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    try:
        if joined is not None and not joined.is_main:
            launch.serve()
            return 0
        try:
            return _kedro_run(args)
        finally:
            launch.release()
    finally:
        launch.stop()


def _kedro_run(args: list[str]) -> int:
    """``kedro run <args>`` in this process (the project in the current
    directory); returns its exit code."""
    from pathlib import Path

    from kedro.framework.startup import bootstrap_project

    from dml_pipelines.cli import cli

    bootstrap_project(Path.cwd())
    try:
        cli.main(["run", *args], prog_name="dml_pipelines.train")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
