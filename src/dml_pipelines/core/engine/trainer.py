"""The training loop: epochs of P×K batches, optimiser groups, LR schedule,
warm-up with the backbone frozen, CUDA + AMP when available, a checkpoint every
epoch (``last.pt`` and ``best.pt``), resume after a kill, and the hooks of
``core/engine/hooks.py`` (their order is documented there; the Trainer is the
``TrainerView`` they see)."""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from dml_pipelines.core.engine.assemble import Run
from dml_pipelines.core.engine.callbacks import Callback, improved
from dml_pipelines.core.engine.checkpoints import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    save_atomic,
)
from dml_pipelines.core.engine.distributed import current
from dml_pipelines.core.engine.hooks import StepContext, StepOutput
from dml_pipelines.core.engine.optim import is_plateau
from dml_pipelines.core.engine.progress import Progress
from dml_pipelines.core.engine.threads import apply_thread_policy

log = logging.getLogger(__name__)


def _length(loader: Any) -> int | None:
    """Batches per epoch of ``loader`` (``None`` when it has no length)."""
    try:
        return len(loader)
    except TypeError:
        return None


def callback_names(callbacks: list[Callback]) -> list[str]:
    """Unique checkpoint keys: ``name``, then ``name#2`` ... for repeats."""
    seen: dict[str, int] = {}
    out = []
    for cb in callbacks:
        n = getattr(cb, "name", type(cb).__name__)
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


