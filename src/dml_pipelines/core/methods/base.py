"""The method template every method and baseline fills in.

A method is one ``nn.Module`` holding the embedder, any training-only modules
(heads, memory banks, proxies) and its criterion, so one ``state_dict`` checkpoints
all of it (``last.pt``), while ``export_state_dict`` gives the inference weights
only (``model_state.pt``). The trainer calls ``training_loss`` and, before
every callback, the hooks of ``core/engine/hooks.py`` (no-ops here).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from dml_pipelines.core.engine.callbacks import Callback
from dml_pipelines.core.engine.hooks import Hooks, StepContext
from dml_pipelines.core.models.embedder import Embedder


class Method(Hooks, nn.Module, ABC):
    """Base class.

    Subclasses implement ``training_loss``; the defaults embed with the embedder,
    put backbone / head / everything else in three optimiser groups, export the
    embedder's weights and do nothing in the hooks (``Hooks``: override any of
    them; method state lives in buffers, checkpointed with ``state_dict``).
    """

    #: the embeddings artifact's ``normalization`` field
    normalization: str = "l2"

    def __init__(self, embedder: Embedder) -> None:
        super().__init__()
        self.embedder = embedder
        self.normalization = embedder.normalization

    @abstractmethod
    def training_loss(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        ctx: StepContext | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """(B, 3, H, W) float, (B,) int64 in 0..C−1 -> (scalar loss, logs).

        ``ctx`` is the trainer's ``StepContext`` (epoch, global_step, step,
        trainer; ``ctx.output`` hands tensors to ``on_train_batch_end``);
        ``None`` outside the trainer."""

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Evaluation embedding (B, D): the method's output before normalisation
        (the evaluator applies ``normalization``)."""
        return self.embedder.embedding(images)

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Parameters frozen during ``warmup_epochs``."""
        return list(self.embedder.backbone.parameters())

    def param_groups(self, optimizer_cfg: Any) -> list[dict[str, Any]]:
        """Optimiser groups: backbone, head (embedder minus backbone) and the rest
        (losses' proxies, method heads), with their ``lr`` multipliers. Only
        trainable parameters (frozen BatchNorm is left out for good)."""
        backbone = {id(p) for p in self.backbone_parameters()}
        embedder = {id(p) for p in self.embedder.parameters()}
        groups: dict[str, list[nn.Parameter]] = {"backbone": [], "head": [], "loss": []}
        for p in self.parameters():
            if not p.requires_grad:
                continue
            key = (
                "backbone"
                if id(p) in backbone
                else "head"
                if id(p) in embedder
                else "loss"
            )
            groups[key].append(p)
        mult = {
            "backbone": optimizer_cfg.backbone_lr_mult,
            "head": optimizer_cfg.head_lr_mult,
            "loss": optimizer_cfg.loss_lr_mult,
        }
        return [
            {"name": k, "params": v, "lr": optimizer_cfg.lr * mult[k]}
            for k, v in groups.items()
            if v
        ]

    def callbacks(self) -> list[Callback]:
        """Extra engine callbacks of this method (e.g. reload-best lr drops)."""
        return []

    # -- checkpoints ---------------------------------------------------------------
    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """Inference weights only (``model_state.pt``): by default the embedder's,
        keyed as in ``state_dict``; no memory banks, proxies or training heads."""
        return {
            f"embedder.{k}": v.detach().cpu()
            for k, v in self.embedder.state_dict().items()
        }

    def load_export_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load what ``export_state_dict`` gave (or a full ``state_dict``); a
        missing inference weight or a key this method does not have is an error."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        needed = set(self.export_state_dict())
        missing = [k for k in missing if k in needed]
        if missing or unexpected:
            raise ValueError(
                f"model state does not fit method {type(self).__name__}: "
                f"missing {missing[:5]}, unexpected {list(unexpected)[:5]}"
            )


class LossMethod(Method):
    """Embedder + one metric loss on the normalised embeddings (the baselines)."""

    def __init__(self, embedder: Embedder, criterion: nn.Module) -> None:
        super().__init__(embedder)
        self.criterion = criterion

    def training_loss(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        ctx: StepContext | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of the (global) batch: embeddings and labels are gathered
        over the ranks of a multi-process run."""
        emb, labels = gather(ctx, self.embedder(images).float(), labels)
        return self.criterion(emb, labels), {}


def gather(ctx: StepContext | None, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``ctx.all_gather`` of each tensor (the global batch under several
    processes); unchanged outside the trainer (``ctx`` None)."""
    if ctx is None:
        return tensors
    return tuple(ctx.all_gather(t) for t in tensors)
