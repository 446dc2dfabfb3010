"""Tests for the mutants that survived the mutation run of ``models/gsp_pooling.py``
(docs/mutation.md): ``with_embedding_dim``, the ``gap`` output fed to the memory,
half-precision inputs, and the greedy k-center of the prototype initialisation
(one prototype, repeated memory rows, torch's default ``cdist``;
docs/methods/gsp.md)."""

import pytest
import torch
from torch import nn

from dml_pipelines.core.config import Component, MethodConfig
from dml_pipelines.core.methods.gsp_config import GspConfig
from dml_pipelines.core.models.gsp_pooling import (
    GeneralizedSumPooling,
    greedy_kcenter,
    with_embedding_dim,
)
from dml_pipelines.core.models.gsp_transport import lipschitz_normalize
from tests.core.models.test_gsp_pooling import fmap, kcenter_brute, make


def test_with_embedding_dim_sets_the_gsp_pooling_dim_only():
    cfg = GspConfig(
        method="gsp",
        embedding_dim=24,
        pooling=Component(name="gsp", args={"num_prototypes": 8}),
    )
    out = with_embedding_dim(cfg)
    assert out.pooling == Component(name="gsp", args={"num_prototypes": 8, "dim": 24})
    assert out.embedding_dim == 24 and out.head == cfg.head
    assert cfg.pooling.args == {"num_prototypes": 8}  # the input is not changed
    gap = MethodConfig(method="gsp", embedding_dim=24)
    assert with_embedding_dim(gap) is gap  # another pooling: as it is


@pytest.mark.parametrize("initialized", [False, True])
def test_gap_output_is_the_clipped_detached_float32_gap(initialized):
    pool, head = make(c=6, d=5, k=3)
    pool.initialized.fill_(initialized)
    head.weight.data.mul_(4)  # some GAP rows outside the unit ball
    x = fmap()
    out = pool(x, head)
    v_gap = head(x.mean(dim=(2, 3)))
    assert out["gap"].dtype == torch.float32 and not out["gap"].requires_grad
    torch.testing.assert_close(out["gap"], lipschitz_normalize(v_gap.detach()).float())
    assert (v_gap.norm(dim=1) > 1).any()


def test_half_precision_inputs_are_transported_in_float32():
    pool, head = make(c=6, d=5, k=3)
    ref = pool(fmap(), head)
    pool, head = pool.to(torch.bfloat16), head.to(torch.bfloat16)
    out = pool(fmap().to(torch.bfloat16), head)
    assert out["weights"].dtype == out["aux"].dtype == torch.float32
    # Σ t = Σ z = 1 to float32 precision (bfloat16 would give about 1e-2)
    for key in ("weights", "aux"):
        torch.testing.assert_close(
            out[key].sum(dim=1), torch.ones(2), rtol=0, atol=1e-6
        )
        torch.testing.assert_close(out[key].double(), ref[key], rtol=0, atol=0.05)


def test_one_prototype_from_the_classifier_is_row_zero():
    idx = greedy_kcenter(torch.randn(5, 3), torch.randn(1, 3), 0)
    assert idx.shape == (0,) and idx.dtype == torch.long
    pool = GeneralizedSumPooling(dim=3, num_prototypes=1, init="classifier_kcenter")
    rows = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    assert pool.initialize_from_rows(rows) is True
    assert torch.equal(pool.prototypes.detach(), rows[:1])


def test_repeated_memory_rows_are_never_picked_twice():
    # three distinct rows, each stored three times: after the three distinct
    # picks every distance is 0, and the next pick must still be a new index
    base = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    points = base.repeat(3, 1)
    seeds = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    idx = greedy_kcenter(points, seeds, 6).tolist()
    assert len(set(idx)) == 6
    assert idx == kcenter_brute(points, seeds, 6)


def test_seed_distances_are_torchs_default_cdist():
    """With more than 25 rows torch's default ``cdist`` takes the matrix-product
    form (as the official layer), whose float32 rounding far from the origin
    orders the seed distances differently from exact differences: the first
    pick is the argmax of the default form's minimum seed distance."""
    g = torch.Generator().manual_seed(0)
    points = 300.0 + 0.05 * torch.randn(40, 8, generator=g)
    seeds = 300.0 + 0.05 * torch.randn(30, 8, generator=g)
    default = torch.cdist(points, seeds).square().amin(dim=1)
    exact = torch.cdist(
        points, seeds, compute_mode="donot_use_mm_for_euclid_dist"
    ).square()
    assert int(default.argmax()) != int(exact.amin(dim=1).argmax())
    assert int(greedy_kcenter(points, seeds, 1)[0]) == int(default.argmax())


