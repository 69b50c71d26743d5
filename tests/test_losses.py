"""The simple and sequence-aware losses against straightforward per-k loops, masks, gradients and bad input."""
import json
import pickle

import pytest
import torch
from torch import nn

from seqdiff_kit import IdealDenoiser, MLPDenoiser, Schedule, ring8
from seqdiff_kit.losses import Loss, LossOutput, sequence_aware_loss, simple_loss

T = 50


@pytest.fixture(scope="module")
def sched():
    return Schedule.linear(T)


@pytest.fixture(scope="module")
def x0():
    return ring8().sample(64, torch.Generator().manual_seed(0))


class DoubleNet(nn.Module):
    """A small float64 time-conditioned MLP (MLPDenoiser's time embedding is float32), for tight comparisons."""

    def __init__(self, dim=2, width=16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 2, width), nn.Tanh(), nn.Linear(width, dim)).double()

    def forward(self, x, t):
        tt = t.to(torch.float64)[:, None] / T
        flat = x.reshape(x.shape[0], -1)
        return self.net(torch.cat([flat, torch.sin(3 * tt), torch.cos(3 * tt)], 1)).reshape(x.shape)


def mlp(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)  # parameter init only; every loss draw goes through an explicit generator
    if dtype == torch.float64:
        return DoubleNet()
    return MLPDenoiser(dim=2, width=32, depth=2, time_dim=16, T=T)


def reference_sa(model, x0, sched, K, lam, t, noise):
    """The SA loss written the slow, obvious way: one model call per k and per sample, Python sums."""
    B = x0.shape[0]
    simple_terms, sa_terms = [], []
    for b in range(B):
        tb = int(t[b])
        total = torch.zeros_like(x0[b])
        for k in range(K):
            if tb - k < 0:
                continue  # m_k = 1[t >= k]
            ab = sched.alpha_bars[tb - k].to(x0.dtype)
            x_s = ab.sqrt() * x0[b] + (1 - ab).sqrt() * noise[k, b]
            r = noise[k, b] - model(x_s[None], torch.tensor([tb - k]))[0]
            total = total + r
            if k == 0:
                simple_terms.append((r**2).sum())
        sa_terms.append((total**2).sum() / K**2)
    simple = torch.stack(simple_terms).mean()
    sa = torch.stack(sa_terms).mean()
    return simple + lam * sa, simple, sa


def test_k1_is_one_plus_lambda_times_simple(sched, x0):
    model, lam = mlp(), 0.7
    out_sa = sequence_aware_loss(model, x0, sched, K=1, lam=lam, generator=torch.Generator().manual_seed(3))
    out_simple = simple_loss(model, x0, sched, generator=torch.Generator().manual_seed(3))
    assert isinstance(out_sa, LossOutput)
    torch.testing.assert_close(out_sa.total, (1 + lam) * out_simple.simple)
    torch.testing.assert_close(out_sa.sa, out_simple.simple)
    assert float(out_simple.sa) == 0.0 and out_simple.total is out_simple.simple


