"""Generalized Sum Pooling (Gürbüz, Şener, Alatan, ICCV 2023;
docs/methods/gsp.md#definitions), registered as the pooling ``gsp``.

The head W is applied per location (v_i = W f_i), the costs to the K prototypes
are c_ki = ‖N(ω_k) − N(v_i)‖ (N clips onto the unit ball), and the partial
transport plan gives the pooling weights t_i = Σ_k π_ki / μ (Σ t = 1) and the
attribute vector z_k = Σ_i π_ki / μ (Σ z = 1). Until the prototypes are
initialised the output is plain GAP of v with zero attributes. With
``init: memory_kcenter`` the method feeds ``gap`` (N(GAP(v)), detached) to
``observe`` after each training step, and once ``init_memory_size`` of them are
stored the prototypes are set once, in place, by greedy k-center. With
``init: classifier_kcenter`` (the PyTorch Intra-Batch module) the method
hands its classifier weight rows to ``initialize_from_rows`` at its first
training forward: row 0 and K − 1 rows picked by greedy k-center seeded with it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dml_pipelines.core.config import Component
from dml_pipelines.core.models.gsp_pooling_options import check_pooling_args
from dml_pipelines.core.models.gsp_transport import lipschitz_normalize, transport_plan
from dml_pipelines.core.models.kcenter import DEFAULT, greedy_k_center
from dml_pipelines.core.models.pooling import POOLINGS

#: ``weighted_gem``: initial power and input floor (the TF ``gmeanp``)
GEM_POWER_INIT, GEM_FLOOR = 3.0, 1e-6
#: buffers needed only while training (left out of ``model_state.pt``)
TRAINING_ONLY_BUFFERS = ("memory", "memory_count", "steps_seen")


def with_embedding_dim(cfg: Any) -> Any:
    """``cfg`` with ``pooling.args.dim`` set to ``embedding_dim`` when its pooling
    is ``gsp`` (a method using the layer calls this before ``build_embedder``)."""
    if cfg.pooling.name != "gsp":
        return cfg
    args = {**cfg.pooling.args, "dim": cfg.embedding_dim}
    return cfg.model_copy(update={"pooling": Component(name="gsp", args=args)})


def greedy_kcenter(points: torch.Tensor, seeds: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (k,) into ``points`` (N, D) picked by farthest-point selection
    (``core/models/kcenter.py``) as the TF layer: each pick maximises the
    minimum squared L2 distance to ``seeds`` (S, D) ∪ the points already picked
    (torch's default ``cdist``); a picked index is never picked again."""
    if k == 0:  # one prototype from the classifier: row 0 only
        return torch.zeros(0, dtype=torch.long, device=points.device)
    _, picks = greedy_k_center(points[None], seeds[None], k, DEFAULT, distinct=True)
    return picks[0]


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def apply_head(fmap: torch.Tensor, head: nn.Module) -> torch.Tensor:
    """(B, C, h, w) -> v (B, n, D): the head at every location."""
    b, c = fmap.shape[:2]
    flat = fmap.flatten(2).transpose(1, 2).reshape(-1, c)  # (B·n, C)
    return head(flat).reshape(b, fmap.shape[2] * fmap.shape[3], -1)


