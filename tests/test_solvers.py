"""The solvers beside the generalized step: convergence at their order to the exact probability-flow ODE of a
1-D Gaussian, DPM-Solver++(2M) against diffusers, Analytic-DPM's variance and the exact-covariance step against
their closed forms, and the shared signature (registry, noise, recording)."""
import math

import pytest
import torch

from seqdiff_kit import GaussianMixture, IdealDenoiser, Schedule, ring8
from seqdiff_kit import samplers, solvers
from seqdiff_kit.drift import trajectory_drift
from seqdiff_kit.samplers import make_noise

SCHED = Schedule.linear()


def gauss_model(v: float, schedule: Schedule = SCHED):
    """The exact eps* of N(0, v) in closed form, ``eps*(x, t) = sqrt(1 - a_t) x / (a_t v + 1 - a_t)`` (cheaper
    than the mixture code, and independent of it)."""
    a = schedule.alpha_bars
    w = (1 - a).sqrt() / (a * v + 1 - a)

    def model(x, t):
        return w[t].to(x.dtype)[:, None] * x

    return model


def exact_ode_scale(v: float, t: int, schedule: Schedule = SCHED) -> float:
    """The probability-flow ODE of N(0, v) maps x_{T-1} to x_t = x_{T-1} sqrt(q_t / q_{T-1}), q = a v + 1 - a
    (it maps quantiles to quantiles of the Gaussian marginals)."""
    q = lambda s: float(schedule.alpha_bar(s)) * v + 1 - float(schedule.alpha_bar(s))  # noqa: E731
    return math.sqrt(q(t) / q(schedule.T - 1))


# ---------------------------------------------------------------------- the DDIM path is the generalized step
def generalized_steps(den, x_T, noise, steps=10, eta=0.0, variance="small", clip_x0=None, spacing="trailing"):
    """The run of ``samplers.generalized_step`` taken step by step, as a ``Trajectory`` of every step."""
    ts = SCHED.timesteps(steps, spacing)
    nxt = ts.tolist()[1:] + [-1]
    xs, x0s, epss = [x_T], [], []
    for i, (t, s) in enumerate(zip(ts.tolist(), nxt)):
        with torch.no_grad():
            eps = den(xs[-1], torch.full((x_T.shape[0],), t, dtype=torch.long))
        x_s, x0 = samplers.generalized_step(xs[-1], eps, t, s, SCHED, eta=eta, variance=variance, noise=noise[i],
                                            clip_x0=clip_x0)
        xs.append(x_s), x0s.append(x0), epss.append(eps)
    return samplers.Trajectory(ts, torch.arange(steps), torch.stack(xs), torch.stack(x0s), torch.stack(epss))


@pytest.mark.parametrize("kwargs", [dict(), dict(eta=1.0), dict(eta=0.3), dict(eta=1.0, variance="large"),
                                    dict(clip_x0=1.0), dict(spacing="quad")])
def test_ddim_solver_is_the_generalized_step_bit_for_bit(kwargs):
    den = IdealDenoiser(ring8(), SCHED)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    noise = make_noise(10, x_T.shape, torch.Generator().manual_seed(1))
    old = generalized_steps(den, x_T, noise, **kwargs)
    new = solvers.sample(den, x_T, SCHED, 10, solver="ddim", noise=noise, **kwargs)
    for name in ("timesteps", "recorded", "x", "x0_pred", "eps_pred"):
        assert torch.equal(getattr(old, name), getattr(new, name)), name
    if kwargs.get("eta") == 1.0:
        ddpm = solvers.sample(den, x_T, SCHED, 10, solver="ddpm", noise=noise,
                              variance=kwargs.get("variance", "small"))
        assert torch.equal(ddpm.x, old.x)


def test_the_package_sample_takes_a_solver():
    import seqdiff_kit as sk

    assert sk.sample is solvers.sample and sk.sample_iter is solvers.sample_iter
    assert not hasattr(samplers, "sample") and not hasattr(samplers, "sample_iter")  # one public sample
    assert set(sk.SOLVERS) == {"ddim", "ddpm", "dpmpp_2m", "heun", "analytic_dpm", "exact_cov"}


