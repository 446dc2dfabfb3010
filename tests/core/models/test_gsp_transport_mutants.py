"""Tests for the mutants that survived the mutation run of ``models/gsp_transport.py``
(docs/mutation.md): the plan's dtype, the documented default iteration count, the
``backward`` option's message and which gradient each ``backward`` computes
(docs/methods/gsp.md#partial-transport)."""

import pytest
import torch

from dml_pipelines.core.models.gsp_transport import transport_plan
from tests.core.models.test_gsp_transport import rand_costs


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_the_plan_is_in_the_costs_dtype(dtype):
    costs = rand_costs(b=2, k=3, n=7, seed=11).to(dtype)
    for backward in ("implicit", "unrolled"):
        x = transport_plan(costs, 0.3, 5.0, 10, backward=backward)
        assert x.dtype == dtype and x.shape == (2, 4, 7)
        ref = transport_plan(costs.double(), 0.3, 5.0, 10, backward=backward)
        torch.testing.assert_close(x.double(), ref, rtol=0, atol=1e-2)


def test_default_is_the_documented_100_iterations():
    # solver_iterations 100 (docs/methods/gsp.md); at γ = 20, μ = 0.5 the fixed
    # point still moves at iteration 100, so 99 or 101 give another plan
    costs = rand_costs(b=2, k=3, n=7, seed=11)
    plan = transport_plan(costs, 0.5, 20.0)
    assert torch.equal(plan, transport_plan(costs, 0.5, 20.0, 100))
    for other in (99, 101):
        assert not torch.equal(plan, transport_plan(costs, 0.5, 20.0, other))


def test_bad_backward_message_names_the_valid_choices():
    with pytest.raises(ValueError) as err:
        transport_plan(rand_costs(), 0.3, 5.0, backward="fd")
    assert str(err.value) == "pooling.args.backward: 'fd'; valid: implicit, unrolled"


def _grad(costs, weights, iterations, backward):
    c = costs.clone().requires_grad_(True)
    (
        transport_plan(c, 0.3, 5.0, iterations, backward=backward) * weights
    ).sum().backward()
    return c.grad


def test_unrolled_differentiates_the_loop_and_implicit_the_fixed_point():
    """``unrolled`` is autograd through the iterations actually run: after 3 of
    them it is the exact derivative of that truncated map (finite differences
    agree), which the fixed-point formula of ``implicit`` is not. With a
    converged forward, ``implicit`` equals autograd through 3,000 iterations."""
    costs = rand_costs(b=2, k=3, n=7, seed=11)
    w = torch.randn(2, 4, 7, generator=torch.Generator().manual_seed(3)).double()

    def truncated(backward):
        return lambda c: transport_plan(c, 0.3, 5.0, 3, backward=backward)

    c = costs.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(truncated("unrolled"), (c,), eps=1e-6, atol=1e-7)
    assert not torch.autograd.gradcheck(
        truncated("implicit"), (c,), eps=1e-6, atol=1e-7, raise_exception=False
    )
    implicit3, unrolled3 = (_grad(costs, w, 3, m) for m in ("implicit", "unrolled"))
    assert (implicit3 - unrolled3).abs().max() > 0.1 * unrolled3.abs().max()

    reference = _grad(costs, w, 3000, "unrolled")
    implicit = _grad(costs, w, 100, "implicit")
    assert (implicit - reference).abs().max() < 1e-10 * reference.abs().max()
