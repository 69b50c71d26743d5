"""Solvers of the reverse process beside the generalized DDIM/DDPM step: one signature, one registry.

Every solver is a flat function (k-diffusion's style) with one shared signature,

    solver(model, x_T, schedule, timesteps, *, noise=None, generator=None, clip_x0=None, **options)
        -> Iterator[StepOutput]

``timesteps`` descending in [0, T-1] (the run ends at ``t = -1``, the data); ``noise`` [steps, *x_T.shape] the
``z`` of every step of a stochastic solver (shared between models), else drawn from ``generator``. Each yields
one ``samplers.StepOutput`` per step, so ``samplers.record`` and ``drift`` work with any of them.

Notation: ``a = alpha_bar``, ``alpha = sqrt(a)``, ``sigma = sqrt(1 - a)``, ``lambda = log(alpha / sigma)``,
``D = x0_pred`` (the data prediction), a step goes from ``t`` to ``s`` (``a_{-1} = 1``).

- ``ddim``, ``ddpm``: ``samplers.generalized_step`` with ``eta = 0`` / ``eta = 1``.
- ``dpmpp_2m``: DPM-Solver++(2M) (Lu et al. 2022), multistep on the data prediction. With ``h = lambda_s -
  lambda_t`` and ``r = h_prev / h``:

      D' = (1 + 1/(2r)) D_t - 1/(2r) D_prev        (D' = D_t at the first step)
      x_s = (sigma_s / sigma_t) x_t + alpha_s (1 - e^{-h}) D'

  The last step (``lambda_s = inf``) is first order: ``x_{-1} = D_t``. Its first-order form is DDIM exactly.
- ``heun``: Heun's method on the probability-flow ODE in Karras et al.'s (2022) variables ``x~ = x / alpha``,
  ``sigma~ = sigma / alpha``, where ``dx~/dsigma~ = eps(x, t)``:

      x~' = x~_t + (sigma~_s - sigma~_t) eps_t,   x~_s = x~_t + (sigma~_s - sigma~_t) (eps_t + eps(x', s)) / 2

  The last step (to ``sigma~ = 0``) is the Euler step, which is DDIM. ``2 N - 1`` model calls for N steps.
- ``analytic_dpm``: the generalized step's mean with Analytic-DPM's optimal isotropic variance (Bao et al. 2022;
  ``analytic_variance``, ``Gamma_t`` a Monte-Carlo mean over noised data, ``analytic_gamma``).
- ``exact_cov``: the same mean with the exact covariance of a Gaussian mixture's posterior,
  ``Sigma = lam^2 I + c^2 Cov[x0 | x_t]`` (``GaussianMixture.posterior_covariance``): with the ideal denoiser the
  best Gaussian reverse step, a yardstick no learned variance can beat.

Both variance solvers apply their formula at the last step too (``final_noise=True``: ``x_{-1} ~ N(D,
Sigma)``, ``Sigma`` then the posterior covariance of x0 itself); ``final_noise=False`` ends with the mean like
``ddpm``. ``sample``/``sample_iter`` pick a solver by name from ``SOLVERS``.

Epsilon Scaling (Ning et al., "Elucidating the Exposure Bias in Diffusion Models", ICLR 2024) is an option of
``sample`` for every solver, not a solver: ``eps_scale`` wraps the model (``scaled_model``, ``EpsScale``).
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from ._validate import check_choice, check_float, check_int, check_real, check_tensor, check_type
from .data import GaussianMixture
from .samplers import (StepOutput, Trajectory, call_model, check_sampler_args, draw_z, record, resolve_timesteps,
                       run_steps, sigmas)
from .schedule import Schedule


# ---------------------------------------------------------------------- shared pieces
def _check(x_T, schedule, timesteps, noise, clip_x0, eta=0.0, variance="small"):
    """``(eta, timesteps, clip_x0)`` checked by the generalized sampler's own checks."""
    if timesteps is None:
        raise TypeError("timesteps must be given to a solver (a descending sequence of ints in [0, T-1]); "
                        "sample() resolves them from steps and spacing")
    return check_sampler_args(x_T, schedule, 1, eta, variance, "trailing", timesteps, noise, clip_x0)