# ---------------------------------------------------------------------- first-order limits
def test_two_step_dpmpp_2m_and_one_step_heun_are_ddim():
    """DPM-Solver++(2M)'s first step is first order and its last lands on D: with 2 steps it is DDIM. Heun's
    single step to the data is its Euler step, which is DDIM."""
    den = IdealDenoiser(ring8(), SCHED)
    x_T = torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ddim2 = solvers.sample(den, x_T, SCHED, 2).x
    torch.testing.assert_close(solvers.sample(den, x_T, SCHED, 2, solver="dpmpp_2m").x, ddim2,
                               atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(solvers.sample(den, x_T, SCHED, 1, solver="heun").x,
                               solvers.sample(den, x_T, SCHED, 1).x, atol=1e-12, rtol=1e-12)


# ---------------------------------------------------------------------- convergence order
CONVERGENCE_STEPS = (50, 100, 200)
T_STOP = 99  # a timestep of every trailing grid with a multiple of 10 steps


@pytest.mark.parametrize("v", [0.09, 1.0])
@pytest.mark.parametrize("solver, order", [("ddim", 1), ("dpmpp_2m", 2), ("heun", 2)])
def test_each_ode_solver_converges_to_the_exact_flow_at_its_order(solver, order, v):
    """Error of x at t = 99 against the exact PF-ODE solution; halving the step divides it by about 2^order.

    For an order-p method e(h) = C h^p (1 + O(h)), so e(h) / e(h/2) = 2^p (1 + O(h)): with h = 1/50 .. 1/200 of
    the run, the bands [1.6, 2.5] (p = 1) and [3, 5.5] (p = 2) leave room for the O(h) term and separate the two
    orders. The state at t = 99 is compared, not the final sample: trailing grids end with one jump from
    sigma(t_last) to 0, whose size shrinks only like sqrt(1/steps) for the linear schedule (sigma(t)^2 ~ sum of
    betas ~ beta_0 t near t = 0), so that last step is tested separately."""
    model = gauss_model(v)
    x_T = torch.tensor([[1.0], [-2.0]], dtype=torch.float64)
    errs = []
    for n in CONVERGENCE_STEPS:
        tr = solvers.sample(model, x_T, SCHED, n, solver=solver)
        j = tr.timesteps.tolist().index(T_STOP)
        errs.append(float((tr.x[j] - x_T * exact_ode_scale(v, T_STOP)).abs().max()))
    lo, hi = (1.6, 2.5) if order == 1 else (3.0, 5.5)
    for e_coarse, e_fine in zip(errs, errs[1:]):
        assert lo <= e_coarse / e_fine <= hi, (solver, v, errs)


@pytest.mark.parametrize("solver", ["ddim", "dpmpp_2m", "heun"])
def test_the_whole_run_approaches_the_exact_map_to_the_data(solver):
    """The full run to t = -1 (x_0 = x_T sqrt(v / (abar_T v + 1 - abar_T))) gets closer as the step count grows,
    for trailing and Karras timesteps, at least at first order overall (16 times the steps: the error falls by
    16 asymptotically; 8 leaves room for the pre-asymptotic range)."""
    v = 1.0
    model = gauss_model(v)
    x_T = torch.tensor([[1.0]], dtype=torch.float64)
    exact = exact_ode_scale(v, -1)
    for spacing in ("trailing", "karras"):
        errs = [abs(float(solvers.sample(model, x_T, SCHED, n, solver=solver, spacing=spacing).final) - exact)
                for n in (10, 40, 160)]
        assert errs[0] > errs[1] > errs[2] and errs[0] / errs[2] > 8, (spacing, errs)


# ---------------------------------------------------------------------- DPM-Solver++(2M) against diffusers
def _diffusers_scheduler(steps: int):
    diffusers = pytest.importorskip("diffusers")
    ds = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=SCHED.T, trained_betas=SCHED.betas.numpy(), algorithm_type="dpmsolver++",
        solver_order=2, timestep_spacing="trailing", final_sigmas_type="zero", lower_order_final=True,
        prediction_type="epsilon")
    ds.set_timesteps(steps)
    return ds


