"""Options of the zero-shot regression loss on the GSP attribute vectors
(``core/losses/gsp_zsr.py``; docs/methods/gsp.md#zero-shot-regression-zsr-loss),
torch-free, for the method configs that add the loss (``gsp``, ``intra_batch``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dml_pipelines.core.schema import StrictModel


class ZsrConfig(StrictModel):
    """Zero-shot regression loss on the GSP attribute vectors
    (docs/methods/gsp.md#zero-shot-regression-zsr-loss): ``convex``: (1 − w)·L_DML +
    w·L_ZS (TF, DEFAULT); ``additive``: L + w·L_ZS. ``epsilon``: each sample scores
    −log(p + ε) (1e-16: the official code, DEFAULT; 0: the exact cross-entropy)."""

    enabled: bool = True
    weight: float = Field(0.1, ge=0, le=1)
    mix: Literal["convex", "additive"] = "convex"
    ridge: float = Field(0.05, gt=0)
    scale: float = Field(9.5, gt=0)
    epsilon: float = Field(1e-16, ge=0, lt=1)
    #: class-disjoint halves: ``alternate`` (classes in order of first
    #: appearance to A, B, A, …: the TF code's even/odd positions on its
    #: class-interleaved batches) or ``halves`` (first ⌈P/2⌉ classes: the
    #: PyTorch module's first/second half of a grouped batch)
    split: Literal["alternate", "halves"] = "halves"

    def check_pooling(self, pooling: str) -> None:
        """The loss reads the GSP attributes: one line when it is on without
        ``pooling.name: gsp``."""
        if self.enabled and pooling != "gsp":
            raise ValueError(
                f"zsr.enabled: the ZSR loss needs pooling.name: gsp "
                f"(got {pooling!r}); set zsr.enabled: false"
            )
