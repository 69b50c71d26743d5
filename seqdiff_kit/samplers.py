"""One generalized DDIM/DDPM sampler that records every step.

A step from ``t`` to ``s < t`` (``s = -1`` is the end, ``alpha_bar_{-1} = 1``), with ``a_t = alpha_bar_t``:

    x0_pred = (x_t - sqrt(1 - a_t) eps_theta) / sqrt(a_t)
    sigma   = eta sqrt((1 - a_t / a_s) (1 - a_s) / (1 - a_t))
    x_s     = sqrt(a_s) x0_pred + sqrt(1 - a_s - sigma^2) eps_theta + sigma z

``eta = 0`` is DDIM (deterministic), ``eta = 1`` is DDPM with the posterior variance. ``variance="large"``
keeps DDPM's posterior mean (eta = 1) but draws the noise with DDPM's larger variance ``1 - a_t / a_s``
(``beta_t`` for consecutive steps). The last step adds no noise. No clipping unless ``clip_x0`` is given.

The package's ``sample`` is ``solvers``' (``solver="ddim"`` runs this step); this module keeps the step, the
argument checks, the loop ``run_steps`` and ``record``, which turns any solver's steps into a ``Trajectory``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Iterator

import torch

from ._validate import (check_choice, check_dtype_arg, check_float, check_int, check_tensor, check_timesteps,
                        check_type, dtype_name)
from .schedule import Schedule

VARIANCES = ("small", "large")


@dataclass
class StepOutput:
    """What one sampler step ``x_t -> x_s`` saw and produced, in the equations' names (the same names as the
    ``Trajectory`` fields and the callback dict)."""

    i: int                   # step number in 0..N-1
    t: int                   # current timestep
    s: int                   # next timestep (-1 at the last step)
    x_t: torch.Tensor        # the input of the step
    eps_pred: torch.Tensor   # eps_theta(x_t, t)
    x0_pred: torch.Tensor    # (x_t - sqrt(1 - a_t) eps_pred) / sqrt(a_t)
    x_s: torch.Tensor        # the output of the step

    def as_dict(self) -> dict:
        """The callback's dict: ``i, t, s, x_t, eps_pred, x0_pred, x_s``."""
        return dict(self.__dict__)


@dataclass
class Trajectory:
    """A recorded sampling run.

    ``timesteps`` [N]: every timestep of the run, descending. ``recorded`` [R]: the step indices kept
    (all of them unless a stride was given; the last step is always kept). ``x`` [R+1, B, ...]: the state
    at each recorded step (``x[j]`` is x at timestep ``timesteps[recorded[j]]``), then the final sample.
    ``x0_pred`` and ``eps_pred`` [R, B, ...]: the model's predictions at the recorded steps.
    """

    timesteps: torch.Tensor
    recorded: torch.Tensor
    x: torch.Tensor
    x0_pred: torch.Tensor
    eps_pred: torch.Tensor

    @property
    def final(self) -> torch.Tensor:
        """The sample the run ends with (``x`` at ``t = -1``)."""
        return self.x[-1]

    @property
    def t(self) -> torch.Tensor:
        """The timestep of each recorded state, with -1 for the final sample; [R+1]."""
        return torch.cat([self.timesteps[self.recorded], torch.tensor([-1])])

    @property
    def steps(self) -> int:
        return self.timesteps.numel()

    def nbytes(self) -> int:
        return sum(v.element_size() * v.numel() for v in (self.x, self.x0_pred, self.eps_pred))


def _abar(schedule: Schedule, t, like: torch.Tensor) -> torch.Tensor:
    """alpha_bar at integer t (scalar or [B]) in float64, shaped to broadcast against ``like`` [B, ...]."""
    a = schedule.alpha_bar(torch.as_tensor(t))
    if a.ndim == 0:
        return a
    return a.reshape(-1, *([1] * (like.ndim - 1)))