@pytest.mark.slow  # importing diffusers costs seconds
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2's copy keyword, inside diffusers
@pytest.mark.parametrize("steps", [5, 10, 20, 50])
def test_dpmpp_2m_matches_diffusers(steps):
    """Both runs over diffusers' own trailing timesteps with the ideal denoiser of ring8 (nonlinear, so the
    multistep history matters). End to end through ``scheduler.step``, which computes in float32 (its betas,
    sigmas and sample): within a few float32 roundings per step. Then diffusers' update formulas driven in
    float64 with the schedule's exact sigmas: to float64 round-off."""
    den = IdealDenoiser(ring8(), SCHED)
    x_T = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = solvers.sample(den, x_T, SCHED, steps, solver="dpmpp_2m")
    ds = _diffusers_scheduler(steps)
    assert ds.timesteps.tolist() == ours.timesteps.tolist()
    x = x_T.float()
    for t in ds.timesteps:
        x = ds.step(den(x, torch.full((x.shape[0],), int(t))), t, x).prev_sample
    scale = float(ours.final.abs().max())
    tol32 = 4 * steps * torch.finfo(torch.float32).eps * scale
    assert float((x.double() - ours.final).abs().max()) < tol32

    ds = _diffusers_scheduler(steps)
    a = SCHED.alpha_bars[ds.timesteps]
    ds.sigmas = torch.cat([((1 - a) / a).sqrt(), torch.zeros(1, dtype=torch.float64)])
    x, outputs = x_T.clone(), []
    for i, t in enumerate(ds.timesteps):
        ds._step_index = i  # what step() sets; its order rule: first order at the first and the last step
        outputs.append(ds.convert_model_output(den(x, torch.full((x.shape[0],), int(t))), sample=x))
        if i in (0, steps - 1):
            x = ds.dpm_solver_first_order_update(outputs[-1], sample=x)
        else:
            x = ds.multistep_dpm_solver_second_order_update(outputs[-2:], sample=x)
        torch.testing.assert_close(x, ours.x[i + 1], atol=1e-12 * scale, rtol=0)


