"""``keras_adam`` (the Adam of the TF-origin recipes) against Keras itself:
trajectories of tf.keras Adam on fixed gradients (golden fixture
``keras_adam.npz``; docs/methods/gsp.md, "Golden fixtures")."""

import numpy as np
import pytest
import torch

from dml_pipelines.core.config import OptimizerConfig
from dml_pipelines.core.engine.optim import KerasAdam, build_optimizer

from .fixtures import assert_matches, load


def f32(x: float) -> float:
    """Keras keeps its hyper-parameters in float32."""
    return float(np.float32(x))


def trajectory(opt_cls, a, **kw):
    theta = torch.nn.Parameter(torch.from_numpy(a["theta0"].copy()))
    opt = opt_cls([theta], **kw)
    out = []
    for g in a["grads"]:
        theta.grad = torch.from_numpy(g.copy())
        opt.step()
        out.append(theta.detach().clone())
    return torch.stack(out)


@pytest.mark.parametrize(
    "family, rtol",
    # tf.keras.optimizers.legacy.Adam (OptimizerV2, TF <= 2.10's default):
    # equal with Keras's float32 hyper-parameters; the newer Keras optimizer
    # keeps more of its arithmetic in float32 (≈7e-6 of the update)
    [("legacy", 1e-6), ("new", 2e-5)],
)
def test_keras_adam_follows_keras(family, rtol):
    _, a = load("keras_adam.npz")
    assert float(a[f"{family}/epsilon"]) == 1e-7
    lr = float(a["lr"])
    ours = trajectory(
        KerasAdam, a, lr=f32(lr), betas=(f32(0.9), f32(0.999)), eps=f32(1e-7)
    )
    theta0 = torch.from_numpy(a["theta0"])
    # compared on the displacement θ_t − θ_0 (the update itself)
    expected = torch.from_numpy(a[f"{family}/trajectory"]) - theta0
    for p in range(expected.shape[1]):
        assert_matches(ours[:, p] - theta0[p], expected[:, p], f"param {p}", rtol)


def test_torch_adam_is_not_keras_adam():
    """PyTorch's Adam (ε on the corrected √v̂) moves the small-gradient
    parameters differently: the fixture tells the two apart."""
    _, a = load("keras_adam.npz")
    theirs = trajectory(torch.optim.Adam, a, lr=float(a["lr"]), eps=1e-7)
    expected = torch.from_numpy(a["legacy/trajectory"] - a["theta0"])
    moved = theirs - torch.from_numpy(a["theta0"])
    assert (moved[:, 0] - expected[:, 0]).abs().max() > 0.5 * expected[:, 0].abs().max()


def test_keras_adam_by_name_and_bad_args():
    """``optimizer.name: keras_adam`` through the optimiser builder; ε defaults
    to Keras's 1e-7; bad values give one clear line."""
    p = torch.nn.Parameter(torch.zeros(3))
    opt = build_optimizer([{"params": [p]}], OptimizerConfig(name="keras_adam", lr=0.1))
    assert isinstance(opt, KerasAdam) and opt.defaults["eps"] == 1e-7
    p.grad = torch.ones(3)
    opt.step()
    # step 1: lr·√(1 − β₂)/(1 − β₁) · g(1 − β₁) / (√((1 − β₂)) |g| + ε)
    expected = -0.1 * (0.001**0.5) / (0.001**0.5 + 1e-7)
    assert torch.allclose(p.detach(), torch.full((3,), expected, dtype=p.dtype))
    with pytest.raises(ValueError, match="optimizer.args: keras_adam"):
        build_optimizer(
            [{"params": [p]}],
            OptimizerConfig(name="keras_adam", args={"betas": (1.5, 0.9)}),
        )
