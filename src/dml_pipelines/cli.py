"""Project CLI: Kedro's ``run`` command, with bad input reported as one line.

Configuration and data errors raised by the project (unknown keys, invalid
values, missing roots or files, undecodable images, non-finite losses) are
printed as ``Error: <message>`` with exit code 1 instead of a traceback from
inside Kedro; the full traceback is still logged at DEBUG level. An unknown
pipeline name is one line listing the registered names. ``--pipeline=NAME``
(``-p``), which Kedro 1.7 deprecates, is taken as ``--pipelines=NAME`` without
the deprecation warning.
"""

import logging

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.io.core import DatasetError
from kedro.validation.exceptions import ParameterValidationError
from omegaconf.errors import InterpolationResolutionError

log = logging.getLogger(__name__)

USER_ERRORS = (
    ValueError,
    InterpolationResolutionError,
    KeyError,
    FileNotFoundError,
    FloatingPointError,
    ParameterValidationError,
)
_KEDRO_PREFIX = "Failed to instantiate "


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` without Kedro's validation preamble, one line per
    offending parameter (OmegaConf's interpolation context dropped)."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if type(exc).__module__.startswith("omegaconf"):
        # "ValueError raised while resolving interpolation: <ours>\n full_key..."
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return first.split("resolving interpolation: ", 1)[-1]
    lines = [ln.removeprefix("- ") for ln in str(exc).splitlines() if ln.strip()]
    if isinstance(exc, ParameterValidationError):
        lines = [ln for ln in lines if not ln.startswith("Parameter validation")]
        # "Parameter 'x': Failed to instantiate C for parameter 'x': <ours>" -> ours
        lines = [ln.split(": ", 2)[-1] if _KEDRO_PREFIX in ln else ln for ln in lines]
    return "\n".join(lines)


@click.group(name="dml_pipelines")
def cli() -> None:
    """dml_pipelines project commands."""


def unknown_pipelines(names: list[str]) -> tuple[list[str], list[str]]:
    """The ``names`` that are not registered, and the registered names."""
    from dml_pipelines.pipeline_registry import register_pipelines

    valid = sorted(register_pipelines())
    return [n for n in names if n not in valid], valid


def unknown_message(unknown: list[str], valid: list[str]) -> str:
    """One line: the unknown names (with the closest registered name, if any)
    and every registered name."""
    from difflib import get_close_matches

    parts = []
    for name in unknown:
        close = get_close_matches(name, valid, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"unknown pipeline {', '.join(parts)}; valid: {', '.join(valid)}"


def missing_input(exc: BaseException) -> str | None:
    """One line for a catalog input whose file does not exist yet (a pipeline
    run before the one that writes its input), or ``None`` for other errors."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, FileNotFoundError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    name = str(exc).split(":", 1)[0].strip()
    path = getattr(cause, "filename", None) or "its file"
    return (
        f"{name}: {path} does not exist yet; produce it first: `dvc repro` (the "
        "whole grid), or the pipeline that writes it (`kedro run --pipelines=data "
        "--params dataset=<name>` for a dataset's cache and index, `kedro run "
        "--pipelines=<method> --params dataset=<name>` for a run's files)"
    )


def user_cause(exc: BaseException) -> str | None:
    """The one-line message of a project error under Kedro's ``DatasetError``
    (a truncated checkpoint or embeddings file, say), or ``None``."""
    cause = exc.__cause__ or exc.__context__
    while cause is not None and not isinstance(cause, ValueError):
        cause = cause.__cause__ or cause.__context__
    return one_line(cause) if cause is not None else None


def _run(*args, **kwargs):
    if kwargs.get("pipeline") and not kwargs.get("pipelines"):
        kwargs["pipelines"] = [
            n.strip() for n in kwargs.pop("pipeline").split(",") if n.strip()
        ]
        kwargs["pipeline"] = None
    try:
        return kedro_run.callback(*args, **kwargs)
    except DatasetError as exc:
        message = missing_input(exc) or user_cause(exc)
        if message is None:
            raise
        log.debug("full traceback", exc_info=True)
        raise click.ClickException(message) from None
    except USER_ERRORS as exc:
        log.debug("full traceback", exc_info=True)
        unknown, valid = (
            unknown_pipelines(kwargs["pipelines"])
            if kwargs.get("pipelines")
            else ([], [])
        )
        if unknown:
            raise click.ClickException(unknown_message(unknown, valid)) from None
        raise click.ClickException(one_line(exc)) from None


cli.add_command(
    click.Command(
        name="run",
        callback=_run,
        params=kedro_run.params,
        help=kedro_run.help,
        short_help=kedro_run.short_help,
        context_settings=kedro_run.context_settings,
    )
)