class Trainer:
    """Fit a built ``Run`` (``core/engine/assemble.py``): ``run.epochs`` epochs
    of ``run.loader``'s batches with ``run.optimizer``, checkpoints under
    ``run.checkpoints`` and the hooks of ``run.method`` and ``run.callbacks``.
    The trainer reads no configuration: every setting arrives built in ``run``.

    ``run.checkpoints.run_files``: when the resume key changes they are moved
    aside with the old checkpoints (``superseded/<key>/`` beside the checkpoint
    directory), never deleted.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.device = run.device
        self.method = run.method
        self.loader = run.loader
        self.normalize = run.normalize
        self.validate = run.validate
        self.max_epochs = run.epochs
        self.warmup_epochs = run.warmup_epochs
        self.selection_key = run.selection.key
        self.selection_mode = run.selection.mode
        self.callbacks = list(run.callbacks)
        self.dist = current()
        self.callback_keys = callback_names(self.callbacks)
        # trainable backbone parameters, fixed before any warm-up toggling (frozen
        # BatchNorm parameters stay frozen for good)
        self._backbone_trainable = [
            p for p in self.method.backbone_parameters() if p.requires_grad
        ]
        self.optimizer = run.optimizer
        self.scheduler = run.scheduler
        self.amp_dtype = run.precision.amp_dtype
        self.use_amp = self.amp_dtype is not None
        self.scaler = run.precision.scaler
        self.channels_last = run.precision.channels_last
        policy = run.checkpoints
        self.checkpoint_dir = policy.directory
        self.config_record = policy.config  # opaque: written, never read
        self.code_digest = policy.code_digest
        self.fingerprint = policy.key
        self.run_files = list(policy.run_files)
        self.history: list[dict[str, float]] = []
        self.epoch = 0  # number of completed epochs
        self.global_step = 0
        self.best_value = -math.inf if self.selection_mode == "max" else math.inf
        self.best_epoch = 0
        self.stop_training = False
        self.restore_best = self.selection_key is not None
        self.resumed = False

    def _hooks(self) -> list[Any]:
        return [self.method, *self.callbacks]

    def _call(self, hook: str, *args: Any) -> None:
        for obj in self._hooks():
            getattr(obj, hook)(self, *args)

    def request_restore_best(self) -> None:
        """Load the selected (best) weights at the end of ``fit``."""
        self.restore_best = True

    # -- checkpoints -----------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            "config": self.config_record,
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
            "stop_training": self.stop_training,
            "restore_best": self.restore_best,
            "callbacks": {
                k: cb.state_dict()
                for k, cb in zip(self.callback_keys, self.callbacks, strict=True)
            },
        }

    def _resume(self) -> bool:
        if self.checkpoint_dir is None:
            return False
        path = self.checkpoint_dir / "last.pt"
        if not path.exists():
            return False
        state = load_checkpoint(path)
        if not isinstance(state, dict) or "fingerprint" not in state:
            raise ValueError(
                f"{path} is not a training checkpoint of this project (no resume "
                "key); move it away or delete it, then run again"
            )
        if (
            state.get("format") != CHECKPOINT_FORMAT
            or state.get("fingerprint") != self.fingerprint
        ):
            aside = self._supersede(str(state.get("fingerprint")))
            log.warning(
                "%s was trained with other parameters, data or code (resume key "
                "%s, this run %s); training from scratch; the old run's files "
                "are kept in %s",
                path,
                state.get("fingerprint"),
                self.fingerprint,
                aside,
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
        self.stop_training = bool(state["stop_training"])
        self.restore_best = bool(state["restore_best"])
        saved = state["callbacks"]
        for key, cb in zip(self.callback_keys, self.callbacks, strict=True):
            if key in saved:
                cb.load_state_dict(saved[key])
            else:
                log.warning("%s holds no state for callback %s", path, key)
        log.info("resumed from %s after epoch %d", path, self.epoch)
        self.resumed = True
        return True

    def _supersede(self, key: str) -> Path:
        """Move the checkpoints and ``run_files`` of a replaced run to
        ``superseded/<key>/`` beside ``checkpoint_dir`` (rank 0); return it."""
        assert self.checkpoint_dir is not None
        aside = self.checkpoint_dir.parent / "superseded" / key
        if self.dist.is_main:
            aside.mkdir(parents=True, exist_ok=True)
            names = ("last.pt", "best.pt")
            for path in [self.checkpoint_dir / n for n in names] + self.run_files:
                if path.exists():
                    os.replace(path, aside / path.name)
        self.dist.barrier()
        return aside

    def _check_finite(self) -> None:
        """Refuse to checkpoint non-finite weights or BatchNorm statistics: the
        error names the last good epoch, whose ``last.pt`` a rerun resumes."""
        # weights and normalisation statistics; other buffers may hold
        # sentinels on purpose (CCP's best value starts at -inf)
        tensors = dict(self.method.named_parameters())
        tensors.update(
            (k, v)
            for k, v in self.method.named_buffers()
            if k.endswith(("running_mean", "running_var"))
        )
        bad = [
            k
            for k, v in tensors.items()
            if v.is_floating_point() and not bool(v.detach().isfinite().all())
        ]
        if bad:
            good = self._last_good(self.epoch - 1, "no epoch ended finite")
            raise FloatingPointError(
                f"non-finite weights after epoch {self.epoch} ({bad[0]}"
                f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}); not "
                f"saved; last good checkpoint: {good}"
            )

    def _save(self, improved_now: bool) -> None:
        if self.checkpoint_dir is None:
            return
        if not self.dist.is_main:  # rank 0 writes; the others wait for it
            self.dist.barrier()
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        state = self._state()
        save_atomic(state, self.checkpoint_dir / "last.pt")
        if improved_now:
            best = {
                k: state[k]
                for k in ("format", "fingerprint", "config", "epoch", "model")
            }
            best["value"] = self.best_value
            save_atomic(best, self.checkpoint_dir / "best.pt")
        self.dist.barrier()

    def best_state(self) -> dict[str, torch.Tensor] | None:
        """Model weights of the selected checkpoint (``None`` when ``last`` or
        when no checkpoint of this run was selected yet)."""
        if self.selection_key is None or self.checkpoint_dir is None:
            return None
        path = self.checkpoint_dir / "best.pt"
        if not path.exists():
            return None
        best = load_checkpoint(path)
        return best["model"] if best.get("fingerprint") == self.fingerprint else None

    def reload_best(self) -> None:
        """Load the best checkpoint's weights into the model (Intra-Batch LR drops,
        early stopping, the end of ``fit``)."""
        state = self.best_state()
        if state is not None:
            self.method.load_state_dict(state)

    def set_lr_factor(self, factor: float) -> None:
        """Set every group's lr to its initial lr × ``factor``."""
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr_base"] * factor

    @property
    def train_dataset(self) -> Any:
        """The training loader's dataset (``TrainerView``)."""
        return self.loader.dataset

    @property
    def loader_workers(self) -> int:
        """The training loader's worker processes (``TrainerView``)."""
        return getattr(self.loader, "num_workers", 0)

    def autocast(self) -> torch.autocast:
        """The training step's autocast: ``training.amp`` on this device."""
        return torch.autocast(
            self.device.type, dtype=self.amp_dtype, enabled=self.use_amp
        )

    # -- loop ------------------------------------------------------------------
    def _set_warmup(self, frozen: bool) -> None:
        for p in self._backbone_trainable:
            p.requires_grad_(not frozen)
        if frozen:
            self.method.embedder.backbone.eval()

    def _train_epoch(self, epoch: int) -> float:
        self.method.train()
        warm = epoch < self.warmup_epochs
        self._set_warmup(warm)
        sampler = getattr(self.loader, "batch_sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        total, count = 0.0, 0
        with Progress(
            _length(self.loader),
            f"epoch {epoch + 1}/{self.max_epochs}",
            "step",
            main=self.dist.is_main,
        ) as bar:
            for step, (images, labels) in enumerate(self.loader):
                value = self._train_step(epoch, step, images, labels)
                total += value
                count += 1
                bar.update(images=len(images) * self.dist.world_size, loss=value)
        if warm:
            self._set_warmup(False)
        return total / max(count, 1)

    def _last_good(self, epoch: int, none: str) -> str:
        """The last good checkpoint for an error message: ``last.pt`` (written
        after ``epoch``) when it exists, else ``none (<none>)``."""
        where = self.checkpoint_dir / "last.pt" if self.checkpoint_dir else None
        if where and where.exists():
            return f"{where} (after epoch {epoch})"
        return f"none ({none})"

    def _train_step(
        self, epoch: int, step: int, images: torch.Tensor, labels: torch.Tensor
    ) -> float:
        """One optimisation step; returns the step's loss."""
        images = self.normalize(images.to(self.device, non_blocking=True), True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(self.device, non_blocking=True)
        ctx = StepContext(epoch, self.global_step, step, self, self.dist)
        with self.autocast():
            loss, logs = self.method.training_loss(images, labels, ctx)
        value = float(loss.detach())
        if not math.isfinite(value):
            good = self._last_good(epoch, "this run saved no epoch yet")
            raise FloatingPointError(
                f"non-finite loss ({value}) at epoch {epoch + 1}, step {step + 1}; "
                f"training stopped (last good checkpoint: {good})"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)  # no-op without AMP
        self.dist.average_gradients(list(self.method.parameters()))
        self._call("on_before_optimizer_step")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        outputs = StepOutput(
            loss.detach(),
            {"loss": value, **logs},
            dict(ctx.outputs),
            self.global_step,
            step,
        )
        self._call("on_train_batch_end", outputs)
        self.global_step += 1
        return value

    def _step_scheduler(self, row: dict[str, float]) -> None:
        if self.scheduler is None:
            return
        if is_plateau(self.scheduler):
            self.scheduler.step(row[self.selection_key])
        else:
            self.scheduler.step()

    def fit(self) -> pd.DataFrame:
        """Run (or resume) training; returns the per-epoch history. When
        ``checkpoint_selection`` is not ``last`` (or a callback asked for it),
        the selected weights are loaded into the model at the end."""
        torch.manual_seed(self.run.seed)
        apply_thread_policy(
            self.run.num_threads,
            self.loader_workers,
            self.dist.world_size,
        )
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr_base", group["lr"])
        self._resume()
        self._call("on_fit_start")
        while self.epoch < self.max_epochs and not self.stop_training:
            epoch = self.epoch
            self._call("on_train_epoch_start", epoch)
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
            self._step_scheduler(row)
            self.epoch = epoch + 1
            better = self.selection_key is not None and improved(
                row[self.selection_key], self.best_value, self.selection_mode
            )
            if better:
                self.best_value = row[self.selection_key]
                self.best_epoch = self.epoch
            elif self.selection_key is None:
                self.best_epoch = self.epoch
            self.history.append(row)
            self._call("on_train_epoch_end", epoch, row)
            self._check_finite()
            self._save(better)
            log.info(
                "epoch %d: %s", self.epoch, {k: round(v, 4) for k, v in row.items()}
            )
        self._call("on_fit_end")
        if self.restore_best:
            self.reload_best()
        self.method.eval()
        return pd.DataFrame(self.history)
