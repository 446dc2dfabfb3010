"""Adaptive XBN's Kalman targets (docs/methods/xbn.md Part C, properties
14–18): the vectorised filter against a scalar float64 loop of the C.2
equations, the spec's limits and edge cases."""

import math
import statistics

import pytest
import torch

from dml_pipelines.core.models.xbn_kalman import MomentKalman, kalman_gain
from dml_pipelines.core.models.xbn_norm import batch_moments


def stream(steps, b=8, d=4, seed=0, drift=0.0):
    g = torch.Generator().manual_seed(seed)
    for t in range(steps):
        yield torch.randn(b, d, generator=g, dtype=torch.float64) * 0.5 + drift * t


def loop_filter(batches, q, q_mode, a=0.9, noise="observation"):
    """C.2 for every dimension and both moments, in Python floats."""
    x = p = ema = None
    out = []
    for t, z in enumerate(batches):
        b, d = z.shape
        mean, var = batch_moments(z)
        ys = [[float(v) for v in mean], [float(v) for v in var]]
        vs = ys[1] if t == 0 or noise == "observation" else x[1]
        rs = [[v / b for v in vs], [2 * v * v / (b - 1) for v in vs]]
        if t == 0:
            x, p = [r[:] for r in ys], [r[:] for r in rs]
            ema = [[0.0] * d, [0.0] * d]
            out.append([r[:] for r in x])
            continue
        for f in range(2):
            median = statistics.median(rs[f])  # the true median (D even here)
            for j in range(d):
                e = ys[f][j] - x[f][j]
                if q_mode == "absolute":
                    qq = q
                elif q_mode == "relative":
                    qq = q * median
                else:
                    ema[f][j] = e * e if t == 1 else a * ema[f][j] + (1 - a) * e * e
                    qq = max(0.0, ema[f][j] - p[f][j] - rs[f][j])
                p_prior = p[f][j] + qq
                k = p_prior / (p_prior + rs[f][j])
                x[f][j] += k * e
                p[f][j] = (1 - k) * p_prior
        out.append([r[:] for r in x])
    return out


@pytest.mark.parametrize("noise", ["observation", "estimate"])
@pytest.mark.parametrize(
    ("q", "q_mode"),
    [(1.0, "relative"), (0.1, "relative"), (0.02, "absolute"), (0.0, "innovation")],
)
def test_matches_a_scalar_loop_of_the_equations(q, q_mode, noise):
    batches = list(stream(6, drift=0.1, seed=1))
    kf = MomentKalman(4, q, q_mode, noise=noise).double()
    got = []
    for z in batches:
        mean, var = batch_moments(z)
        m, v = kf.update(mean, var, z.shape[0])
        got.append(torch.stack([m, v]))
    ref = loop_filter(batches, q, q_mode, noise=noise)
    ref = torch.tensor(ref, dtype=torch.float64)
    torch.testing.assert_close(torch.stack(got), ref, rtol=0, atol=1e-12)


def test_gain_is_strictly_between_zero_and_one():  # property 14
    g = torch.Generator().manual_seed(2)
    p = torch.rand(1000, generator=g, dtype=torch.float64) * 10 + 1e-6
    q = torch.rand(1000, generator=g, dtype=torch.float64) * 10 + 1e-6
    r = torch.rand(1000, generator=g, dtype=torch.float64) * 10 + 1e-6
    k = kalman_gain(p + q, r)
    assert bool(((k > 0) & (k < 1)).all())
    kf = MomentKalman(4, 1.0, "relative").double()
    for z in stream(5, seed=3):
        kf.update(*batch_moments(z), z.shape[0])
        if int(kf.steps) > 1:
            assert bool(((kf.gain > 0) & (kf.gain < 1)).all())


@pytest.mark.parametrize("q", [1e30, math.inf])
def test_infinite_process_noise_gives_gain_one_and_the_batch_moments(q):  # 15
    kf = MomentKalman(4, q, "absolute").double()
    for z in stream(4, seed=4, drift=0.3):
        mean, var = batch_moments(z)
        m, v = kf.update(mean, var, z.shape[0])
        torch.testing.assert_close(m, mean, rtol=0, atol=1e-12)
        torch.testing.assert_close(v, var, rtol=0, atol=1e-12)
        assert bool((kf.gain == 1).all()) and torch.isfinite(kf.p).all()


