"""The potential-field loss (docs/methods/pfml.md): an oracle against a naive
float64 loop of the energy, the properties of the potentials, the exponent
convention (α is the force's decay exponent, α = 0 trains) and float32
accuracy for close pairs."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from dml_pipelines.core.losses.pfml import (
    PotentialFieldLoss,
    attraction,
    decay_potential,
    mean_negative_distance,
    repulsion,
    safe_distances,
)

D_MIN = 1e-4


def make(num_classes=3, m=2, dim=4, seed=0, **kw):
    torch.manual_seed(seed)
    return PotentialFieldLoss(dim, num_classes, proxies_per_class=m, **kw).double()


def points(n, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=1)


def value(loss, z, y):
    """U (reduced) as a float, without a graph."""
    with torch.no_grad():
        return float(loss(z, y))


# --- the oracle: every charge in the field of its own class, by loops ----------


def phi(d, alpha):
    """∫_1^d s^(−α) ds."""
    return math.log(d) if alpha == 1 else (d ** (1 - alpha) - 1) / (1 - alpha)


def psi_pair(d, same, alpha, d_att, d_rep, variant, rep_kind):
    d = max(d, D_MIN)
    if same:
        if variant == "cpml":
            return max(d, d_att) - d_att
        return phi(max(d, d_att), alpha)
    if rep_kind == "hinge":
        return max(d_rep - d, 0.0)
    return -phi(min(d, d_rep), alpha)


def oracle_energy(
    z,
    y,
    raw_proxies,
    q,
    mode,
    alpha=4.0,
    d_att=0.2,
    d_rep=0.2,
    variant="pfml",
    rep_kind="pfml",
    reduction="per_batch_sample",
    normalize=True,
):
    """U = Σ_i Ψ_{y_i}(z_i) + Σ_{j,k} Ψ_j(p_{j,k}) (§3.3) with plain loops."""
    z = [[float(v) for v in row] for row in z]
    prox = [
        [
            float(v) / (math.sqrt(sum(float(u) ** 2 for u in row)) if normalize else 1)
            for v in row
        ]
        for row in raw_proxies
    ]
    y, q = [int(v) for v in y], [int(v) for v in q]
    in_batch = set(y)
    charges = [(p, c, "sample") for p, c in zip(z, y, strict=True)]
    charges += [(p, c, "proxy") for p, c in zip(prox, q, strict=True)]

    def acts(src, tgt):  # does charge src act on charge tgt?
        if src == tgt:
            return False
        if charges[src][2] == "proxy" and charges[tgt][2] == "proxy":
            if mode == "none":
                return False
            if mode == "batch_classes":
                return charges[src][1] in in_batch and charges[tgt][1] in in_batch
        return True

    total = 0.0
    for t, (r, j, _) in enumerate(charges):
        for s, (x, c, _) in enumerate(charges):
            if acts(s, t):
                d = math.sqrt(sum((a - b) ** 2 for a, b in zip(r, x, strict=True)))
                total += psi_pair(d, c == j, alpha, d_att, d_rep, variant, rep_kind)
    return total / len(y) if reduction == "per_batch_sample" else total


CASES = [
    dict(proxy_proxy="batch_classes"),
    dict(proxy_proxy="all"),
    dict(proxy_proxy="none", reduction="sum"),
    dict(proxy_proxy="all", variant="cpml", alpha=2.0),
    dict(proxy_proxy="batch_classes", variant="cpml", cpml_repulsion="hinge"),
    dict(proxy_proxy="all", delta_att=0.5, delta_rep=1.1, alpha=1.5),
    dict(proxy_proxy="batch_classes", alpha=0.0),
    dict(proxy_proxy="all", alpha=1.0),
]


@pytest.mark.parametrize("case", CASES)
def test_energy_matches_the_naive_loop(case):
    for seed in range(3):
        loss = make(num_classes=4, m=2, seed=seed, **case)
        z = points(7, seed=seed + 10)
        if seed == 2:  # a tight cluster: pairs on both branches of both potentials
            centre = points(1, seed=99)
            z = F.normalize(centre + 0.08 * z, dim=1)
            loss.proxies.data = centre + 0.08 * points(8, seed=98)
        y = torch.tensor([0, 0, 1, 1, 1, 2, 0])  # class 3 absent from the batch
        ref = oracle_energy(
            z,
            y,
            loss.proxies.detach(),
            loss.proxy_labels,
            case["proxy_proxy"],
            alpha=case.get("alpha", 4.0),
            d_att=case.get("delta_att", 0.2),
            d_rep=case.get("delta_rep", 0.2),
            variant=case.get("variant", "pfml"),
            rep_kind=case.get("cpml_repulsion", "pfml"),
            reduction=case.get("reduction", "per_batch_sample"),
        )
        got = value(loss, z, y)
        assert got == pytest.approx(ref, rel=1e-10, abs=1e-10)


def test_gradient_matches_finite_differences():
    loss = make(num_classes=3, m=2, alpha=2.0, delta_att=0.3, delta_rep=0.6)
    z = points(5, seed=3).requires_grad_()
    y = torch.tensor([0, 0, 1, 2, 2])
    p = loss.proxies.detach().clone().requires_grad_()

    def energy(a, proxies):
        return functional_call(loss, {"proxies": proxies}, (a, y))

    assert torch.autograd.gradcheck(energy, (z, p))


# --- §10 properties ----------------------------------------------------------

ALPHA, DELTA = 3.0, 0.2


def force(fn, d):
    """−dψ/dd at the distances d (float64 autograd)."""
    d = d.clone().requires_grad_()
    (g,) = torch.autograd.grad(fn(d).sum(), d)
    return -g


def pair_grad(d, same, **kw):
    """Gradient of U on two points at distance d (no proxies)."""
    loss = make(num_classes=2, m=0, dim=3, **kw)
    z = torch.tensor([[0.0, 0.0, 0.0], [d, 0.0, 0.0]], dtype=torch.float64)
    z.requires_grad_()
    y = torch.tensor([0, 0 if same else 1])
    loss(z, y).backward()
    return z.grad


def test_1_attraction_has_zero_gradient_inside_the_radius():
    for d in torch.rand(5, dtype=torch.float64) * 0.19 + 0.005:
        assert torch.count_nonzero(pair_grad(float(d), same=True)) == 0
        assert torch.count_nonzero(pair_grad(float(d), same=False)) > 0
    d = torch.rand(20, dtype=torch.float64) * DELTA
    assert torch.all(force(lambda x: attraction(x, ALPHA, DELTA), d) == 0)


def test_2_repulsion_has_zero_gradient_beyond_the_radius():
    for d in torch.rand(5, dtype=torch.float64) * 1.5 + 0.21:
        assert torch.count_nonzero(pair_grad(float(d), same=False)) == 0
        assert torch.count_nonzero(pair_grad(float(d), same=True)) > 0
    d = torch.rand(20, dtype=torch.float64) * 2 + DELTA + 1e-6
    assert torch.all(force(lambda x: repulsion(x, ALPHA, DELTA), d) == 0)


def test_3_force_magnitudes_decay_with_distance():
    far = torch.sort(torch.rand(50, dtype=torch.float64) * 1.8 + DELTA + 1e-3).values
    f_att = force(lambda x: attraction(x, ALPHA, DELTA), far).abs()
    assert torch.all(f_att[1:] < f_att[:-1])
    torch.testing.assert_close(f_att, far**-ALPHA)
    near = torch.rand(50, dtype=torch.float64) * (DELTA - 1e-3) + 1e-3
    near = torch.sort(near).values
    f_rep = force(lambda x: repulsion(x, ALPHA, DELTA), near).abs()
    assert torch.all(f_rep[1:] < f_rep[:-1])
    torch.testing.assert_close(f_rep, near**-ALPHA)


@pytest.mark.parametrize("delta", [0.1, 0.2, 0.35])
def test_4_potentials_are_continuous_at_the_radius(delta):
    eps = torch.tensor([-1e-9, 1e-9], dtype=torch.float64)
    for fn in (attraction, repulsion):
        a, b = fn(delta + eps, ALPHA, delta)
        assert abs(float(a - b)) < 1e-5 * delta**-ALPHA
    a, b = attraction(delta + eps, ALPHA, delta, "cpml")
    assert abs(float(a - b)) < 1e-8
    a, b = repulsion(delta + eps, ALPHA, delta, "hinge")
    assert abs(float(a - b)) < 1e-8


def distance_after_step(d, same, lr=1e-6):
    loss = make(num_classes=2, m=0, dim=5)
    g = torch.Generator().manual_seed(int(d * 1e6))
    a = torch.randn(5, generator=g, dtype=torch.float64)
    u = F.normalize(torch.randn(5, generator=g, dtype=torch.float64), dim=0)
    z = torch.stack([a, a + d * u]).requires_grad_()
    loss(z, torch.tensor([0, 0 if same else 1])).backward()
    with torch.no_grad():
        z2 = z - lr * z.grad
    return float((z2[0] - z2[1]).norm())


def test_5_a_gradient_step_pulls_far_positives_and_pushes_near_negatives():
    for d in (0.25, 0.5, 1.3):
        assert distance_after_step(d, same=True) < d
    for d in (0.05, 0.1, 0.19):
        assert distance_after_step(d, same=False, lr=1e-8) > d


def test_5_on_a_full_batch_one_step_moves_the_named_pairs():
    loss = make(num_classes=3, m=2, dim=6, seed=1)
    z = points(6, dim=6, seed=4)
    z[1] = F.normalize(z[0] + 0.05 * z[1], dim=0)  # different class, d < δ
    y = torch.tensor([0, 1, 1, 2, 2, 0])
    z.requires_grad_()
    loss(z, y).backward()
    with torch.no_grad():
        z2 = z - 1e-9 * z.grad
    before, after = float((z[0] - z[1]).norm().detach()), float((z2[0] - z2[1]).norm())
    assert before < DELTA and after > before


def _orthogonal(dim, seed):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    return q


def test_6_energy_is_invariant_to_rotation_permutation_and_relabelling():
    loss = make(num_classes=4, m=3, dim=5, seed=2)
    z, y = points(8, dim=5, seed=5), torch.tensor([0, 1, 1, 2, 0, 2, 1, 0])
    u = value(loss, z, y)
    q = _orthogonal(5, 6)
    rotated = make(num_classes=4, m=3, dim=5, seed=2)
    rotated.proxies.data = loss.proxies.data @ q
    assert value(rotated, z @ q, y) == pytest.approx(u, rel=1e-10)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(7))
    assert value(loss, z[perm], y[perm]) == pytest.approx(u, rel=1e-10)
    pi = torch.tensor([2, 0, 3, 1])  # class c -> pi[c], its proxies move along
    relabelled = make(num_classes=4, m=3, dim=5, seed=2)
    blocks = loss.proxies.data.view(4, 3, 5)
    new = torch.empty_like(blocks)
    new[pi] = blocks
    relabelled.proxies.data = new.view(12, 5)
    assert value(relabelled, z, pi[y]) == pytest.approx(u, rel=1e-10)


def test_7_field_of_a_union_of_sources_is_the_sum_of_their_fields():
    loss = make(num_classes=3, m=0, dim=4)
    r, yr = points(5, seed=8), torch.tensor([0, 1, 2, 0, 1])
    a, ya = points(6, seed=9), torch.tensor([0, 0, 1, 2, 2, 1])
    b, yb = points(4, seed=10), torch.tensor([1, 0, 2, 2])
    union = loss.field(r, yr, torch.cat([a, b]), torch.cat([ya, yb]))
    parts = loss.field(r, yr, a, ya) + loss.field(r, yr, b, yb)
    torch.testing.assert_close(union, parts, rtol=1e-12, atol=1e-12)
    single = [loss.field(r, yr, a[i : i + 1], ya[i : i + 1]) for i in range(6)]
    torch.testing.assert_close(loss.field(r, yr, a, ya), sum(single))


@pytest.mark.parametrize("reduction", ["per_batch_sample", "sum"])
def test_8_closed_form_for_one_class_without_proxies(reduction):
    g = torch.Generator().manual_seed(11)
    z = torch.randn(3, 4, generator=g, dtype=torch.float64)
    d = torch.cdist(z, z)
    assert d[~torch.eye(3, dtype=torch.bool)].min() > DELTA
    expected = sum(
        phi(float(d[i, j]), ALPHA) for i, j in itertools.permutations(range(3), 2)
    )
    loss = make(num_classes=1, m=0, reduction=reduction, alpha=ALPHA)
    got = value(loss, z, torch.zeros(3, dtype=torch.long))
    assert got == pytest.approx(expected / (3 if reduction != "sum" else 1))


@pytest.mark.parametrize("variant", ["pfml", "cpml"])
def test_9_duplicates_give_finite_loss_and_gradients(variant):
    loss = make(num_classes=3, m=2, dim=4, variant=variant).float()
    z = points(6, seed=12).float()
    z[1] = z[0]  # same class duplicate
    z[2] = z[0]  # different class duplicate
    with torch.no_grad():
        loss.proxies[0] = z[3] * 5  # a proxy on top of an embedding
        loss.proxies[1] = loss.proxies[0]  # two coincident proxies
    z.requires_grad_()
    u = loss(z, torch.tensor([0, 0, 1, 1, 2, 2]))
    u.backward()
    assert torch.isfinite(u)
    assert torch.isfinite(z.grad).all() and torch.isfinite(loss.proxies.grad).all()
    # the cap −φ_4(d_min) = (1e12 − 1) / 3 holds in float32
    assert float(u.detach()) < 1e14


def test_10_proxies_get_gradient_and_proxy_only_terms_leave_the_samples():
    loss = make(num_classes=3, m=2, dim=4, proxy_proxy="all")
    z = points(4, seed=13).requires_grad_()
    terms = loss.energy_terms(z, torch.tensor([0, 0, 1, 1]))
    terms["proxy_proxy"].backward(retain_graph=True)
    assert z.grad is None or torch.count_nonzero(z.grad) == 0
    assert loss.proxies.grad.abs().sum() > 0
    loss.proxies.grad = None
    terms["sample_proxy"].backward()
    assert z.grad.abs().sum() > 0 and loss.proxies.grad.abs().sum() > 0


def test_12_cpml_forces_are_constant():
    far = torch.rand(30, dtype=torch.float64) * 1.7 + DELTA + 1e-3
    f = force(lambda x: attraction(x, ALPHA, DELTA, "cpml"), far)
    torch.testing.assert_close(f, -torch.ones_like(f))  # unit pull: ψ grows with d
    near = torch.rand(30, dtype=torch.float64) * (DELTA - 1e-3)
    f = force(lambda x: repulsion(x, ALPHA, DELTA, "hinge"), near)
    torch.testing.assert_close(f, torch.ones_like(f))
    assert torch.all(force(lambda x: attraction(x, ALPHA, DELTA, "cpml"), near) == 0)
    hinge = make(num_classes=2, m=1, variant="cpml", cpml_repulsion="hinge")
    assert hinge.rep_kind == "hinge"
    plain = make(num_classes=2, m=1, variant="pfml", cpml_repulsion="hinge")
    assert plain.rep_kind == "pfml"  # the hinge belongs to the CPML variant only


def test_13_no_proxy_proxy_terms_for_one_class_with_one_proxy():
    z, y = points(4, seed=14), torch.zeros(4, dtype=torch.long)
    a = make(num_classes=3, m=1, proxy_proxy="none", seed=3)
    b = make(num_classes=3, m=1, proxy_proxy="batch_classes", seed=3)
    assert value(a, z, y) == pytest.approx(value(b, z, y), rel=1e-12)
    c = make(num_classes=3, m=1, proxy_proxy="all", seed=3)
    assert value(c, z, y) != pytest.approx(value(a, z, y))


def test_14_without_proxies_only_sample_terms_remain_and_stay_finite():
    loss = make(num_classes=5, m=0)
    assert loss.proxies is None
    z, y = points(5, seed=15).requires_grad_(), torch.arange(5)  # no positives
    terms = {k: float(v.detach()) for k, v in loss.energy_terms(z, y).items()}
    assert list(terms) == [
        "sample_sample",
        "sample_proxy",
        "proxy_sample",
        "proxy_proxy",
    ]
    assert all(terms[k] == 0 for k in terms if k != "sample_sample")
    u = loss(z, y)
    assert float(u.detach()) == pytest.approx(terms["sample_sample"] / 5)
    u.backward()
    assert torch.isfinite(u) and torch.isfinite(z.grad).all()
    assert value(loss, points(1, seed=16), torch.tensor([3])) == 0  # one sample


def test_float32_energy_under_autocast():
    loss = make(num_classes=3, m=2).float()
    z, y = points(6, seed=17).float(), torch.tensor([0, 0, 1, 1, 2, 2])
    plain = loss(z.bfloat16().float(), y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = loss(z.bfloat16(), y)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, plain)


# --- the exponent convention: α is the force's decay exponent ------------------


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 2.0, 4.0])
def test_alpha_is_the_decay_exponent_of_the_force(alpha):
    """The pull beyond δ_att and the push inside δ_rep are d^(−α): α = 0 is a
    constant force (the paper's ablation point), not a zero one."""
    far = torch.linspace(DELTA + 1e-3, 2.0, 40, dtype=torch.float64)
    near = torch.linspace(1e-3, DELTA - 1e-3, 40, dtype=torch.float64)
    pull = force(lambda x: attraction(x, alpha, DELTA), far)
    push = force(lambda x: repulsion(x, alpha, DELTA), near)
    torch.testing.assert_close(-pull, far**-alpha, rtol=1e-10, atol=0)
    torch.testing.assert_close(push, near**-alpha, rtol=1e-10, atol=0)
    for same in (True, False):  # a pair on the sloped branch gets a gradient
        d = 0.9 if same else 0.1
        assert torch.count_nonzero(pair_grad(d, same, alpha=alpha)) > 0


def test_alpha_zero_is_cpml_with_the_hinge_up_to_a_constant():
    """Constant forces: α = 0 has the gradients of the linear CPML row."""
    z, y = points(7, seed=20), torch.tensor([0, 0, 1, 1, 1, 2, 0])
    grads = []
    for kw in (dict(alpha=0.0), dict(variant="cpml", cpml_repulsion="hinge")):
        loss = make(num_classes=3, m=2, seed=4, **kw)
        x = F.normalize(points(1, seed=21) + 0.15 * z, dim=1).requires_grad_()
        loss(x, y).backward()
        grads.append((x.grad, loss.proxies.grad))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_the_potential_is_continuous_in_alpha_at_one():
    d = torch.linspace(1e-3, 2.0, 50, dtype=torch.float64)
    for alpha in (1 - 1e-9, 1 + 1e-12):
        torch.testing.assert_close(
            decay_potential(d, alpha), d.log(), rtol=1e-7, atol=1e-8
        )


def test_the_former_exponent_is_alpha_minus_one():
    """The former potential −max(d, δ)^(−α') has α' = α − 1 and α' times the
    force (docs/methods/pfml.md: the former α = 3 is α = 4 here)."""
    far = torch.linspace(DELTA + 1e-3, 2.0, 20, dtype=torch.float64)
    near = torch.linspace(1e-3, DELTA - 1e-3, 20, dtype=torch.float64)
    for d, now, former in (
        (far, attraction, lambda x: -x.clamp_min(DELTA).pow(-3.0)),
        (near, repulsion, lambda x: x.clamp_max(DELTA).pow(-3.0)),
    ):
        torch.testing.assert_close(
            3.0 * force(lambda x, f=now: f(x, 4.0, DELTA), d), force(former, d)
        )


# --- float32 accuracy for close pairs -------------------------------------------


@pytest.mark.parametrize("d", [1e-3, 3e-4])
def test_close_different_class_pairs_are_exact_in_float32(d):
    """Two unit embeddings of different classes at distance d: the float32 energy
    and gradient match float64 on the same points (the expansion
    ‖a‖² + ‖b‖² − 2a·b was 4.7 % off at 1e-3 and hit the clamp at 3e-4)."""
    g = torch.Generator().manual_seed(5)
    a = F.normalize(torch.randn(16, generator=g), dim=0)
    u = torch.randn(16, generator=g)
    u = F.normalize(u - (u @ a) * a, dim=0)
    b = F.normalize(a + d * u, dim=0)
    z32 = torch.stack([a, b])
    y = torch.tensor([0, 1])
    results = []
    for z in (z32.clone(), z32.double()):
        loss = make(num_classes=2, m=0, dim=16).to(z.dtype)
        z.requires_grad_()
        u_val = loss(z, y)
        u_val.backward()
        results.append((u_val.detach().double(), z.grad.double()))
    (u32, g32), (u64, g64) = results
    assert float((z32[0] - z32[1]).double().norm()) == pytest.approx(d, rel=1e-3)
    torch.testing.assert_close(u32, u64, rtol=1e-4, atol=0)
    torch.testing.assert_close(g32, g64, rtol=1e-4, atol=float(g64.abs().max()) * 1e-5)


# --- constructor options (the loss used without the config) ----------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(proxy_proxy="some"), r"^proxy_proxy: 'some'; valid: \('batch_classes'"),
        (dict(reduction="mean"), r"^reduction: 'mean'; valid: \('per_batch_sample'"),
        (dict(proxy_init="uniform"), r"^proxy_init: 'uniform'$"),
        (dict(variant="PFML"), r"^variant: 'PFML'; valid: \('pfml', 'cpml'\)$"),
        (dict(cpml_repulsion="Hinge"), r"^cpml_repulsion: 'Hinge'; valid: \('pfml'"),
    ],
)
def test_bad_constructor_options_are_one_line_errors(kw, message):
    with pytest.raises(ValueError, match=message):
        PotentialFieldLoss(4, 3, proxies_per_class=2, **kw)


