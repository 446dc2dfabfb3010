"""The trained model's record (``model_state``, written by
``core/engine/fit.py``) checked against the current run: the config it was
trained with (``trained_config``) and its data (``check_trained_data``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dml_pipelines.core.config import MethodConfig


def trained_config(state: Mapping[str, Any], cfg: MethodConfig) -> MethodConfig:
    """The resolved config ``state`` (a ``model_state``) was trained with, once
    checked to be the current run's: evaluation, the card and the report read
    it, so a result is never labelled with parameters that did not make it.

    Raises:
        ValueError: the state holds no config, or the current resolved config
            differs from it in a key of the run's identity (one line naming the
            first keys, both values, and the command that re-trains).
    """
    from dml_pipelines.core.engine import launch
    from dml_pipelines.core.identity import identity_differences
    from dml_pipelines.core.methods.configs import parse_method_config

    if launch.current() is not None:  # torchrun trained it on the world's ranks
        cfg = launch.with_world(cfg, launch.current().world_size)
    trained = state.get("config")
    if not isinstance(trained, dict):
        raise ValueError(
            f"{cfg.method}: the model state holds no resolved config; re-train: "
            f"kedro run --pipelines={cfg.method}"
        )
    diff = identity_differences(trained, cfg.model_dump(mode="json"))
    if diff:
        raise ValueError(
            f"{cfg.method}: the parameters differ from those the model was "
            f"trained with ({'; '.join(diff)}); re-train (kedro run "
            f"--pipelines={cfg.method} with the same --params, no --tags) or "
            "restore the parameters"
        )
    return parse_method_config(trained)


def check_trained_data(
    state: Mapping[str, Any],
    dataset: str,
    root: str | None,
    fingerprint: str | None = None,
) -> None:
    """Refuse to score or describe a model with data other than it was trained
    on: another ``datasets.<name>.root``, or (given the current training data's
    ``fingerprint``, ``data_fingerprint``) other training files.

    Raises:
        ValueError: one line naming the key or fingerprint, both values, and the
            fix.
    """
    trained_root = state.get("data_root")
    if trained_root is not None and root is not None and trained_root != root:
        raise ValueError(
            f"datasets.{dataset}.root: {root} now, but the model and its "
            f"embeddings were made from {trained_root}; re-run the run "
            f"(kedro run --pipelines=<method> --params dataset={dataset}) "
            "or restore the root"
        )
    trained = state.get("data_fingerprint")
    if fingerprint and trained and fingerprint != trained:
        raise ValueError(
            f"dataset {dataset}: its training files changed since the model was "
            f"trained (data fingerprint {fingerprint} now, {trained} trained); "
            "re-run the run to train and score on the current files"
        )
