"""The GSP layer, the ZSR loss and the C1 + cross-batch-memory + ZSR chain
against the official TensorFlow code (float64 golden fixtures written by
tools/official/make_fixtures.py; docs/methods/gsp.md, "Golden fixtures")."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dml_pipelines.core.losses.contrastive_c1 import build as build_c1
from dml_pipelines.core.losses.gsp_xbm import CrossBatchMemory
from dml_pipelines.core.losses.gsp_zsr import ZeroShotRegressionLoss
from dml_pipelines.core.methods.gsp_config import GspConfig, GspZsrConfig
from dml_pipelines.core.models.gsp_pooling import GeneralizedSumPooling

from .fixtures import assert_matches, case, load, rel_error

LAYER_CASES = {
    "avg_inv": dict(backward="implicit", operator="weighted_avg"),
    "avg_auto": dict(backward="unrolled", operator="weighted_avg"),
    "gem_inv": dict(backward="implicit", operator="weighted_gem"),
    "maxaug_inv": dict(
        backward="implicit", operator="weighted_avg", augment_max_pool=True
    ),
}


def pool_from(meta: dict, **kw) -> GeneralizedSumPooling:
    """The project's layer (float64) with the settings of a fixture's run."""
    return GeneralizedSumPooling(
        dim=meta["dim"],
        num_prototypes=meta["num_prototypes"],
        transport_ratio=meta["transport_ratio"],
        entropy_weight=meta["entropy_weight"],
        solver_iterations=meta["solver_iterations"],
        **kw,
    ).double()


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_gsp_layer_matches_official(name):
    meta, arrays = load("gsp_layer.npz")
    c = case(arrays, name)
    pool = pool_from(meta, init="none", **LAYER_CASES[name])
    head = nn.Linear(c["fmap"].shape[1], meta["dim"], bias=False).double()
    with torch.no_grad():
        pool.prototypes.copy_(c["prototypes"])
        head.weight.copy_(c["head_weight"])
    fmap = c["fmap"].clone().requires_grad_(True)
    out = pool(fmap, head)
    assert_matches(out["embedding"], c["emb"], f"{name} embedding")
    assert_matches(out["aux"], c["attr"], f"{name} attributes")
    scalar = (out["embedding"] * c["cot_emb"]).sum() + (
        out["aux"] * c["cot_attr"]
    ).sum()
    scalar.backward()
    assert_matches(fmap.grad, c["grad_fmap"], f"{name} d/dfeatures")
    assert_matches(head.weight.grad, c["grad_head_weight"], f"{name} d/dW")
    assert_matches(pool.prototypes.grad, c["grad_prototypes"], f"{name} d/dprototypes")
    if name == "gem_inv":
        assert float(pool.gem_power.detach()) == float(c["gem_power"])
        assert_matches(pool.gem_power.grad, c["grad_gem_power"], "d/dp (GeM)")


def zsr_from(c, **kw) -> ZeroShotRegressionLoss:
    """The ZSR loss as the ``gsp`` method builds it from its config defaults
    (``GspZsrConfig``), ``kw`` overriding them."""
    n_cls, d = c["class_emb"].shape
    z = GspZsrConfig().model_copy(update=kw)
    zsr = ZeroShotRegressionLoss(
        n_cls, d, z.ridge, z.scale, epsilon=z.epsilon, split=z.split
    ).double()
    with torch.no_grad():
        zsr.class_embeddings.copy_(c["class_emb"])
    return zsr


@pytest.mark.parametrize("name", ["uncapped", "capped"])
def test_zsr_matches_official(name):
    _, arrays = load("zsr.npz")
    c = case(arrays, name)
    # "capped" holds samples with p < 1e-16 (there the official form is not the
    # exact cross-entropy); "uncapped" none
    assert (float(c["own_prob"].min()) < 1e-16) == (name == "capped")
    zsr = zsr_from(c)  # the gsp defaults: ε 1e-16, alternate split
    attr = c["attr"].clone().requires_grad_(True)
    loss = zsr(attr, c["labels"])
    loss.backward()
    assert_matches(loss, c["loss"], f"{name} L_ZS")
    assert_matches(attr.grad, c["grad_attr"], f"{name} d/dz")
    assert_matches(zsr.class_embeddings.grad, c["grad_class_emb"], f"{name} d/dE")


def test_zsr_fixture_tells_the_options_apart():
    """Exact CE (ε = 0) and the first-half split do not reproduce the official
    values: the fixture is sensitive to both defaults."""
    _, arrays = load("zsr.npz")
    c = case(arrays, "capped")
    for kw in ({"epsilon": 0.0, "split": "alternate"}, {"split": "halves"}):
        loss = zsr_from(c, **kw)(c["attr"], c["labels"])
        assert rel_error(loss, c["loss"]) > 1e-3, kw


def test_c1_memory_zsr_chain_matches_official():
    """``--loss=zsr/xbm/original_contrastive`` step by step: (1 − w)(C1 +
    memory term) + w·L_ZS, the memory term on from step ``start_at +
    batches_in_mem − 1``; the memory is fed as ``GSP.on_train_batch_end`` does."""
    meta, a = load("gsp_loss_chain.npz")
    b = a["labels"].shape[1]
    loss_cfg = GspConfig(method="gsp").loss  # default: C1, margin 0.5, eps 1e-5
    assert loss_cfg.name == "contrastive_c1"
    assert loss_cfg.args == {"margin": meta["margin"], "eps": meta["eps"]}
    c1 = build_c1(
        embedding_size=a["emb"].shape[2],
        num_classes=a["class_emb"].shape[0],
        **loss_cfg.args,
    )
    memory = CrossBatchMemory(
        meta["batches_in_mem"] * b,
        a["emb"].shape[2],
        meta["batches_in_mem"],
        meta["start_at"],
    ).double()
    zsr = zsr_from({"class_emb": torch.from_numpy(a["class_emb"])})
    w = meta["zsr_weight"]
    active = []
    for t in range(len(a["loss"])):
        raw = torch.from_numpy(a["emb"][t]).requires_grad_(True)
        attr = torch.from_numpy(a["attr"][t]).requires_grad_(True)
        labels = torch.from_numpy(a["labels"][t])
        emb = F.normalize(raw, dim=1)
        dml = c1(emb, labels)
        active.append(memory.active())
        if memory.active():
            dml = dml + memory.loss(c1, emb, labels)
        total = (1 - w) * dml + w * zsr(attr, labels)
        total.backward()
        memory.enqueue(emb.detach(), labels)
        assert_matches(total, a["loss"][t], f"step {t} loss")
        assert_matches(raw.grad, a["grad_emb"][t], f"step {t} d/dg")
        assert_matches(attr.grad, a["grad_attr"][t], f"step {t} d/dz")
    first = meta["start_at"] + meta["batches_in_mem"] - 1
    assert active == [t >= first for t in range(len(a["loss"]))]


def test_prototype_initialisation_matches_official():
    """Training steps of the layer: GAP and zero attributes while the memory of
    clipped GAP rows fills (a batch that does not fit overwrites the last rows,
    as ``fill_memory``), k-center prototypes once it is full, then transport.
    The memory is fed through ``observe`` as ``GSP.on_train_batch_end`` does."""
    meta, a = load("gsp_init.npz")
    t = {k: torch.from_numpy(v) for k, v in a.items()}
    pool = pool_from(meta, init_memory_size=meta["init_memory_size"])
    head = nn.Linear(t["fmap"].shape[2], meta["dim"], bias=False).double()
    with torch.no_grad():
        head.weight.copy_(t["head_weight"])
    for step, fmap in enumerate(t["fmap"]):
        with torch.no_grad():
            out = pool(fmap, head)
        assert_matches(out["embedding"], t["emb"][step], f"step {step} embedding")
        if step < len(t["fmap"]) - 1:
            assert torch.equal(out["aux"], t["attr"][step])  # zeros
        else:
            assert_matches(out["aux"], t["attr"][step], f"step {step} attributes")
        pool.observe(out["gap"])
    assert_matches(pool.memory, t["memory"], "GAP memory")
    assert_matches(pool.prototypes.detach(), t["prototypes"], "prototypes")