def test_before_initialisation_the_weights_are_uniform_in_the_features_dtype():
    pool, head = make(c=6, d=5, k=3)
    pool.initialized.fill_(False)
    x = fmap(b=2, h=3, w=4)
    out = pool(x, head)
    assert out["weights"].dtype == torch.float64  # v's dtype
    assert torch.equal(out["weights"], torch.full((2, 12), 1 / 12, dtype=torch.float64))
    assert torch.equal(out["aux"], torch.zeros(2, 3, dtype=torch.float64))
    torch.testing.assert_close(out["embedding"], head(x.mean(dim=(2, 3))))


def test_layer_defaults_are_the_documented_ones():
    # docs/methods/gsp.md, key parameters: K 64, 100 iterations, memory 1,024
    pool = GeneralizedSumPooling(dim=4)
    assert pool.prototypes.shape == (64, 4) and pool.iterations == 100
    assert pool.memory.shape == (1024, 4) and pool.backward == "implicit"
    assert pool.memory_count.dtype == pool.steps_seen.dtype == torch.long
    assert not hasattr(pool, "gem_power")  # only the weighted_gem operator learns p


def test_missing_dim_message_is_exact():
    with pytest.raises(ValueError) as err:
        GeneralizedSumPooling()
    assert str(err.value) == (
        "pooling.args.dim: gsp needs the embedding size (set it to "
        "embedding_dim; the gsp method does this itself)"
    )


def test_weighted_gem_against_a_loop_and_its_power_is_learned():
    """W · (mean_i max(n t_i f_i, 1e-6)^p)^(1/p), p a parameter from 3."""
    pool, head = make(c=6, d=5, k=3, operator="weighted_gem")
    assert isinstance(pool.gem_power, nn.Parameter) and pool.gem_power.item() == 3.0
    x = fmap(b=2, h=3, w=4)
    x[0, 0] = -1.0  # a channel below the floor everywhere
    out = pool(x, head)
    n, t = 12, out["weights"].detach()
    for b in range(2):
        for c in range(6):
            vals = [
                max(n * float(t[b, i]) * float(x[b, c].flatten()[i]), 1e-6)
                for i in range(n)
            ]
            gem = (sum(v**3 for v in vals) / n) ** (1 / 3)
            assert out["pooled"][b, c].item() == pytest.approx(gem, rel=1e-12)
    torch.testing.assert_close(out["embedding"], head(out["pooled"]))
    out["embedding"].sum().backward()
    assert pool.gem_power.grad is not None and pool.gem_power.grad.item() != 0


@pytest.mark.parametrize("operator", ["weighted_avg", "weighted_max"])
def test_half_precision_outputs_follow_the_features_dtype(operator):
    # a bfloat16 module: t (float32) is cast to the features' dtype
    pool, head = make(c=6, d=5, k=3, operator=operator)
    ref = pool(fmap(), head)
    pool, head = pool.to(torch.bfloat16), head.to(torch.bfloat16)
    out = pool(fmap().to(torch.bfloat16), head)
    assert out["embedding"].dtype == torch.bfloat16
    torch.testing.assert_close(
        out["embedding"].double(), ref["embedding"], rtol=0.05, atol=0.05
    )


def test_the_unrolled_backward_option_reaches_the_solver():
    """``backward: unrolled`` with 3 iterations: the layer's gradient is the
    exact derivative of what it computes (finite differences agree); the
    implicit formula at that unconverged plan is not."""
    x = fmap(b=1, h=2, w=3).requires_grad_(True)
    for backward, exact in (("unrolled", True), ("implicit", False)):
        pool, head = make(c=6, d=5, k=3, solver_iterations=3, backward=backward)
        assert exact == torch.autograd.gradcheck(
            lambda f, pool=pool, head=head: pool(f, head)["aux"],
            (x,),
            eps=1e-6,
            atol=1e-7,
            raise_exception=False,
        )