def sigmas(a_t: torch.Tensor, a_s: torch.Tensor, eta: float, variance: str = "small"):
    """``(sigma_mean, sigma_noise)`` of a step from float64 alpha_bar tensors: the module docstring's ``sigma``,
    in the mean and the noise, or for ``variance="large"`` the noise ``sqrt(1 - a_t/a_s)`` (0 at the end)."""
    sig_mean = eta * ((1 - a_t / a_s) * (1 - a_s) / (1 - a_t)).clamp(min=0).sqrt()
    if variance != "large":
        return sig_mean, sig_mean
    return sig_mean, torch.where(a_s < 1, (1 - a_t / a_s).clamp(min=0).sqrt(), torch.zeros_like(a_s))


@dataclass
class StepCoefficients:
    """The coefficients of generalized steps ``x_t -> x_s`` in the names of the module docstring's equations, in
    the sampler's dtype: tensors of one shape, one entry per step (or per point of a batch at several
    timesteps). ``noisy``: where ``sigma_noise`` is above 0, decided in float64 (a cast may round it to 0)."""

    sqrt_1m_a_t: torch.Tensor   # sqrt(1 - a_t)
    sqrt_a_t: torch.Tensor      # sqrt(a_t)
    sqrt_a_s: torch.Tensor      # sqrt(a_s)
    eps_coef: torch.Tensor      # sqrt(1 - a_s - sigma^2), 0 where rounding makes it negative
    sigma_noise: torch.Tensor   # the noise's scale (sigmas)
    noisy: torch.Tensor         # sigma_noise > 0 (bool)

    def __getitem__(self, i: int) -> "StepCoefficients":
        """Step ``i``'s coefficients (0-dim tensors) of coefficients computed for every step of a run."""
        return StepCoefficients(*(getattr(self, f.name)[i] for f in fields(self)))


def step_coefficients(a_t: torch.Tensor, a_s: torch.Tensor, eta: float, variance: str, dtype,
                      device="cpu") -> StepCoefficients:
    """The ``StepCoefficients`` of steps from float64 ``alpha_bar`` tensors ``a_t`` and ``a_s`` (of one shape),
    computed in float64 (in float16 ``1 - a_t`` rounds to 0 near the data) and cast to ``dtype``. Elementwise:
    a whole run's coefficients at once are those of its steps one by one, bit for bit."""
    def cast(c: torch.Tensor) -> torch.Tensor:
        return c.to(device=device, dtype=dtype)

    sig_mean, sig_noise = sigmas(a_t, a_s, eta, variance)
    return StepCoefficients(cast((1 - a_t).sqrt()), cast(a_t.sqrt()), cast(a_s.sqrt()),
                            cast((1 - a_s - sig_mean**2).clamp(min=0).sqrt()), cast(sig_noise), sig_noise > 0)


