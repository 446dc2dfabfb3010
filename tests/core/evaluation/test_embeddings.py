from __future__ import annotations

import numpy as np
import pytest

from dml_pipelines.core.evaluation import EmbeddingSet, load_embeddings, save_embeddings
from dml_pipelines.core.evaluation.embeddings import normalize


def _set(n=6, d=3, **kw):
    rng = np.random.default_rng(0)
    return EmbeddingSet(
        embeddings=rng.standard_normal((n, d)).astype(np.float32),
        labels=np.arange(n) % 2,
        index=np.arange(n) + 10,
        **kw,
    )


def test_roundtrip_minimal(tmp_path):
    es = _set()
    path = tmp_path / "sub" / "test_embeddings.npz"
    save_embeddings(path, es)
    back = load_embeddings(path)
    np.testing.assert_array_equal(back.embeddings, es.embeddings)
    np.testing.assert_array_equal(back.labels, es.labels)
    np.testing.assert_array_equal(back.index, es.index)
    assert back.embeddings.dtype == np.float32
    assert back.labels.dtype == np.int64 and back.index.dtype == np.int64
    assert back.normalization == "l2"
    assert back.is_query is None and back.is_gallery is None and back.fold is None


def test_roundtrip_full_fields_and_exact_path(tmp_path):
    q = np.array([True, True, False, False, False, False])
    es = _set(normalization="lipschitz", is_query=q, is_gallery=~q, fold=2)
    path = tmp_path / "fold2.emb"  # no .npz suffix: the path must be kept as is
    save_embeddings(path, es)
    assert path.exists()
    back = load_embeddings(path)
    assert back.normalization == "lipschitz"
    assert back.fold == 2
    np.testing.assert_array_equal(back.is_query, q)
    np.testing.assert_array_equal(back.is_gallery, ~q)
    assert back.is_query.dtype == bool


def test_missing_key_names_file_and_key(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, embeddings=np.zeros((2, 3), np.float32), labels=np.zeros(2))
    with pytest.raises(ValueError, match=r"bad\.npz.*'index'"):
        load_embeddings(path)


def test_shape_mismatch_names_file(tmp_path):
    path = tmp_path / "mismatch.npz"
    np.savez(
        path,
        embeddings=np.zeros((3, 2), np.float32),
        labels=np.zeros(2, np.int64),
        index=np.arange(3),
    )
    with pytest.raises(ValueError, match=r"mismatch\.npz: labels has shape"):
        load_embeddings(path)


def test_bad_normalization_names_file(tmp_path):
    path = tmp_path / "norm.npz"
    np.savez(
        path,
        embeddings=np.zeros((2, 2), np.float32),
        labels=np.zeros(2, np.int64),
        index=np.arange(2),
        normalization=np.asarray("cosine"),
    )
    with pytest.raises(ValueError, match=r"norm\.npz: normalization.*'cosine'"):
        load_embeddings(path)


def test_query_without_gallery_is_rejected():
    with pytest.raises(ValueError, match="together"):
        _set(is_query=np.ones(6, bool))


def test_normalize_modes():
    x = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]], dtype=np.float32)
    l2 = normalize(x, "l2")
    np.testing.assert_allclose(l2[:2], [[0.6, 0.8], [0.6, 0.8]], rtol=1e-6)
    assert np.all(np.isfinite(l2))  # the zero vector stays finite
    lip = normalize(x, "lipschitz")
    np.testing.assert_allclose(lip, [[0.6, 0.8], [0.3, 0.4], [0, 0]], rtol=1e-6)
    np.testing.assert_array_equal(normalize(x, "none"), x)
    with pytest.raises(ValueError, match="normalization"):
        normalize(x, "cosine")
