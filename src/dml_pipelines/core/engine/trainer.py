"""The training loop: epochs of P×K batches, optimiser groups, LR schedule,
warm-up with the backbone frozen, CUDA + AMP when available, a checkpoint every
epoch (``last.pt`` and ``best.pt``), resume after a kill, and the extension
points of ``core/engine/callbacks.py`` (the hook order is documented there)."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from dml_pipelines.core.engine.callbacks import Callback, EarlyStopping, improved
from dml_pipelines.core.engine.distributed import Dist, current
from dml_pipelines.core.engine.grad import grad_transforms_from
from dml_pipelines.core.engine.optim import build_optimizer, build_scheduler, is_plateau
from dml_pipelines.core.engine.progress import Progress
from dml_pipelines.core.engine.threads import apply_thread_policy
from dml_pipelines.core.provenance import code_digest

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 2


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


def config_fingerprint(
    config: dict[str, Any], data_fingerprint: str = "", code: str = ""
) -> str:
    """Resume key: hash of the run's identity — the resolved config without the
    settings that cannot change a result (``run_identity``), the training data's
    fingerprint and the digest of the code training imports
    (``core/provenance.py``). A checkpoint is resumed only under the same key,
    so a run is never continued into one with other parameters, data or code."""
    from dml_pipelines.core.identity import config_hash

    return config_hash(config, data_fingerprint, code, length=16)


def amp_dtype(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype of ``training.amp`` on ``device`` (``None``: float32).

    ``true``/``fp16``: float16 on CUDA, off on a CPU; ``bf16``: bfloat16 on CUDA
    and CPU; ``false``: off."""
    if amp is False:
        return None
    if amp == "bf16":
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else None


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