def converge(noise, b=16, steps=400):
    kf = MomentKalman(3, 0.0, "absolute", noise=noise).double()
    mean = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    std = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    last_p = None
    for _ in range(steps):
        z = torch.randn(b, 3, generator=g, dtype=torch.float64) * std + mean
        kf.update(*batch_moments(z), b)
        if last_p is not None:
            assert bool((kf.p < last_p).all())  # P_t decreases monotonically
        last_p = kf.p.clone()
    assert bool((kf.x[0] - mean).abs().le(4 * std / math.sqrt(steps * b)).all())
    return kf.x[1] / (std**2 * (b - 1) / b)  # biased batch variance: E = (b−1)/b σ²


def test_zero_process_noise_converges_with_decreasing_variance():  # property 16
    ratio = converge("estimate")
    torch.testing.assert_close(ratio, torch.ones_like(ratio), rtol=0, atol=0.05)


def test_observation_noise_from_the_batch_biases_the_variance_low():
    # the spec's R = 2 var(Z)^2 / (b − 1) weights small observations more; the
    # mean filter is unaffected (checked inside ``converge``)
    ratio = converge("observation")
    assert bool((ratio < 0.85).all()) and bool((ratio > 0.6).all())


def test_zero_process_noise_with_constant_noise_is_the_running_average():
    kf = MomentKalman(1, 0.0, "absolute").double()
    obs = [0.5, 1.5, -0.25, 2.0, 0.75]
    for t, y in enumerate(obs, start=1):
        # var fixed at 1 so R is the same each step; the mean filter averages
        m, _ = kf.update(
            torch.tensor([y], dtype=torch.float64),
            torch.ones(1, dtype=torch.float64),
            8,
        )
        assert float(m) == pytest.approx(sum(obs[:t]) / t, abs=1e-12)


@pytest.mark.parametrize("noise", ["observation", "estimate"])
@pytest.mark.parametrize("q_mode", ["relative", "absolute", "innovation"])
def test_constant_observation_is_a_fixed_point(q_mode, noise):  # property 17
    kf = MomentKalman(3, 0.7, q_mode, noise=noise).double()
    mean = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    var = torch.tensor([0.5, 0.01, 2.0], dtype=torch.float64)
    for _ in range(10):
        m, v = kf.update(mean, var, 8)
        torch.testing.assert_close(m, mean, rtol=0, atol=1e-15)
        torch.testing.assert_close(v, var, rtol=0, atol=1e-15)


def test_variance_target_stays_positive_with_zero_observations():  # property 18
    kf = MomentKalman(3)
    z = torch.ones(8, 3)  # identical rows: variance observation 0, R = 0
    for _ in range(3):
        m, v = kf.update(*batch_moments(z), 8)
        assert torch.isfinite(m).all() and torch.isfinite(v).all()
        std = kf.std_target(1e-5)
        assert bool((std > 0).all()) and torch.isfinite(std).all()
    kf.update(torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]), 8)
    assert bool((kf.std_target(1e-5) > 0).all())


def test_reset_reinitialises_from_the_next_observation_and_state_dict_holds_it():
    kf = MomentKalman(2)
    kf.update(torch.zeros(2), torch.ones(2), 8)
    kf.update(torch.ones(2), torch.ones(2), 8)
    other = MomentKalman(2)
    other.load_state_dict(kf.state_dict())
    assert torch.equal(other.x, kf.x) and int(other.steps) == 2
    kf.reset()
    m, _ = kf.update(torch.full((2,), 5.0), torch.ones(2), 8)
    assert m.tolist() == [5.0, 5.0]


def test_bad_options_are_one_line_errors():
    with pytest.raises(ValueError) as info:
        MomentKalman(2, q_mode="ema")
    assert str(info.value) == (
        "xbn.kalman.q_mode: 'ema'; valid: relative, absolute, innovation"
    )
    with pytest.raises(ValueError, match="xbn.kalman.q"):
        MomentKalman(2, q=-1.0)
    with pytest.raises(ValueError) as info:
        MomentKalman(2, noise="prior")
    assert str(info.value) == "xbn.kalman.noise: 'prior'; valid: observation, estimate"
    with pytest.raises(ValueError, match="batches of >= 2"):
        MomentKalman(2).update(torch.zeros(2), torch.ones(2), 1)


def test_gain_is_one_for_an_exact_observation_and_an_infinite_prior():
    p = torch.tensor([0.0, math.inf, 1.0, 0.0])
    r = torch.tensor([0.0, 1.0, 3.0, 2.0])
    assert kalman_gain(p, r).tolist() == [1.0, 1.0, 0.25, 0.0]


def test_defaults_and_the_step_counter_dtype():
    kf = MomentKalman(3)
    assert (kf.q, kf.q_mode, kf.innovation_ema, kf.noise) == (
        1.0,
        "relative",
        0.9,
        "observation",
    )
    assert kf.steps.dtype == torch.long and kf.state_dict()["steps"].dtype == torch.long
