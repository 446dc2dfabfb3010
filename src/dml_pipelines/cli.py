"""Project CLI: Kedro's ``run`` command, with bad input reported as one line.

Configuration and data errors raised by the project (unknown keys, invalid
values, missing roots or files, undecodable images, non-finite losses) are
printed as ``Error: <message>`` with exit code 1 instead of a traceback from
inside Kedro; the full traceback is still logged at DEBUG level.
"""

import logging

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.validation.exceptions import ParameterValidationError

log = logging.getLogger(__name__)

USER_ERRORS = (
    ValueError,
    KeyError,
    FileNotFoundError,
    FloatingPointError,
    ParameterValidationError,
)
_KEDRO_PREFIX = "Failed to instantiate "


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` without Kedro's validation preamble, one line per
    offending parameter."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    lines = [ln.removeprefix("- ") for ln in str(exc).splitlines() if ln.strip()]
    if isinstance(exc, ParameterValidationError):
        lines = [ln for ln in lines if not ln.startswith("Parameter validation")]
        # "Parameter 'x': Failed to instantiate C for parameter 'x': <ours>" -> ours
        lines = [ln.split(": ", 2)[-1] if _KEDRO_PREFIX in ln else ln for ln in lines]
    return "\n".join(lines)


@click.group(name="dml_pipelines")
def cli() -> None:
    """dml_pipelines project commands."""


def _run(*args, **kwargs):
    try:
        return kedro_run.callback(*args, **kwargs)
    except USER_ERRORS as exc:
        log.debug("full traceback", exc_info=True)
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