@dataclass(frozen=True)
class StepContext:
    """What ``training_loss`` knows of the loop: 0-based ``epoch``, the global
    step about to be taken, the step within the epoch, the trainer, and the
    process group (``dist``). ``all_gather`` turns a per-rank tensor into the
    global batch's (identity in one process): a method whose maths spans the
    batch gathers its embeddings and labels with it."""

    epoch: int = 0
    global_step: int = 0
    step: int = 0
    trainer: Any = None
    dist: Dist = Dist()

    def all_gather(self, x: torch.Tensor) -> torch.Tensor:
        """(b, ...) per rank -> (N·b, ...) of the global batch, differentiable."""
        return self.dist.all_gather(x)


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
    """Train ``method`` for ``cfg.training.epochs`` epochs.

    Args:
        method: a ``Method`` module (model + criterion + hooks).
        loader: training DataLoader whose ``batch_sampler`` has ``set_epoch``;
            yields (uint8 images (B, 3, H, W), labels (B,) in 0..C−1).
        normalize: ``normalize(uint8 batch on device, train=True) -> float batch``.
        cfg: the validated ``MethodConfig``.
        checkpoint_dir: where ``last.pt``/``best.pt`` live (``None``: no files).
        validate: ``validate(method) -> metrics`` run at every epoch end (eval
            mode), or ``None``.
        callbacks: extra callbacks; the config's (gradient transforms, early
            stopping) and the method's own (``method.callbacks()``) are added.
        data_fingerprint: fingerprint of the training data, part of the resume
            key (``config_fingerprint``) with the config and the code digest.
        run_files: files of the run besides ``checkpoint_dir`` (its
            ``model_state.pt``): when the resume key changes they are moved aside
            with the old checkpoints (``superseded/<key>/`` beside
            ``checkpoint_dir``), never deleted.
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
        data_fingerprint: str = "",
        run_files: list[str | Path] | None = None,
    ) -> None:
        self.cfg = cfg
        self.tcfg = cfg.training
        self.device = resolve_device(self.tcfg.device)
        self.method = method.to(self.device)
        self.loader = loader
        self.normalize = normalize
        self.validate = validate
        self.selection_key = {
            "last": None,
            "validation": f"val/{self.tcfg.validation_metric}",
            "test_recall_at_1": "val/recall@1",
        }[self.tcfg.checkpoint_selection]
        self.selection_mode = (
            "max"
            if self.tcfg.checkpoint_selection == "test_recall_at_1"
            else self.tcfg.selection_mode
        )
        if self.selection_key and validate is None:
            raise ValueError(
                f"training.checkpoint_selection: {self.tcfg.checkpoint_selection!r} "
                "needs a validation split"
            )
        self.callbacks = self._config_callbacks() + list(callbacks or [])
        self.callbacks += list(method.callbacks())
        self.dist = current()
        self.callback_keys = callback_names(self.callbacks)
        # trainable backbone parameters, fixed before any warm-up toggling (frozen
        # BatchNorm parameters stay frozen for good)
        self._backbone_trainable = [
            p for p in method.backbone_parameters() if p.requires_grad
        ]
        self.optimizer = build_optimizer(
            method.param_groups(cfg.optimizer), cfg.optimizer
        )
        self.scheduler = build_scheduler(self.optimizer, self.tcfg)
        if is_plateau(self.scheduler) and self.selection_key is None:
            raise ValueError(
                "training.scheduler.name: 'plateau' steps on the selection metric; "
                "set training.checkpoint_selection to validation or test_recall_at_1"
            )
        self.amp_dtype = amp_dtype(self.tcfg.amp, self.device)
        self.use_amp = self.amp_dtype is not None
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )
        self.channels_last = self.tcfg.channels_last is True or (
            self.tcfg.channels_last == "auto" and self.device.type == "cuda"
        )
        if self.channels_last:
            self.method.to(memory_format=torch.channels_last)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.config_dict = cfg.model_dump(mode="json")
        self.code_digest = code_digest()
        self.fingerprint = config_fingerprint(
            self.config_dict, data_fingerprint, self.code_digest
        )
        self.run_files = [Path(p) for p in run_files or []]
        self.history: list[dict[str, float]] = []
        self.epoch = 0  # number of completed epochs
        self.global_step = 0
        self.best_value = -math.inf if self.selection_mode == "max" else math.inf
        self.best_epoch = 0
        self.stop_training = False
        self.restore_best = self.selection_key is not None
        self.resumed = False

    def _config_callbacks(self) -> list[Callback]:
        out: list[Callback] = []
        grad = grad_transforms_from(self.cfg.optimizer)
        if grad is not None:
            out.append(grad)
        es = self.tcfg.early_stopping
        if es is not None:
            metric = (
                es.metric or self.selection_key or f"val/{self.tcfg.validation_metric}"
            )
            if self.validate is None and metric.startswith("val/"):
                raise ValueError(
                    f"training.early_stopping.metric: {metric!r} needs a validation "
                    "split (set training.checkpoint_selection or a non-val metric)"
                )
            out.append(
                EarlyStopping(
                    metric,
                    es.mode or self.selection_mode,
                    es.patience,
                    es.min_delta,
                    es.restore_best,
                )
            )
        return out

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
            where = self.checkpoint_dir / "last.pt" if self.checkpoint_dir else None
            good = (
                f"{where} (after epoch {self.epoch - 1})"
                if where and where.exists()
                else "none (no epoch ended finite)"
            )
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

    # -- loop ------------------------------------------------------------------
    def _set_warmup(self, frozen: bool) -> None:
        for p in self._backbone_trainable:
            p.requires_grad_(not frozen)
        if frozen:
            self.method.embedder.backbone.eval()

    def _train_epoch(self, epoch: int) -> float:
        self.method.train()
        warm = epoch < self.tcfg.warmup_epochs
        self._set_warmup(warm)
        sampler = getattr(self.loader, "batch_sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        total, count = 0.0, 0
        with Progress(
            _length(self.loader),
            f"epoch {epoch + 1}/{self.tcfg.epochs}",
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

    def _train_step(
        self, epoch: int, step: int, images: torch.Tensor, labels: torch.Tensor
    ) -> float:
        """One optimisation step; returns the step's loss."""
        images = self.normalize(images.to(self.device, non_blocking=True), True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(self.device, non_blocking=True)
        ctx = StepContext(epoch, self.global_step, step, self, self.dist)
        with torch.autocast(
            self.device.type, dtype=self.amp_dtype, enabled=self.use_amp
        ):
            loss, logs = self.method.training_loss(images, labels, ctx)
        value = float(loss.detach())
        if not math.isfinite(value):
            where = self.checkpoint_dir / "last.pt" if self.checkpoint_dir else None
            good = (
                f"{where} (after epoch {epoch})"
                if where and where.exists()
                else "none (this run saved no epoch yet)"
            )
            raise FloatingPointError(
                f"non-finite loss ({value}) at epoch {epoch + 1}, step {step + 1}; "
                f"training stopped (last good checkpoint: {good})"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)  # no-op without AMP
        self.dist.average_gradients(list(self.method.parameters()))
        self._call("on_after_backward")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self._call("on_step_end", {"loss": value, **logs}, self.global_step)
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
        torch.manual_seed(self.tcfg.seed)
        apply_thread_policy(
            self.tcfg.num_threads,
            getattr(self.loader, "num_workers", 0),
            self.dist.world_size,
        )
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr_base", group["lr"])
        self._resume()
        self._call("on_fit_start")
        while self.epoch < self.tcfg.epochs and not self.stop_training:
            epoch = self.epoch
            self._call("on_epoch_start", epoch)
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
            self._call("on_epoch_end", epoch, row)
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