@POOLINGS.register("gsp")
class GeneralizedSumPooling(nn.Module):
    """GSP layer. Args (config ``pooling.args``):

    (checked by ``gsp_pooling_options.check_pooling_args``)

    dim: D, the head's output size (the ``gsp`` method sets it to
        ``embedding_dim``; give it when another method uses this pooling).
    num_prototypes: K; transport_ratio: μ; entropy_weight: γ;
    solver_iterations: fixed-point iterations; backward: implicit | unrolled.
    init: memory_kcenter (GAP until the memory is full, then k-center) |
        classifier_kcenter (GAP until the method hands over its classifier's
        weight rows, ``initialize_from_rows``) | none (the glorot-initialised
        prototypes from the first step).
    init_memory_size: memory rows (1,024); init_delay_steps: training steps
        before the memory starts filling.
    operator: weighted_avg (Σ t_i v_i, TF) | weighted_max (head of
        max_i n t_i f_i, the PyTorch Intra-Batch module) | weighted_gem (head
        of the generalized mean (mean_i max(n t_i f_i, 1e-6)^p)^(1/p) with a
        learned power p, initially 3: the TF ResNet-50 ``use_gemp`` configs).
    augment_max_pool: add W·GMP(f) to the embedding (conventional configs).
    """

    def __init__(
        self,
        dim: int | None = None,
        num_prototypes: int = 64,
        transport_ratio: float = 0.3,
        entropy_weight: float = 5.0,
        solver_iterations: int = 100,
        backward: str = "implicit",
        init: str = "memory_kcenter",
        init_memory_size: int = 1024,
        init_delay_steps: int = 0,
        operator: str = "weighted_avg",
        augment_max_pool: bool = False,
    ) -> None:
        super().__init__()
        args = dict(locals())
        args.pop("self"), args.pop("__class__", None)
        check_pooling_args(args)
        if dim is None:
            raise ValueError(
                "pooling.args.dim: gsp needs the embedding size (set it to "
                "embedding_dim; the gsp method does this itself)"
            )
        self.mu, self.gamma = float(transport_ratio), float(entropy_weight)
        self.iterations, self.backward = solver_iterations, backward
        self.operator, self.augment_max_pool = operator, augment_max_pool
        self.init, self.init_delay_steps = init, init_delay_steps
        self.prototypes = nn.Parameter(torch.empty(num_prototypes, dim))
        nn.init.xavier_uniform_(self.prototypes)
        if operator == "weighted_gem":
            self.gem_power = nn.Parameter(torch.tensor(GEM_POWER_INIT))
        self.register_buffer("initialized", torch.tensor(init == "none"))
        size = init_memory_size if init == "memory_kcenter" else 0
        self.register_buffer("memory", torch.zeros(size, dim))
        self.register_buffer("memory_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))

    # -- prototype initialisation (driven by the method's hooks) ---------------
    @torch.no_grad()
    def observe(self, gap: torch.Tensor) -> bool:
        """After a training step: store N(GAP(v)) rows (B, D) until the memory
        is full, then set the prototypes by k-center. True when it initialised.

        As the official ``fill_memory``: a batch that does not fit into the
        rows left is written over the *last* B rows (the tail of the previous
        batch is overwritten), so the memory ends with a whole batch."""
        self.steps_seen += 1
        if bool(self.initialized) or int(self.steps_seen) <= self.init_delay_steps:
            return False
        size = len(self.memory)
        gap = gap[-size:]  # a batch larger than the memory: its last rows
        start = min(int(self.memory_count), size - len(gap))
        self.memory[start : start + len(gap)] = gap.to(self.memory)
        self.memory_count.fill_(min(int(self.memory_count) + len(gap), size))
        return self.initialize_if_full()

    @torch.no_grad()
    def initialize_if_full(self) -> bool:
        """k-center over memory[K:] seeded by memory[:K] (seeds not kept); the
        prototypes are overwritten in place (the optimiser keeps them)."""
        full = len(self.memory) > 0 and int(self.memory_count) >= len(self.memory)
        if bool(self.initialized) or not full:
            return False
        k = self.prototypes.shape[0]
        idx = greedy_kcenter(self.memory[k:], self.memory[:k], k)
        self.prototypes.data.copy_(self.memory[k:][idx])
        self.initialized.fill_(True)
        return True

    @torch.no_grad()
    def initialize_from_rows(self, rows: torch.Tensor) -> bool:
        """``classifier_kcenter``: set the K prototypes once, in place, from the
        rows (C, D) of a classifier weight: row 0 first, then K − 1 rows of
        rows[1:] by greedy k-center seeded with row 0 (as the PyTorch module).
        True when it initialised; False when already done."""
        if bool(self.initialized):
            return False
        k, dim = self.prototypes.shape
        if rows.ndim != 2 or rows.shape[1] != dim or len(rows) < k:
            raise ValueError(
                f"pooling.args.init: classifier_kcenter picks {k} prototypes of "
                f"size {dim} from classifier rows of shape {tuple(rows.shape)}"
            )
        rows = rows.detach().to(self.prototypes)
        idx = greedy_kcenter(rows[1:], rows[:1], k - 1)
        self.prototypes.data.copy_(torch.cat([rows[:1], rows[1:][idx]]))
        self.initialized.fill_(True)
        return True

    # -- forward ---------------------------------------------------------------
    def forward(self, fmap: torch.Tensor, head: nn.Module) -> dict[str, torch.Tensor]:
        """(B, C, h, w), head -> ``embedding`` g (B, D), ``pooled`` (B, C),
        ``aux`` z (B, K), ``weights`` t (B, n), ``gap`` N(GAP(v)) detached."""
        v = apply_head(fmap, head)  # (B, n, D)
        gap = v.mean(dim=1)
        out = {"gap": lipschitz_normalize(gap.detach().float())}
        b, n, k = v.shape[0], v.shape[1], self.prototypes.shape[0]
        if not bool(self.initialized):
            t = torch.full((b, n), 1.0 / n, device=v.device, dtype=v.dtype)
            out.update(embedding=gap, aux=v.new_zeros(b, k), weights=t)
        else:
            with torch.autocast(v.device.type, enabled=False):
                costs = torch.cdist(
                    lipschitz_normalize(_at_least_float32(self.prototypes))[
                        None
                    ].expand(b, -1, -1),
                    lipschitz_normalize(_at_least_float32(v)),
                )  # (B, K, n)
                x = transport_plan(
                    costs, self.mu, self.gamma, self.iterations, self.backward
                )
            # t from π (Σ t = 1 exactly after the final pass); TF's residual
            # form (1/n − ρ)/μ agrees to the solver's tolerance
            t = x[:, 1:].sum(dim=1) / self.mu  # (B, n)
            out["aux"] = x[:, 1:].sum(dim=2) / self.mu
            out["weights"] = t
            if self.operator == "weighted_avg":
                out["embedding"] = torch.einsum("bn,bnd->bd", t.to(v.dtype), v)
            else:
                f = fmap.flatten(2)  # (B, C, n)
                weighted = (n * t.to(f.dtype))[:, None, :] * f
                if self.operator == "weighted_max":
                    out["pooled"] = weighted.amax(dim=2)
                else:
                    # the p-th powers in at least float32 (also under AMP)
                    x = _at_least_float32(weighted).clamp_min(GEM_FLOOR)
                    p = self.gem_power.to(x.dtype)
                    out["pooled"] = x.pow(p).mean(dim=2).pow(1.0 / p)
                out["embedding"] = head(out["pooled"])
        if self.augment_max_pool:
            out["embedding"] = out["embedding"] + head(fmap.amax(dim=(2, 3)))
        return out
