"""Closed forms for 1-D Gaussian data: what the SA loss's population optimum is, and what it does to a sampler.

Data ``x0 ~ N(0, var)``; a linear per-timestep denoiser ``eps_theta(x, t) = a_t x``. Write ``ab_s = alpha_bar_s``,
``q_s = E[x_s^2] = ab_s var + 1 - ab_s`` and ``c_s = E[eps x_s] = sqrt(1 - ab_s)``. With independent ``eps_k`` and a
shared ``x0``, the residuals ``r_k = eps_k - a_{t-k} x_{t-k}`` have

    E[r_k^2]   = 1 - 2 a_s c_s + a_s^2 q_s                               (s = t - k)
    E[r_k r_j] = a_s a_u E[x_s x_u] = a_s a_u sqrt(ab_s ab_u) var         (s = t - k, u = t - j, k != j)

so, averaging over t uniform on {0..T-1}, both losses are quadratics ``L(a) = a^T A a - 2 b^T a + c``:

    L_simple: A = diag(q) / T,  b = c / T,  constant 1
    L_sa:     A = (1 / (K^2 T)) sum_t [ sum_{k <= min(K-1, t)} q_{t-k} e_{t-k} e_{t-k}^T
                                        + sum_{k != j} sqrt(ab_{t-k} ab_{t-j}) var e_{t-k} e_{t-j}^T ]
              b = (1 / (K^2 T)) sum_t sum_k c_{t-k} e_{t-k},  constant (1 / (K^2 T)) sum_t min(K, t + 1)

``A`` is banded (bandwidth K - 1), and the minimiser of ``L_simple + lam L_sa`` solves
``(A_simple + lam A_sa) a = b_simple + lam b_sa``. With lam = 0 it is ``a_t = c_t / q_t``, the exact eps* of
the Gaussian. The sampler is linear in x for a linear denoiser, so the variance of its output is exact too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._validate import check_choice, check_float, check_int, check_tensor, check_type, check_values
from .data import GaussianMixture
from .denoisers import IdealDenoiser
from .losses import LossOutput, sequence_aware_loss
from .samplers import check_step_args, sigmas
from .schedule import Schedule


def _check_a(a, schedule: Schedule) -> torch.Tensor:
    a = check_values("a", a, finite=True)
    check_tensor("a", a, ndim=1)
    if a.shape != (schedule.T,):
        raise ValueError(f"a must hold one coefficient per timestep, shape [T] = [{schedule.T}], got {tuple(a.shape)}")
    return a.to(torch.float64).cpu()


def gaussian_quadratics(var: float, K: int, schedule: Schedule):
    """The exact expected losses as quadratics in ``a`` [T]: returns ``((A_simple, b_simple, c_simple),
    (A_sa, b_sa, c_sa))`` (float64) with ``L(a) = a^T A a - 2 b^T a + c`` (see the module docstring)."""
    var = check_float("var", var, 0.0, low_open=True)
    schedule = check_type("schedule", schedule, Schedule)
    T = schedule.T
    K = check_int("K", K, 1, T)
    ab = schedule.alpha_bars
    q = ab * var + 1 - ab
    c = (1 - ab).sqrt()
    A_simple, b_simple = torch.diag(q) / T, c / T
    A_sa = torch.zeros(T, T, dtype=torch.float64)
    b_sa = torch.zeros(T, dtype=torch.float64)
    t = torch.arange(T)
    w = 1.0 / (K**2 * T)
    for k in range(K):
        s = t[t >= k] - k                                    # s = t - k for every t that keeps term k
        b_sa.index_add_(0, s, w * c[s])
        for j in range(K):
            keep = t >= max(k, j)
            s_k, s_j = t[keep] - k, t[keep] - j
            if k == j:
                vals = w * q[s_k]
            else:  # independent eps_k, eps_j: only the shared x0 correlates x_{t-k} and x_{t-j}
                vals = w * var * (ab[s_k] * ab[s_j]).sqrt()
            A_sa.index_put_((s_k, s_j), vals, accumulate=True)
    c_sa = w * float(torch.clamp(t + 1, max=K).sum())
    return (A_simple, b_simple, 1.0), (A_sa, b_sa, c_sa)


def gaussian_sa_objective(a, var: float, K: int, lam: float, schedule: Schedule) -> LossOutput:
    """The exact population losses ``simple``, ``sa`` and ``total = L_simple + lam L_sa`` (float64 scalars) of
    ``eps_theta(x, t) = a_t x`` on ``x0 ~ N(0, var)`` (the quadratics of the module docstring)."""
    lam = check_float("lam", lam, 0.0)
    schedule = check_type("schedule", schedule, Schedule)
    a = _check_a(a, schedule)
    (A1, b1, c1), (A2, b2, c2) = gaussian_quadratics(var, K, schedule)
    simple = a @ A1 @ a - 2 * b1 @ a + c1
    sa = a @ A2 @ a - 2 * b2 @ a + c2
    total = simple + lam * sa
    if not bool(torch.isfinite(total)):
        raise ValueError(f"a, var and lam give a loss beyond float64's range (max |a| = {float(a.abs().max()):.3g}, "
                         f"var = {var:.3g}, lam = {lam:.3g})")
    return LossOutput(total=total, simple=simple, sa=sa)


def gaussian_sa_optimum(var: float, K: int, lam: float, schedule: Schedule) -> torch.Tensor:
    """``argmin_a L_simple(a) + lam L_sa(a)`` [T] (float64): the solution of ``(A_simple + lam A_sa) a = b_simple
    + lam b_sa``; with ``lam = 0``, ``a_t = sqrt(1 - ab_t) / (ab_t var + 1 - ab_t)``."""
    lam = check_float("lam", lam, 0.0)
    (A1, b1, _), (A2, b2, _) = gaussian_quadratics(var, K, schedule)
    a = torch.linalg.solve(A1 + lam * A2, b1 + lam * b2)
    if not bool(torch.isfinite(a).all()):
        raise ValueError(f"var = {var:.3g} and lam = {lam:.3g} give a system beyond float64's range")
    return a


def linear_sampler_variances(a, var: float, schedule: Schedule, steps: int, eta: float = 0.0,
                             spacing: str = "trailing", variance: str = "small") -> torch.Tensor:
    """Exact ``Var[x]`` [steps + 1] (float64) along the generalized sampler driven by ``eps_theta(x, t) = a_t x``
    from ``x_T ~ N(0, 1)``: at every visited timestep, then at the end. A step t -> s is ``x_s = m x_t + sigma z``
    with ``g = (1 - sqrt(1 - ab_t) a_t) / sqrt(ab_t)`` (x0_pred = g x_t), ``m = sqrt(ab_s) g + sqrt(1 - ab_s -
    sigma_eta^2) a_t`` and the sampler's noise ``sigma`` (``samplers.sigmas``), so ``V_s = m^2 V_t + sigma^2``
    (``var`` is only checked: it does not enter the propagation)."""
    check_float("var", var, 0.0, low_open=True)
    schedule = check_type("schedule", schedule, Schedule)
    a = _check_a(a, schedule)
    eta, _ = check_step_args(eta, variance)
    ts = schedule.timesteps(steps, spacing).tolist()
    abar = schedule.alpha_bar(torch.tensor(ts + [-1]))  # float64; the step i goes from abar[i] to abar[i + 1]
    sig_mean, sig_noise = sigmas(abar[:-1], abar[1:], eta, variance)  # the sampler's sigmas, per step
    V = [1.0]
    for i, t in enumerate(ts):
        ab_t, ab_s = float(abar[i]), float(abar[i + 1])
        a_t = float(a[t])
        g = (1 - math.sqrt(1 - ab_t) * a_t) / math.sqrt(ab_t)
        m = math.sqrt(ab_s) * g + math.sqrt(max(1 - ab_s - float(sig_mean[i])**2, 0.0)) * a_t
        V.append(m * m * V[-1] + float(sig_noise[i])**2)
    if not math.isfinite(V[-1]):
        raise ValueError(f"a makes the sampler's variance exceed float64's range (max |a| = "
                         f"{float(a.abs().max()):.3g})")
    return torch.tensor(V, dtype=torch.float64)


def linear_sampler_std_ratio(a, var: float, schedule: Schedule, steps: int, eta: float = 0.0,
                             spacing: str = "trailing", variance: str = "small") -> float:
    """``std(x_final) / sqrt(var)`` of ``linear_sampler_variances`` (below 1: the sampler shrinks the data)."""
    V = linear_sampler_variances(a, var, schedule, steps, eta=eta, spacing=spacing, variance=variance)
    return math.sqrt(float(V[-1]) / float(var))


def optimum_ratio(var: float, K: int, lam: float, schedule: Schedule) -> torch.Tensor:
    """``a_t / a*_t`` [T]: the SA loss's population optimum over the exact ``a*`` (lam = 0). Below 1 it predicts a
    smaller noise than eps*, so its ``x0_pred`` lies farther out: wider samples."""
    return gaussian_sa_optimum(var, K, lam, schedule) / gaussian_sa_optimum(var, 1, 0.0, schedule)


@dataclass(frozen=True)
class ScaledIdealLosses:
    """The losses of the scaled ideal denoiser ``eps_c = c eps*`` as exact quadratics ``L_b(c) = A_b c^2 - 2 B_b c
    + C_b`` per batch: ``simple`` and ``sa`` [3, R] hold (A, B, C) of R batches. ``argmin(part)``: ``B / A`` of the
    batch-averaged quadratic, ``argmin_se`` its standard error over the per-batch minimisers; ``difference(c1,
    c2)``: mean and standard error of ``L(c1) - L(c2)`` over batches."""

    simple: torch.Tensor
    sa: torch.Tensor
    K: int
    lam: float

    def _coef(self, part: str) -> torch.Tensor:
        check_choice("part", part, ("simple", "sa", "total"))
        return self.simple + self.lam * self.sa if part == "total" else getattr(self, part)

    def per_batch(self, c, part: str = "total") -> torch.Tensor:
        """``L_b(c)`` [len(c), R] (``c`` a number or a sequence)."""
        A, B, C = self._coef(part)
        c = torch.as_tensor(c, dtype=torch.float64).reshape(-1, 1)
        return A * c**2 - 2 * B * c + C

    def loss(self, c, part: str = "total") -> torch.Tensor:
        """The batch-averaged ``L(c)`` [len(c)]."""
        return self.per_batch(c, part).mean(dim=1)

    def argmin(self, part: str = "total") -> float:
        A, B, _ = self._coef(part).mean(dim=1)
        return float(B / A)

    def argmin_se(self, part: str = "total") -> float:
        A, B, _ = self._coef(part)
        return float((B / A).std() / math.sqrt(A.numel()))

    def difference(self, c1: float, c2: float, part: str = "total") -> tuple[float, float]:
        d = self.per_batch([c1], part)[0] - self.per_batch([c2], part)[0]
        return float(d.mean()), float(d.std() / math.sqrt(d.numel()))


def scaled_ideal_losses(mixture, schedule: Schedule, K: int = 2, lam: float = 1.0, *, n: int = 4096,
                        batches: int = 8, generator: torch.Generator | None = None) -> ScaledIdealLosses:
    """Is eps* the minimiser of ``L_simple + lam L_sa``? The real losses (``losses.sequence_aware_loss``) of
    ``c eps*`` on ``batches`` batches of ``n`` draws ``x0 ~ mixture`` (``t`` and the K noises shared by every c):
    each is quadratic in c, so ``A = (L(1) + L(-1)) / 2 - L(0)``, ``B = (L(-1) - L(1)) / 4``, ``C = L(0)``.
    ``L_simple`` is minimised by c = 1 (eps* = E[eps | x_t]); with independent eps_k, ``L_sa`` is not."""
    check_type("mixture", mixture, GaussianMixture)
    schedule = check_type("schedule", schedule, Schedule)
    K = check_int("K", K, 1, schedule.T)
    lam = check_float("lam", lam, 0.0)
    n, batches = check_int("n", n, 1), check_int("batches", batches, 2)
    ideal = IdealDenoiser(mixture, schedule)
    coef = torch.zeros(2, 3, batches, dtype=torch.float64)  # [simple/sa, A/B/C, batch]
    for b in range(batches):
        x0 = mixture.sample(n, generator=generator, dtype=torch.float64)
        t = schedule.sample_t(n, generator=generator)
        noise = torch.randn((K, *x0.shape), generator=generator, dtype=torch.float64)
        L = {}
        for c in (0.0, 1.0, -1.0):
            out = sequence_aware_loss(lambda x, s, c=c: c * ideal(x, s), x0, schedule, K, lam, t=t, noise=noise)
            L[c] = torch.stack([out.simple, out.sa]).double()
        coef[:, 0, b] = (L[1.0] + L[-1.0]) / 2 - L[0.0]
        coef[:, 1, b] = (L[-1.0] - L[1.0]) / 4
        coef[:, 2, b] = L[0.0]
    return ScaledIdealLosses(simple=coef[0], sa=coef[1], K=K, lam=lam)