def apply_step(x: torch.Tensor, eps: torch.Tensor, c: StepCoefficients, noise: torch.Tensor | None = None,
               clip_x0: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One step ``x_t -> x_s`` with coefficients ``c`` (``step_coefficients``); returns ``(x_s, x0_pred)``."""
    x0 = (x - c.sqrt_1m_a_t * eps) / c.sqrt_a_t
    if clip_x0 is not None:
        bound = min(clip_x0, torch.finfo(x.dtype).max)  # clamp cannot take a bound beyond the dtype's range
        x0 = x0.clamp(-bound, bound)
        eps = (x - c.sqrt_a_t * x0) / c.sqrt_1m_a_t  # keep eps consistent with the clipped x0
    out = c.sqrt_a_s * x0 + c.eps_coef * eps
    if bool(c.noisy.any()):
        if noise is None:
            raise ValueError("noise must be given for a stochastic step (eta > 0 or variance='large')")
        out = out + c.sigma_noise * noise.to(x.dtype)
    return out, x0


def generalized_step(x: torch.Tensor, eps: torch.Tensor, t, s, schedule: Schedule, *, eta: float = 0.0,
                     variance: str = "small", noise: torch.Tensor | None = None,
                     clip_x0: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One step ``x_t -> x_s``; returns ``(x_s, x0_pred)``. ``t`` and ``s``: ints or LongTensors [B]; ``noise``:
    the step's ``z`` (needed when sigma > 0). Unchecked: the sampler's entries check their arguments once."""
    c = step_coefficients(_abar(schedule, t, x), _abar(schedule, s, x), eta, variance, x.dtype, x.device)
    return apply_step(x, eps, c, noise, clip_x0)


def draw_z(noise: torch.Tensor | None, i: int, x: torch.Tensor, generator) -> torch.Tensor:
    """The ``z`` of step ``i``: ``noise[i]`` when given, else a fresh draw from ``generator``."""
    if noise is not None:
        return noise[i]
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


def make_noise(steps: int, shape, generator: torch.Generator | None = None, dtype=torch.float32,
               device="cpu") -> torch.Tensor:
    """Per-step Gaussian noise ``z`` of shape [steps, *shape]: pass it to two samplers to share randomness."""
    steps = check_int("steps", steps, 1)
    check_dtype_arg("dtype", dtype, "floating")
    return torch.randn(steps, *shape, generator=generator, dtype=dtype).to(device)


def resolve_timesteps(schedule, steps, spacing, timesteps) -> torch.Tensor:
    if timesteps is not None:
        ts = check_timesteps("timesteps", timesteps, schedule.T).flatten().cpu()
        if ts.numel() < 1:
            raise ValueError("timesteps must be a non-empty sequence, got an empty one")
        if ts.numel() > 1 and not bool((ts[1:] < ts[:-1]).all()):
            raise ValueError("timesteps must be strictly decreasing")
        return ts
    return schedule.timesteps(steps, spacing)


def check_step_args(eta, variance: str, clip_x0=None) -> tuple[float, float | None]:
    """The settings of a step: ``eta`` in [0, 1], a known ``variance`` (``"large"`` only with ``eta = 1``) and
    ``clip_x0`` (None or > 0); returns ``(eta, clip_x0)`` as floats."""
    eta = check_float("eta", eta, 0.0, 1.0)
    check_choice("variance", variance, VARIANCES)
    if variance == "large" and eta != 1.0:
        raise ValueError(f"variance='large' needs eta=1.0 (it is DDPM's large-variance option), got eta={eta}")
    if clip_x0 is not None:
        clip_x0 = check_float("clip_x0", clip_x0, 0.0, low_open=True)
    return eta, clip_x0


def check_sampler_args(x_T, schedule, steps, eta, variance, spacing, timesteps, noise,
                        clip_x0) -> tuple[float, torch.Tensor, float | None]:
    """The sampler's argument checks; returns ``(eta, timesteps, clip_x0)``. ``x_T``: a finite floating-point
    tensor whose dtype can hold every coefficient of the run; ``noise``: finite, floating, on ``x_T``'s device."""
    check_tensor("x_T", x_T, min_ndim=1, nonempty=True, finite=True, dtypes="floating")
    check_type("schedule", schedule, Schedule)
    eta, clip_x0 = check_step_args(eta, variance, clip_x0)
    ts = resolve_timesteps(schedule, steps, spacing, timesteps)
    # a subnormal or zero sqrt(alpha_bar_t) or sqrt(1 - alpha_bar_t) in x_T's dtype turns x0_pred into inf/NaN
    a = schedule.alpha_bars[ts]
    smallest, tiny = float(torch.minimum(a.sqrt(), (1 - a).sqrt()).min()), torch.finfo(x_T.dtype).tiny
    if smallest < tiny:
        raise TypeError(f"x_T has dtype {dtype_name(x_T.dtype)}, which cannot hold this run's coefficients: "
                        f"min(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)) = {smallest:.3g} is below its smallest "
                        f"normal number {tiny:.3g}; use float32 or float64")
    if noise is not None:
        check_tensor("noise", noise, finite=True, dtypes="floating", device=x_T.device)
        if noise.shape[0] < ts.numel() or noise.shape[1:] != x_T.shape:
            raise ValueError(f"noise must have shape [steps, *x_T.shape] = [{ts.numel()}, "
                             f"{', '.join(map(str, x_T.shape))}], got {tuple(noise.shape)}")
    return eta, ts, clip_x0


def call_model(model: Callable, x: torch.Tensor, t: int, where: str) -> torch.Tensor:
    """``model(x, t)`` without gradients, checked for shape and finiteness (``where`` names the step on failure)."""
    with torch.no_grad():
        eps = model(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
    if not isinstance(eps, torch.Tensor) or eps.shape != x.shape:
        got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(f"model output must have the shape of x {tuple(x.shape)}, got {got} at {where}")
    if not bool(torch.isfinite(eps).all()):
        raise ValueError(f"model output is not finite (NaN or inf) at {where}")
    if eps.dtype != x.dtype:
        raise ValueError(f"model output must have the dtype of x {dtype_name(x.dtype)}, got "
                         f"{dtype_name(eps.dtype)} at {where}")
    return eps


def run_steps(model, x_T, schedule, ts, eta, variance, noise, generator, clip_x0) -> Iterator[StepOutput]:
    """The sampler loop over arguments already checked by ``check_sampler_args`` (``solvers.ddim`` runs it), for
    callers that check once and sample several times; ``z`` is ``noise[i]`` (shared randomness), else drawn."""
    stochastic = eta > 0 or variance == "large"
    steps = ts.tolist()
    nxt = steps[1:] + [-1]
    coefs = step_coefficients(schedule.alpha_bar(ts), schedule.alpha_bar(torch.tensor(nxt)), eta, variance,
                              x_T.dtype, x_T.device)
    x = x_T
    for i, (t, s) in enumerate(zip(steps, nxt)):
        eps = call_model(model, x, t, f"step {i} (t={t})")
        z = draw_z(noise, i, x, generator) if stochastic and s >= 0 else None
        prev, x0 = apply_step(x, eps, coefs[i], z, clip_x0)
        if not bool(torch.isfinite(prev).all()):
            raise ValueError(f"the sampler's state is not finite (NaN or inf) after step {i} (t={t}): x_T's dtype "
                             f"{dtype_name(x.dtype)} cannot hold x0_pred or x_s "
                             f"(max |x_t| = {float(x.abs().max()):.3g})")
        yield StepOutput(i, t, s, x, eps, x0, prev)
        x = prev


def record(steps: Iterator[StepOutput], x_T: torch.Tensor, timesteps: torch.Tensor, record_every: int = 1,
           callback: Callable[[dict], None] | None = None) -> Trajectory:
    """Collect the ``StepOutput``s of a run over ``timesteps`` into a ``Trajectory``, keeping every
    ``record_every``-th step and the last; ``callback`` receives each step's ``StepOutput.as_dict()``."""
    n = timesteps.numel()
    kept = [i for i in range(n) if i % record_every == 0 or i == n - 1]
    slot = {i: j for j, i in enumerate(kept)}
    # preallocated buffers: stacking a list at the end would briefly double the memory of a long run
    xs = x_T.new_empty((len(kept) + 1, *x_T.shape))
    x0s, epss = x_T.new_empty((len(kept), *x_T.shape)), x_T.new_empty((len(kept), *x_T.shape))
    for out in steps:
        j = slot.get(out.i)
        if j is not None:
            xs[j], x0s[j], epss[j] = out.x_t, out.x0_pred, out.eps_pred
        if callback is not None:
            callback(out.as_dict())
        xs[-1] = out.x_s
    return Trajectory(timesteps, torch.tensor(kept, dtype=torch.long), xs, x0s, epss)