@pytest.mark.parametrize("K", [2, 3, 4])
def test_batched_equals_per_k_loop_given_t_and_noise(sched, x0, K):
    model, lam = mlp(1, torch.float64), 0.5
    x = x0.double()
    g = torch.Generator().manual_seed(K)
    t = torch.randint(0, T, (x.shape[0],), generator=g)
    t[:4] = torch.tensor([0, 1, 2, 3])  # exercise the masks
    noise = torch.randn(K, *x.shape, generator=g, dtype=torch.float64)
    out = sequence_aware_loss(model, x, sched, K=K, lam=lam, t=t, noise=noise)
    ref_total, ref_simple, ref_sa = reference_sa(model, x, sched, K, lam, t, noise)
    torch.testing.assert_close(out.simple, ref_simple, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.sa, ref_sa, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.total, ref_total, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("K", [2, 3, 4])
def test_generator_draws_t_then_eps0_then_the_rest(sched, x0, K):
    """With a shared generator the loss draws t, eps_0, eps_1..eps_{K-1} in that order (documented), so the
    simple term of the SA loss sees exactly the draws of simple_loss."""
    model = mlp(2)
    out = sequence_aware_loss(model, x0, sched, K=K, lam=1.3, generator=torch.Generator().manual_seed(11))
    g = torch.Generator().manual_seed(11)
    t = sched.sample_t(x0.shape[0], generator=g)
    eps0 = torch.randn(x0.shape, generator=g)
    rest = torch.randn(K - 1, *x0.shape, generator=g)
    ref_total, ref_simple, ref_sa = reference_sa(model, x0, sched, K, 1.3, t, torch.cat([eps0[None], rest]))
    torch.testing.assert_close(out.total, ref_total, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.sa, ref_sa, rtol=1e-5, atol=1e-6)
    simple = simple_loss(model, x0, sched, generator=torch.Generator().manual_seed(11))
    # the SA loss evaluates a batch of K*B, simple_loss one of B: the matmul kernels may round differently
    # (a few float32 ulps per output), so compare to float32 precision, not bit for bit
    torch.testing.assert_close(out.simple, simple.simple, rtol=1e-5, atol=1e-6)


def test_terms_with_t_below_k_drop_out(sched, x0):
    model, K = mlp(3, torch.float64), 3
    x = x0[:3].double()
    t = torch.tensor([0, 1, 2])
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(K, 3, 2, generator=g, dtype=torch.float64)
    base = sequence_aware_loss(model, x, sched, K=K, lam=1.0, t=t, noise=noise)
    # changing eps_k where t < k must change nothing (those terms are masked) ...
    poked = noise.clone()
    poked[1, 0] += 100.0
    poked[2, 0] -= 50.0
    poked[2, 1] += 70.0
    same = sequence_aware_loss(model, x, sched, K=K, lam=1.0, t=t, noise=poked)
    torch.testing.assert_close(same.total, base.total, rtol=0, atol=0)
    # ... while changing a kept term does
    poked[2, 2] += 1.0
    assert not torch.allclose(sequence_aware_loss(model, x, sched, K=K, lam=1.0, t=t, noise=poked).sa, base.sa)
    # a lone t = 0 sample: only k = 0 survives, so L_sa = L_simple / K^2
    one = sequence_aware_loss(model, x[:1], sched, K=K, lam=1.0, t=t[:1], noise=noise[:, :1])
    torch.testing.assert_close(one.sa, one.simple / K**2, rtol=1e-12, atol=0)
    # t = 1: ||r_0 + r_1||^2 / K^2, written out by hand
    def r(k, s):
        ab = sched.alpha_bars[s]
        xs = ab.sqrt() * x[1] + (1 - ab).sqrt() * noise[k, 1]
        return noise[k, 1] - model(xs[None], torch.tensor([s]))[0]
    two = sequence_aware_loss(model, x[1:2], sched, K=K, lam=1.0, t=t[1:2], noise=noise[:, 1:2])
    torch.testing.assert_close(two.sa, ((r(0, 1) + r(1, 0)) ** 2).sum() / K**2, rtol=1e-12, atol=0)


def test_masked_terms_use_a_valid_timestep_in_one_batched_call(sched, x0):
    calls = []

    class Spy(nn.Module):
        def forward(self, x, t):
            calls.append((x.shape[0], int(t.min()), int(t.max())))
            return 0.1 * x

    K = 4
    sequence_aware_loss(Spy(), x0, sched, K=K, lam=1.0, t=torch.zeros(x0.shape[0], dtype=torch.long),
                        generator=torch.Generator().manual_seed(0))
    assert calls == [(K * x0.shape[0], 0, 0)]


def test_gradients_reach_every_mlp_parameter(sched, x0):
    model = mlp(4)
    out = sequence_aware_loss(model, x0, sched, K=3, lam=0.8, generator=torch.Generator().manual_seed(9))
    out.total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()) and float(p.grad.abs().sum()) > 0, name
    # the SA term on its own also reaches every parameter (it is not just the simple term's gradient)
    model.zero_grad()
    sequence_aware_loss(model, x0, sched, K=3, lam=0.8, generator=torch.Generator().manual_seed(9)).sa.backward()
    assert all(float(p.grad.abs().sum()) > 0 for p in model.parameters())


