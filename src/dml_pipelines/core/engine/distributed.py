"""Multi-process training (one process per device, ``training.devices: N``).

Every rank holds the same model (same seed) and a shard of the global P×K batch
(``core.data.samplers.ShardedBatches``: rank r takes the r-th contiguous slice of
every global batch, with the single-process augmentation seeds). Methods gather
what their maths spans with ``ctx.all_gather`` (differentiable), so every rank
computes the loss
of the *global* batch; the trainer then averages the gradients over the ranks.
Because the gather's backward sums the N identical contributions of the ranks,
the average is exactly the single-process gradient of the global batch.
BatchNorm statistics of the embedder (which sees a rank's shard) span the global
batch with ``training.sync_bn`` (torch's ``SyncBatchNorm`` on CUDA,
``GlobalBatchNorm`` here on CPU/gloo); frozen BN is left untouched, and layers a
method applies after its gather already see the global batch. Rank 0 alone
writes checkpoints and results.

``spawn`` starts the N processes of one machine itself; under ``torchrun`` (any
number of machines) ``core/engine/launch.py`` joins the group torchrun set up
(see ``docs/distributed.md``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Dist:
    """This process's place in the process group (``Dist()``: one process)."""

    rank: int = 0
    world_size: int = 1

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_gather(self, x: torch.Tensor) -> torch.Tensor:
        """(b, ...) per rank -> (N·b, ...) in rank order; differentiable for
        floating tensors (gradients flow back to each rank's slice)."""
        if not self.active:
            return x
        if x.is_floating_point():
            from torch.distributed.nn.functional import all_gather

            return torch.cat(all_gather(x.contiguous()), dim=0)
        parts = [torch.empty_like(x) for _ in range(self.world_size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    def average_gradients(self, params: Sequence[nn.Parameter]) -> None:
        """Gradients ← their mean over the ranks (one flat all-reduce)."""
        if not self.active:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def current() -> Dist:
    """The process group of this process (``Dist()`` outside one)."""
    if dist.is_available() and dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size())
    return Dist()


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics span the global batch of all ranks
    (sum, sum of squares and count all-reduced with gradients); for CPU/gloo,
    where torch's ``SyncBatchNorm`` does not run. Eval mode: running stats."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0, *range(2, x.dim())]
        count = torch.tensor(
            float(x.numel() // x.shape[1]), dtype=x.dtype, device=x.device
        )
        stats = torch.cat([x.sum(dims), (x * x).sum(dims), count.view(1)])
        stats = all_reduce(stats)
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = stats[c : 2 * c] / n - mean * mean
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                unbiased = var.detach() * n / (n - 1).clamp_min(1)
                self.running_var.mul_(1 - m).add_(m * unbiased)
        shape = [1, c] + [1] * (x.dim() - 2)
        out = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every trainable BatchNorm by a global-batch one (``SyncBatchNorm``
    on CUDA, ``GlobalBatchNorm`` otherwise); frozen BN (no trainable affine) is
    left as it is."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        frozen = isinstance(child, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in child.parameters()
        )
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not frozen:
            new = GlobalBatchNorm(
                child.num_features,
                child.eps,
                child.momentum,
                child.affine,
                child.track_running_stats,
            )
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(module, name, new)
        else:
            convert_batchnorm(child, device)
    return module


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for the process group's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_group(local_rank: int, local_world: int) -> None:
    """Join the default process group from the environment (``MASTER_ADDR``,
    ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``): NCCL on GPU ``local_rank`` when
    this machine has a GPU per local process, else gloo."""
    use_cuda = torch.cuda.is_available() and torch.cuda.device_count() >= local_world
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")


def _entry(rank: int, fn: Callable, world: int, port: int, args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
        WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
    )  # fmt: skip
    init_group(rank, world)
    try:
        fn(rank, world, *args)
    finally:
        dist.destroy_process_group()


def spawn(fn: Callable, world_size: int, args: tuple = ()) -> None:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` fresh processes inside
    one process group (NCCL when each rank has a GPU, else gloo), on 127.0.0.1."""
    import torch.multiprocessing as mp

    mp.start_processes(
        _entry,
        args=(fn, world_size, free_port(), args),
        nprocs=world_size,
        join=True,
        start_method="spawn",
    )
