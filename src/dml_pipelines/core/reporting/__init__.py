"""Reports over finished runs (pandas/matplotlib, no Kedro): the runs table of a
dataset (metrics beside protocol cards), the papers' reported numbers as data,
protocol matching, reported-vs-reproduced and combined tables, seed statistics
and figures."""

from dml_pipelines.core.reporting.match import match_runs, run_command
from dml_pipelines.core.reporting.reported import flatten_spec, reported_frame
from dml_pipelines.core.reporting.runs import collect_runs
from dml_pipelines.core.reporting.stats import seed_stats
from dml_pipelines.core.reporting.tables import (
    combined_markdown,
    combined_table,
    paper_table_rows,
    paper_tables_markdown,
)

__all__ = [
    "collect_runs",
    "combined_markdown",
    "combined_table",
    "flatten_spec",
    "match_runs",
    "paper_table_rows",
    "paper_tables_markdown",
    "reported_frame",
    "run_command",
    "seed_stats",
]
