"""A test-only method written against the template alone: a memory-bank
contrastive loss. It uses the step context (memory terms only from a start
step, the step's outputs for ``on_train_batch_end``), the step logs,
``on_before_optimizer_step``, pair-loss references with
``exclude_self`` and an exported state without its memory. Registered from the
test package by ``register()``; nothing in ``core/engine``, ``core/config.py`` or
the pipelines knows it."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from dml_pipelines.core.config import BaselineConfig
from dml_pipelines.core.methods.base import Method
from dml_pipelines.core.methods.configs import METHOD_CONFIGS, register_config
from dml_pipelines.core.methods.registry import METHODS, build_loss
from dml_pipelines.core.models.embedder import build_embedder

NAME = "toy_memory"


class ToyConfig(BaselineConfig):
    memory_size: int = Field(32, gt=0)
    start_step: int = Field(2, ge=0)
    memory_weight: float = Field(1.0, ge=0)


class ToyMemory(Method):
    def __init__(self, embedder, criterion, memory_size, start_step, weight):
        super().__init__(embedder)
        self.criterion = criterion
        self.start_step, self.weight = start_step, weight
        d = embedder.embedding_dim
        self.register_buffer("mem", torch.zeros(memory_size, d))
        self.register_buffer("mem_labels", torch.full((memory_size,), -1))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("head_ptr", torch.zeros((), dtype=torch.long))
        self.before_step_calls = 0
        self.memory_steps: list[int] = []

    def training_loss(self, images, labels, ctx: Any = None):
        emb = self.embedder(images).float()
        loss = self.criterion(emb, labels)
        logs = {"batch_loss": float(loss.detach())}
        step = ctx.global_step if ctx is not None else 0
        if step >= self.start_step and int(self.filled) > 0:
            n = int(self.filled)
            mem_loss = self.criterion(
                emb, labels, self.mem[:n], self.mem_labels[:n], exclude_self=False
            )
            loss = loss + self.weight * mem_loss
            logs["memory_loss"] = float(mem_loss.detach())
            self.memory_steps.append(step)
        if ctx is not None:
            ctx.output(embeddings=emb, labels=labels)
        return loss, logs

    def on_before_optimizer_step(self, trainer):
        self.before_step_calls += 1

    @torch.no_grad()
    def on_train_batch_end(self, trainer, outputs):
        emb, labels = outputs.tensors["embeddings"], outputs.tensors["labels"]
        size = self.mem.shape[0]
        idx = (self.head_ptr + torch.arange(len(labels))) % size
        self.mem[idx], self.mem_labels[idx] = emb.to(self.mem), labels
        self.head_ptr.copy_((self.head_ptr + len(labels)) % size)
        self.filled.copy_(torch.clamp(self.filled + len(labels), max=size))


def build(cfg, num_classes):
    return ToyMemory(
        build_embedder(cfg),
        build_loss(cfg, num_classes),
        cfg.memory_size,
        cfg.start_step,
        cfg.memory_weight,
    )


def register() -> None:
    """Register the config and the builder (idempotent)."""
    if NAME not in METHOD_CONFIGS:
        register_config(NAME)(ToyConfig)
    if NAME not in METHODS:
        METHODS.register(NAME)(build)


def unregister() -> None:
    """Remove the toy method again (other tests list every registered method)."""
    METHOD_CONFIGS.unregister(NAME)
    METHODS.unregister(NAME)
