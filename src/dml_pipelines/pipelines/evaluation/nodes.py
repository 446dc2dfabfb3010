"""Evaluation nodes: pure functions of the embeddings artifact."""

from typing import Any

import pandas as pd

from dml_pipelines.core.config import MethodConfig
from dml_pipelines.core.evaluation.options import EvaluationOptions
from dml_pipelines.params import DataParams, DatasetTable, RunParams
from dml_pipelines.pipelines.typing import resolve


def _options(evaluation: EvaluationOptions, **extra: Any) -> dict[str, Any]:
    return {**evaluation.model_dump(), **extra}


def evaluate_retrieval(
    test_embeddings: Any,
    data: DataParams,
    datasets: DatasetTable,
    evaluation: EvaluationOptions,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Retrieval metrics (Recall@K, P@1, R-Precision, MAP@R) and per-class table.

    Args:
        test_embeddings: the embeddings artifact.
        data: the run's dataset.
        datasets: every dataset's block (the run's K list).
        evaluation: the ``evaluation`` block (retrieval options).

    Returns:
        The metrics dict and the per-class breakdown.
    """
    from dml_pipelines.core.evaluation.report import evaluate_set

    opts = _options(evaluation, clustering=False)
    return evaluate_set(
        test_embeddings,
        recall_at=tuple(datasets.entry(data.name).recall_at),
        per_class=True,
        **opts,
    )


def evaluate_untrained(
    untrained_embeddings: Any,
    data: DataParams,
    datasets: DatasetTable,
    evaluation: EvaluationOptions,
) -> dict[str, Any]:
    """Retrieval metrics of the untrained network (the baseline to beat).

    Args:
        untrained_embeddings: the untrained network's embeddings artifact.
        data: the run's dataset.
        datasets: every dataset's block (the run's K list).
        evaluation: the ``evaluation`` block (retrieval options).

    Returns:
        The metrics dict.
    """
    from dml_pipelines.core.evaluation.report import evaluate_set

    opts = _options(evaluation, clustering=False)
    return evaluate_set(
        untrained_embeddings,
        recall_at=tuple(datasets.entry(data.name).recall_at),
        **opts,
    )


def cluster_embeddings(
    test_embeddings: Any, evaluation: EvaluationOptions
) -> dict[str, Any]:
    """k-means clustering metrics (NMI, AMI, pairwise F1).

    Args:
        test_embeddings: the embeddings artifact.
        evaluation: the ``evaluation`` block (clustering options).

    Returns:
        The clustering metrics dict.
    """
    from dml_pipelines.core.evaluation.report import cluster_set

    return cluster_set(test_embeddings, **evaluation.model_dump())


def _trained(
    model_state: dict[str, Any],
    params: MethodConfig,
    data: DataParams,
    datasets: DatasetTable | None,
    run: RunParams,
) -> MethodConfig:
    """The config the model was trained with, once checked to be the current
    run's (parameters; with ``datasets``, the data root)."""
    from dml_pipelines.core.engine.model_state import check_trained_data, trained_config

    cfg = trained_config(model_state, resolve(params, data, run))
    root = datasets.entry(data.name).root if datasets is not None else None
    check_trained_data(model_state, data.name, root)
    return cfg


def report_metrics(
    retrieval_metrics: dict[str, Any],
    clustering_metrics: dict[str, Any],
    untrained_metrics: dict[str, Any],
    model_state: dict[str, Any],
    params: MethodConfig,
    data: DataParams,
    run: RunParams,
) -> dict[str, Any]:
    """The metrics file of one run (docs/protocols.md keys), for DVC.

    Args:
        retrieval_metrics: output of ``evaluate_retrieval``.
        clustering_metrics: output of ``cluster_embeddings``.
        untrained_metrics: output of ``evaluate_untrained``.
        model_state: the trained state; its resolved config names the recipe
            and checkpoint selection.
        params: the method block (must resolve to the config trained with).
        data: the run's dataset.
        run: the run axes (seed, fold).

    Returns:
        The merged metrics dict.

    Raises:
        ValueError: the current parameters differ from those the model was
            trained with (one line; re-train or restore them).
    """
    from dml_pipelines.core.evaluation.report import metrics_record

    cfg = _trained(model_state, params, data, None, run)
    t = cfg.training
    return {
        **metrics_record(
            retrieval_metrics,
            clustering_metrics,
            untrained_metrics,
            dataset=data.name,
            method=cfg.method,
            recipe=cfg.recipe,
            checkpoint_selection=t.checkpoint_selection,
        ),
        "selection_metric": None
        if t.checkpoint_selection == "last"
        else f"{t.validation_metric} ({t.selection_mode})",
        "seed": run.seed,
        "fold": run.fold,
    }