# ---------------------------------------------------------------------- Analytic-DPM
def test_analytic_gamma_of_a_gaussian_equals_its_closed_form():
    """For x0 ~ N(0, v I) and the exact eps*, Gamma_t = E||eps*||^2 / d = (1 - a) / (a v + 1 - a): the Monte-Carlo
    estimate lies within 4 standard errors (||eps*||^2 / d is (1 - a) / q times a chi^2_d / d, variance 2/d)."""
    v, d, M = 0.3, 2, 20_000
    mix = GaussianMixture([1.0], [[0.0, 0.0]], [[v, v]])
    x0 = mix.sample(M, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ts = [999, 700, 300, 100, 20, 0]
    gamma = solvers.analytic_gamma(IdealDenoiser(mix, SCHED), x0, SCHED, ts,
                                   generator=torch.Generator().manual_seed(1))
    for t in ts:
        a = float(SCHED.alpha_bar(t))
        exact = (1 - a) / (a * v + 1 - a)
        se = exact * math.sqrt(2 / d / M)
        assert abs(float(gamma[t]) - exact) < 4 * se, t
    assert int(torch.isfinite(gamma).sum()) == len(ts)


@pytest.mark.parametrize("eta", [1.0, 0.0])
def test_analytic_variance_with_the_exact_gamma_is_the_gaussian_posterior_variance(eta):
    """sigma*^2 = lam^2 + c^2 Var[x0 | x_t], and for N(0, v) Var[x0 | x_t] = v (1 - a) / (a v + 1 - a)."""
    v = 0.3
    for t, s in [(999, 799), (500, 400), (99, -1), (1, 0)]:
        a_t, a_s = float(SCHED.alpha_bar(t)), float(SCHED.alpha_bar(s))
        gamma = (1 - a_t) / (a_t * v + 1 - a_t)
        lam2 = eta**2 * (1 - a_t / a_s) * (1 - a_s) / (1 - a_t)
        c = math.sqrt(a_s) - math.sqrt(1 - a_s - lam2) * math.sqrt(a_t / (1 - a_t))
        want = lam2 + c**2 * v * (1 - a_t) / (a_t * v + 1 - a_t)
        assert solvers.analytic_variance(a_t, a_s, gamma, eta) == pytest.approx(want, rel=1e-12)
    # Gamma outside [0, 1] is clipped to the bounds [lam^2, lam^2 + c^2 (1 - a) / a]
    lam2, _, c = solvers.reverse_step_coefficients(0.5, 0.6, 1.0)
    assert solvers.analytic_variance(0.5, 0.6, 1.7) == pytest.approx(lam2)
    assert solvers.analytic_variance(0.5, 0.6, -0.2) == pytest.approx(lam2 + c * c)


def test_one_step_of_the_variance_solvers_has_the_stated_moments():
    """From one point x_t, many z: the sample mean of x_s is mu and the sample covariance lam^2 I + c^2 Cov[x0|x_t]
    (exact_cov) or sigma*^2 I (analytic_dpm), within Monte-Carlo error."""
    mix = ring8()
    den = IdealDenoiser(mix, SCHED)
    t, s, B = 400, 300, 40_000
    point = torch.tensor([[0.7, -0.4]], dtype=torch.float64)
    x_T = point.expand(B, 2).clone()
    noise = make_noise(2, x_T.shape, torch.Generator().manual_seed(0), dtype=torch.float64)
    a_t, a_s = float(SCHED.alpha_bar(t)), float(SCHED.alpha_bar(s))
    lam2, k_eps, c = solvers.reverse_step_coefficients(a_t, a_s, 1.0)
    eps = den(point, torch.tensor([t]))
    mu = math.sqrt(a_s) * mix.posterior_mean(point, a_t) + k_eps * eps
    cov_exact = lam2 * torch.eye(2, dtype=torch.float64) + c**2 * mix.posterior_covariance(point, a_t)[0]
    gamma = torch.full((SCHED.T,), 0.37, dtype=torch.float64)
    iso = solvers.analytic_variance(a_t, a_s, 0.37)
    for name, opts, want in [("exact_cov", {"mixture": mix}, cov_exact),
                             ("analytic_dpm", {"gamma": gamma}, iso * torch.eye(2, dtype=torch.float64))]:
        out = next(iter(solvers.sample_iter(den, x_T, SCHED, timesteps=[t, s], solver=name, noise=noise,
                                            **opts))).x_s
        se_mean = (want.diagonal().sqrt() / math.sqrt(B))
        assert bool(((out.mean(0) - mu[0]).abs() < 4 * se_mean).all()), name
        emp = torch.cov(out.T)
        se_cov = (want.diagonal()[:, None] * want.diagonal()[None, :] + want**2).sqrt() / math.sqrt(B)
        assert bool(((emp - want).abs() < 4 * se_cov).all()), (name, emp, want)


def test_final_noise_switches_the_last_draw():
    mix = ring8()
    den = IdealDenoiser(mix, SCHED)
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    noise = make_noise(5, x_T.shape, torch.Generator().manual_seed(1), dtype=torch.float64)
    with_last = solvers.sample(den, x_T, SCHED, 5, solver="exact_cov", mixture=mix, noise=noise)
    without = solvers.sample(den, x_T, SCHED, 5, solver="exact_cov", mixture=mix, noise=noise, final_noise=False)
    assert torch.equal(with_last.x[:-1], without.x[:-1])
    torch.testing.assert_close(without.final, without.x0_pred[-1])
    assert not torch.allclose(with_last.final, without.final)


def test_exact_cov_of_a_single_gaussian_is_analytic_dpm_with_the_exact_gamma():
    """For N(0, v I) the posterior covariance is isotropic and the same for every x_t, so the two variance
    solvers coincide when Gamma is exact."""
    v = 0.3
    mix = GaussianMixture([1.0], [[0.0, 0.0]], [[v, v]])
    den = IdealDenoiser(mix, SCHED)
    a = SCHED.alpha_bars
    gamma = (1 - a) / (a * v + 1 - a)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    noise = make_noise(8, x_T.shape, torch.Generator().manual_seed(1), dtype=torch.float64)
    ex = solvers.sample(den, x_T, SCHED, 8, solver="exact_cov", mixture=mix, noise=noise)
    an = solvers.sample(den, x_T, SCHED, 8, solver="analytic_dpm", gamma=gamma, noise=noise)
    torch.testing.assert_close(ex.x, an.x, atol=1e-10, rtol=1e-10)


# ---------------------------------------------------------------------- the shared signature
class Counting:
    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.model(x, t)


@pytest.mark.parametrize("solver", sorted(solvers.SOLVERS))
def test_every_solver_records_shares_noise_and_reports_its_model_calls(solver):
    mix = ring8()
    den = IdealDenoiser(mix, SCHED)
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    opts = {"analytic_dpm": {"gamma": torch.full((SCHED.T,), 0.5, dtype=torch.float64)},
            "exact_cov": {"mixture": mix}}.get(solver, {})
    noise = make_noise(6, x_T.shape, torch.Generator().manual_seed(1))
    counted = Counting(den)
    seen = []
    tr = solvers.sample(counted, x_T, SCHED, 6, solver=solver, noise=noise, callback=lambda d: seen.append(d["i"]),
                        **opts)
    assert counted.calls == solvers.model_calls(solver, 6)
    assert seen == list(range(6)) and tr.x.shape == (7, 8, 2) and torch.equal(tr.x[0], x_T)
    again = solvers.sample(den, x_T, SCHED, 6, solver=solver, noise=noise, generator=torch.Generator().manual_seed(9),
                           **opts)
    assert torch.equal(tr.x, again.x)  # the given noise wins over the generator
    strided = solvers.sample(den, x_T, SCHED, 6, solver=solver, noise=noise, record_every=4, **opts)
    assert torch.equal(strided.final, tr.final) and strided.recorded.tolist() == [0, 4, 5]
    steps = list(solvers.sample_iter(den, x_T, SCHED, 6, solver=solver, noise=noise, **opts))
    assert torch.equal(steps[2].x_s, steps[3].x_t) and torch.equal(steps[-1].x_s, tr.final)
    dd = trajectory_drift(tr, mix, SCHED, with_mmd=False)
    assert dd.std_ratio.shape == (7,)
    if solver in solvers.STOCHASTIC:
        other = make_noise(6, x_T.shape, torch.Generator().manual_seed(2))
        assert not torch.equal(solvers.sample(den, x_T, SCHED, 6, solver=solver, noise=other, **opts).final,
                               tr.final)


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(solver="rk4"), ValueError, "solver must be one of"),
    (dict(solver="heun", eta=0.5), TypeError, r"solver 'heun' takes the options none, got eta=0.5"),
    (dict(solver="analytic_dpm"), TypeError, r"needs the option\(s\) \['gamma'\]"),
    (dict(solver="analytic_dpm", gamma=torch.full((1000,), math.nan)), ValueError, "no finite estimate"),
    (dict(solver="analytic_dpm", gamma=torch.zeros(10)), ValueError, "gamma must hold one value per timestep"),
    (dict(solver="analytic_dpm", gamma=torch.zeros(1000), eta=2.0), ValueError, "eta"),
    (dict(solver="exact_cov", mixture="ring8"), TypeError, "mixture must be a GaussianMixture"),
    (dict(solver="exact_cov", mixture=GaussianMixture([1.0], [[0.0]], [[1.0]])), ValueError, "x_T must have shape"),
    (dict(solver="exact_cov", mixture=ring8(), final_noise=1), TypeError, "final_noise"),
    (dict(solver="dpmpp_2m", steps=0), ValueError, "steps"),
    (dict(solver="heun", noise=torch.zeros(3, 4, 2)), ValueError, "noise must have shape"),
    (dict(solver="heun", timesteps=[5, 9]), ValueError, "strictly decreasing"),
])
def test_bad_solver_arguments(kwargs, err, match):
    kw = dict(steps=10)
    kw.update(kwargs)
    with pytest.raises(err, match=match):
        solvers.sample(IdealDenoiser(ring8(), SCHED), torch.randn(4, 2), SCHED, **kw)