def test_gradients_match_finite_differences(sched, x0):
    model = mlp(4, torch.float64)
    x = x0.double()
    g = torch.Generator().manual_seed(9)
    t = torch.randint(0, T, (x.shape[0],), generator=g)
    noise = torch.randn(3, *x.shape, generator=g, dtype=torch.float64)
    out = sequence_aware_loss(model, x, sched, K=3, lam=0.8, t=t, noise=noise)
    out.total.backward()
    params = [p for p in model.parameters()]
    for name, p in model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    # the directional derivative along a random direction, by central differences
    v = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
    analytic = sum(float((p.grad * d).sum()) for p, d in zip(params, v))
    h = 1e-5

    def loss_at(step):
        with torch.no_grad():
            for p, d in zip(params, v):
                p.add_(step * d)
            val = float(sequence_aware_loss(model, x, sched, K=3, lam=0.8, t=t, noise=noise).total)
            for p, d in zip(params, v):
                p.sub_(step * d)
        return val

    numeric = (loss_at(h) - loss_at(-h)) / (2 * h)
    assert abs(numeric - analytic) < 1e-6 * max(1.0, abs(analytic))


def test_ideal_denoiser_beats_an_untrained_mlp():
    sched = Schedule.linear(1000)
    mix = ring8()
    x = mix.sample(2000, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    t = sched.sample_t(x.shape[0], generator=g)
    noise = torch.randn(x.shape, generator=g)
    ideal = simple_loss(IdealDenoiser(mix, sched), x, sched, t=t, noise=noise).simple
    torch.manual_seed(0)
    with torch.no_grad():
        untrained = simple_loss(MLPDenoiser(T=1000), x, sched, t=t, noise=noise).simple
    assert float(ideal) < 0.8 * float(untrained)
    # and the eps = 0 predictor scores E||eps||^2 = D = 2 (within Monte-Carlo error): a sanity anchor
    zero = simple_loss(lambda x_, t_: torch.zeros_like(x_), x, sched, t=t, noise=noise).simple
    assert abs(float(zero) - 2.0) < 3 * (2 * 2 / 2000) ** 0.5 and float(ideal) < float(zero)


def test_images_and_flat_inputs(sched):
    """Norms sum over every feature dimension, for image batches [B, C, H, W] and for 1-D x0 [B]."""
    g = torch.Generator().manual_seed(0)
    model = lambda x, t: 0.3 * x + 0.01 * t.reshape(-1, *([1] * (x.ndim - 1)))  # noqa: E731
    imgs = torch.randn(5, 1, 3, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 1, 4, 20, 49])
    noise = torch.randn(2, *imgs.shape, generator=g, dtype=torch.float64)
    out = sequence_aware_loss(model, imgs, sched, K=2, lam=2.0, t=t, noise=noise)
    ref = reference_sa(model, imgs, sched, 2, 2.0, t, noise)
    torch.testing.assert_close(out.total, ref[0], rtol=1e-12, atol=1e-12)
    flat = torch.randn(5, generator=g, dtype=torch.float64)
    out1 = sequence_aware_loss(model, flat, sched, K=2, lam=2.0, t=t, noise=noise[:, :, 0, 0, 0])
    ref1 = sequence_aware_loss(model, flat[:, None], sched, K=2, lam=2.0, t=t, noise=noise[:, :, 0, 0, :1])
    torch.testing.assert_close(out1.total, ref1.total)