def write_protocol_card(
    model_state: dict[str, Any],
    image_cache: dict[str, Any],
    params: MethodConfig,
    data: DataParams,
    datasets: DatasetTable,
    run: RunParams,
) -> dict[str, Any]:
    """The run's protocol card: backbone, BN, pooling, image preparation,
    augmentation, embedding dim, batch composition, selection split, budget,
    and what identifies the run (config hash, code digest, data fingerprint,
    library versions), all read from the trained state.

    Args:
        model_state: the trained state (resolved config, device, wall time, code
            version and digest, libraries, the training data's fingerprint and
            root, ``cache``: the cache trained on, the method's summary).
        image_cache: the dataset's cache manifest (its resize and bbox use),
            used only for a state written before ``cache`` was recorded.
        params: the method block (must resolve to the config trained with).
        data: the run's dataset.
        datasets: every dataset's block (the data root must be the trained one).
        run: the run axes (seed, fold).

    Returns:
        The protocol card.

    Raises:
        ValueError: the current parameters, data root or dataset files differ
            from those the model was trained with (one line).
    """
    from dml_pipelines.core.identity import config_hash
    from dml_pipelines.params import protocol_card

    cfg = _trained(model_state, params, data, datasets, run)
    config = cfg.model_dump(mode="json")
    return {
        "dataset": data.name,
        "method": cfg.method,
        "recipe": cfg.recipe,
        "fold": run.fold,
        "data_root": model_state.get("data_root", datasets.entry(data.name).root),
        "class_split": datasets.entry(data.name).options.get("class_split"),
        "label_noise": cfg.training.label_noise,
        "params_hash": config_hash(config),
        "device": model_state.get("device"),
        "git_commit": model_state.get("git_commit"),
        "code_digest": model_state.get("code_digest"),
        "libraries": model_state.get("libraries"),
        "wall_time_s": model_state.get("wall_time_s"),
        "epochs_trained": model_state.get("epoch"),
        "selected_epoch": model_state.get("selected_epoch"),
        "method_summary": model_state.get("method_summary") or {},
        "config": config,
        "data_fingerprint": model_state.get("data_fingerprint"),
        **protocol_card(cfg, model_state.get("cache") or image_cache),
    }


def aggregate_seeds(seed_metrics: dict[str, Any], metrics: dict[str, Any]) -> dict:
    """Mean ± sample std of every metric over the seeds of this run's folder.

    Args:
        seed_metrics: the ``metrics.json`` files of every seed (partitions);
            fold runs are left out.
        metrics: this run's metrics (so the node runs after them).

    Returns:
        ``{runs, n_runs, metrics: {name: {mean, std, n, values}}}``.
    """
    from dml_pipelines.core.evaluation.aggregate import (
        aggregate_runs,
        load_all,
        select_partitions,
    )

    runs = load_all(select_partitions(seed_metrics, r"^(seed\d+)/metrics$"))
    return aggregate_runs(runs or {"this run": metrics})


def evaluate_mlrc(
    fold_embeddings: dict[str, Any],
    data: DataParams,
    datasets: DatasetTable,
    evaluation: EvaluationOptions,
) -> dict[str, Any]:
    """MLRC: the fold models of one seed, separated (mean over folds) and
    concatenated (the L2-normalised fold embeddings side by side).

    Args:
        fold_embeddings: the fold models' embeddings artifacts (partitions).
        data: the run's dataset.
        datasets: every dataset's block (the run's K list).
        evaluation: the ``evaluation`` block (retrieval options).

    Returns:
        ``{"mlrc_separated": {...}, "mlrc_concatenated": {...}, "folds": [...]}``.
    """
    from dml_pipelines.core.evaluation.aggregate import load_all, select_partitions
    from dml_pipelines.core.evaluation.protocols import evaluate_mlrc as mlrc

    sets = load_all(select_partitions(fold_embeddings, r"^(fold\d+)/test_embeddings$"))
    if not sets:
        raise ValueError(
            "evaluate_mlrc: no fold embeddings under this seed; train the folds "
            "first (kedro run --pipelines=<method> --params run.fold=F, F = 0..3)"
        )
    opts = _options(evaluation, clustering=False)
    out = mlrc(
        list(sets.values()),
        recall_at=tuple(datasets.entry(data.name).recall_at),
        **opts,
    )
    return {**out, "folds": list(sets)}