def test_potentials_reject_unknown_kinds_and_default_to_pfml():
    d = torch.tensor([0.1, 0.5], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^variant: 'PFML'"):
        attraction(d, 4.0, DELTA, "PFML")
    with pytest.raises(ValueError, match=r"^cpml_repulsion: 'PFML'"):
        repulsion(d, 4.0, DELTA, "PFML")
    torch.testing.assert_close(
        attraction(d, 4.0, DELTA), attraction(d, 4.0, DELTA, "pfml")
    )
    torch.testing.assert_close(
        repulsion(d, 4.0, DELTA), repulsion(d, 4.0, DELTA, "pfml")
    )
    default = PotentialFieldLoss(4, 3)
    assert default.proxies.shape == (45, 4)  # M = 15
    assert (default.alpha, default.variant, default.rep_kind) == (4.0, "pfml", "pfml")


def test_proxy_inits_and_labels():
    kaiming = make(num_classes=50, m=4, dim=64, proxy_init="kaiming_normal")
    normal = make(num_classes=50, m=4, dim=64, proxy_init="normal")
    # fan_out of a (200, 64) weight is 200: std sqrt(2 / 200) = 0.1
    assert float(kaiming.proxies.detach().std()) == pytest.approx(0.1, rel=0.05)
    assert float(normal.proxies.detach().std()) == pytest.approx(1.0, rel=0.05)
    assert kaiming.proxy_labels.tolist() == [c for c in range(50) for _ in range(4)]
    assert "proxy_labels" not in kaiming.state_dict()  # not persistent


def test_mean_negative_distance_is_over_different_class_pairs_only():
    z = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    y = torch.tensor([0, 1, 0])
    # different-class pairs (both orders): d(0, 1) = 5, d(2, 1) = sqrt(18)
    expected = (5 + math.sqrt(18)) / 2
    assert mean_negative_distance(z, y) == pytest.approx(expected, rel=1e-6)
    assert math.isnan(mean_negative_distance(z, torch.zeros(3, dtype=torch.long)))
    d = safe_distances(z, z, 0.5)
    assert float(d[0, 0]) == 0.5 and float(d[0, 1]) == pytest.approx(5.0)


def test_raw_proxies_without_normalisation_match_the_loop():
    loss = make(num_classes=3, m=2, seed=6, normalize_proxies=False)
    loss.proxies.data = 0.6 * points(6, seed=30)  # off the sphere
    z, y = points(5, seed=31), torch.tensor([0, 0, 1, 2, 2])
    args = (z, y, loss.proxies.detach(), loss.proxy_labels, "batch_classes")
    got = value(loss, z, y)
    assert got == pytest.approx(oracle_energy(*args, normalize=False), rel=1e-10)
    assert got != pytest.approx(oracle_energy(*args), rel=1e-6)


def test_a_float32_loss_follows_float64_embeddings():
    """The proxies are cast to the embeddings' dtype (float64 in, float64 out)."""
    loss = make(num_classes=3, m=2, seed=7)
    z, y = points(6, seed=32), torch.tensor([0, 0, 1, 1, 2, 2])
    ref = value(loss, z, y)
    loss32 = loss.float()
    u = loss32(z, y)
    assert u.dtype == torch.float64
    assert float(u) == pytest.approx(ref, rel=1e-6)


def test_autocast_changes_no_branch_near_the_radii():
    """Under bfloat16 autocast the branch test stays in float32: gradients of a
    cluster whose pair distances straddle δ match float64 (a bfloat16 a·b would
    move pairs across the radii)."""
    loss = make(num_classes=2, m=0, dim=8)
    g = torch.Generator().manual_seed(33)
    centre = F.normalize(torch.randn(8, generator=g), dim=0)
    z = F.normalize(centre + 0.05 * torch.randn(24, 8, generator=g), dim=1)
    d = torch.cdist(z, z)
    assert ((d - DELTA).abs() < 0.01).sum() > 20  # many pairs near the radius
    y = torch.arange(24) % 2
    x64 = z.double().requires_grad_()
    loss(x64, y).backward()
    x = z.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss.float()(x, y).backward()
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-4, atol=1e-2)