def test_antithetic_timesteps(sched, x0):
    model = mlp(5)
    out = simple_loss(model, x0, sched, generator=torch.Generator().manual_seed(4), antithetic=True)
    g = torch.Generator().manual_seed(4)
    t = sched.sample_t(x0.shape[0], generator=g, antithetic=True)
    assert torch.equal(t[: x0.shape[0] // 2] + t[x0.shape[0] // 2:], torch.full((x0.shape[0] // 2,), T - 1))
    ref = simple_loss(model, x0, sched, t=t, noise=torch.randn(x0.shape, generator=g))
    torch.testing.assert_close(out.total, ref.total)


def test_loss_config_roundtrip_and_call(sched, x0):
    model = mlp(6)
    for loss in (Loss(), Loss("sa", K=3, lam=0.5), Loss("sa", K=2, lam=1.0, antithetic=True)):
        cfg = json.loads(json.dumps(loss.config))
        again = Loss.from_config(cfg)
        assert again == loss and pickle.loads(pickle.dumps(loss)) == loss
    assert Loss("sa", K=3, lam=0.5).config == {"name": "sa", "K": 3, "lam": 0.5}
    assert Loss().config == {"name": "simple", "K": 1, "lam": 0.0}
    out = Loss("sa", K=3, lam=0.5)(model, x0, sched, torch.Generator().manual_seed(8))
    ref = sequence_aware_loss(model, x0, sched, K=3, lam=0.5, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(out.total, ref.total)
    out = Loss()(model, x0, sched, torch.Generator().manual_seed(8))
    torch.testing.assert_close(out.total, simple_loss(model, x0, sched, generator=torch.Generator().manual_seed(8)).total)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"K": 0}, ValueError, r"K must be in \[1, 50\], got 0"),
    ({"K": T + 1}, ValueError, r"K must be in \[1, 50\], got 51"),
    ({"K": 2.0}, TypeError, "K must be an integer"),
    ({"lam": -0.1}, ValueError, r"lam must be in \[0.0, inf\], got -0.1"),
    ({"lam": float("nan")}, ValueError, "lam must be finite"),
    ({"t": torch.tensor([0, 1])}, ValueError, r"t must be a scalar or have shape \[B\]"),
    ({"t": torch.full((8,), T)}, ValueError, r"t must be in \[0, 49\], got values from 50"),
    ({"t": torch.zeros(8)}, TypeError, "t must be a LongTensor of integer timesteps"),
    ({"noise": torch.zeros(3, 8, 2)}, ValueError, r"noise must have shape \[K, \*x0.shape\]"),
    ({"noise": torch.full((2, 8, 2), float("inf"))}, ValueError, "noise must be finite"),
])
def test_bad_arguments(sched, kwargs, exc, match):
    x = torch.zeros(8, 2)
    kw = {"K": 2, "lam": 1.0, **kwargs}
    with pytest.raises(exc, match=match):
        sequence_aware_loss(mlp(), x, sched, **kw)


def test_bad_data_model_and_config(sched):
    model = mlp()
    bad = torch.zeros(4, 2)
    bad[1, 0] = float("nan")
    with pytest.raises(ValueError, match="x0 must be finite"):
        simple_loss(model, bad, sched)
    with pytest.raises(ValueError, match="x0 must hold at least one sample"):
        sequence_aware_loss(model, torch.zeros(0, 2), sched)
    with pytest.raises(TypeError, match="x0 must be a torch.Tensor"):
        simple_loss(model, [[0.0, 1.0]], sched)
    with pytest.raises(TypeError, match="schedule must be a Schedule"):
        simple_loss(model, torch.zeros(4, 2), "linear")
    with pytest.raises(TypeError, match="model must be callable"):
        simple_loss(3, torch.zeros(4, 2), sched)
    with pytest.raises(ValueError, match="model output must have the shape"):
        simple_loss(lambda x, t: x[:, :1], torch.zeros(4, 2), sched)
    with pytest.raises(ValueError, match="name must be one of"):
        Loss("l1")
    with pytest.raises(ValueError, match="the simple loss takes K=1 and lam=0.0"):
        Loss("simple", K=2)
    with pytest.raises(ValueError, match="lam must be in"):
        Loss("sa", K=2, lam=-1.0)
    with pytest.raises(ValueError, match="unknown keys"):
        Loss.from_config({"name": "sa", "k": 2})
    with pytest.raises(ValueError, match="K must be in"):  # K > T is only known once the schedule is
        Loss("sa", K=T + 1, lam=1.0)(model, torch.zeros(4, 2), sched)


