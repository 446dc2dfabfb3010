"""ProxyNCA++ loss as used in the CCP tables (docs/baselines.md#proxynca-proxy_nca_pp):
mean_x −log softmax over proxies of s(x, p)/T at the true class, via PML
``ProxyNCALoss(softmax_scale = 1/(2T))`` on squared Euclidean distances of unit
vectors (−‖x − p‖² = 2s − 2)."""

from __future__ import annotations

from pytorch_metric_learning import losses

from dml_pipelines.core.losses import LOSSES


@LOSSES.register("proxy_nca_pp")
def build(
    embedding_size: int, num_classes: int, temperature: float = 0.1
) -> losses.ProxyNCALoss:
    if temperature <= 0:
        raise ValueError("loss.args.temperature must be > 0")
    return losses.ProxyNCALoss(
        num_classes=num_classes,
        embedding_size=embedding_size,
        softmax_scale=1.0 / (2.0 * temperature),
    )
