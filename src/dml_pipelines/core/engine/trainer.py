"""The training loop: epochs of P×K batches, optimiser groups, LR schedule,
warm-up with the backbone frozen, CUDA + AMP when available, a checkpoint every
epoch (``last.pt`` and ``best.pt``), resume after a kill, and callback hooks."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from dml_pipelines.core.engine.callbacks import Callback
from dml_pipelines.core.engine.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an
    error naming ``training.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "training.device: 'cuda' requested but no CUDA device is available"
        )
    if name not in ("cpu", "cuda"):
        raise ValueError(
            f"training.device: {name!r} is invalid; valid: auto, cpu, cuda"
        )
    return torch.device(name)


def config_fingerprint(config: dict[str, Any]) -> str:
    """Hash of the resolved config minus ``training.epochs`` (so a longer run may
    resume a shorter one)."""
    cfg = json.loads(json.dumps(config, sort_keys=True, default=str))
    cfg.get("training", {}).pop("epochs", None)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename (a kill never leaves a
    truncated checkpoint)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; one-line error naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated or not a checkpoint
        raise ValueError(
            f"checkpoint {path} cannot be loaded: {exc}".splitlines()[0]
        ) from None


class Trainer:
    """Train ``method`` for ``cfg.training.epochs`` epochs.

    Args:
        method: a ``Method`` module (model + criterion).
        loader: training DataLoader whose ``batch_sampler`` has ``set_epoch``;
            yields (uint8 images (B, 3, H, W), labels (B,) in 0..C−1).
        normalize: ``normalize(uint8 batch on device, train=True) -> float batch``.
        cfg: the validated ``MethodConfig``.
        checkpoint_dir: where ``last.pt``/``best.pt`` live (``None``: no files).
        validate: ``validate(method) -> metrics`` run at every epoch end (eval
            mode), or ``None``.
        callbacks: extra callbacks (the method's own are added automatically).
    """

    def __init__(
        self,
        method: torch.nn.Module,
        loader: Any,
        normalize: Callable[[torch.Tensor, bool], torch.Tensor],
        cfg: Any,
        *,
        checkpoint_dir: str | Path | None = None,
        validate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
        callbacks: list[Callback] | None = None,
    ) -> None:
        self.cfg = cfg
        self.tcfg = cfg.training
        self.device = resolve_device(self.tcfg.device)
        self.method = method.to(self.device)
        self.loader = loader
        self.normalize = normalize
        self.validate = validate
        self.callbacks = list(callbacks or []) + list(method.callbacks())
        self.optimizer = build_optimizer(
            method.param_groups(cfg.optimizer), cfg.optimizer
        )
        self.scheduler = build_scheduler(self.optimizer, self.tcfg.scheduler)
        self.use_amp = bool(self.tcfg.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.use_amp)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.config_dict = cfg.model_dump(mode="json")
        self.fingerprint = config_fingerprint(self.config_dict)
        self.history: list[dict[str, float]] = []
        self.epoch = 0  # number of completed epochs
        self.global_step = 0
        self.best_value = float("-inf")
        self.best_epoch = 0
        self.stop_training = False
        self.selection_key = {
            "last": None,
            "validation": f"val/{self.tcfg.validation_metric}",
            "test_recall_at_1": "val/recall@1",
        }[self.tcfg.checkpoint_selection]
        if self.selection_key and validate is None:
            raise ValueError(
                f"training.checkpoint_selection: {self.tcfg.checkpoint_selection!r} "
                "needs a validation split"
            )

    # -- checkpoints -----------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            "config": self.config_dict,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "model": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else {},
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all()
            if torch.cuda.is_available()
            else [],
            "history": self.history,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "callbacks": [cb.state_dict() for cb in self.callbacks],
        }

    def _resume(self) -> bool:
        if self.checkpoint_dir is None:
            return False
        path = self.checkpoint_dir / "last.pt"
        if not path.exists():
            return False
        state = load_checkpoint(path)
        if (
            state.get("format") != CHECKPOINT_FORMAT
            or state.get("fingerprint") != self.fingerprint
        ):
            log.warning(
                "%s was written by another configuration; starting afresh", path
            )
            return False
        self.method.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler and state["scheduler"]:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.history = list(state["history"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.best_value = float(state["best_value"])
        self.best_epoch = int(state["best_epoch"])
        for cb, cb_state in zip(self.callbacks, state["callbacks"], strict=False):
            cb.load_state_dict(cb_state)
        log.info("resumed from %s after epoch %d", path, self.epoch)
        return True

    def _save(self, improved: bool) -> None:
        if self.checkpoint_dir is None:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        state = self._state()
        save_atomic(state, self.checkpoint_dir / "last.pt")
        if improved:
            best = {
                k: state[k]
                for k in ("format", "fingerprint", "config", "epoch", "model")
            }
            best["value"] = self.best_value
            save_atomic(best, self.checkpoint_dir / "best.pt")

    def best_state(self) -> dict[str, torch.Tensor] | None:
        """Model weights of the selected checkpoint (``None`` when ``last``)."""
        if self.selection_key is None or self.checkpoint_dir is None:
            return None
        path = self.checkpoint_dir / "best.pt"
        return load_checkpoint(path)["model"] if path.exists() else None

    def reload_best(self) -> None:
        """Load the best checkpoint's weights into the model (Intra-Batch LR drops)."""
        state = self.best_state()
        if state is not None:
            self.method.load_state_dict(state)

    def set_lr_factor(self, factor: float) -> None:
        """Set every group's lr to its initial lr × ``factor``."""
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr_base"] * factor

    # -- loop ------------------------------------------------------------------
    def _set_warmup(self, frozen: bool) -> None:
        for p in self.method.backbone_parameters():
            p.requires_grad_(not frozen)
        if frozen:
            self.method.embedder.backbone.eval()

    def _train_epoch(self, epoch: int) -> float:
        self.method.train()
        warm = epoch < self.tcfg.warmup_epochs
        self._set_warmup(warm)
        sampler = self.loader.batch_sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        total, count = 0.0, 0
        for step, (images, labels) in enumerate(self.loader):
            images = self.normalize(images.to(self.device, non_blocking=True), True)
            labels = labels.to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, enabled=self.use_amp):
                loss, _ = self.method.training_loss(images, labels)
            value = float(loss.detach())
            if not torch.isfinite(loss.detach()):
                where = (
                    self.checkpoint_dir / "last.pt" if self.checkpoint_dir else "none"
                )
                raise FloatingPointError(
                    f"non-finite loss ({value}) at epoch {epoch + 1}, step {step + 1}; "
                    f"training stopped (last good checkpoint: {where})"
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.cfg.optimizer.grad_clip_norm:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(
                    self.method.parameters(), self.cfg.optimizer.grad_clip_norm
                )
            self.scaler.step(self.optimizer)
            self.scaler.update()
            total += value
            count += 1
            for cb in self.callbacks:
                cb.on_step_end(self, self.global_step, value)
            self.global_step += 1
        if warm:
            self._set_warmup(False)
        return total / max(count, 1)

    def fit(self) -> pd.DataFrame:
        """Run (or resume) training; returns the per-epoch history. When
        ``checkpoint_selection`` is not ``last``, the selected weights are loaded
        into the model at the end."""
        torch.manual_seed(self.tcfg.seed)
        if self.tcfg.num_threads:
            torch.set_num_threads(self.tcfg.num_threads)
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr_base", group["lr"])
        self._resume()
        for cb in self.callbacks:
            cb.on_train_start(self)
        while self.epoch < self.tcfg.epochs and not self.stop_training:
            epoch = self.epoch
            for cb in self.callbacks:
                cb.on_epoch_start(self, epoch)
            start = time.perf_counter()
            loss = self._train_epoch(epoch)
            row: dict[str, float] = {
                "epoch": epoch + 1,
                "loss": loss,
                "lr": float(self.optimizer.param_groups[0]["lr"]),
            }
            if self.validate is not None:
                self.method.eval()
                row.update(
                    {
                        f"val/{k}": float(v)
                        for k, v in self.validate(self.method).items()
                    }
                )
            row["seconds"] = time.perf_counter() - start
            if self.scheduler is not None:
                self.scheduler.step()
            self.epoch = epoch + 1
            improved = (
                self.selection_key is None or row[self.selection_key] > self.best_value
            )
            if improved:
                self.best_value = row.get(self.selection_key, float(self.epoch))
                self.best_epoch = self.epoch
            self.history.append(row)
            for cb in self.callbacks:
                cb.on_epoch_end(self, epoch, row)
            self._save(improved and self.selection_key is not None)
            log.info(
                "epoch %d: %s", self.epoch, {k: round(v, 4) for k, v in row.items()}
            )
        for cb in self.callbacks:
            cb.on_train_end(self)
        self.reload_best()
        self.method.eval()
        return pd.DataFrame(self.history)