# ---------------------------------------------------------------------- dtypes and devices (issue 16)
def test_losses_name_the_dtype_and_device_they_refuse():
    s = Schedule.linear(10)
    m = IdealDenoiser(ring8(), s)
    with pytest.raises(TypeError, match="x0 must be a floating-point tensor .*got dtype bool"):
        simple_loss(m, torch.zeros(4, 2, dtype=torch.bool), s)
    with pytest.raises(TypeError, match="x0 must hold values on a real device"):
        sequence_aware_loss(m, torch.zeros(4, 2, device="meta"), s)
    with pytest.raises(TypeError, match="noise must be a floating-point tensor .*int64"):
        simple_loss(m, torch.zeros(4, 2), s, noise=torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="t must be a LongTensor of integer timesteps"):
        simple_loss(m, torch.zeros(4, 2), s, t=torch.zeros(4, dtype=torch.complex64))


def test_float16_losses_see_the_noise_at_t_0():
    """x_{t} is built with float64 square roots: in float16, 1 - alpha_bar_0 = 1e-4 would round to 0 and x_0 would
    carry no noise (the loss came out 2% off the float32 one)."""
    s = Schedule.linear()
    m = IdealDenoiser(ring8(), s)
    x0 = ring8().sample(64, torch.Generator().manual_seed(0))
    noise = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    t = torch.zeros(64, dtype=torch.long)
    full = simple_loss(m, x0, s, t=t, noise=noise).total
    half = simple_loss(m, x0.half(), s, t=t, noise=noise.half()).total
    # float16 rounds x_t, eps_pred and each residual about once: a few eps(float16) of relative error
    assert torch.isfinite(half) and float(half) == pytest.approx(float(full), rel=8 * torch.finfo(torch.float16).eps)


# ---------------------------------------------------------------------- Input Perturbation
def test_input_perturbation_with_gamma_zero_is_the_simple_loss_bit_for_bit(sched, x0):
    from seqdiff_kit.losses import input_perturbation_loss
    model = mlp(7)
    for anti in (False, True):
        ip = input_perturbation_loss(model, x0, sched, 0.0, generator=torch.Generator().manual_seed(3),
                                     antithetic=anti)
        simple = simple_loss(model, x0, sched, generator=torch.Generator().manual_seed(3), antithetic=anti)
        assert torch.equal(ip.total, simple.total) and torch.equal(ip.simple, simple.simple)
    # through the JSON-able configuration too
    assert torch.equal(Loss("ip", gamma=0.0)(model, x0, sched, torch.Generator().manual_seed(4)).total,
                       Loss()(model, x0, sched, torch.Generator().manual_seed(4)).total)


