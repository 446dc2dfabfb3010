import pytest
import torch

from dml_pipelines.core.models.pooling import POOLINGS


def _loop_pool(fmap, kind):
    b, c, h, w = fmap.shape
    out = torch.zeros(b, c, dtype=fmap.dtype)
    for i in range(b):
        for j in range(c):
            vals = [fmap[i, j, y, x] for y in range(h) for x in range(w)]
            mean, mx = sum(vals) / len(vals), max(vals)
            out[i, j] = {"gap": mean, "gmp": mx, "gap+gmp": mean + mx}[kind]
    return out


@pytest.mark.parametrize("name", ["gap", "gmp", "gap+gmp"])
def test_pooling_matches_loop_then_applies_head(name):
    torch.manual_seed(0)
    fmap = torch.randn(3, 5, 4, 3, dtype=torch.float64)
    head = torch.nn.Linear(5, 2).double()
    out = POOLINGS.get(name)()(fmap, head)
    pooled = _loop_pool(fmap, name)
    torch.testing.assert_close(out["pooled"], pooled, rtol=0, atol=1e-12)
    torch.testing.assert_close(out["embedding"], head(pooled), rtol=0, atol=1e-12)


def test_unknown_pooling_lists_valid_names():
    with pytest.raises(KeyError, match="gap, gap\\+gmp, gmp"):
        POOLINGS.get("gsp_typo", key="pooling.name")
