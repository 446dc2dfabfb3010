"""Build a run once: everything the ``Trainer`` needs, made from the resolved
config (docs/architecture.md "The assembly seam").

``build_run(cfg, data, ...)`` builds the method (seeded), the training loader,
the validation function, then ``assemble_run`` the config-driven parts: the
device, optimiser, LR scheduler, callbacks (gradient transforms, early
stopping, the method's own), precision (autocast dtype, gradient scaler,
channels-last), checkpoint selection and the checkpoint policy (directory,
resume key, the run's other files). The result is a ``Run``; ``Trainer(run)``
(``core/engine/trainer.py``) reads no configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dml_pipelines.core.config import MethodConfig
from dml_pipelines.core.data.loader import make_loader
from dml_pipelines.core.data.transforms import Transforms
from dml_pipelines.core.engine.callbacks import Callback, EarlyStopping
from dml_pipelines.core.engine.checkpoints import config_fingerprint, load_checkpoint
from dml_pipelines.core.engine.device import amp_dtype, resolve_device
from dml_pipelines.core.engine.embed import validator
from dml_pipelines.core.engine.grad import grad_transforms_from
from dml_pipelines.core.engine.optim import build_optimizer, build_scheduler, is_plateau
from dml_pipelines.core.engine.training_data import (
    TrainingData,
    augment_device,
    loader_workers,
    pk_sampler,
    run_transforms,
)
from dml_pipelines.core.methods.registry import build_method
from dml_pipelines.core.provenance import code_digest

Validate = Callable[[torch.nn.Module], dict[str, float]]


@dataclass(frozen=True)
class Precision:
    """Numeric format of the training step: the autocast dtype (``None``:
    float32), the gradient scaler (enabled for float16 only) and whether
    images and weights are channels-last."""

    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler
    channels_last: bool = False


@dataclass(frozen=True)
class Selection:
    """Checkpoint selection: the epoch metric that picks ``best.pt`` (``None``:
    the last epoch) and whether it is maximised (``max``) or minimised."""

    key: str | None = None
    mode: str = "max"


@dataclass(frozen=True)
class CheckpointPolicy:
    """Where and under which key the run checkpoints.

    ``directory``: where ``last.pt``/``best.pt`` live (``None``: no files);
    ``key``: the resume key (``config_fingerprint`` of ``config``, the data
    fingerprint and ``code_digest``); ``config``: the resolved config as JSON,
    stored in the checkpoints as an opaque record; ``run_files``: the run's
    other files (its ``model_state.pt``), moved aside with the checkpoints when
    the key changes."""

    directory: Path | None = None
    key: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    code_digest: str = ""
    run_files: list[Path] = field(default_factory=list)


@dataclass
class Run:
    """Everything one training run is made of, built once (``build_run``).

    ``method`` is on ``device``; ``loader`` yields (uint8 images (B, 3, H, W),
    labels (B,) in 0..C−1) and its ``batch_sampler`` may have ``set_epoch``;
    ``normalize(uint8 batch on device, train) -> float batch``; ``callbacks``:
    every callback in call order (the config's, the caller's, the method's);
    ``validate(method) -> metrics`` at every epoch end, or ``None``; ``epochs``:
    the number of epochs, ``warmup_epochs`` of them with the backbone frozen;
    ``seed``: torch's seed at the start of ``fit``; ``num_threads``: the
    compute threads asked for (``None``: the automatic rule,
    ``core/engine/threads.py``)."""

    method: torch.nn.Module
    loader: Any
    normalize: Callable[[torch.Tensor, bool], torch.Tensor]
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: Any
    callbacks: list[Callback]
    precision: Precision
    selection: Selection
    checkpoints: CheckpointPolicy
    validate: Validate | None = None
    epochs: int = 1
    warmup_epochs: int = 0
    seed: int = 0
    num_threads: int | None = None


def selection_of(training: Any) -> Selection:
    """The ``Selection`` of ``training.checkpoint_selection``: ``validation``
    picks ``val/<validation_metric>`` (``selection_mode``), ``test_recall_at_1``
    maximises ``val/recall@1``, ``last`` selects nothing."""
    key = {
        "last": None,
        "validation": f"val/{training.validation_metric}",
        "test_recall_at_1": "val/recall@1",
    }[training.checkpoint_selection]
    mode = (
        "max"
        if training.checkpoint_selection == "test_recall_at_1"
        else training.selection_mode
    )
    return Selection(key, mode)


def config_callbacks(
    cfg: MethodConfig, selection: Selection, has_validation: bool
) -> list[Callback]:
    """The callbacks the config asks for: gradient transforms
    (``optimizer.grad_transforms``, ``grad_clip_norm``), then early stopping
    (``training.early_stopping``; metric default: the selection metric)."""
    out: list[Callback] = []
    grad = grad_transforms_from(cfg.optimizer)
    if grad is not None:
        out.append(grad)
    es = cfg.training.early_stopping
    if es is not None:
        metric = es.metric or selection.key or f"val/{cfg.training.validation_metric}"
        if not has_validation and metric.startswith("val/"):
            raise ValueError(
                f"training.early_stopping.metric: {metric!r} needs a validation "
                "split (set training.checkpoint_selection or a non-val metric)"
            )
        out.append(
            EarlyStopping(
                metric,
                es.mode or selection.mode,
                es.patience,
                es.min_delta,
                es.restore_best,
            )
        )
    return out


def assemble_run(
    cfg: MethodConfig,
    method: torch.nn.Module,
    loader: Any,
    normalize: Callable[[torch.Tensor, bool], torch.Tensor],
    *,
    checkpoint_dir: str | Path | None = None,
    validate: Validate | None = None,
    callbacks: list[Callback] | None = None,
    data_fingerprint: str = "",
    run_files: list[str | Path] | None = None,
) -> Run:
    """The ``Run`` of a built ``method`` and ``loader``: the config-driven parts.

    Args:
        cfg: the validated, resolved ``MethodConfig``.
        method: a ``Method`` module (moved to the training device here).
        loader: the training loader (see ``Run``).
        normalize: ``normalize(uint8 batch on device, train=True) -> float batch``.
        checkpoint_dir: where ``last.pt``/``best.pt`` live (``None``: no files).
        validate: ``validate(method) -> metrics`` at every epoch end, or ``None``.
        callbacks: extra callbacks, called after the config's and before the
            method's own (``method.callbacks()``).
        data_fingerprint: fingerprint of the training data, part of the resume
            key with the config and the code digest.
        run_files: the run's files besides ``checkpoint_dir`` (``CheckpointPolicy``).

    Raises:
        ValueError: a setting needs a validation split there is none of, or
            names an unknown optimiser, scheduler or device (one line naming the
            key).
    """
    training = cfg.training
    device = resolve_device(training.device)
    method = method.to(device)
    selection = selection_of(training)
    if selection.key and validate is None:
        raise ValueError(
            f"training.checkpoint_selection: {training.checkpoint_selection!r} "
            "needs a validation split"
        )
    every = config_callbacks(cfg, selection, validate is not None)
    every += list(callbacks or []) + list(method.callbacks())
    optimizer = build_optimizer(method.param_groups(cfg.optimizer), cfg.optimizer)
    scheduler = build_scheduler(optimizer, training)
    if is_plateau(scheduler) and selection.key is None:
        raise ValueError(
            "training.scheduler.name: 'plateau' steps on the selection metric; "
            "set training.checkpoint_selection to validation or test_recall_at_1"
        )
    dtype = amp_dtype(training.amp, device)
    channels_last = training.channels_last is True or (
        training.channels_last == "auto" and device.type == "cuda"
    )
    if channels_last:
        method.to(memory_format=torch.channels_last)
    config = cfg.model_dump(mode="json")
    digest = code_digest()
    return Run(
        method=method,
        loader=loader,
        normalize=normalize,
        device=device,
        optimizer=optimizer,
        scheduler=scheduler,
        callbacks=every,
        precision=Precision(
            dtype,
            torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
            channels_last,
        ),
        selection=selection,
        checkpoints=CheckpointPolicy(
            Path(checkpoint_dir) if checkpoint_dir else None,
            config_fingerprint(config, data_fingerprint, digest),
            config,
            digest,
            [Path(p) for p in run_files or []],
        ),
        validate=validate,
        epochs=training.epochs,
        warmup_epochs=training.warmup_epochs,
        seed=training.seed,
        num_threads=training.num_threads,
    )


def build_run(
    cfg: MethodConfig,
    data: TrainingData,
    *,
    checkpoint_dir: str | Path | None = None,
    recall_at: tuple[int, ...] = (1, 2, 4, 8),
    callbacks: list[Callback] | None = None,
    transforms: Transforms | None = None,
    shard: tuple[int, int] | None = None,
    run_files: list[str | Path] | None = None,
) -> Run:
    """Everything a run of ``cfg`` on ``data`` trains with, built once.

    The method is built seeded by ``training.seed`` (``build_for_training``) and
    warm-started from ``training.init_from``; with ``shard`` = (rank, world) and
    ``training.sync_bn`` its BatchNorm layers use global batch statistics. The
    loader draws P×K batches (``pk_sampler``) of ``data``'s training rows with
    ``transforms`` (default: those ``cfg.transforms`` resolves to), this rank's
    shard of each. ``recall_at``: the K of the validation's Recall@K. The rest
    is ``assemble_run``'s.
    """
    training = cfg.training
    method = build_for_training(cfg, len(data.classes))
    if training.init_from:
        warm_start(method, training.init_from)
    if shard is not None and training.sync_bn:
        from dml_pipelines.core.engine.distributed import convert_batchnorm

        # the embedder sees each rank's shard; layers after the method's gather
        # already see the global batch
        convert_batchnorm(method.embedder, resolve_device(training.device))
    sampler = pk_sampler(data.labels, cfg)
    transforms = transforms if transforms is not None else run_transforms(cfg)
    loader = make_loader(
        data.cache,
        data.cache.positions_of(data.train_rows),
        data.labels.astype(np.int64),
        transforms,
        batch_sampler=sampler,
        train=True,
        num_workers=loader_workers(training),
        seed=training.seed,
        shard=shard,
        augment_on=augment_device(training),
    )
    return assemble_run(
        cfg,
        method,
        loader,
        transforms.normalize,
        checkpoint_dir=checkpoint_dir,
        validate=validator(data.table, data.cache, data.val_rows, cfg, recall_at),
        callbacks=callbacks,
        data_fingerprint=data.fingerprint,
        run_files=run_files,
    )


def build_for_training(cfg: MethodConfig, num_classes: int) -> torch.nn.Module:
    """Seed, then build the method (the untrained network is this same model)."""
    torch.manual_seed(cfg.training.seed)
    return build_method(cfg, num_classes)


def warm_start(method: torch.nn.Module, path: str) -> None:
    """Initialise ``method`` from ``training.init_from``: a project checkpoint
    (``last.pt``/``best.pt``/``model_state.pt``: its ``model`` weights) or a
    torchvision weights file for the backbone (keys of the torchvision model).
    Loaded with ``weights_only=True``; keys that match nothing are an error."""
    if not Path(path).exists():
        raise ValueError(f"training.init_from: {path} does not exist")
    state = load_checkpoint(path)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        method.load_export_state_dict(state["model"])
        return
    backbone = method.embedder.backbone
    names = getattr(backbone, "child_names", None)
    if not names:
        raise ValueError(
            f"training.init_from: {path} is not a project checkpoint and backbone "
            f"{type(backbone).__name__} takes no torchvision weights file"
        )
    index = {name: str(i) for i, name in enumerate(names)}
    mapped = {}
    for key, value in state.items():
        child, _, rest = key.partition(".")
        if child in index:
            mapped[f"{index[child]}.{rest}"] = value
    missing, _ = backbone.body.load_state_dict(mapped, strict=False)
    if missing:
        raise ValueError(
            f"training.init_from: {path} lacks {len(missing)} backbone weights "
            f"(first: {missing[:3]})"
        )


def method_from_state(
    state: dict[str, Any] | None, cfg: MethodConfig, num_classes: int
) -> torch.nn.Module:
    """Rebuild the method; load ``state["model"]`` unless ``state`` is None (the
    untrained network, built with the same seed as training)."""
    method = build_for_training(cfg, num_classes)
    if state is not None:
        method.load_export_state_dict(state["model"])
    return method.eval()
