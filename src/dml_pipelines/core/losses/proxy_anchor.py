"""ProxyAnchor (docs/baselines.md#proxyanchor-proxy_anchor), α = 32, δ = 0.1, one proxy
per class, Kaiming-normal proxies (PML)."""

from __future__ import annotations

from pytorch_metric_learning import losses

from dml_pipelines.core.losses import LOSSES


@LOSSES.register("proxy_anchor")
def build(
    embedding_size: int, num_classes: int, margin: float = 0.1, alpha: float = 32.0
) -> losses.ProxyAnchorLoss:
    return losses.ProxyAnchorLoss(
        num_classes=num_classes,
        embedding_size=embedding_size,
        margin=margin,
        alpha=alpha,
    )
