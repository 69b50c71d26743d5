"""How far a sampled path drifts, step by step. Every view returns tensors indexed by step, with the timesteps.

- ``paired_trajectories``: a model and a reference (the ideal denoiser, or any model) from the same ``x_T`` with
  the same per-step noise ``z``.
- ``step_drift`` / ``paths_drift``: the distance between the two paths after every step, split into the *local*
  error (one model step from the reference's state) and the *propagated* part; ``drift_{i+1} <= propagated_i +
  local_i`` per point (triangle inequality).
- ``estimation_gap``: the paper's recursion (Nguyen et al., AAAI 2024). The model's ancestral chain
  ``x_hat_{t-1} = mu_tilde(x_hat_t, x0_pred) + sigma_t z`` against the posterior chain ``x_{t-1} = mu_tilde(x_t,
  x0) + sigma_t z`` (same ``z``); ``e = x_hat - x`` obeys

      e_{t-1} = gamma_t e_t + c_t delta_t,  e_start = 0,
      gamma_t = sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t),  c_t = beta_t / (sqrt(alpha_t) sqrt(1 - abar_t)),
      delta_t = eps_hat_t - eps_theta(x_hat_t, t),  eps_hat_t = (x_hat_t - sqrt(abar_t) x0) / sqrt(1 - abar_t),

  with ``abar_{-1} = 1`` (so ``gamma_0 = 0``). Norms are averaged, never signed errors.
- ``distribution_drift`` / ``trajectory_drift``: where no ideal denoiser exists (digits), the model's ``x_t``
  against ``q(x_t)`` at every step: MMD and the ratio of standard deviations.
- ``reference_distance``, ``exact_flow``, ``two_references``: a run against the exact probability-flow path and
  the ideal denoiser's run; ``total^2 = estimation^2 + discretisation^2 + 2 cross`` per point.

Distances are Euclidean norms over all features of a sample (the flattened image for 8x8 digits).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from einops import rearrange, reduce

from ._numeric import pow2_scale
from ._validate import check_choice, check_float, check_int, check_tensor, check_timesteps, check_type
from .data import GaussianMixture
from .denoisers import IdealDenoiser
from .metrics import mmd, std_ratio
from .samplers import (Trajectory, apply_step, call_model, check_sampler_args, check_step_args, make_noise, record,
                       resolve_timesteps, run_steps, step_coefficients)
from .solvers import STOCHASTIC, sample
from .schedule import Schedule, forward_noise

QUANTILES = (0.1, 0.5, 0.9)


# ---------------------------------------------------------------------- helpers
def _norms(v: torch.Tensor, batch_dims: int = 1) -> torch.Tensor:
    """Per-sample Euclidean norm over the features after the first ``batch_dims`` dimensions, in ``v``'s dtype
    (summed in float64: float32 squares beyond 1e19 overflow)."""
    if v.ndim == batch_dims:
        return v.abs()
    return torch.linalg.vector_norm(v.flatten(start_dim=batch_dims), dim=-1, dtype=torch.float64).to(v.dtype)


def _check_quantiles(quantiles) -> tuple[float, ...]:
    q = tuple(float(v) for v in quantiles)
    if not q or any(not 0.0 <= v <= 1.0 for v in q):
        raise ValueError(f"quantiles must be a non-empty sequence of numbers in [0, 1], got {list(quantiles)}")
    return q


def _quantiles(values: torch.Tensor, quantiles) -> torch.Tensor:
    """Quantiles [N, Q] over the points of a per-point table [N, B] (NaN entries ignored)."""
    q = torch.tensor(quantiles, dtype=values.dtype, device=values.device)
    return rearrange(torch.nanquantile(values, q, dim=1), "q n -> n q")


# ---------------------------------------------------------------------- paired trajectories
class PairedTrajectories(NamedTuple):
    """Two runs from the same ``x_T`` driven by the same per-step ``noise`` (``None`` for a deterministic run)."""

    model: Trajectory
    reference: Trajectory
    noise: torch.Tensor | None


def _shared_noise(noise, eta: float, variance: str, steps: int, x_T: torch.Tensor, generator):
    """``noise`` as given, or for a stochastic run drawn once (``make_noise``) so that every run shares it."""
    if noise is None and (eta > 0 or variance == "large"):
        noise = make_noise(steps, x_T.shape, generator, dtype=x_T.dtype, device=x_T.device)
    return noise


def paired_trajectories(model: Callable, reference: Callable, x_T: torch.Tensor, schedule: Schedule,
                        steps: int = 50, *, eta: float = 0.0, variance: str = "small", spacing: str = "trailing",
                        timesteps=None, noise: torch.Tensor | None = None,
                        generator: torch.Generator | None = None, record_every: int = 1,
                        clip_x0: float | None = None) -> PairedTrajectories:
    """Sample ``model`` and ``reference`` from the same ``x_T`` with the same per-step noise ``z_i``
    (``x_s = sqrt(a_s) x0_pred + sqrt(1 - a_s - sigma^2) eps + sigma z_i`` for both). ``noise`` [steps,
    *x_T.shape]; for a stochastic run without it, drawn once from ``generator`` and shared."""
    record_every = check_int("record_every", record_every, 1)
    eta, ts, clip_x0 = check_sampler_args(x_T, schedule, steps, eta, variance, spacing, timesteps, noise, clip_x0)
    noise = _shared_noise(noise, eta, variance, ts.numel(), x_T, generator)
    runs = []
    for name, m in (("model", model), ("reference", reference)):
        try:
            runs.append(record(run_steps(m, x_T, schedule, ts, eta, variance, noise, None, clip_x0), x_T, ts,
                               record_every))
        except ValueError as err:  # the arguments were checked: this is about the named model's output
            raise ValueError(f"{name}: {err}") from err
    return PairedTrajectories(runs[0], runs[1], noise)


# ---------------------------------------------------------------------- per-step drift
@dataclass
class StepDrift:
    """Per-step drift between a model's path and a reference path (same ``x_T``, same noise). Row ``i`` is the
    step ``t = timesteps[i] -> s = next_timesteps[i]`` (``s = -1``: the end); per-point tables [N, B]:

    - ``drift[i] = ||x^model_s - x^ref_s||``: the accumulated distance after step i;
    - ``local[i] = ||step_model(x^ref_t) - step_ref(x^ref_t)||``: one model step from the reference state;
    - ``propagated[i] = ||step_model(x^model_t) - step_model(x^ref_t)||``: the earlier drift carried through
      the model's own step (``drift[i] <= propagated[i] + local[i]``);
    - ``x0_error[i] = ||x0_pred^model(x^model_t) - x0_pred^ref(x^ref_t)||`` along the two paths;
    - ``x0_local_error[i] = ||x0_pred^model(x^ref_t) - x0_pred^ref(x^ref_t)||`` at the reference state.
    """

    timesteps: torch.Tensor
    next_timesteps: torch.Tensor
    drift: torch.Tensor
    local: torch.Tensor
    propagated: torch.Tensor
    x0_error: torch.Tensor
    x0_local_error: torch.Tensor
    quantile_levels: tuple
    paths: PairedTrajectories

    TABLES = ("drift", "local", "propagated", "x0_error", "x0_local_error")

    def mean(self, name: str = "drift") -> torch.Tensor:
        """Mean over points of a per-point table: [N]."""
        return getattr(self, check_choice("name", name, self.TABLES)).mean(dim=1)

    def quantile(self, name: str = "drift") -> torch.Tensor:
        """Quantiles (``quantile_levels``) over points of a per-point table: [N, Q]."""
        return _quantiles(getattr(self, check_choice("name", name, self.TABLES)), self.quantile_levels)

    def curves(self) -> dict:
        """``{"t": [...], "s": [...], name: {"mean": [...], "quantiles": {q: [...]}}}`` for every table (JSON-able)."""
        out = {"t": self.timesteps.tolist(), "s": self.next_timesteps.tolist()}
        for name in self.TABLES:
            qs = self.quantile(name)
            out[name] = {"mean": torch.nanmean(getattr(self, name), dim=1).tolist(),
                         "quantiles": {q: qs[:, k].tolist() for k, q in enumerate(self.quantile_levels)}}
        return out


def step_drift(model: Callable, reference: Callable, x_T: torch.Tensor, schedule: Schedule, steps: int = 50, *,
               eta: float = 0.0, variance: str = "small", spacing: str = "trailing", timesteps=None,
               noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
               clip_x0: float | None = None, quantiles=QUANTILES) -> StepDrift:
    """``paired_trajectories`` then ``paths_drift`` (see ``StepDrift``). With ``Phi_m``/``Phi_r`` the model's /
    reference's step ``t -> s`` (same ``z``): ``local = ||Phi_m(x^r_t) - Phi_r(x^r_t)||``, ``drift =
    ||Phi_m(x^m_t) - Phi_r(x^r_t)||``. For DDIM-type steps and ``eps_m = eps_r + b``, ``Phi_m(x) - Phi_r(x) =
    (sqrt(1 - a_s - sigma^2) - sqrt(a_s) sqrt(1 - a_t) / sqrt(a_t)) b`` exactly."""
    _check_quantiles(quantiles)
    paths = paired_trajectories(model, reference, x_T, schedule, steps, eta=eta, variance=variance, spacing=spacing,
                                timesteps=timesteps, noise=noise, generator=generator, clip_x0=clip_x0)
    return paths_drift(model, paths, schedule, eta=eta, variance=variance, clip_x0=clip_x0, quantiles=quantiles)


def paths_drift(model: Callable, paths: PairedTrajectories, schedule: Schedule, *, eta: float = 0.0,
                variance: str = "small", clip_x0: float | None = None, quantiles=QUANTILES) -> StepDrift:
    """``StepDrift`` of ready paths: ``paths`` sampled (every step recorded) with ``model``, these sampler settings
    and ``paths.noise``; ``model`` takes the one-step ``Phi_m(x^r_t)`` from each reference state."""
    quantiles = _check_quantiles(quantiles)
    check_type("paths", paths, PairedTrajectories)
    check_type("schedule", schedule, Schedule)
    eta, clip_x0 = check_step_args(eta, variance, clip_x0)
    tm, tr = paths.model, paths.reference
    ts = tr.timesteps
    n = ts.numel()
    if not torch.equal(tm.timesteps, ts) or tm.recorded.numel() != n or tr.recorded.numel() != n:
        raise ValueError("paths must be two runs over the same timesteps with every step recorded (record_every=1)")
    nxt = torch.cat([ts[1:], torch.tensor([-1])])
    # every step's coefficients at once (the same numbers as step by step, see samplers.step_coefficients)
    coefs = step_coefficients(schedule.alpha_bar(ts), schedule.alpha_bar(nxt), eta, variance, tr.x.dtype,
                              tr.x.device)
    # Phi_m(x^r_t) and its x0 prediction at every step, then the distances of all steps at once
    step_m_from_ref, x0_m = torch.empty_like(tr.x[1:]), torch.empty_like(tr.x0_pred)
    for i, (t, s) in enumerate(zip(ts.tolist(), nxt.tolist())):
        eps_m = call_model(model, tr.x[i], t, f"step {i} (t={t}) from the reference state")
        z = paths.noise[i] if paths.noise is not None and s >= 0 else None
        step_m_from_ref[i], x0_m[i] = apply_step(tr.x[i], eps_m, coefs[i], z, clip_x0)
    return StepDrift(
        timesteps=ts, next_timesteps=nxt, drift=_norms(tm.x[1:] - tr.x[1:], batch_dims=2),
        local=_norms(step_m_from_ref - tr.x[1:], batch_dims=2),
        propagated=_norms(tm.x[1:] - step_m_from_ref, batch_dims=2),
        x0_error=_norms(tm.x0_pred - tr.x0_pred, batch_dims=2),
        x0_local_error=_norms(x0_m - tr.x0_pred, batch_dims=2), quantile_levels=quantiles, paths=paths)


# ---------------------------------------------------------------------- estimation gap
def gap_coefficients(schedule: Schedule) -> tuple[torch.Tensor, torch.Tensor]:
    """``(gamma, c)`` [T] in float64 of the module docstring's recursion, ``abar_{-1} = 1``: ``gamma_t`` is the
    posterior mean's coefficient on ``x_t``; ``c_t`` turns an eps error into the x0 error ``sqrt(1 - abar_t) /
    sqrt(abar_t) delta`` times the posterior mean's coefficient on ``x0``, ``sqrt(abar_{t-1}) beta_t / (1 -
    abar_t)``."""
    check_type("schedule", schedule, Schedule)
    abar = schedule.alpha_bars
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    gamma = schedule.alphas.sqrt() * (1 - abar_prev) / (1 - abar)
    c = schedule.betas / (schedule.alphas.sqrt() * (1 - abar).sqrt())
    return gamma, c


def gap_survival(schedule: Schedule, to: int = 0) -> torch.Tensor:
    """How much of an error made at step t is left in the estimation gap at step ``to``: [T] float64,
    ``w_t = prod_{s = to+1}^{t-1} gamma_s`` for t > to (1 for t = to + 1), 0 for t <= to, so that unrolling the
    recursion from ``e_{T-1} = 0`` gives ``e_to = sum_{t > to} w_t c_t delta_t``."""
    check_type("schedule", schedule, Schedule)
    to = check_int("to", to, 0, schedule.T - 1)
    gamma, _ = gap_coefficients(schedule)
    w = torch.zeros(schedule.T, dtype=torch.float64)
    # w_{to+1} = 1, w_{t+1} = w_t gamma_t: a running product of gamma upwards from to + 1
    w[to + 1:] = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.float64), gamma[to + 1:-1]]), dim=0)
    return w


@dataclass
class EstimationGap:
    """The estimation gap along DDPM's ancestral chain. Row ``j`` is the step ``t -> t-1``, ``t = timesteps[j]``
    (from ``max(start_t)`` down to 0); per-point tables [L, B], NaN before a point's chain starts:
    ``delta[j] = ||eps_hat_t - eps_theta(x_hat_t, t)||``, ``e[j] = ||e_{t-1}||`` from the recursion and
    ``e_direct[j] = ||x_hat_{t-1} - x_{t-1}||`` from the two chains (equal up to round-off). ``gamma``/``c`` [L]:
    each row's coefficients; ``x_pred`` [B, ...] the predicted chain's end, ``e_final`` the signed ``e_{-1}``."""

    timesteps: torch.Tensor
    start_t: torch.Tensor
    delta: torch.Tensor
    e: torch.Tensor
    e_direct: torch.Tensor
    gamma: torch.Tensor
    c: torch.Tensor
    x_pred: torch.Tensor
    e_final: torch.Tensor

    @property
    def levels(self) -> torch.Tensor:
        """The time level of ``e`` on each row: ``t - 1`` (so -1 is the end)."""
        return self.timesteps - 1

    @property
    def active(self) -> torch.Tensor:
        """[L, B] bool: whether point b's chain takes the step of row j."""
        return self.timesteps[:, None] <= self.start_t[None, :].to(self.timesteps.device)

    def mean(self, name: str = "e") -> torch.Tensor:
        """Mean over the active points of ``delta``, ``e`` or ``e_direct``: [L]."""
        return torch.nanmean(getattr(self, check_choice("name", name, ("delta", "e", "e_direct"))), dim=1)

    def quantile(self, name: str = "e", quantiles=QUANTILES) -> torch.Tensor:
        """Quantiles over the active points: [L, Q]."""
        check_choice("name", name, ("delta", "e", "e_direct"))
        return _quantiles(getattr(self, name), _check_quantiles(quantiles))