def test_a_solver_called_directly_needs_timesteps():
    with pytest.raises(TypeError, match="timesteps must be given"):
        solvers.heun(IdealDenoiser(ring8(), SCHED), torch.randn(4, 2), SCHED, None)


def test_options_from_data():
    mix, den = ring8(), IdealDenoiser(ring8(), SCHED)
    ts = SCHED.timesteps(4)
    assert solvers.options_from_data("heun", den, mix, SCHED, ts) == {}
    assert solvers.options_from_data("exact_cov", den, mix, SCHED, ts)["mixture"] is mix
    with pytest.raises(ValueError, match="data must be a GaussianMixture"):
        solvers.options_from_data("exact_cov", den, torch.zeros(5, 2), SCHED, ts)
    g = solvers.options_from_data("analytic_dpm", den, mix, SCHED, ts, n_gamma=300,
                                  generator=torch.Generator().manual_seed(0))["gamma"]
    gg = torch.Generator().manual_seed(0)
    want = solvers.analytic_gamma(den, mix.sample(300, gg), SCHED, ts, generator=gg)
    assert torch.equal(torch.isfinite(g), torch.isfinite(want)) and torch.allclose(g[ts], want[ts])
    rows = mix.sample(50, torch.Generator().manual_seed(1))  # a tensor of clean samples works too
    assert int(torch.isfinite(solvers.options_from_data("analytic_dpm", den, rows, SCHED, ts)["gamma"]).sum()) == 4


