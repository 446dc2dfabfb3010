"""Kills the surviving mutants of ``models/mpn.py`` (docs/mutation.md,
``intra_batch_mpn``): the documented defaults (docs/methods/intra_batch.md, "Key
parameters"), the heads error, the stable softmax's shift, the precision of the
logits and normaliser, the ``zero_logit`` switch through every layer, the post-norm
residual blocks and the ``cat`` switch."""

import pytest
import torch

from dml_pipelines.core.models.mpn import (
    MessagePassingNetwork,
    MPNLayer,
    ZeroLogitAttention,
    zero_logit_softmax,
)
from tests.core.models.test_mpn import _loop_reference


def row_sums(att, seed=0):
    """Row sums (H, B) of the attention weights of ``att`` in float64, eval mode."""
    g = torch.Generator().manual_seed(seed)
    w, _ = att.double().eval().weights(torch.randn(5, 8, generator=g).double())
    return w.sum(-1)


def layer_norm(x, eps=1e-5):
    """LayerNorm at its initial affine map (weight 1, bias 0)."""
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def post_norm_reference(layer, h):
    """h = LN1(h + attn(h)); h = LN2(h + FFN(h)) with FFN = W2 ReLU(W1 h + b1) + b2
    (eval mode: no dropout)."""
    h = layer_norm(h + layer.attn(h))
    w1, w2 = layer.ffn[0], layer.ffn[3]
    ffn = torch.relu(h @ w1.weight.T + w1.bias) @ w2.weight.T + w2.bias
    return layer_norm(h + ffn)


def test_code_defaults_are_the_documented_ones():
    torch.manual_seed(0)
    mpn = MessagePassingNetwork(8)
    assert len(mpn.layers) == 1 and not mpn.cat and mpn.out_dim == 8
    layer = mpn.layers[0]
    assert layer.attn.heads == 2 and layer.ffn[0].out_features == 4 * 8
    drops = (layer.attn.drop, layer.drop1, layer.drop2, layer.ffn[2])
    assert [d.p for d in drops] == [0.1] * 4
    alone = MPNLayer(8, 2)
    assert alone.ffn[0].out_features == 32 and alone.drop1.p == 0.1
    assert ZeroLogitAttention(8, 2).drop.p == 0.1
    # attention_zero_logit: true by default, in every constructor
    for att in (ZeroLogitAttention(8, 2), alone.attn, layer.attn):
        assert (row_sums(att) < 1 - 1e-3).all()


@pytest.mark.parametrize("zero_logit", [True, False])
def test_zero_logit_reaches_the_attention_of_every_layer(zero_logit):
    torch.manual_seed(1)
    layers = [
        MPNLayer(8, 2, zero_logit=zero_logit),
        *MessagePassingNetwork(8, layers=2, zero_logit=zero_logit).layers,
    ]
    for layer in layers:
        sums = row_sums(layer.attn)
        if zero_logit:
            assert (sums < 1 - 1e-3).all()
        else:
            torch.testing.assert_close(sums, torch.ones_like(sums))


def test_heads_not_dividing_dim_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"^mpn\.heads: 3 does not divide dim 8$"):
        ZeroLogitAttention(8, 3)


def test_rows_of_nonpositive_scores_are_the_closed_form_bit_for_bit():
    """m_i = max(0, max_j s_ij) is 0 on such rows: no shift, so the weights are
    exp(s) / (1 + Σ exp(s)) exactly (a shift by any other m rounds differently),
    and a weight exp(s) at the bottom of the float64 range stays positive."""
    g = torch.Generator().manual_seed(2)
    s = -torch.rand(6, 9, generator=g, dtype=torch.float64) * 5
    naive = torch.exp(s) / (1 + torch.exp(s).sum(-1, keepdim=True))
    assert torch.equal(zero_logit_softmax(s), naive)
    tiny = torch.full((1, 3), -745.0, dtype=torch.float64)  # e^-745 ~ 5e-324
    assert (zero_logit_softmax(tiny) > 0).all()


def test_float64_attention_is_not_computed_in_float32():
    """ "At least float32": a float64 model keeps float64 logits (float32 ones
    would be off by ~1e-8 relative)."""
    torch.manual_seed(3)
    att = ZeroLogitAttention(8, 2).double().eval()
    h = torch.randn(6, 8, dtype=torch.float64) * 3
    w, _ = att.weights(h)
    ref_w, ref_out = _loop_reference(att, h)
    torch.testing.assert_close(w, ref_w, rtol=1e-12, atol=0)
    torch.testing.assert_close(att(h), ref_out, rtol=1e-12, atol=1e-14)


def test_bfloat16_logits_and_normaliser_are_computed_in_float32():
    """q = k = h (identity maps) on multiples of 1/8: the bfloat16 logits are
    exact, so the weights must be the exact ones rounded once to bfloat16; a
    bfloat16 softmax rounds at every step. The weights come back in the values'
    dtype, so the messages are bfloat16 too."""
    torch.manual_seed(4)
    att = ZeroLogitAttention(8, 2, dropout=0.0).to(torch.bfloat16).eval()
    with torch.no_grad():
        for lin in (att.q, att.k):
            lin.weight.copy_(torch.eye(8))
    g = torch.Generator().manual_seed(4)
    h = (torch.randint(-8, 9, (12, 8), generator=g) / 8).to(torch.bfloat16)
    w, v = att.weights(h)
    assert w.dtype == v.dtype == torch.bfloat16
    hd = h.double().view(12, 2, 4).transpose(0, 1)  # (H, B, d_h)
    exact = zero_logit_softmax(hd @ hd.transpose(1, 2) / 2.0)  # sqrt(d_h) = 2
    assert torch.equal(w, exact.to(torch.bfloat16))
    assert att(h).dtype == torch.bfloat16


def test_layer_is_post_norm_with_residual_sums():
    torch.manual_seed(5)
    layer = MPNLayer(8, 2).double().eval()
    h = torch.randn(7, 8, dtype=torch.float64)
    torch.testing.assert_close(layer(h), post_norm_reference(layer, h))


@pytest.mark.parametrize("cat", [False, True])
def test_two_layers_give_the_last_output_or_the_concatenation(cat):
    torch.manual_seed(6)
    mpn = MessagePassingNetwork(8, layers=2, heads=2, cat=cat).double().eval()
    e = torch.randn(5, 8, dtype=torch.float64)
    h1 = post_norm_reference(mpn.layers[0], mpn.input(e))
    h2 = post_norm_reference(mpn.layers[1], h1)
    expected = torch.cat([h1, h2], dim=1) if cat else h2
    out = mpn(e)
    assert out.shape == (5, mpn.out_dim)
    torch.testing.assert_close(out, expected)
