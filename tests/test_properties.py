"""Property-based tests (hypothesis) over the library's public functions.

Random shapes, dtypes (float16/32/64, bfloat16, int, bool, complex), devices (cpu and meta) and values (NaN,
inf, huge, tiny, zero): every call either returns finite values or raises a ValueError/TypeError whose message
names one of the call's arguments. Never another exception, never a NaN or inf returned without a word.

Two documented exceptions to "finite output": the networks (MLPDenoiser, TinyUNet) do not check the values of x
(a check per forward pass would sync the device in the training loop; the sampler and the losses check their
inputs once), so they are held to finite output for finite inputs of moderate size only; and a loss that
overflows its dtype is the training loop's to report (train raises NonFiniteLossError), so the losses are too.
"""
import dataclasses
import inspect
import math
import os
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqdiff_kit import analysis, drift, metrics, stats
from seqdiff_kit.data import GaussianMixture, ring8
from seqdiff_kit.denoisers import IdealDenoiser, MLPDenoiser, TinyUNet, timestep_embedding
from seqdiff_kit.losses import sequence_aware_loss, simple_loss
from seqdiff_kit.samplers import make_noise
from seqdiff_kit.schedule import Schedule
from seqdiff_kit.solvers import sample

# derandomized: the same examples on every run and machine; SEQDIFF_HYPOTHESIS_EXAMPLES=2000 searches deeper
FUZZ = settings(max_examples=int(os.environ.get("SEQDIFF_HYPOTHESIS_EXAMPLES", "60")), deadline=None,
                derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

T = 50
SCHED = Schedule.linear(T, 1e-4, 0.2)
MIX = ring8()
IDEAL = IdealDenoiser(MIX, SCHED)
torch.manual_seed(0)
MLP = MLPDenoiser(dim=2, width=8, depth=1, time_dim=4, T=T)
UNET = TinyUNet(channels=2, time_dim=4, T=T)

FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# float32 weighted up: the common case should be reached often enough to test the finite results
DTYPES = (torch.float32, torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
          torch.bool, torch.complex64)
SPECIAL = (math.nan, math.inf, -math.inf, 1e30, -1e30, 1e300, 1e-30, 0.0, 7e4)
MODERATE = 1e4  # inputs below this size must give finite results even where values are not checked


@st.composite
def tensors(draw, shape=None, dtypes=DTYPES, meta=True):
    """A tensor of the given (or a small random) shape, a random dtype, on cpu or meta, filled with ordinary
    values, ordinary values with one special entry (NaN, inf, huge, tiny), scaled to 1e+-30 or 1e+-300, or a
    constant."""
    if shape is None:
        shape = tuple(draw(st.lists(st.integers(0, 5), min_size=1, max_size=3)))
    n = math.prod(shape)
    mode = draw(st.sampled_from(("normal", "normal", "one special", "scaled", "constant")))
    vals = torch.tensor(draw(st.lists(st.floats(-3, 3), min_size=n, max_size=n)), dtype=torch.float64)
    if mode == "one special" and n:
        vals[draw(st.integers(0, n - 1))] = draw(st.sampled_from(SPECIAL))
    elif mode == "scaled":
        vals = vals * draw(st.sampled_from((1e-300, 1e-30, 1e30, 1e300)))
    elif mode == "constant":
        vals = torch.full((n,), draw(st.sampled_from(SPECIAL + (1.0,))), dtype=torch.float64)
    dtype = draw(st.sampled_from(dtypes))
    if not (dtype.is_floating_point or dtype.is_complex):  # NaN/inf have no integer value
        vals = vals.nan_to_num(0.0, 1e6, -1e6).clamp(-1e6, 1e6)
    t = vals.reshape(shape).to(dtype)
    return t.to("meta") if meta and draw(st.booleans()) and draw(st.booleans()) else t


def timesteps_arg(B):
    """``t`` for a batch of B: in range, out of range, float, bool, meta, the wrong shape, a list, a string."""
    return st.one_of(
        st.integers(-3, T + 3).map(lambda v: torch.full((B,), v)),
        st.lists(st.integers(0, T - 1), min_size=B, max_size=B).map(torch.tensor),
        st.integers(0, T - 1),
        tensors(shape=(B,)),
        st.just([1] * B), st.just("3"), st.just(torch.zeros(B + 1, dtype=torch.long)),
        st.just(torch.zeros(B, dtype=torch.long, device="meta")))


numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5),
                    st.sampled_from((0.5, 1.0, 2.0, "1", None, True)))