def test_solver_options_and_model_calls():
    assert solvers.solver_options("ddim") == {"eta": 0.0, "variance": "small"}
    assert solvers.solver_options("heun") == {}
    assert list(solvers.solver_options("analytic_dpm")) == ["gamma", "eta", "final_noise"]
    assert solvers.model_calls("heun", 10) == 19 and solvers.model_calls("dpmpp_2m", 10) == 10


# ---------------------------------------------------------------------- Epsilon Scaling
def _every_solver_run(model, solver, eps_scale=None, steps=5):
    """One run of ``solver`` on ring8 from a fixed x_T with shared noise (the options the solver needs)."""
    mix = ring8()
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    noise = make_noise(steps, x_T.shape, torch.Generator().manual_seed(4), dtype=torch.float64)
    opts = {"analytic_dpm": {"gamma": torch.full((SCHED.T,), 0.6, dtype=torch.float64)},
            "exact_cov": {"mixture": mix}}.get(solver, {})
    kw = {} if eps_scale is None else {"eps_scale": eps_scale}
    return solvers.sample(model, x_T, SCHED, steps, solver=solver, noise=noise, **kw, **opts)


@pytest.mark.parametrize("solver", sorted(solvers.SOLVERS))
def test_epsilon_scaling_by_one_is_the_plain_solver_and_by_c_is_sampling_with_c_eps(solver):
    """Factor 1 (a number or the paper's schedule with b = 1, k = 0) changes no bit of any solver's run; a
    constant c with the ideal denoiser is, bit for bit, the same solver driven by ``c eps*``."""
    den = IdealDenoiser(ring8(), SCHED)
    plain = _every_solver_run(den, solver)
    for one in (1.0, solvers.EpsScale()):
        run = _every_solver_run(den, solver, one)
        assert torch.equal(run.x, plain.x) and torch.equal(run.eps_pred, plain.eps_pred), (solver, one)
    c = 0.965
    scaled = _every_solver_run(den, solver, c)
    by_hand = _every_solver_run(lambda x, t: c * den(x, t), solver)
    assert torch.equal(scaled.x, by_hand.x) and torch.equal(scaled.x0_pred, by_hand.x0_pred)
    assert not torch.equal(scaled.x, plain.x)
    # the paper's constant schedule lambda = 1 / c is the same run to float64 rounding
    torch.testing.assert_close(_every_solver_run(den, solver, solvers.EpsScale(b=1 / c)).x, scaled.x,
                               atol=1e-12, rtol=1e-12)