def estimation_gap(model: Callable, x0: torch.Tensor, schedule: Schedule, start_t=None, *,
                   eps: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> EstimationGap:
    """The model's ancestral chain against the posterior chain (module docstring) from ``x_start =
    sqrt(abar) x0 + sqrt(1 - abar) eps`` at ``start_t`` (an int or a LongTensor [B], default T-1; a point joins
    when ``t <= start_t[b]``), with ``mu_tilde(x, y) = sqrt(abar_{t-1}) beta_t / (1 - abar_t) y + gamma_t x``,
    ``sigma_t^2 = (1 - abar_{t-1}) beta_t / (1 - abar_t)`` and ``x0_pred = (x_hat_t - sqrt(1 - abar_t)
    eps_theta) / sqrt(abar_t)``. ``eps`` [B, ...]: the start noise; ``noise`` [L, B, ...] (L = max(start_t) + 1):
    the ``z`` of row j; either drawn from ``generator`` when missing (``eps`` first). Runs in ``x0``'s dtype."""
    check_tensor("x0", x0, min_ndim=1, nonempty=True, finite=True, dtypes="floating")
    check_type("schedule", schedule, Schedule)
    B, T = x0.shape[0], schedule.T
    start_t = check_timesteps("start_t", T - 1 if start_t is None else start_t, T, batch=B).cpu()
    t_max = int(start_t.max())
    L = t_max + 1
    if eps is None:
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    check_tensor("eps", eps, finite=True, dtypes="floating", device=x0.device)
    if eps.shape != x0.shape:
        raise ValueError(f"eps must have the shape of x0 {tuple(x0.shape)}, got {tuple(eps.shape)}")
    if noise is None:
        noise = make_noise(L, x0.shape, generator, dtype=x0.dtype, device=x0.device)
    check_tensor("noise", noise, finite=True, dtypes="floating", device=x0.device)
    if noise.shape[0] < L or noise.shape[1:] != x0.shape:
        raise ValueError(f"noise must have shape [max(start_t) + 1, *x0.shape] = [{L}, "
                         f"{', '.join(map(str, x0.shape))}], got {tuple(noise.shape)}")

    gamma_all, c_all = gap_coefficients(schedule)
    x_hat = forward_noise(x0, schedule.alpha_bars[start_t], eps)
    x_act = x_hat.clone()
    e_vec = torch.zeros_like(x0)
    rows = torch.arange(t_max, -1, -1)
    delta_n, e_n, e_direct_n = (torch.full((L, B), math.nan, dtype=torch.float64) for _ in range(3))
    for j, t in enumerate(rows.tolist()):
        idx = torch.nonzero(start_t >= t).squeeze(1).to(x0.device)
        if idx.numel() == 0:
            continue
        a_t, a_prev, beta = float(schedule.alpha_bars[t]), float(schedule.alpha_bar(t - 1)), float(schedule.betas[t])
        gamma, c = float(gamma_all[t]), float(c_all[t])
        coef_x0 = math.sqrt(a_prev) * beta / (1 - a_t)  # posterior mean's coefficient on x0
        sigma = math.sqrt((1 - a_prev) * beta / (1 - a_t))
        xh, xa, x0b = x_hat[idx], x_act[idx], x0[idx]
        eps_theta = call_model(model, xh, t, f"row {j} (t={t})")
        eps_hat = (xh - math.sqrt(a_t) * x0b) / math.sqrt(1 - a_t)
        delta = eps_hat - eps_theta
        x0_pred = (xh - math.sqrt(1 - a_t) * eps_theta) / math.sqrt(a_t)
        z = noise[j][idx]
        xh_next = coef_x0 * x0_pred + gamma * xh + sigma * z
        xa_next = coef_x0 * x0b + gamma * xa + sigma * z
        e_next = gamma * e_vec[idx] + c * delta
        if not bool(torch.isfinite(xh_next).all()):
            raise ValueError(f"the predicted chain is not finite (NaN or inf) at row {j} (t={t})")
        x_hat[idx], x_act[idx], e_vec[idx] = xh_next, xa_next, e_next
        cpu_idx = idx.cpu()
        delta_n[j, cpu_idx] = _norms(delta).double().cpu()
        e_n[j, cpu_idx] = _norms(e_next).double().cpu()
        e_direct_n[j, cpu_idx] = _norms(xh_next - xa_next).double().cpu()
    return EstimationGap(timesteps=rows, start_t=start_t, delta=delta_n, e=e_n, e_direct=e_direct_n,
                         gamma=gamma_all[rows], c=c_all[rows], x_pred=x_hat, e_final=e_vec)


# ---------------------------------------------------------------------- distribution drift
@dataclass
class DistributionDrift:
    """The model's marginal at every recorded step against ``q(x_t)``. Entry ``j`` is the state at timestep
    ``t[j]`` (-1: the final samples against the data): ``mmd[j]`` (unbiased MMD^2, ``metrics.mmd``),
    ``std_model[j]`` and ``std_data[j]`` (``sqrt(tr Cov / D)``) and ``std_ratio[j]``, their ratio (1 is right,
    < 1 shrinks, > 1 over-disperses). ``trajectory`` is the model's run."""

    t: torch.Tensor
    mmd: torch.Tensor
    std_model: torch.Tensor
    std_data: torch.Tensor
    std_ratio: torch.Tensor
    trajectory: Trajectory

    @property
    def variance_ratio(self) -> torch.Tensor:
        """Deprecated name of ``std_ratio`` (it always was a ratio of standard deviations)."""
        warnings.warn("DistributionDrift.variance_ratio is deprecated: it is a ratio of standard deviations, "
                      "use .std_ratio", DeprecationWarning, stacklevel=2)
        return self.std_ratio


def _samples(name: str, x) -> torch.Tensor:
    """``x`` [N, ...] (N >= 2 finite real samples) as a float64 matrix [N, D]."""
    check_tensor(name, x, min_ndim=1, finite=True, dtypes="real")
    if x.shape[0] < 2 or x[0].numel() == 0:
        raise ValueError(f"{name} must hold at least 2 samples of at least one feature, got shape {tuple(x.shape)}")
    return rearrange(x.detach().double(), "n ... -> n (...)") if x.ndim > 1 else x.detach().double()[:, None]


def _std(flat: torch.Tensor, unbiased: bool = True) -> float:
    """``sqrt(tr Cov / D)`` of a float64 matrix [N, D], computed on ``flat / s`` (``s`` a power of two: exact) so
    that the squares of huge values do not overflow."""
    s = pow2_scale(flat)
    return s * math.sqrt(float(reduce((flat / s).var(dim=0, unbiased=unbiased), "d -> ", "mean")))


def total_std(x: torch.Tensor) -> float:
    """``sqrt(tr Cov(x) / D)`` over samples ``x`` [N, ...] (unbiased per-feature variances; float64)."""
    return _std(_samples("x", x))


def variance_ratio(x: torch.Tensor, y: torch.Tensor) -> float:
    """Deprecated alias of ``metrics.std_ratio`` (a ratio of standard deviations despite the name)."""
    warnings.warn("drift.variance_ratio is deprecated: it returns a ratio of standard deviations, use "
                  "metrics.std_ratio", DeprecationWarning, stacklevel=2)
    return std_ratio(x, y)


def _data_shape(data) -> tuple[int, ...]:
    """The sample shape of ``data`` (a ``GaussianMixture`` or clean samples [N, ...]), checked."""
    if isinstance(data, GaussianMixture):
        return (data.dim,)
    if isinstance(data, torch.Tensor):
        check_tensor("data", data, min_ndim=1, finite=True, dtypes="floating")
        if data.shape[0] < 2:
            raise ValueError(f"data must hold at least 2 samples, got shape {tuple(data.shape)}")
        if bool((data == data[:1]).all()):
            raise ValueError("data must vary (its spread at t = -1 divides the variance ratio), got samples that "
                             "are all equal")
        return tuple(data.shape[1:])
    raise TypeError(f"data must be a GaussianMixture or a tensor of clean samples [N, ...], "
                    f"got {type(data).__name__}")


def distribution_drift(model: Callable, data, schedule: Schedule, steps: int = 50, *, n_samples: int = 512,
                       x_T: torch.Tensor | None = None, eta: float = 0.0, variance: str = "small",
                       spacing: str = "trailing", timesteps=None, noise: torch.Tensor | None = None,
                       generator: torch.Generator | None = None, record_every: int = 1,
                       n_reference: int | None = None, bandwidths=None, with_mmd: bool = True,
                       clip_x0: float | None = None, device="cpu") -> DistributionDrift:
    """Sample the model (``x_T``: default ``n_samples`` standard normal draws), then ``trajectory_drift``.
    Randomness, in order: ``x_T``, the sampler's noise, the reference draws, all from ``generator``."""
    check_type("schedule", schedule, Schedule)
    shape = _data_shape(data)
    n_samples = check_int("n_samples", n_samples, 2)
    if x_T is None:
        x_T = torch.randn((n_samples, *shape), generator=generator).to(device)
    eta, ts, clip_x0 = check_sampler_args(x_T, schedule, steps, eta, variance, spacing, timesteps, noise, clip_x0)
    if tuple(x_T.shape[1:]) != shape:
        raise ValueError(f"x_T must have the sample shape of data [B, {', '.join(map(str, shape))}], "
                         f"got {tuple(x_T.shape)}")
    record_every = check_int("record_every", record_every, 1)
    if n_reference is not None:
        check_int("n_reference", n_reference, 2)
    noise = _shared_noise(noise, eta, variance, ts.numel(), x_T, generator)
    traj = record(run_steps(model, x_T, schedule, ts, eta, variance, noise, generator, clip_x0), x_T, ts,
                  record_every)
    return trajectory_drift(traj, data, schedule, generator=generator, n_reference=n_reference,
                            bandwidths=bandwidths, with_mmd=with_mmd)


def trajectory_drift(traj: Trajectory, data, schedule: Schedule, *, generator: torch.Generator | None = None,
                     n_reference: int | None = None, bandwidths=None, with_mmd: bool = True) -> DistributionDrift:
    """``DistributionDrift`` of a ready run ``traj``: its state at every recorded step against ``q(x_t)``.

    ``data``: a ``GaussianMixture`` (reference draws from the exact noised mixture, exact ``std_data``) or clean
    data [N, ...] (reference draws ``sqrt(abar) x0 + sqrt(1 - abar) eps``; ``std_data`` exact for the empirical
    distribution, ``tr Cov(x_t) = abar tr Cov(x0) + (1 - abar) D``). ``n_reference`` draws per step (default:
    the run's batch for a mixture, all N rows for a tensor), from ``generator``; ``with_mmd=False``: NaN MMD."""
    check_type("traj", traj, Trajectory)
    check_type("schedule", schedule, Schedule)
    shape = _data_shape(data)
    if tuple(traj.x.shape[2:]) != shape:
        raise ValueError(f"traj must hold samples of the shape of data [B, {', '.join(map(str, shape))}], "
                         f"got states of shape {tuple(traj.x.shape[1:])}")
    if n_reference is not None:
        n_reference = check_int("n_reference", n_reference, 2)
    mixture = isinstance(data, GaussianMixture)
    if mixture:
        std0 = math.sqrt(float(torch.trace(data.covariance())) / math.prod(shape))
    else:  # the population covariance of the data set
        std0 = _std(_samples("data", data), unbiased=False)
    mmds, std_m, std_d = [], [], []
    for j, t in enumerate(traj.t.tolist()):
        a = float(schedule.alpha_bar(t))
        x_model = traj.x[j]
        std_m.append(total_std(x_model))
        std_d.append(math.hypot(math.sqrt(a) * std0, math.sqrt(1 - a)))  # sqrt((a tr Cov0 + (1 - a) D) / D)
        if not with_mmd:
            mmds.append(math.nan)
            continue
        if mixture:
            ref = data.noised(a).sample(n_reference or x_model.shape[0], generator=generator, dtype=x_model.dtype)
        else:
            x0 = data if n_reference is None else data[torch.randint(0, data.shape[0], (n_reference,),
                                                                     generator=generator)]
            ref = math.sqrt(a) * x0 + math.sqrt(1 - a) * torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        mmds.append(mmd(x_model, ref.to(x_model.device), bandwidths))
    std_m_t, std_d_t = torch.tensor(std_m, dtype=torch.float64), torch.tensor(std_d, dtype=torch.float64)
    return DistributionDrift(t=traj.t, mmd=torch.tensor(mmds, dtype=torch.float64), std_model=std_m_t,
                             std_data=std_d_t, std_ratio=std_m_t / std_d_t, trajectory=traj)


# ---------------------------------------------------------------------- distance to a reference path
def reference_distance(traj: Trajectory, reference: Trajectory) -> tuple[torch.Tensor, torch.Tensor]:
    """``(t, d)``: at every recorded state of ``traj`` (``traj.t``, -1 the final sample) the mean distance
    ``d = mean_b ||x_traj(t)_b - x_ref(t)_b||`` to the state of ``reference`` (e.g. ``exact_flow``) at the same
    timestep; ``reference`` must record every timestep of ``traj``, from the same ``x_T``."""
    return traj.t, _norms(traj.x.double() - _states_at(traj, reference).double(), batch_dims=2).mean(dim=1)


def _states_at(traj: Trajectory, reference: Trajectory) -> torch.Tensor:
    """The states of ``reference`` at the recorded timesteps of ``traj`` [R+1, B, ...] (checked)."""
    check_type("traj", traj, Trajectory)
    check_type("reference", reference, Trajectory)
    where = {int(t): j for j, t in enumerate(reference.t.tolist())}
    missing = [int(t) for t in traj.t.tolist() if int(t) not in where]
    if missing:
        raise ValueError(f"reference must record every timestep of traj; it lacks {missing[:8]}")
    if reference.x.shape[1:] != traj.x.shape[1:]:
        raise ValueError(f"traj and reference must hold the same batch, got states of shape "
                         f"{tuple(traj.x.shape[1:])} and {tuple(reference.x.shape[1:])}")
    return reference.x[[where[int(t)] for t in traj.t.tolist()]]


# ---------------------------------------------------------------------- the exact flow and the two references
def _flow_eps(mixture: GaussianMixture, x_tilde: torch.Tensor, sig: float) -> torch.Tensor:
    """``eps*`` at ``x = x~ / sqrt(1 + sig^2)``, ``alpha_bar = 1 / (1 + sig^2)`` (any real ``sig``, float64)."""
    a = 1.0 / (1.0 + sig * sig)
    return mixture.ideal_eps(x_tilde * math.sqrt(a), torch.tensor(a, dtype=torch.float64))


def _rk4_between(mixture, x_tilde, sig_t: float, sig_s: float, n: int, eps_t: torch.Tensor) -> torch.Tensor:
    """``n`` classical Runge-Kutta steps of ``dx~/dsig = eps*`` from ``sig_t`` down to ``sig_s`` (``eps_t``: eps*
    at the start): geometric in ``sig`` (equal steps of ``log sig``), or equal steps of ``sig`` down to 0."""
    grid = [sig_t + (sig_s - sig_t) * j / n if sig_s == 0 else sig_t * (sig_s / sig_t) ** (j / n)
            for j in range(n)] + [sig_s]
    for j, (lo, hi) in enumerate(zip(grid, grid[1:])):
        h, mid = hi - lo, 0.5 * (lo + hi)
        k1 = eps_t if j == 0 else _flow_eps(mixture, x_tilde, lo)
        k2 = _flow_eps(mixture, x_tilde + 0.5 * h * k1, mid)
        k3 = _flow_eps(mixture, x_tilde + 0.5 * h * k2, mid)
        k4 = _flow_eps(mixture, x_tilde + h * k3, hi)
        x_tilde = x_tilde + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return x_tilde


def exact_flow(mixture: GaussianMixture, schedule: Schedule, x_T: torch.Tensor, solver: str = "rk4", *,
               timesteps=None, max_log_step: float = 0.05, final_substeps: int = 16) -> Trajectory:
    """The probability-flow ODE of ``mixture`` from ``x_T`` [B, D] (at timestep T-1), recorded at ``timesteps``
    (descending from T-1; default every timestep): the reference of the total error.

    ``solver="rk4"``: classical Runge-Kutta on ``dx~/dsigma~ = eps*(x, sigma~)`` (``x~ = x / sqrt(a)``, ``sigma~
    = sqrt((1 - a) / a)``, Karras et al. 2022) with the mixture's exact ``eps*``, in sub-steps of at most
    ``max_log_step`` in ``log sigma~`` between recorded timesteps and ``final_substeps`` equal ones down to the
    data (``sigma~ = 0``); float64 inside, states in ``x_T``'s dtype. ``"heun"`` / ``"dpmpp_2m"``: the registry's
    solvers with the ideal denoiser over all T timesteps (``timesteps`` must be None), cross-checks."""
    check_type("mixture", mixture, GaussianMixture)
    check_type("schedule", schedule, Schedule)
    check_choice("solver", solver, ("rk4", "heun", "dpmpp_2m"))
    max_log_step = check_float("max_log_step", max_log_step, 0.0, low_open=True)
    final_substeps = check_int("final_substeps", final_substeps, 1)
    if solver != "rk4":
        if timesteps is not None:
            raise ValueError(f"timesteps belongs to solver='rk4'; solver={solver!r} records every timestep")
        return sample(IdealDenoiser(mixture, schedule), x_T, schedule, schedule.T, solver=solver)
    check_tensor("x_T", x_T, ndim=2, nonempty=True, finite=True, dtypes="floating")
    if x_T.shape[1] != mixture.dim:
        raise ValueError(f"x_T must have shape [B, {mixture.dim}] for this {mixture.dim}-D mixture, "
                         f"got {tuple(x_T.shape)}")
    ts = torch.arange(schedule.T - 1, -1, -1) if timesteps is None else resolve_timesteps(schedule, 1, "trailing",
                                                                                           timesteps)
    if int(ts[0]) != schedule.T - 1:
        raise ValueError(f"timesteps must start at T-1 = {schedule.T - 1}, where x_T is, got {int(ts[0])}")
    a = schedule.alpha_bar(ts).tolist()
    sig = [math.sqrt((1 - v) / v) for v in a]
    sig_0 = math.sqrt((1 - float(schedule.alpha_bar(0))) / float(schedule.alpha_bar(0)))
    xs = x_T.new_empty((ts.numel() + 1, *x_T.shape))
    x0s, epss = torch.empty_like(xs[1:]), torch.empty_like(xs[1:])
    x_tilde = x_T.double().cpu() / math.sqrt(a[0])
    for i in range(ts.numel()):
        x = x_T.double().cpu() if i == 0 else x_tilde * math.sqrt(a[i])  # the run starts exactly at x_T
        eps = mixture.ideal_eps(x, torch.tensor(a[i], dtype=torch.float64))
        xs[i], epss[i] = x, eps
        x0s[i] = (x - math.sqrt(1 - a[i]) * eps) / math.sqrt(a[i])
        hi, lo = sig[i], sig[i + 1] if i + 1 < ts.numel() else sig_0  # geometric down to timestep 0 at most
        if lo < hi:
            x_tilde = _rk4_between(mixture, x_tilde, hi, lo, max(1, math.ceil(math.log(hi / lo) / max_log_step)),
                                   eps)
            eps = None
        if i + 1 == ts.numel():  # then in equal steps to the data
            eps = _flow_eps(mixture, x_tilde, sig_0) if eps is None else eps
            x_tilde = _rk4_between(mixture, x_tilde, sig_0, 0.0, final_substeps, eps)
    xs[-1] = x_tilde
    return Trajectory(ts, torch.arange(ts.numel()), xs, x0s, epss)


@dataclass(frozen=True)
class TwoReferences:
    """A learned run against both references, [R+1, B] tables per recorded state (``t``) and point:
    ``estimation = ||x_model - x_ideal||`` (the ideal denoiser's run, same solver, steps, x_T), ``total =
    ||x_model - x_flow||`` (``exact_flow``), ``discretisation = ||x_ideal - x_flow||`` and ``cross = <x_model -
    x_ideal, x_ideal - x_flow>``: ``total^2 = estimation^2 + discretisation^2 + 2 cross``, negative ``cross``
    when the network's error points against the sampler's. ``mean(name)`` [R+1], ``final(name)`` [B]."""

    t: torch.Tensor
    estimation: torch.Tensor
    total: torch.Tensor
    discretisation: torch.Tensor
    cross: torch.Tensor
    model: Trajectory
    ideal: Trajectory

    TABLES = ("estimation", "total", "discretisation", "cross")

    def mean(self, name: str) -> torch.Tensor:
        return getattr(self, check_choice("name", name, self.TABLES)).mean(dim=1)

    def final(self, name: str) -> torch.Tensor:
        return getattr(self, check_choice("name", name, self.TABLES))[-1]


def two_references(model: Callable, mixture: GaussianMixture, schedule: Schedule, x_T: torch.Tensor,
                   steps: int = 50, *, solver: str = "ddim", spacing: str = "trailing", timesteps=None,
                   flow: Trajectory | None = None, eps_scale=None, **options) -> TwoReferences:
    """Sample ``model`` and the ideal denoiser of ``mixture`` with one deterministic ``solver`` (``options`` go
    to it) from ``x_T`` and ``measure_references``. ``flow``: an ``exact_flow`` from ``x_T`` recording the run's
    timesteps (default: solved here). ``eps_scale``: Epsilon Scaling of ``model`` only."""
    if solver in STOCHASTIC or options.get("eta", 0.0) != 0.0 or options.get("variance", "small") != "small":
        raise ValueError(f"two_references needs a deterministic solver (the exact flow is the reference of an ODE "
                         f"solver), got solver={solver!r} with options {options}")
    check_type("mixture", mixture, GaussianMixture)
    run = sample(model, x_T, schedule, steps, solver=solver, spacing=spacing, timesteps=timesteps,
                 eps_scale=eps_scale, **options)
    ideal = sample(IdealDenoiser(mixture, schedule), x_T, schedule, steps, solver=solver, spacing=spacing,
                   timesteps=timesteps, **options)
    if flow is None:
        flow = exact_flow(mixture, schedule, x_T, timesteps=run.timesteps)
    return measure_references(run, ideal, flow)


def measure_references(run: Trajectory, ideal: Trajectory, flow: Trajectory) -> TwoReferences:
    """``TwoReferences`` of paths already sampled: ``run`` and ``ideal`` from one ``x_T`` over the same
    timesteps with one deterministic solver, and ``flow``, an ``exact_flow`` from that ``x_T`` recording them."""
    for name, traj in (("run", run), ("ideal", ideal), ("flow", flow)):
        check_type(name, traj, Trajectory)
    if not torch.equal(run.t, ideal.t) or not torch.equal(run.x[0], ideal.x[0]):
        raise ValueError("run and ideal must start from one x_T and record the same timesteps")
    if not torch.equal(flow.x[0].to(run.x.device), run.x[0]):
        raise ValueError("flow must start from this x_T (exact_flow(mixture, schedule, x_T))")
    at = _states_at(run, flow).to(run.x.device).double()
    est, disc = run.x.double() - ideal.x.double(), ideal.x.double() - at
    return TwoReferences(t=run.t, estimation=_norms(est, 2), total=_norms(run.x.double() - at, 2),
                         discretisation=_norms(disc, 2), cross=(est * disc).flatten(2).sum(-1), model=run,
                         ideal=ideal)


class EpsScaleFit(NamedTuple):
    """The chosen factor ``c`` and, per factor of ``cs``, the mean final distance to the target (NaN: not run)."""

    c: float
    cs: tuple[float, ...]
    mean_error: torch.Tensor


def fit_eps_scale(model: Callable, x_T: torch.Tensor, target: torch.Tensor, schedule: Schedule, steps: int,
                  cs, *, solver: str = "ddim", spacing: str = "trailing") -> EpsScaleFit:
    """A constant Epsilon Scaling factor (Ning et al., ICLR 2024): the ``c`` of ``cs`` whose runs of ``model``
    from ``x_T`` end closest on average to ``target`` (e.g. ``exact_flow(...).final``). The factors run from the
    largest down and stop at the first that ends farther than the one before: the error has one valley in ``c``."""
    x_T = check_tensor("x_T", x_T, min_ndim=2, nonempty=True, dtypes="floating")
    target = check_tensor("target", target, dtypes="floating")
    if target.shape != x_T.shape:
        raise ValueError(f"target must have x_T's shape {tuple(x_T.shape)}, got {tuple(target.shape)}")
    cs = tuple(check_float(f"cs[{i}]", c, 0.0, low_open=True) for i, c in enumerate(cs))
    if not cs:
        raise ValueError("cs must hold at least one factor, got none")
    mean_error = torch.full((len(cs),), math.nan, dtype=torch.float64)
    best = None
    for i in sorted(range(len(cs)), key=lambda k: -cs[k]):
        final = sample(model, x_T, schedule, steps, solver=solver, spacing=spacing, eps_scale=cs[i]).final
        mean_error[i] = _norms((final - target).double()).mean()
        if best is not None and mean_error[i] > mean_error[best]:
            break
        best = i
    return EpsScaleFit(c=cs[best], cs=cs, mean_error=mean_error)
