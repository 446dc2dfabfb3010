"""The Intra-Batch + GSP pieces against the official PyTorch modules: the GSP
module of the Intra-Batch integration (generalized-sum-pooling/pytorch/gsp)
and the Intra-Batch message-passing network (float64 golden fixtures written
by tools/official/make_fixtures.py; docs/methods/gsp.md, "Golden fixtures")."""

import torch
import torch.nn.functional as F
from torch import nn

from dml_pipelines.core.models.gsp_pooling import GeneralizedSumPooling
from dml_pipelines.core.models.mpn import MessagePassingNetwork

from .fixtures import assert_matches, load


def tensors(arrays):
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


def test_intra_batch_gsp_module_matches_official():
    """``weighted_max`` + ``classifier_kcenter``: the pooled backbone features
    n·t_i·f_i max-pooled, the linear head with bias, the classifier on its
    output; prototypes from the classifier rows."""
    meta, a = load("gsp_torch.npz")
    t = tensors(a)
    n_cls, d = t["param/classifier_weight"].shape
    c = t["param/embed_weight"].shape[1]
    pool = GeneralizedSumPooling(
        dim=d,
        num_prototypes=meta["num_prototypes"],
        transport_ratio=meta["transport_ratio"],
        entropy_weight=meta["entropy_weight"],
        solver_iterations=meta["solver_iterations"],
        init="classifier_kcenter",
        operator="weighted_max",
    ).double()
    head, classifier = nn.Linear(c, d).double(), nn.Linear(d, n_cls).double()
    with torch.no_grad():
        head.weight.copy_(t["param/embed_weight"])
        head.bias.copy_(t["param/embed_bias"])
        classifier.weight.copy_(t["param/classifier_weight"])
        classifier.bias.copy_(t["param/classifier_bias"])
    assert pool.initialize_from_rows(classifier.weight)
    assert torch.equal(pool.prototypes.detach(), t["prototypes"])
    fmap = t["fmap"].clone().requires_grad_(True)
    out = pool(fmap, head)
    probs, emb = classifier(out["embedding"]), F.normalize(out["embedding"], dim=1)
    assert_matches(probs, t["probs"], "classifier logits")
    assert_matches(emb, t["emb"], "normalised embedding")
    assert_matches(out["aux"], t["attr"], "attributes")
    scalar = (
        (probs * t["cot_probs"]).sum()
        + (emb * t["cot_emb"]).sum()
        + (out["aux"] * t["cot_attr"]).sum()
    )
    scalar.backward()
    assert_matches(fmap.grad, t["grad_fmap"], "d/dfeatures")
    assert_matches(head.weight.grad, t["grad_embed_weight"], "d/dW")
    assert_matches(head.bias.grad, t["grad_embed_bias"], "d/db")
    assert_matches(classifier.weight.grad, t["grad_classifier_weight"], "d/dW_cls")
    assert_matches(pool.prototypes.grad, t["grad_prototypes"], "d/dprototypes")


#: official parameter name (GNNReID) -> the project's (MessagePassingNetwork)
LAYER = "gnn_model.node_model.layers.0."
MPN_NAMES = {
    "dim_red": "input",
    LAYER + "att.q_linear": "layers.0.attn.q",
    LAYER + "att.k_linear": "layers.0.attn.k",
    LAYER + "att.v_linear": "layers.0.attn.v",
    LAYER + "att.out": "layers.0.attn.o",
    LAYER + "linear1": "layers.0.ffn.0",
    LAYER + "linear2": "layers.0.ffn.3",
    LAYER + "norm1": "layers.0.norm1",
    LAYER + "norm2": "layers.0.norm2",
}


def test_mpn_matches_official():
    """One attention layer over the complete graph with self-loops, softmax
    with the extra zero logit, post-norm residual blocks (eval mode)."""
    meta, a = load("mpn.npz")
    t = tensors(a)
    mpn = MessagePassingNetwork(meta["dim"], layers=1, heads=meta["heads"]).double()
    mpn.eval()
    ours = dict(mpn.named_parameters())
    with torch.no_grad():
        for official, name in MPN_NAMES.items():
            for suffix in ("weight", "bias"):
                ours[f"{name}.{suffix}"].copy_(t[f"param/{official}.{suffix}"])
    x = t["x"].clone().requires_grad_(True)
    feats = mpn(x)
    assert_matches(feats, t["feats"], "node features")
    (feats * t["cot"]).sum().backward()
    assert_matches(x.grad, t["grad_x"], "d/dx")
    for official, name in MPN_NAMES.items():
        for suffix in ("weight", "bias"):
            assert_matches(
                ours[f"{name}.{suffix}"].grad,
                t[f"grad/{official}.{suffix}"],
                f"d/d{name}.{suffix}",
            )
