"""DML with chance constraints (Gürbüz, Can, Alatan, arXiv 2209.09060;
docs/methods/ccp.md): a multi-proxy pair loss (C·M proxies, m-major layout) plus
its 0.1-weighted in-batch form, the projection regulariser λ(θ − θ̄) added to the
network's gradients, and the alternating-projection outer loop: after
``instance_patience`` epochs without a better validation value the instance ends,
θ̄ becomes the instance's best weights and the proxies are re-selected by a greedy
k-center over a fresh pool of embedded training images, seeded by the instance's
best proxies. Every piece of loop state is a buffer (checkpointed, resumable);
``model_state.pt`` holds the embedder only."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from dml_pipelines.core.engine.callbacks import improved
from dml_pipelines.core.engine.hooks import StepContext, TrainerView
from dml_pipelines.core.losses import load_all as load_losses
from dml_pipelines.core.losses.ccp import ProxyPairLoss, proxy_labels
from dml_pipelines.core.methods.base import Method, gather
from dml_pipelines.core.methods.registry import METHODS
from dml_pipelines.core.models.ccp_proxies import (
    dataset_labels,
    draw_pool,
    pool_loader,
    to_class_major,
    to_m_major,
)
from dml_pipelines.core.models.embedder import Embedder, build_embedder
from dml_pipelines.core.models.heads import init_head
from dml_pipelines.core.models.kcenter import greedy_k_center
from dml_pipelines.core.registry import call_with_args

log = logging.getLogger(__name__)


class WeightCopy(nn.Module):
    """Buffers ``w0 .. w{n-1}``: a copy of a list of parameters (θ̄, θ_best)."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        super().__init__()
        self.n = len(params)
        for i, p in enumerate(params):
            self.register_buffer(f"w{i}", torch.zeros_like(p.detach()))

    def tensors(self) -> list[torch.Tensor]:
        return [getattr(self, f"w{i}") for i in range(self.n)]

    @torch.no_grad()
    def copy_from(self, tensors: list[torch.Tensor]) -> None:
        for dst, src in zip(self.tensors(), tensors, strict=True):
            dst.copy_(src)