def test_close_and_coincident_pairs_against_the_closed_form():
    """Two different-class points: the energy is 2·(−φ_α(max(d, d_min))) / 2,
    at d = 1e-3 (above the clamp) and d = 0 (the cap at d_min = 1e-4)."""
    loss = make(num_classes=2, m=0, dim=3)
    y = torch.tensor([0, 1])
    for d, expected in ((1e-3, 1e-3), (0.0, D_MIN)):
        z = torch.tensor([[1.0, 0.0, 0.0], [1.0, d, 0.0]], dtype=torch.float64)
        assert value(loss, z, y) == pytest.approx(-phi(expected, 4.0), rel=1e-9)


def test_gradients_are_bit_identical_run_to_run_with_two_threads():
    """The sloped pairs' distances index the points; the backward of advanced
    indexing on a CPU adds with atomics across threads (its order, and so the
    float sum, changes run to run), while ``index_select``'s backward adds in
    index order. 200 proxies per class give enough pairs for the threaded path."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        loss = PotentialFieldLoss(32, 8, proxies_per_class=200)
        z0 = F.normalize(torch.randn(32, 32), dim=1)
        labels = torch.arange(8).repeat(4)
        grads = []
        for _ in range(6):
            z = z0.clone().requires_grad_(True)
            loss.zero_grad()
            loss(z, labels).backward()
            grads.append((z.grad, loss.proxies.grad.clone()))
    finally:
        torch.set_num_threads(before)
    for gz, gp in grads[1:]:
        assert torch.equal(gz, grads[0][0]) and torch.equal(gp, grads[0][1])
