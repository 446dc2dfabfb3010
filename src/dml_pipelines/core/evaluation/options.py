"""The evaluation options: the ``evaluation`` block of parameters.yml
(docs/protocols.md) and the ``**options`` of ``evaluate()``, one schema for both.

Errors name the real key, ``evaluation.<key>``. Torch-free: the Kedro nodes hint
their ``evaluation`` parameter with ``EvaluationOptions`` and Kedro validates it
before any node runs.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, get_args

from pydantic import Field, StrictBool

from dml_pipelines.core.schema import StrictModel

LoneQueries = Literal["drop", "miss"]
KnnBackend = Literal["auto", "faiss", "torch", "bf16"]
DeepRecall = Literal["count", "search"]
ClusteringBackend = Literal["faiss", "sklearn"]
InshopSet = Literal["union", "query"]

LONE_QUERIES = get_args(LoneQueries)
KNN_BACKENDS = get_args(KnnBackend)
DEEP_RECALL = get_args(DeepRecall)
CLUSTERING_BACKENDS = get_args(ClusteringBackend)
INSHOP_SETS = get_args(InshopSet)


class EvaluationOptions(StrictModel):
    """Retrieval and clustering options (docs/protocols.md).

    ``lone_queries`` (drop | miss: a query without a positive is left out or
    counted as a miss), ``knn_backend`` (auto | faiss | torch | bf16; ``auto``:
    bf16 on L2-normalised vectors where bfloat16 is fast, else faiss),
    ``knn_chunk_size``, ``knn_k`` (None: R_max under ``deep_recall: count``,
    max(largest K, R_max) under ``search``), ``deep_recall`` (count | search:
    Recall@K beyond the search depth by counting, or by searching that deep),
    ``avg_of_avgs``, ``clustering``, ``clustering_backend`` (faiss | sklearn),
    ``inshop_set`` (union | query: the rows clustered for query → gallery data)
    and ``seed`` (k-means)."""

    error_key: ClassVar[str] = "evaluation"

    lone_queries: LoneQueries = "drop"
    knn_backend: KnnBackend = "auto"
    knn_chunk_size: int = Field(4096, gt=0)
    knn_k: int | None = Field(None, gt=0)
    deep_recall: DeepRecall = "count"
    avg_of_avgs: StrictBool = False
    clustering: StrictBool = True
    clustering_backend: ClusteringBackend = "faiss"
    inshop_set: InshopSet = "union"
    seed: int = Field(0, ge=0)


def check_choice(name: str, value: Any) -> None:
    """A one-line ``ValueError`` naming ``evaluation.<name>`` when ``value`` is not
    one of the choices of that option (for the functions that take one option
    without the whole schema)."""
    choices = get_args(EvaluationOptions.model_fields[name].annotation)
    if value not in choices:
        raise ValueError(
            f"evaluation.{name}: invalid value {value!r}; valid: {', '.join(choices)}"
        )