class CCP(Method):
    """Embedder + proxies (C·M, D) + the instance loss + the outer loop.

    Args:
        embedder: gives the raw head output (the loss normalises it).
        num_classes: C; criterion: the ``ProxyPairLoss``.
        proxies_per_class: M; pool_per_class: b (b·M images when b < M).
        reg_lambda, reg_lambda_decay: λ_k = λ · decay^k in instance k ≥ 1 (0 in
            the first instance).
        instance_patience, instance_min_delta, instance_min_epochs: the instance
            ends after ``patience`` checks without ``v > best + min_delta``; the
            first ``min_epochs − 1`` epochs of an instance are not checked.
        monitor: epoch metric driving the instances (maximised);
            monitor_lag_epochs: use the value of that many epochs earlier.
        pool_augmentation: ``train`` or ``test`` transform for the pool images.
        pool_batch_size: batch of the pool's embedding pass.
        reset_proxy_optimizer_state: drop the proxies' Adam moments at a switch.
        seed: seeds the pool draws (instance k uses ``[seed, k]``).
    """

    def __init__(
        self,
        embedder: Embedder,
        num_classes: int,
        criterion: ProxyPairLoss,
        proxies_per_class: int,
        pool_per_class: int,
        *,
        reg_lambda: float = 2e-4,
        reg_lambda_decay: float = 1.0,
        instance_patience: int = 3,
        instance_min_delta: float = 1e-5,
        instance_min_epochs: int = 1,
        monitor: str = "val/map@r",
        monitor_lag_epochs: int = 0,
        pool_augmentation: str = "train",
        pool_batch_size: int = 128,
        reset_proxy_optimizer_state: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(embedder)
        self.criterion = criterion
        self.num_classes, self.proxies_per_class = num_classes, proxies_per_class
        self.pool_per_class = pool_per_class
        self.reg_lambda, self.reg_lambda_decay = reg_lambda, reg_lambda_decay
        self.patience, self.min_delta = instance_patience, instance_min_delta
        self.min_epochs, self.monitor = instance_min_epochs, monitor
        self.lag = monitor_lag_epochs
        self.augment = pool_augmentation == "train"
        self.pool_batch_size = pool_batch_size
        self.reset_proxy_state, self.seed = reset_proxy_optimizer_state, seed
        d = embedder.embedding_dim
        self.proxies = nn.Parameter(torch.empty(num_classes * proxies_per_class, d))
        nn.init.kaiming_normal_(self.proxies)
        labels = proxy_labels(num_classes, proxies_per_class)
        self.register_buffer("proxy_labels", labels, persistent=False)
        # network weights = trainable embedder parameters (frozen BN excluded)
        self.network = [p for p in embedder.parameters() if p.requires_grad]
        self.anchor = WeightCopy(self.network)  # θ̄
        self.best = WeightCopy(self.network)  # θ_best of the current instance
        self.register_buffer("best_proxies", torch.zeros_like(self.proxies.detach()))
        self.register_buffer("instance", torch.tensor(0))  # k
        self.register_buffer("lam", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("best_value", torch.tensor(-math.inf, dtype=torch.float64))
        self.register_buffer("wait", torch.tensor(0))
        self.register_buffer("epochs_in_instance", torch.tensor(0))
        self.register_buffer("has_best", torch.tensor(False))
        self.register_buffer("initialised", torch.tensor(False))
        nan = torch.full((max(self.lag, 1),), math.nan, dtype=torch.float64)
        self.register_buffer("recent", nan)  # the last ``lag`` monitored values
        #: the last selection: pool (C, b, D), its dataset indices (C, b), picks
        self.last_selection: dict[str, Any] | None = None
        #: ``summary`` when training ended (the trainer then reloads the selected
        #: epoch's buffers)
        self.final: dict[str, Any] | None = None

    # -- the instance loss -----------------------------------------------------
    def training_loss(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        ctx: StepContext | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """(B, 3, H, W), (B,) -> w_p·ℓ(e; N(P)) + w_b·ℓ(e; e), logs."""
        u = self.embedder.embedding(images).float()
        u, labels = gather(ctx, u, labels)  # the global batch under several ranks
        return self.criterion(u, labels, self.proxies, self.proxy_labels)

    # -- the projection regulariser --------------------------------------------
    @torch.no_grad()
    def regularise(self) -> None:
        """g ← g + λ(θ − θ̄) on the trainable network weights (never the proxies)."""
        lam = float(self.lam)
        if lam == 0.0:
            return
        for p, a in zip(self.network, self.anchor.tensors(), strict=True):
            if not p.requires_grad:
                continue
            reg = (p - a).mul_(lam)
            if p.grad is None:
                p.grad = reg
            else:
                p.grad.add_(reg)

    def on_before_optimizer_step(self, trainer: TrainerView) -> None:
        # the method's hook runs before the callbacks': regulariser, then the
        # configured weight decay and clipping
        self.regularise()

    # -- proxy (re-)selection ----------------------------------------------------
    @torch.no_grad()
    def select_proxies(self, trainer: TrainerView, seeds: torch.Tensor) -> None:
        """Draw the pool from the training data, embed it in inference mode (raw
        head output, the training step's normalisation and autocast) and write
        the greedy k-center picks (seeded by ``seeds``, m-major (C·M, D)) into
        the proxies in place."""
        c, m = self.num_classes, self.proxies_per_class
        b = self.pool_per_class if self.pool_per_class >= m else self.pool_per_class * m
        dataset = trainer.train_dataset
        rng = np.random.default_rng([self.seed, int(self.instance), 0xCC9])
        indices = draw_pool(dataset_labels(dataset), c, b, rng)
        loader = pool_loader(
            dataset,
            indices,
            self.pool_batch_size,
            self.augment,
            seed=int(rng.integers(2**31)),
            num_workers=trainer.loader_workers,
        )
        was_training = self.training
        self.eval()
        out = []
        with trainer.autocast():
            for images, _ in loader:
                x = trainer.normalize(images.to(trainer.device), self.augment)
                out.append(self.embedder.embedding(x).float())
        self.train(was_training)
        pool = torch.cat(out).reshape(c, b, -1)
        picks, where = greedy_k_center(pool, to_class_major(seeds, c), m)
        self.proxies.data.copy_(to_m_major(picks))
        self.last_selection = {"pool": pool, "indices": indices, "picks": where}

    # -- the outer loop ------------------------------------------------------------
    def on_fit_start(self, trainer: TrainerView) -> None:
        """First proxies from zero seeds (skipped after a resume)."""
        self.final = None
        if not bool(self.initialised):
            self.select_proxies(trainer, torch.zeros_like(self.proxies))
            self.initialised.fill_(True)

    def _monitored(self, value: float) -> float | None:
        if self.lag == 0:
            return value
        old = float(self.recent[0])
        self.recent.copy_(torch.cat([self.recent[1:], self.recent.new_tensor([value])]))
        return None if math.isnan(old) else old

    def on_train_epoch_end(
        self, trainer: TrainerView, epoch: int, metrics: dict[str, float]
    ) -> None:
        """Instance bookkeeping on the monitored value; a switch after
        ``patience`` checks without improvement. ``metrics`` is the epoch's
        history row: it gains ``instance``, the 0-based instance the epoch
        trained in (the ``instance`` column of ``training_history.csv``)."""
        if self.monitor not in metrics:
            raise KeyError(
                f"ccp.monitor: {self.monitor!r} is not among the epoch metrics; "
                f"valid: {', '.join(sorted(metrics))}"
            )
        metrics["instance"] = int(self.instance)
        value = self._monitored(float(metrics[self.monitor]))
        if value is None:
            return
        self.epochs_in_instance += 1
        if int(self.epochs_in_instance) < self.min_epochs:
            return
        if improved(value, float(self.best_value), "max", self.min_delta):
            self.best_value.fill_(value)
            self.best.copy_from(self.network)
            self.best_proxies.copy_(self.proxies.detach())
            self.has_best.fill_(True)
            self.wait.zero_()
        else:
            self.wait += 1
        if int(self.wait) >= self.patience:
            self.project(trainer)

    def on_fit_end(self, trainer: TrainerView) -> None:
        # before the trainer reloads the selected epoch's weights and buffers
        self.final = self.summary()

    def summary(self) -> dict[str, Any]:
        """The run's outer loop (plain JSON values, for the protocol card):
        ``instances`` started (k + 1), proxy ``reselections`` after the first
        selection (k: one per ended instance, a switch after the last epoch
        included) and the final ``lambda``; after ``fit``, as training ended."""
        if self.final is not None:
            return dict(self.final)
        k = int(self.instance)
        return {"instances": k + 1, "reselections": k, "lambda": float(self.lam)}

    def project(self, trainer: TrainerView) -> None:
        """End the instance: θ̄ ← θ_best, λ ← λ·decay^k, proxies re-selected
        around the best proxies; the network keeps its current weights."""
        found = bool(self.has_best)
        self.anchor.copy_from(self.best.tensors() if found else self.network)
        seeds = self.best_proxies.clone() if found else self.proxies.detach().clone()
        self.instance += 1
        k = int(self.instance)
        self.lam.fill_(self.reg_lambda * self.reg_lambda_decay**k)
        self.select_proxies(trainer, seeds)
        if self.reset_proxy_state:
            trainer.optimizer.state.pop(self.proxies, None)
        log.info(
            "ccp: instance %d ended (best %s %.5f); instance %d, lambda %.3g",
            k - 1,
            self.monitor,
            float(self.best_value),
            k,
            float(self.lam),
        )
        self.best_value.fill_(-math.inf)
        self.wait.zero_()
        self.epochs_in_instance.zero_()
        self.has_best.fill_(False)


@METHODS.register("ccp")
def build_ccp(cfg: Any, num_classes: int) -> CCP:
    """Build from a ``CcpConfig`` for ``num_classes`` training classes."""
    embedder = build_embedder(cfg)
    init_head(embedder.head, cfg.head_init)
    distance = "clip_to_ball" if cfg.normalization == "lipschitz" else "normalised"
    pair = call_with_args(
        load_losses().get(cfg.base_loss, key="base_loss"),
        {
            "embedding_size": cfg.embedding_dim,
            "num_classes": num_classes,
            "distance": distance,
            **cfg.loss_args.get(cfg.base_loss, {}),
        },
        f"loss_args.{cfg.base_loss}",
    )
    criterion = ProxyPairLoss(pair, cfg.proxy_loss_weight, cfg.batch_loss_weight)
    return CCP(
        embedder,
        num_classes,
        criterion,
        cfg.proxies_per_class,
        cfg.pool_per_class,
        reg_lambda=cfg.reg_lambda,
        reg_lambda_decay=cfg.reg_lambda_decay,
        instance_patience=cfg.instance_patience,
        instance_min_delta=cfg.instance_min_delta,
        instance_min_epochs=cfg.instance_min_epochs,
        monitor=cfg.monitor,
        monitor_lag_epochs=cfg.monitor_lag_epochs,
        pool_augmentation=cfg.pool_augmentation,
        pool_batch_size=cfg.pool_batch_size,
        reset_proxy_optimizer_state=cfg.reset_proxy_optimizer_state,
        seed=cfg.training.seed,
    )
