"""MPN of Intra-Batch (docs/methods/intra_batch.md#the-model-and-the-loss)."""

import math

import torch

from dml_pipelines.core.models.mpn import (
    MessagePassingNetwork,
    ZeroLogitAttention,
    zero_logit_softmax,
)


def _attention(dim=8, heads=2, seed=0, zero_logit=True):
    torch.manual_seed(seed)
    return ZeroLogitAttention(dim, heads, dropout=0.1, zero_logit=zero_logit).double()


def _loop_reference(att, h):
    """Per head a, per receiver i: s_ij = <q_i, k_j>/sqrt(d_h) over all j,
    w_ij = exp(s_ij) / (1 + Σ_j exp(s_ij)), m_i = Σ_j w_ij v_j, then W_o."""
    b, d = h.shape
    dh = d // att.heads
    q, k, v = att.q(h), att.k(h), att.v(h)
    weights = torch.zeros(att.heads, b, b, dtype=h.dtype)
    msgs = torch.zeros(b, d, dtype=h.dtype)
    for a in range(att.heads):
        sl = slice(a * dh, (a + 1) * dh)
        for i in range(b):
            s = torch.stack([q[i, sl] @ k[j, sl] / math.sqrt(dh) for j in range(b)])
            w = torch.exp(s) / (1 + torch.exp(s).sum())
            weights[a, i] = w
            msgs[i, sl] = sum(w[j] * v[j, sl] for j in range(b))
    return weights, att.o(msgs)


def test_attention_rows_sum_below_one_and_match_a_loop_reference():
    att = _attention().eval()
    h = torch.randn(6, 8, dtype=torch.float64)
    w, _ = att.weights(h)
    ref_w, ref_out = _loop_reference(att, h)
    torch.testing.assert_close(w, ref_w)
    torch.testing.assert_close(att(h), ref_out)
    q = att.q(h).view(6, 2, 4).transpose(0, 1)
    k = att.k(h).view(6, 2, 4).transpose(0, 1)
    total = torch.exp(q @ k.transpose(1, 2) / 2.0).sum(-1)  # Σ_j e^{s_ij}, (H, B)
    torch.testing.assert_close(w.sum(-1), total / (1 + total))
    assert (w.sum(-1) < 1).all()


def test_plain_softmax_ablation_rows_sum_to_one():
    att = _attention(zero_logit=False).eval()
    w, _ = att.weights(torch.randn(5, 8, dtype=torch.float64))
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 5, dtype=torch.float64))


def test_stable_form_equals_naive_and_is_finite_at_extremes():
    s = torch.randn(4, 7, dtype=torch.float64) * 3
    naive = torch.exp(s) / (1 + torch.exp(s).sum(-1, keepdim=True))
    torch.testing.assert_close(zero_logit_softmax(s), naive)
    big = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, 1e4]])
    w = zero_logit_softmax(big)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w[0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(w[1], torch.zeros(3))  # the zero logit takes it all
    torch.testing.assert_close(w[2], torch.full((3,), 1 / 3))
    big.requires_grad_(True)
    zero_logit_softmax(big).sum().backward()
    assert torch.isfinite(big.grad).all()


def test_batch_of_one_weight_is_sigmoid_of_its_logit():
    att = _attention(seed=1).eval()
    h = torch.randn(1, 8, dtype=torch.float64)
    w, _ = att.weights(h)
    q, k = att.q(h).view(2, 4), att.k(h).view(2, 4)
    s = (q * k).sum(-1) / 2.0  # sqrt(d_h) = 2
    torch.testing.assert_close(w.view(2), torch.exp(s) / (torch.exp(s) + 1))


def test_complete_graph_with_self_loops():
    att = _attention(seed=2).eval()
    b = 5
    w, _ = att.weights(torch.randn(b, 8, dtype=torch.float64))
    assert w.shape == (2, b, b) and int((w > 0).sum()) == 2 * b * b
    assert (torch.diagonal(w, dim1=1, dim2=2) > 0).all()
    # every node's output depends on every node, itself included
    torch.manual_seed(2)
    mpn = MessagePassingNetwork(8, layers=1, heads=2).double().eval()
    x = torch.randn(b, 8, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(mpn, x)  # (B, d, B, d)
    dep = jac.abs().sum(dim=(1, 3))  # (B, B)
    assert (dep > 0).all()


def test_permutation_equivariance_in_eval_mode():
    torch.manual_seed(3)
    mpn = MessagePassingNetwork(16, layers=2, heads=4, cat=True).double().eval()
    x = torch.randn(9, 16, dtype=torch.float64)
    perm = torch.randperm(9)
    torch.testing.assert_close(mpn(x[perm]), mpn(x)[perm])


def test_cat_with_two_layers_doubles_the_output():
    torch.manual_seed(4)
    mpn = MessagePassingNetwork(512, layers=2, heads=8, cat=True).eval()
    assert mpn.out_dim == 1024
    assert mpn(torch.randn(3, 512)).shape == (3, 1024)
    assert MessagePassingNetwork(512, layers=2, heads=8).out_dim == 512


def test_layer_structure_and_init():
    torch.manual_seed(5)
    mpn = MessagePassingNetwork(64, layers=1, heads=2, ffn_mult=4)
    layer = mpn.layers[0]
    assert layer.ffn[0].out_features == 256 and layer.ffn[3].out_features == 64
    for lin in (layer.attn.q, layer.attn.k, layer.attn.v, layer.attn.o):
        assert torch.count_nonzero(lin.bias) == 0
    assert layer.attn.drop.p == layer.drop1.p == layer.ffn[2].p == 0.1
    assert torch.equal(layer.norm1.weight, torch.ones(64))
