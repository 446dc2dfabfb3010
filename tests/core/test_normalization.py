"""The normalisation registry (``core/normalization.py``): the method config, the
embedder and the evaluation all read it, so a normalisation declares its own code
in one place."""

import numpy as np
import pytest
import torch

from dml_pipelines.core.evaluation import evaluate
from dml_pipelines.core.evaluation.embeddings import normalize
from dml_pipelines.core.methods.configs import parse_method_config
from dml_pipelines.core.models.embedder import build_embedder
from dml_pipelines.core.normalization import (
    NORMALIZATIONS,
    Normalization,
    get_normalization,
)
from tests.conftest import minimal_block


@pytest.fixture
def halved():
    """A normalisation of the test's own: v / max(2, ‖v‖)."""
    NORMALIZATIONS.register("halved")(
        Normalization(
            lambda x: x / x.norm(dim=-1, keepdim=True).clamp_min(2.0),
            2.0,
            unit_norm=False,
        )
    )
    yield
    NORMALIZATIONS.unregister("halved")


def test_a_registered_normalisation_reaches_config_embedder_and_evaluation(halved):
    cfg = parse_method_config(minimal_block(normalization="halved"))
    torch.manual_seed(0)
    embedder = build_embedder(cfg).eval()
    images = torch.randn(6, 3, 16, 16)
    with torch.no_grad():
        raw, out = embedder.embedding(images), embedder(images)
    torch.testing.assert_close(out, raw / raw.norm(dim=1, keepdim=True).clamp_min(2))
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32) * 3
    x[0] /= 10  # a row inside the ball of radius 2: left as it is
    rows = np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(
        normalize(x, "halved"), x / np.maximum(rows, 2.0), rtol=1e-6
    )
    m = evaluate(x, np.arange(8) // 2, normalization="halved", clustering=False)
    assert m["knn_backend"] in ("faiss", "torch")  # not unit norm: no bf16


def test_unknown_names_fail_in_one_line_listing_the_registry():
    with pytest.raises(ValueError) as err:
        parse_method_config(minimal_block(normalization="cosine"))
    assert str(err.value) == (
        "contrastive_c1.normalization: must be one of l2, lipschitz, none "
        "(got 'cosine')"
    )
    with pytest.raises(ValueError, match="normalization: 'cosine' must be one of"):
        get_normalization("cosine")


@pytest.mark.parametrize("name", ["l2", "lipschitz", "none"])
def test_tensor_and_array_code_agree(name):
    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(1)) * 2
    entry = get_normalization(name)
    np.testing.assert_allclose(
        entry.tensor(x).numpy(), entry.array(x.numpy()), rtol=1e-6, atol=1e-7
    )
    assert entry.unit_norm == (name == "l2")