def _predict(model, x, t: int, a_t: float, clip_x0, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(eps, x0_pred)`` at ``(x, t)``; with ``clip_x0`` the clipped x0 and the eps consistent with it."""
    eps = call_model(model, x, t, where)
    x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
        eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
    return eps, x0


def _pairs(schedule: Schedule, ts: torch.Tensor):
    """``(i, t, s, a_t, a_s)`` over a run (float64 alpha_bars): ``s`` is the next timestep, -1 at the last step."""
    n = ts.numel()
    for i in range(n):
        t, s = int(ts[i]), int(ts[i + 1]) if i + 1 < n else -1
        yield i, t, s, float(schedule.alpha_bar(t)), float(schedule.alpha_bar(s))


# ---------------------------------------------------------------------- the solvers
def ddim(model: Callable, x_T: torch.Tensor, schedule: Schedule, timesteps, *, noise: torch.Tensor | None = None,
         generator: torch.Generator | None = None, clip_x0: float | None = None, eta: float = 0.0,
         variance: str = "small") -> Iterator[StepOutput]:
    """The generalized step of ``samplers`` with any ``eta`` in [0, 1] (0: DDIM, 1: DDPM's posterior variance;
    ``variance="large"`` with ``eta = 1``: DDPM's larger variance ``1 - a_t / a_s``)."""
    eta, ts, clip_x0 = _check(x_T, schedule, timesteps, noise, clip_x0, eta, variance)
    return run_steps(model, x_T, schedule, ts, eta, variance, noise, generator, clip_x0)


def ddpm(model: Callable, x_T: torch.Tensor, schedule: Schedule, timesteps, *, noise: torch.Tensor | None = None,
         generator: torch.Generator | None = None, clip_x0: float | None = None,
         variance: str = "small") -> Iterator[StepOutput]:
    """The generalized step with ``eta = 1``: DDPM's posterior mean and variance (``variance="large"``: beta)."""
    return ddim(model, x_T, schedule, timesteps, noise=noise, generator=generator, clip_x0=clip_x0, eta=1.0,
                variance=variance)


def dpmpp_2m(model: Callable, x_T: torch.Tensor, schedule: Schedule, timesteps, *,
             noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
             clip_x0: float | None = None) -> Iterator[StepOutput]:
    """DPM-Solver++(2M) (module docstring). Deterministic: ``noise`` and ``generator`` are accepted and unused."""
    _, ts, clip_x0 = _check(x_T, schedule, timesteps, noise, clip_x0)
    return _dpmpp_2m(model, x_T, schedule, ts, clip_x0)


def _lambda(a: float) -> float:
    """``lambda = log(alpha / sigma) = log(a / (1 - a)) / 2``."""
    return 0.5 * (math.log(a) - math.log1p(-a))


def _dpmpp_2m(model, x_T, schedule, ts, clip_x0) -> Iterator[StepOutput]:
    x, d_prev, h_prev = x_T, None, None
    for i, t, s, a_t, a_s in _pairs(schedule, ts):
        eps, d = _predict(model, x, t, a_t, clip_x0, f"step {i} (t={t})")
        out = d  # lambda_s = inf at the last step: the first-order step lands on the data prediction
        if s >= 0:
            h = _lambda(a_s) - _lambda(a_t)
            d_mix = d
            if d_prev is not None:
                r = h_prev / h
                d_mix = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * d_prev
            out = math.sqrt((1 - a_s) / (1 - a_t)) * x + (math.sqrt(a_s) * -math.expm1(-h)) * d_mix
            h_prev = h
        yield StepOutput(i, t, s, x, eps, d, out)
        x, d_prev = out, d


def heun(model: Callable, x_T: torch.Tensor, schedule: Schedule, timesteps, *, noise: torch.Tensor | None = None,
         generator: torch.Generator | None = None, clip_x0: float | None = None) -> Iterator[StepOutput]:
    """Heun's method on the probability-flow ODE (module docstring): ``2 N - 1`` model calls. Deterministic:
    ``noise`` and ``generator`` are accepted and unused."""
    _, ts, clip_x0 = _check(x_T, schedule, timesteps, noise, clip_x0)
    return _heun(model, x_T, schedule, ts, clip_x0)


def _heun(model, x_T, schedule, ts, clip_x0) -> Iterator[StepOutput]:
    x = x_T
    for i, t, s, a_t, a_s in _pairs(schedule, ts):
        eps, d = _predict(model, x, t, a_t, clip_x0, f"step {i} (t={t})")
        out = d  # the Euler step to sigma~ = 0
        if s >= 0:
            sig_t, sig_s = math.sqrt((1 - a_t) / a_t), math.sqrt((1 - a_s) / a_s)
            x_tilde = x / math.sqrt(a_t)
            euler = math.sqrt(a_s) * (x_tilde + (sig_s - sig_t) * eps)
            eps_s, _ = _predict(model, euler, s, a_s, clip_x0, f"step {i} (t={t}), its corrector at s={s}")
            out = math.sqrt(a_s) * (x_tilde + (sig_s - sig_t) * 0.5 * (eps + eps_s))
        yield StepOutput(i, t, s, x, eps, d, out)
        x = out


# ---------------------------------------------------------------------- Gaussian reverse steps
def reverse_step_coefficients(a_t: float, a_s: float, eta: float) -> tuple[float, float, float]:
    """``(lam^2, sqrt(1 - a_s - lam^2), c)`` of the generalized step's mean ``mu = sqrt(a_s) D + sqrt(1 - a_s -
    lam^2) eps`` (float64): ``lam^2 = eta^2 (1 - a_t/a_s)(1 - a_s)/(1 - a_t)`` (0 when ``s = -1``) and ``c =
    sqrt(a_s) - sqrt(1 - a_s - lam^2) sqrt(a_t / (1 - a_t))``, the coefficient of x0 in ``mu``, so that
    ``Cov[mu(x_t, x0) | x_t] = c^2 Cov[x0 | x_t]``."""
    lam = float(sigmas(torch.tensor(a_t, dtype=torch.float64), torch.tensor(a_s, dtype=torch.float64), eta)[0])
    lam2 = lam * lam
    k_eps = math.sqrt(max(1 - a_s - lam2, 0.0))
    return lam2, k_eps, math.sqrt(a_s) - k_eps * math.sqrt(a_t / (1 - a_t))


def analytic_variance(a_t: float, a_s: float, gamma: float, eta: float = 1.0) -> float:
    """Analytic-DPM's optimal isotropic variance of the step ``t -> s`` (Bao et al. 2022, Theorem 1):

        sigma*^2 = lam^2 + c^2 (1 - a_t) / a_t (1 - Gamma_t),   Gamma_t = E_{q(x_t)} ||eps_theta(x_t, t)||^2 / d,

    with ``lam^2`` and ``c`` of ``reverse_step_coefficients`` (``eta = 1``: DDPM's posterior variance), because
    ``E tr Cov[x0 | x_t] / d = (1 - a_t) / a_t (1 - E||eps*(x_t)||^2 / d)``. ``Gamma_t`` is clipped to [0, 1],
    which keeps ``sigma*^2`` within the paper's bounds ``[lam^2, lam^2 + c^2 (1 - a_t) / a_t]``."""
    lam2, _, c = reverse_step_coefficients(a_t, a_s, eta)
    g = min(max(float(gamma), 0.0), 1.0)
    return lam2 + c * c * (1 - a_t) / a_t * (1 - g)


def analytic_gamma(model: Callable, x0: torch.Tensor, schedule: Schedule, timesteps=None, *,
                   generator: torch.Generator | None = None, batch_size: int = 4096) -> torch.Tensor:
    """Analytic-DPM's ``Gamma_t = (1/M) sum_m ||eps_theta(x_t^m, t)||^2 / d`` by Monte Carlo over noised data
    ``x_t^m = sqrt(a_t) x0^m + sqrt(1 - a_t) eps^m`` (``x0`` [M, ...] clean samples, fresh ``eps`` per t from
    ``generator``). Returns a float64 tensor [T], NaN at the timesteps not in ``timesteps`` (default: all)."""
    check_tensor("x0", x0, min_ndim=1, nonempty=True, finite=True)
    check_type("schedule", schedule, Schedule)
    batch_size = check_int("batch_size", batch_size, 1)
    ts = torch.arange(schedule.T - 1, -1, -1) if timesteps is None else resolve_timesteps(schedule, 1, "trailing",
                                                                                           timesteps)
    out = torch.full((schedule.T,), math.nan, dtype=torch.float64)
    for t in ts.tolist():
        e = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x_t = schedule.add_noise(x0, torch.tensor(t), e)
        total = 0.0
        for lo in range(0, x0.shape[0], batch_size):
            eps = call_model(model, x_t[lo:lo + batch_size], t, f"t={t}")
            total += float(eps.double().pow(2).sum())
        out[t] = total / (x0.shape[0] * x0[0].numel())
    return out


def analytic_dpm(model: Callable, x_T: torch.Tensor, schedule: Schedule, timesteps, *,
                 noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 clip_x0: float | None = None, gamma: torch.Tensor, eta: float = 1.0,
                 final_noise: bool = True) -> Iterator[StepOutput]:
    """The generalized step's mean with Analytic-DPM's variance: ``x_s = mu + sigma* z``. ``gamma`` [T]:
    ``analytic_gamma`` of this model (finite at every visited t); ``eta`` picks ``lam`` (1: Analytic-DDPM, 0:
    Analytic-DDIM)."""
    eta, ts, clip_x0 = _check(x_T, schedule, timesteps, noise, clip_x0, eta)
    check_type("final_noise", final_noise, bool)
    check_tensor("gamma", gamma, ndim=1)
    if gamma.shape != (schedule.T,):
        raise ValueError(f"gamma must hold one value per timestep, shape [T] = [{schedule.T}], got "
                         f"{tuple(gamma.shape)} (use analytic_gamma)")
    missing = [t for t in ts.tolist() if not math.isfinite(float(gamma[t]))]
    if missing:
        raise ValueError(f"gamma has no finite estimate at the timesteps {missing[:8]} of this run "
                         f"(estimate them with analytic_gamma(model, x0, schedule, timesteps))")
    steps = [analytic_variance(a_t, a_s, float(gamma[t]), eta) for _, t, _, a_t, a_s in _pairs(schedule, ts)]

    def scale(i, a_t, a_s, x, z):
        return math.sqrt(steps[i]) * z

    return _gaussian_steps(model, x_T, schedule, ts, noise, generator, clip_x0, eta, final_noise, scale)


def exact_cov(model: Callable, x_T: torch.Tensor, schedule: Schedule, timesteps, *,
              noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
              clip_x0: float | None = None, mixture: GaussianMixture, eta: float = 1.0,
              final_noise: bool = True) -> Iterator[StepOutput]:
    """The generalized step's mean with the exact posterior covariance of ``mixture``: ``x_s = mu + L z``,
    ``L L^T = lam^2 I + c^2 Cov[x0 | x_t]`` (Cholesky, float64); ``x_T`` [B, D] in the mixture's dimension. With
    ``IdealDenoiser(mixture, schedule)`` this is the moment-matched Gaussian approximation of ``q(x_s | x_t)``."""
    eta, ts, clip_x0 = _check(x_T, schedule, timesteps, noise, clip_x0, eta)
    check_type("final_noise", final_noise, bool)
    check_type("mixture", mixture, GaussianMixture)
    if x_T.ndim != 2 or x_T.shape[1] != mixture.dim:
        raise ValueError(f"x_T must have shape [B, {mixture.dim}] for this {mixture.dim}-D mixture, "
                         f"got {tuple(x_T.shape)}")
    eye = torch.eye(mixture.dim, dtype=torch.float64)

    def scale(i, a_t, a_s, x, z):
        lam2, _, c = reverse_step_coefficients(a_t, a_s, eta)
        chol = torch.linalg.cholesky(lam2 * eye + c * c * mixture.posterior_covariance(x, a_t))  # [B, D, D]
        return torch.einsum("bij,bj->bi", chol, z.double()).to(x.dtype)

    return _gaussian_steps(model, x_T, schedule, ts, noise, generator, clip_x0, eta, final_noise, scale)


def _gaussian_steps(model, x_T, schedule, ts, noise, generator, clip_x0, eta, final_noise,
                    scale) -> Iterator[StepOutput]:
    """``x_s = mu(x_t) + scale(i, a_t, a_s, x_t, z)`` with the generalized step's mean ``mu`` (``eta``)."""
    x = x_T
    for i, t, s, a_t, a_s in _pairs(schedule, ts):
        eps, d = _predict(model, x, t, a_t, clip_x0, f"step {i} (t={t})")
        out = math.sqrt(a_s) * d + reverse_step_coefficients(a_t, a_s, eta)[1] * eps
        if s >= 0 or final_noise:
            out = out + scale(i, a_t, a_s, x, draw_z(noise, i, x, generator))
        yield StepOutput(i, t, s, x, eps, d, out)
        x = out


# ---------------------------------------------------------------------- registry and entry points
SOLVERS: dict[str, Callable[..., Iterator[StepOutput]]] = {
    "ddim": ddim, "ddpm": ddpm, "dpmpp_2m": dpmpp_2m, "heun": heun, "analytic_dpm": analytic_dpm,
    "exact_cov": exact_cov}
STOCHASTIC = ("ddpm", "analytic_dpm", "exact_cov")


def solver_options(solver: str) -> dict:
    """The options of a solver beyond the shared signature: ``{name: default}`` (``inspect.Parameter.empty``
    for a required one, e.g. ``gamma`` of ``analytic_dpm``)."""
    fn = SOLVERS[check_choice("solver", solver, SOLVERS)]
    return {p.name: p.default for p in inspect.signature(fn).parameters.values()
            if p.kind is p.KEYWORD_ONLY and p.name not in ("noise", "generator", "clip_x0")}


def model_calls(solver: str, steps: int) -> int:
    """How many times ``solver`` calls the model in a run of ``steps`` steps (``heun``: ``2 steps - 1``)."""
    check_choice("solver", solver, SOLVERS)
    steps = check_int("steps", steps, 1)
    return 2 * steps - 1 if solver == "heun" else steps


def options_from_data(solver: str, model: Callable, data, schedule: Schedule, timesteps, *, n_gamma: int = 2000,
                      generator: torch.Generator | None = None) -> dict:
    """The options a solver needs that only the data can give: ``gamma`` of ``analytic_dpm`` (``analytic_gamma``
    at ``timesteps`` on ``n_gamma`` clean samples: mixture draws, or rows of a tensor drawn with replacement, and
    fresh noise, all from ``generator``) and ``mixture`` of ``exact_cov`` (``data`` must be a
    ``GaussianMixture``); ``{}`` for the others."""
    check_choice("solver", solver, SOLVERS)
    if solver == "exact_cov":
        if not isinstance(data, GaussianMixture):
            raise ValueError(f"solver 'exact_cov' needs the data's exact posterior covariance: data must be a "
                             f"GaussianMixture, got {type(data).__name__}")
        return {"mixture": data}
    if solver != "analytic_dpm":
        return {}
    n_gamma = check_int("n_gamma", n_gamma, 2)
    if isinstance(data, GaussianMixture):
        x0 = data.sample(n_gamma, generator)
    else:
        check_tensor("data", data, min_ndim=1, nonempty=True, finite=True)
        x0 = data[torch.randint(0, data.shape[0], (n_gamma,), generator=generator)]
    return {"gamma": analytic_gamma(model, x0, schedule, timesteps, generator=generator)}


# ---------------------------------------------------------------------- Epsilon Scaling
@dataclass(frozen=True)
class EpsScale:
    """Epsilon Scaling's schedule: at sampling the network's output is divided by ``lambda_t = b + k t``, ``t`` the
    timestep of the call (0-based here: the paper counts from 1, which shifts ``b`` by ``k``). ``k = 0`` is the
    constant schedule; ``lambda_t > 1`` shrinks the predicted noise."""

    b: float = 1.0
    k: float = 0.0

    def __post_init__(self):
        check_float("b", self.b, 0.0, low_open=True)
        check_float("k", self.k)


def scaled_model(model: Callable, eps_scale, schedule: Schedule | None = None) -> Callable:
    """``model`` under Epsilon Scaling: ``eps_scale`` a number ``c > 0`` (output times ``c``, ``c = 1 / lambda``: the
    factor of ``analysis``' ``c eps*`` scan) or an ``EpsScale`` (output over ``lambda_t``, positive at every
    timestep of ``schedule`` when given); ``None`` returns ``model`` itself."""
    if eps_scale is None:
        return model
    if isinstance(eps_scale, EpsScale):
        if schedule is not None and min(eps_scale.b, eps_scale.b + eps_scale.k * (schedule.T - 1)) <= 0:
            raise ValueError(f"eps_scale={eps_scale} gives lambda_t = b + k t <= 0 at some t in [0, "
                             f"{schedule.T - 1}]; lambda_t must stay positive")
    else:
        eps_scale = check_real("eps_scale", eps_scale) if isinstance(eps_scale, torch.Tensor) else eps_scale
        eps_scale = check_float("eps_scale", eps_scale, 0.0, low_open=True)

    def scaled(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = model(x, t)
        if not isinstance(eps, torch.Tensor):
            return eps  # the caller's output check names what came back
        if not isinstance(eps_scale, EpsScale):
            return eps_scale * eps
        f = 1.0 / (eps_scale.b + eps_scale.k * t.reshape(-1).to(torch.float64))
        return eps * f.to(device=eps.device, dtype=eps.dtype).reshape(-1, *([1] * (eps.ndim - 1)))

    return scaled


def _start(model, x_T, schedule, steps, solver, spacing, timesteps, noise, generator, clip_x0, eps_scale,
           options) -> tuple[Iterator[StepOutput], torch.Tensor]:
    """The checked run of ``sample_iter`` and its timesteps."""
    allowed = solver_options(solver)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"solver {solver!r} takes the options {sorted(allowed) or 'none'}, got "
                        + ", ".join(f"{k}={options[k]!r}" for k in unknown))
    missing = [k for k, v in allowed.items() if v is inspect.Parameter.empty and k not in options]
    if missing:
        raise TypeError(f"solver {solver!r} needs the option(s) {missing}")
    check_type("schedule", schedule, Schedule)
    model = scaled_model(model, eps_scale, schedule)
    ts = resolve_timesteps(schedule, steps, spacing, timesteps)
    run = SOLVERS[solver](model, x_T, schedule, ts, noise=noise, generator=generator, clip_x0=clip_x0, **options)
    return run, ts


def sample_iter(model: Callable, x_T: torch.Tensor, schedule: Schedule, steps: int = 50, *, solver: str = "ddim",
                spacing: str = "trailing", timesteps=None, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None, clip_x0: float | None = None,
                eps_scale: float | EpsScale | None = None, **options) -> Iterator[StepOutput]:
    """Run the solver named ``solver`` (a key of ``SOLVERS``) from ``x_T`` over ``timesteps`` (default:
    ``schedule.timesteps(steps, spacing)``), yielding a ``StepOutput`` per step. ``options`` go to the solver
    (``solver_options(name)``: ``eta``/``variance`` of ``ddim``, ``gamma`` of ``analytic_dpm``, ``mixture`` of
    ``exact_cov``). ``eps_scale``: Epsilon Scaling of the model's output (``scaled_model``; the recorded
    ``eps_pred`` is the scaled one). The arguments are checked at the call, before the first step."""
    return _start(model, x_T, schedule, steps, solver, spacing, timesteps, noise, generator, clip_x0, eps_scale,
                  options)[0]


def sample(model: Callable, x_T: torch.Tensor, schedule: Schedule, steps: int = 50, *, solver: str = "ddim",
           spacing: str = "trailing", timesteps=None, noise: torch.Tensor | None = None,
           generator: torch.Generator | None = None, record_every: int = 1,
           callback: Callable[[dict], None] | None = None, clip_x0: float | None = None,
           eps_scale: float | EpsScale | None = None, **options) -> Trajectory:
    """The package's one ``sample``: ``sample_iter``'s run recorded as a ``Trajectory`` (``samplers.record``:
    every ``record_every``-th step and the last; ``callback`` gets each step's ``StepOutput.as_dict()``)."""
    record_every = check_int("record_every", record_every, 1)
    run, ts = _start(model, x_T, schedule, steps, solver, spacing, timesteps, noise, generator, clip_x0, eps_scale,
                     options)
    return record(run, x_T, ts, record_every, callback)