def finite(value, seen=None) -> bool:
    """Whether every number reachable from ``value`` is finite (tensors, floats, dataclasses, tuples, dicts)."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return True
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        return value.device.type != "meta" and (
            not (value.is_floating_point() or value.is_complex()) or bool(torch.isfinite(value).all()))
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Schedule):
        return finite(value.alpha_bars, seen)
    if isinstance(value, GaussianMixture):
        return finite((value.weights, value.means, value.covariances), seen)
    if dataclasses.is_dataclass(value):
        return all(finite(getattr(value, f.name), seen) for f in dataclasses.fields(value))
    if isinstance(value, (tuple, list)):
        return all(finite(v, seen) for v in value)
    if isinstance(value, dict):
        return all(finite(v, seen) for v in value.values())
    return True


def outcome(fn, *args, _names=(), _finite=lambda out: out, **kwargs):
    """Call ``fn``: return its result, whose ``_finite(result)`` part is asserted finite (``_finite=None``: no
    part), or None after a ValueError/TypeError whose message names one of ``fn``'s parameters (or ``_names``:
    the arguments of a model it calls). Anything else fails."""
    try:
        out = fn(*args, **kwargs)
    except (ValueError, TypeError) as err:
        names = set(inspect.signature(fn).parameters) | set(_names)
        msg = str(err)
        assert any(re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", msg) for n in names), (
            f"{getattr(fn, '__name__', fn)}: the message names none of {sorted(names)}: {msg}")
        return None
    if _finite is not None:
        assert finite(_finite(out)), f"{getattr(fn, '__name__', fn)} returned a non-finite result without an error"
    return out


def moderate(*values) -> bool:
    """Whether every tensor and number given is finite and below MODERATE in size."""
    for v in values:
        if isinstance(v, torch.Tensor):
            if v.device.type == "meta" or (v.numel() and not bool((v.double().abs() <= MODERATE).all())):
                return False
        elif isinstance(v, float) and not abs(v) <= MODERATE:
            return False
    return True


# ---------------------------------------------------------------------- schedule
@FUZZ
@given(tensors())
def test_schedule_from_betas(betas):
    outcome(Schedule, betas)


@FUZZ
@given(st.sampled_from(("linear", "quadratic", "sigmoid", "cosine")), st.integers(-2, 300), numbers, numbers)
def test_schedule_constructors(name, T_, p1, p2):
    outcome(getattr(Schedule, name), T_, p1, p2)


@FUZZ
@given(timesteps_arg(4))
def test_schedule_alpha_bar_sigma_and_log_snr(t):
    for fn in (SCHED.alpha_bar, SCHED.sigma):
        outcome(fn, t)
    outcome(SCHED.log_snr, t, _finite=lambda out: out[torch.as_tensor(t) >= 0])  # +inf at t = -1 by definition


@FUZZ
@given(tensors(), st.sampled_from(("alpha_bar_from_sigma", "alpha_bar_from_log_snr", "t_from_log_snr",
                                   "t_from_sigma", "t_from_alpha_bar")))
def test_schedule_conversions(values, name):
    t = outcome(getattr(SCHED, name), values)
    if t is not None and name.startswith("t_from"):
        assert bool(((t >= 0) & (t <= T - 1)).all())


@FUZZ
@given(tensors(shape=(3, 2)), tensors(shape=(3, 2)), timesteps_arg(3))
def test_schedule_add_noise(x0, noise, t):
    outcome(SCHED.add_noise, x0, t, noise)


@FUZZ
@given(st.integers(-2, T + 2), st.sampled_from(("leading", "uniform", "trailing", "linspace", "quad", "other")))
def test_schedule_timesteps(steps, spacing):
    ts = outcome(SCHED.timesteps, steps, spacing)
    if ts is not None:
        assert ts.numel() == steps and bool((ts[1:] < ts[:-1]).all())


# ---------------------------------------------------------------------- data
@FUZZ
@given(tensors(), tensors(), tensors())
def test_gaussian_mixture_parameters(weights, means, covariances):
    mix = outcome(GaussianMixture, weights, means, covariances)
    if mix is not None:
        assert finite((mix.mean(), mix.covariance()))


@FUZZ
@given(tensors(shape=(3, 2)), st.one_of(numbers, tensors(shape=(3,))),
       st.sampled_from(("log_prob", "score", "ideal_eps", "posterior_mean", "responsibilities")))
def test_gaussian_mixture_exact_quantities(x, alpha_bar, name):
    outcome(getattr(MIX, name), x, alpha_bar)


@FUZZ
@given(st.integers(-1, 5), st.sampled_from(DTYPES + (None, "float32")))
def test_gaussian_mixture_sample(n, dtype):
    outcome(MIX.sample, n, dtype=dtype)


# ---------------------------------------------------------------------- denoisers
@FUZZ
@given(tensors(shape=(3, 2)), timesteps_arg(3))
def test_ideal_denoiser(x, t):
    outcome(IDEAL.forward, x, t)
    outcome(IDEAL.x0, x, t)


@FUZZ
@given(st.one_of(tensors(shape=(3, 2)), tensors()), timesteps_arg(3))
def test_mlp_denoiser(x, t):
    try:
        out = MLP(x, t)
    except (ValueError, TypeError) as err:
        assert re.match(r"^[xt] must", str(err)), str(err)
        return
    if moderate(x):
        assert finite(out)


@FUZZ
@given(tensors(shape=(2, 1, 4, 4), dtypes=FLOATS + (torch.int64,)), timesteps_arg(2))
def test_tiny_unet(x, t):
    try:
        out = UNET(x, t)
    except (ValueError, TypeError) as err:
        assert re.match(r"^[xt] must", str(err)), str(err)
        return
    if moderate(x):
        assert finite(out)


@FUZZ
@given(tensors(shape=(3,)), st.integers(-1, 9), numbers)
def test_timestep_embedding(t, dim, max_period):
    emb = outcome(timestep_embedding, t, dim, max_period)
    if emb is not None:
        assert emb.shape == (3, dim)


# ---------------------------------------------------------------------- losses
@FUZZ
@given(tensors(shape=(4, 2)), st.one_of(st.none(), timesteps_arg(4)), st.one_of(st.none(), tensors(shape=(4, 2))))
def test_simple_loss(x0, t, noise):
    for model in (IDEAL, MLP):
        out = outcome(simple_loss, model, x0, SCHED, t=t, noise=noise, generator=torch.Generator().manual_seed(0),
                      _names=("x", "model"), _finite=None)  # the training loop reports a non-finite loss
        if out is not None and moderate(x0, noise):
            assert finite(out)


@FUZZ
@given(tensors(shape=(4, 2)), st.integers(-1, 4), numbers)
def test_sequence_aware_loss(x0, K, lam):
    out = outcome(sequence_aware_loss, MLP, x0, SCHED, K, lam, generator=torch.Generator().manual_seed(0),
                  _names=("x", "model"), _finite=None)  # the training loop reports a non-finite loss
    if out is not None and moderate(x0, float(lam)):
        assert finite(out)


# ---------------------------------------------------------------------- samplers
x_T_shapes = st.sampled_from(((4, 2), (4, 2), (4, 2), (1, 2), (0, 2), (4, 3), (4,), (2, 2, 2)))


@FUZZ
@given(x_T_shapes.flatmap(tensors), st.integers(0, 6), st.floats(0, 1) | numbers,
       st.sampled_from(("small", "large", "huge")), st.sampled_from(("leading", "trailing", "quad", "x")),
       st.one_of(st.none(), numbers))
def test_sample(x_T, steps, eta, variance, spacing, clip_x0):
    outcome(sample, IDEAL, x_T, SCHED, steps, eta=eta, variance=variance, spacing=spacing, clip_x0=clip_x0,
            generator=torch.Generator().manual_seed(0), _names=("x", "model", "eta", "variance"))


@FUZZ
@given(tensors(shape=(4, 2), dtypes=FLOATS), tensors(shape=(3, 4, 2)), st.sampled_from((None, [40, 9, 2], [9.5, 2.0],
                                                                                         [60, 1], [3, 3], [])))
def test_sample_with_noise_and_timesteps(x_T, noise, timesteps):
    steps = 3 if timesteps is None else None
    outcome(sample, IDEAL, x_T, SCHED, steps or 3, eta=1.0, noise=noise, timesteps=timesteps,
            _names=("x", "model", "eta"))


@FUZZ
@given(st.integers(-1, 3), st.sampled_from(DTYPES + (None,)))
def test_make_noise(steps, dtype):
    outcome(make_noise, steps, (2, 2), dtype=dtype)


@FUZZ
@given(st.sampled_from((torch.float16, torch.bfloat16)), st.integers(0, 2**16), st.integers(1, 8),
       st.sampled_from(("leading", "trailing", "linspace")))
def test_low_precision_sampling_stays_near_float64(rounding_bound, dtype, seed, steps, spacing):
    """float16/bfloat16 runs are finite and within the rounding bound (conftest) of the float64 run."""
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ref = sample(IDEAL, x_T, SCHED, steps, spacing=spacing)
    low = sample(IDEAL, x_T.to(dtype), SCHED, steps, spacing=spacing).final
    assert bool(torch.isfinite(low).all())
    assert float((low.double() - ref.final).abs().max()) <= rounding_bound(ref, SCHED, dtype)


# ---------------------------------------------------------------------- drift
@FUZZ
@given(x_T_shapes.flatmap(tensors), st.integers(0, 4), st.sampled_from((0.0, 1.0)))
def test_step_drift(x_T, steps, eta):
    outcome(drift.step_drift, MLP, IDEAL, x_T, SCHED, steps, eta=eta, generator=torch.Generator().manual_seed(0),
            _names=("x", "model", "reference"))


@FUZZ
@given(tensors(shape=(3, 2)), st.one_of(st.none(), timesteps_arg(3)))
def test_estimation_gap(x0, start_t):
    # NaN marks the rows before a point's chain starts (documented): the active entries must be finite
    outcome(drift.estimation_gap, IDEAL, x0, SCHED, start_t, generator=torch.Generator().manual_seed(0),
            _names=("x", "model"), _finite=lambda g: (g.e[g.active], g.delta[g.active], g.e_direct[g.active],
                                                     g.x_pred, g.e_final, g.gamma, g.c))


@FUZZ
@given(tensors())
def test_total_std(x):
    outcome(drift.total_std, x)


@FUZZ
@given(st.integers(-2, T + 1))
def test_gap_survival(to):
    outcome(drift.gap_survival, SCHED, to)


@FUZZ
@given(st.one_of(tensors(shape=(5, 2)), tensors()), st.integers(0, 3))
def test_distribution_drift(data, steps):
    outcome(drift.distribution_drift, IDEAL, data, SCHED, steps, n_samples=6,
            generator=torch.Generator().manual_seed(0), _names=("x", "model", "eta", "variance"))


# ---------------------------------------------------------------------- metrics
@FUZZ
@given(tensors(), tensors(), st.one_of(st.none(), numbers, st.lists(numbers, max_size=3)))
def test_mmd_and_median_bandwidth(x, y, bandwidths):
    outcome(metrics.mmd, x, y, bandwidths)
    outcome(metrics.median_bandwidth, x, y)


@FUZZ
@given(tensors(), tensors(), st.integers(-1, 8), st.one_of(st.integers(-1, 4000), numbers))
def test_sliced_wasserstein(x, y, n_projections, p):
    outcome(metrics.sliced_wasserstein, x, y, n_projections, p=p)


@FUZZ
@given(tensors(), tensors(), tensors(), tensors())
def test_frechet_distances(mu1, cov1, mu2, cov2):
    outcome(metrics.gaussian_frechet_distance, mu1, cov1, mu2, cov2)
    outcome(metrics.frechet_distance, mu1, mu2)


@FUZZ
@given(tensors())
def test_mean_log_likelihood(x):
    outcome(metrics.mean_log_likelihood, x, MIX)


@FUZZ
@given(tensors(), st.one_of(tensors(), st.just(MIX)))
def test_std_ratio(x, reference):
    outcome(metrics.std_ratio, x, reference)


@FUZZ
@given(st.one_of(tensors(), tensors(shape=(8, 2))), st.sampled_from(("principal", "radial", "other")))
def test_mode_coverage_and_spread(x, axes):
    outcome(metrics.mode_coverage, x, MIX)
    # a component with fewer than 2 effective samples has NaN entries (documented): its pools leave it out
    outcome(metrics.within_mode_spread, x, MIX, axes, _finite=lambda m: (m.mass, m.axes, m.ratio[_ok(m)],
                                                                         m.se[_ok(m)], m.offset[_ok(m)]))


def _ok(spread):
    return ~torch.isnan(spread.ratio).all(dim=1)


@FUZZ
@given(st.one_of(tensors(), tensors(shape=(8, 2))), st.one_of(tensors(), tensors(shape=(6, 2))))
def test_loglik_gap(x, reference):
    outcome(metrics.loglik_gap, x, reference, MIX)


@FUZZ
@given(st.one_of(tensors(), numbers), st.integers(-1, 100))
def test_coverage_noise(weights, n):
    outcome(metrics.coverage_noise, weights, n)


@FUZZ
@given(st.sampled_from(tuple(metrics.TARGETS) + ("loglik", "other")), numbers, numbers)
def test_targets_verdicts_and_readings(metric, value, tolerance):
    # a missing value (NaN) or an infinite one gives a non-finite distance (documented): finite otherwise
    outcome(metrics.target_distance, metric, value,
            _finite=lambda d: d if isinstance(value, (int, float)) and math.isfinite(value) else 0.0)
    outcome(metrics.reading, metric, value, tolerance, _finite=None)
    outcome(stats.verdict, value, tolerance, _finite=None)


# ---------------------------------------------------------------------- analysis
@FUZZ
@given(st.one_of(tensors(shape=(T,)), tensors()), numbers, st.integers(-1, 4), numbers)
def test_gaussian_sa_objective_and_optimum(a, var, K, lam):
    outcome(analysis.gaussian_sa_objective, a, var, K, lam, SCHED)
    outcome(analysis.gaussian_sa_optimum, var, K, lam, SCHED)


@FUZZ
@given(numbers, st.integers(-1, 4), numbers)
def test_optimum_ratio(var, K, lam):
    outcome(analysis.optimum_ratio, var, K, lam, SCHED)


@settings(FUZZ, max_examples=min(FUZZ.max_examples, 20))  # each call evaluates the loss 3 x batches times
@given(st.integers(-1, 3), numbers, st.integers(-1, 8), st.integers(0, 3))
def test_scaled_ideal_losses(K, lam, n, batches):
    out = outcome(analysis.scaled_ideal_losses, MIX, SCHED, K, lam, n=n, batches=batches,
                  generator=torch.Generator().manual_seed(0), _names=("x", "model", "eta", "variance"))
    if out is not None:
        assert math.isfinite(out.argmin("simple")) or float(out.simple[0].abs().max()) == 0.0


@FUZZ
@given(st.one_of(tensors(shape=(T,)), tensors()), numbers, st.integers(-1, 8), numbers,
       st.sampled_from(("small", "large")))
def test_linear_sampler_variances(a, var, steps, eta, variance):
    outcome(analysis.linear_sampler_variances, a, var, SCHED, steps, eta=eta, variance=variance)
    outcome(analysis.linear_sampler_std_ratio, a, var, SCHED, steps, eta=eta, variance=variance)


def test_the_property_checker_catches_what_it_should():
    """The checker itself: a silent NaN, a message naming no argument and a stray exception all fail it."""
    def silent(x):
        return torch.tensor(math.nan)

    def unnamed(x):
        raise ValueError("something went wrong")

    def stray(x):
        raise IndexError("x")

    for fn in (silent, unnamed, stray):
        with pytest.raises((AssertionError, IndexError)):
            outcome(fn, 1)
    assert outcome(lambda x: x + 1, 1.0) == 2.0