def test_the_perturbed_input_has_the_expected_variance_and_the_target_is_unchanged(sched):
    """With x0 = 0 the network sees x_t = sqrt(1 - a_t) (eps + gamma xi): variance (1 - a_t)(1 + gamma^2) per
    feature. The noise it is asked to predict is eps itself: a model that returns the perturbed noise
    eps + gamma xi scores gamma^2 E||xi||^2 = gamma^2 d, not 0."""
    from seqdiff_kit.losses import input_perturbation_loss
    gamma, n, t = 0.3, 50000, 30
    a = float(sched.alpha_bars[t])
    seen = []

    def probe(x, tt):
        seen.append(x)
        return torch.zeros_like(x)

    x0 = torch.zeros(n, 2, dtype=torch.float64)
    input_perturbation_loss(probe, x0, sched, gamma, t=torch.full((n,), t), generator=torch.Generator().manual_seed(0))
    var, want = float(seen[0].var()), (1 - a) * (1 + gamma**2)
    assert abs(var - want) < 4 * want * (2 / (2 * n)) ** 0.5, (var, want)
    # the same call with gamma = 0 sees the unperturbed variance 1 - a
    seen.clear()
    input_perturbation_loss(probe, x0, sched, 0.0, t=torch.full((n,), t), generator=torch.Generator().manual_seed(0))
    assert abs(float(seen[0].var()) - (1 - a)) < 4 * (1 - a) * (1 / n) ** 0.5
    # the target: given eps and xi, the perturbed-noise oracle leaves exactly gamma^2 ||xi||^2
    g = torch.Generator().manual_seed(1)
    x0 = ring8().sample(4000, g, dtype=torch.float64)
    eps, xi = torch.randn(x0.shape, generator=g, dtype=torch.float64), torch.randn(x0.shape, generator=g,
                                                                                   dtype=torch.float64)
    tt = sched.sample_t(4000, generator=g)
    ab = sched.alpha_bars[tt][:, None]
    oracle = lambda x, s: (x - ab.sqrt() * x0) / (1 - ab).sqrt()  # noqa: E731  recovers eps + gamma xi
    out = input_perturbation_loss(oracle, x0, sched, gamma, t=tt, noise=eps, perturbation=xi)
    torch.testing.assert_close(out.total, (gamma**2 * xi.pow(2).sum(1)).mean(), atol=1e-12, rtol=1e-12)
    assert abs(float(out.total) - gamma**2 * 2) < 4 * gamma**2 * 2 / 4000 ** 0.5


def test_input_perturbation_config_and_bad_arguments(sched, x0):
    loss = Loss("ip", gamma=0.15)
    assert loss.config == {"name": "ip", "K": 1, "lam": 0.0, "gamma": 0.15} and repr(loss) == "Loss('ip', gamma=0.15)"
    again = Loss.from_config(json.loads(json.dumps(loss.config)))
    assert again == loss and pickle.loads(pickle.dumps(loss)) == loss and Loss("ip").gamma == 0.1
    from seqdiff_kit.losses import input_perturbation_loss
    model = mlp(8)
    torch.testing.assert_close(loss(model, x0, sched, torch.Generator().manual_seed(5)).total,
                               input_perturbation_loss(model, x0, sched, 0.15,
                                                       generator=torch.Generator().manual_seed(5)).total)
    with pytest.raises(ValueError, match=r"gamma must be in \[0.0, inf\], got -0.1"):
        Loss("ip", gamma=-0.1)
    with pytest.raises(ValueError, match="gamma belongs to name='ip'"):
        Loss("sa", K=2, lam=1.0, gamma=0.1)
    with pytest.raises(ValueError, match="the ip loss takes K=1"):
        Loss("ip", K=2)
    with pytest.raises(ValueError, match=r"perturbation must have shape"):
        input_perturbation_loss(model, x0, sched, 0.1, perturbation=torch.zeros(3, 2))


def test_any_recipe_trains_with_input_perturbation_and_gamma_zero_trains_the_simple_loss():
    """``Loss("ip")`` is a Recipe's loss like any other: it round-trips through the recipe's JSON and trains;
    with gamma = 0 the run is the simple loss's, bit for bit (xi is never drawn)."""
    from seqdiff_kit.recipes import SHIPPED, Recipe, train
    base = SHIPPED["ring8_simple"].replace(steps=3, seed=1, model_args={"dim": 2, "width": 16, "depth": 1})
    ip = base.replace(loss=Loss("ip", gamma=0.1))
    assert Recipe.from_config(json.loads(json.dumps(ip.config()))) == ip
    threads = torch.get_num_threads()
    try:
        runs = {g: train(base.replace(loss=Loss("ip", gamma=g)), progress=False, threads=1) for g in (0.0, 0.1)}
        simple = train(base, progress=False, threads=1)
    finally:
        torch.set_num_threads(threads)
    assert runs[0.1].config["loss"] == {"name": "ip", "K": 1, "lam": 0.0, "gamma": 0.1}
    assert all(torch.equal(p, q) for p, q in zip(runs[0.0].model.parameters(), simple.model.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(runs[0.1].model.parameters(), simple.model.parameters()))