def test_the_linear_schedule_divides_each_call_by_its_own_lambda():
    """``EpsScale(b, k)``: the eps each step records is eps*(x_t, t) / (b + k t) at that step's own state."""
    den = IdealDenoiser(ring8(), SCHED)
    es = solvers.EpsScale(b=1.01, k=4e-5)
    run = _every_solver_run(den, "ddim", es, steps=8)
    for j, t in enumerate(run.timesteps.tolist()):
        want = den(run.x[j], torch.full((64,), t)) / (1.01 + 4e-5 * t)
        torch.testing.assert_close(run.eps_pred[j], want, atol=1e-14, rtol=1e-14)
    # Heun's corrector calls are scaled too: its one-step run is DDIM's (the Euler step to sigma = 0)
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(solvers.sample(den, x_T, SCHED, 1, solver="heun", eps_scale=es).x,
                               solvers.sample(den, x_T, SCHED, 1, eps_scale=es).x, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("eps_scale, err, match", [
    (0.0, ValueError, r"eps_scale must be in \(0.0"), (-1.0, ValueError, "eps_scale"),
    ("0.9", TypeError, "eps_scale must be a real number"), (float("nan"), ValueError, "eps_scale must be finite"),
    (solvers.EpsScale(b=1.0, k=-0.002), ValueError, "lambda_t = b \\+ k t <= 0")])
def test_bad_epsilon_scaling(eps_scale, err, match):
    with pytest.raises(err, match=match):
        solvers.sample(IdealDenoiser(ring8(), SCHED), torch.randn(4, 2), SCHED, 3, eps_scale=eps_scale)
    with pytest.raises(ValueError, match="b must be in"):
        solvers.EpsScale(b=0.0)


# ---------------------------------------------------------------------- the last step, with and without noise
def test_without_last_step_noise_every_stochastic_solver_ends_on_its_mean_bit_for_bit():
    """The last step (to t = -1, a_s = 1) has the mean D = x0_pred exactly (the eps coefficient sqrt(1 - a_s -
    lam^2) is 0): DDPM (either variance) and the variance solvers with ``final_noise=False`` end there bit for
    bit; with ``final_noise=True`` Analytic-DPM adds exactly sqrt(sigma*^2) z of its last step."""
    mix = ring8()
    den = IdealDenoiser(mix, SCHED)
    x_T = torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    noise = make_noise(5, x_T.shape, torch.Generator().manual_seed(1), dtype=torch.float64)
    gamma = torch.full((SCHED.T,), 0.7, dtype=torch.float64)
    runs = {"ddpm": solvers.sample(den, x_T, SCHED, 5, solver="ddpm", noise=noise),
            "ddpm large": solvers.sample(den, x_T, SCHED, 5, solver="ddpm", variance="large", noise=noise),
            "analytic_dpm": solvers.sample(den, x_T, SCHED, 5, solver="analytic_dpm", gamma=gamma, noise=noise,
                                           final_noise=False),
            "exact_cov": solvers.sample(den, x_T, SCHED, 5, solver="exact_cov", mixture=mix, noise=noise,
                                        final_noise=False)}
    for name, run in runs.items():
        assert torch.equal(run.final, run.x0_pred[-1]), name
        assert not torch.equal(run.x[-2], solvers.sample(den, x_T, SCHED, 5).x[-2]), name  # noise before the end
    noisy = solvers.sample(den, x_T, SCHED, 5, solver="analytic_dpm", gamma=gamma, noise=noise)
    assert torch.equal(noisy.x[:-1], runs["analytic_dpm"].x[:-1])
    t_last = int(noisy.timesteps[-1])
    var = solvers.analytic_variance(float(SCHED.alpha_bar(t_last)), 1.0, 0.7)
    assert var > 0
    torch.testing.assert_close(noisy.final - noisy.x0_pred[-1], math.sqrt(var) * noise[4], atol=1e-12, rtol=1e-12)
