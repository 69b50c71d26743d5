"""Training losses: the simple (per-timestep) loss and the sequence-aware (SA) loss of Nguyen et al. (AAAI 2024).

With ``x_s = sqrt(alpha_bar_s) x0 + sqrt(1 - alpha_bar_s) eps`` and ``t`` uniform on {0, ..., T-1}:

    L_simple = E || eps_0 - eps_theta(x_t, t) ||^2
    L_sa     = E (1/K^2) || sum_{k=0}^{K-1} m_k (eps_k - eps_theta(x_{t-k}, t-k)) ||^2,   m_k = 1[t >= k]
    L        = L_simple + lam * L_sa

Input Perturbation (Ning et al., "Input Perturbation Reduces Exposure Bias in Diffusion Models", ICML 2023)
trains on a perturbed input with the target unchanged:

    L_ip = E || eps - eps_theta(sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) (eps + gamma xi), t) ||^2,

``xi`` a second independent standard normal draw; ``gamma = 0`` is ``L_simple``.

The ``eps_k`` are *independent* noise draws for the *same* ``x0``; ``eps_0`` and ``x_t`` are shared with the
simple term. Norms sum over the features of one sample; expectations are means over the batch.
The K model evaluations run as one batched call of K*B. A loss that overflows its dtype (a diverging model)
comes back as inf or NaN: the training loop reports it (``train.NonFiniteLossError``, naming the step).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from einops import rearrange, reduce, repeat

from ._validate import check_choice, check_float, check_int, check_tensor, check_timesteps, check_type
from .schedule import Schedule, forward_noise

LOSS_NAMES = ("simple", "sa", "ip")


@dataclass
class LossOutput:
    """``total = simple + lam * sa`` (all scalars; ``total`` is the one to back-propagate)."""

    total: torch.Tensor
    simple: torch.Tensor
    sa: torch.Tensor

    def item(self) -> dict:
        """The three values as plain floats (for logs and JSON)."""
        return {k: float(getattr(self, k).detach()) for k in ("total", "simple", "sa")}


# ---------------------------------------------------------------------- argument handling
def _check_common(model, x0, schedule) -> None:
    if not callable(model):
        raise TypeError(f"model must be callable as model(x, t) -> eps, got {type(model).__name__}")
    check_type("schedule", schedule, Schedule)
    check_tensor("x0", x0, min_ndim=1, nonempty=True, finite=True, dtypes="floating")


def _resolve_t(t, x0: torch.Tensor, schedule: Schedule, generator, antithetic: bool) -> torch.Tensor:
    """The training timesteps [B]: given, or drawn uniformly from ``generator`` (antithetic pairs if asked)."""
    B = x0.shape[0]
    if t is None:
        return schedule.sample_t(B, generator=generator, antithetic=bool(antithetic)).to(x0.device)
    return check_timesteps("t", t, schedule.T, batch=B).to(x0.device)


def _resolve_noise(noise, x0: torch.Tensor, K: int, generator, name: str = "noise") -> torch.Tensor:
    """The K independent noise draws [K, B, ...]. Drawn in the order eps_0, then eps_1..eps_{K-1}, so that
    the SA loss's simple term sees exactly the draws ``simple_loss`` would see with the same generator."""
    if noise is None:
        eps0 = torch.randn((1, *x0.shape), generator=generator, dtype=x0.dtype).to(x0.device)
        if K == 1:
            return eps0
        return torch.cat([eps0, torch.randn((K - 1, *x0.shape), generator=generator, dtype=x0.dtype).to(x0.device)])
    check_tensor(name, noise, finite=True, dtypes="floating")
    if K == 1 and noise.shape == x0.shape:  # the simple loss also takes a plain [B, ...] noise
        noise = rearrange(noise, "... -> 1 ...")
    if noise.shape != (K, *x0.shape):
        raise ValueError(f"{name} must have shape [K, *x0.shape] = {(K, *x0.shape)}, got {tuple(noise.shape)}")
    return noise.to(device=x0.device, dtype=x0.dtype)


def _sq_norm(v: torch.Tensor) -> torch.Tensor:
    """``||v_b||^2`` per sample: the sum of squares over every feature dimension; [B, *features] -> [B]."""
    if v.ndim == 1:  # x0 [B] has no feature dimensions
        return v**2
    return reduce(v**2, "b ... -> b", "sum")


# ---------------------------------------------------------------------- the losses
def _residuals(model, x0, schedule, K, t, noise, inputs=None):
    """``r_k = eps_k - eps_theta(x_{t-k}, max(t-k, 0))`` [K, B, ...] from ONE model call on K*B inputs, and the
    mask ``m_k = 1[t >= k]`` [K, B]. Terms with t < k are fed the valid timestep 0 and masked out later.
    ``inputs`` [K, B, ...]: the noise that builds ``x_{t-k}`` when it differs from the target ``eps_k``."""
    K_idx = torch.arange(K, device=t.device)
    t_k = rearrange(t, "b -> 1 b") - rearrange(K_idx, "k -> k 1")          # [K, B]: t - k
    mask = t_k >= 0
    t_k = t_k.clamp(min=0)
    x0_rep = repeat(x0, "b ... -> (k b) ...", k=K)
    eps_flat = rearrange(noise, "k b ... -> (k b) ...")
    t_flat = rearrange(t_k, "k b -> (k b)")
    built = eps_flat if inputs is None else rearrange(inputs, "k b ... -> (k b) ...")
    x_flat = forward_noise(x0_rep, schedule.alpha_bars[t_flat.cpu()], built)  # x_{t-k} from eps_k, same x0
    eps_pred = model(x_flat, t_flat)
    if not isinstance(eps_pred, torch.Tensor) or eps_pred.shape != x_flat.shape:
        got = tuple(eps_pred.shape) if isinstance(eps_pred, torch.Tensor) else type(eps_pred).__name__
        raise ValueError(f"model output must have the shape of its input {tuple(x_flat.shape)}, got {got}")
    r = rearrange(eps_flat - eps_pred, "(k b) ... -> k b ...", k=K)
    return r, mask


def simple_loss(model: Callable, x0: torch.Tensor, schedule: Schedule, *, t=None, noise=None,
                generator: torch.Generator | None = None, antithetic: bool = False) -> LossOutput:
    """``L_simple = (1/B) sum_b || eps_b - eps_theta(sqrt(abar_{t_b}) x0_b + sqrt(1 - abar_{t_b}) eps_b, t_b) ||^2``.

    ``t`` [B] and ``noise`` ([B, ...] or [1, B, ...]) are drawn from ``generator`` when not given (t first).
    Returns ``LossOutput(total=simple, simple, sa=0)``: ``input_perturbation_loss`` with ``gamma = 0``."""
    return input_perturbation_loss(model, x0, schedule, 0.0, t=t, noise=noise, generator=generator,
                                   antithetic=antithetic)


def sequence_aware_loss(model: Callable, x0: torch.Tensor, schedule: Schedule, K: int = 2, lam: float = 1.0, *,
                        t=None, noise=None, generator: torch.Generator | None = None,
                        antithetic: bool = False) -> LossOutput:
    """``L = L_simple + lam L_sa`` with
    ``L_sa = (1/B) sum_b (1/K^2) || sum_{k<K} 1[t_b >= k] (eps_{k,b} - eps_theta(x_{t_b-k,b}, t_b - k)) ||^2``,
    ``x_{s,b} = sqrt(abar_s) x0_b + sqrt(1 - abar_s) eps_{k,b}`` (independent ``eps_k``, the same ``x0_b``).

    ``noise`` [K, B, ...] (``noise[0]`` and ``t`` are the simple term's) and ``t`` [B] are drawn from
    ``generator`` when not given: t, then eps_0, then eps_1..eps_{K-1}. K = 1 gives ``(1 + lam) L_simple``."""
    _check_common(model, x0, schedule)
    K = check_int("K", K, 1, schedule.T)
    lam = check_float("lam", lam, 0.0)
    t = _resolve_t(t, x0, schedule, generator, antithetic)
    noise = _resolve_noise(noise, x0, K, generator)
    r, mask = _residuals(model, x0, schedule, K, t, noise)
    simple = _sq_norm(r[0]).mean()
    # torch.where (not a product) so that a masked-out term can never leak a NaN into the sum
    m = mask.reshape(*mask.shape, *([1] * (r.ndim - 2)))
    r_sum = torch.where(m, r, torch.zeros_like(r)).sum(dim=0)               # sum_k m_k r_k   [B, ...]
    sa = _sq_norm(r_sum).mean() / K**2
    return LossOutput(total=simple + lam * sa, simple=simple, sa=sa)


def input_perturbation_loss(model: Callable, x0: torch.Tensor, schedule: Schedule, gamma: float = 0.1, *, t=None,
                            noise=None, perturbation=None, generator: torch.Generator | None = None,
                            antithetic: bool = False) -> LossOutput:
    """Input Perturbation (Ning et al., ICML 2023): ``L_ip = (1/B) sum_b || eps_b - eps_theta(sqrt(abar_{t_b}) x0_b
    + sqrt(1 - abar_{t_b}) (eps_b + gamma xi_b), t_b) ||^2``, the network's input built with the perturbed noise
    and its target the unperturbed one.

    ``t`` [B], ``noise`` and ``perturbation`` (``xi``, each [B, ...]) are drawn from ``generator`` when not given:
    t, eps, then xi, which is not drawn at all when ``gamma = 0``, so that this is then ``simple_loss`` bit for
    bit with the same generator. Returns ``LossOutput(total=L_ip, simple=L_ip, sa=0)``."""
    _check_common(model, x0, schedule)
    gamma = check_float("gamma", gamma, 0.0)
    t = _resolve_t(t, x0, schedule, generator, antithetic)
    noise = _resolve_noise(noise, x0, 1, generator)
    inputs = None
    if gamma != 0.0:
        xi = _resolve_noise(perturbation, x0, 1, generator, "perturbation")
        inputs = noise + gamma * xi
    r, _ = _residuals(model, x0, schedule, 1, t, noise, inputs)
    loss = _sq_norm(r[0]).mean()
    return LossOutput(total=loss, simple=loss, sa=torch.zeros((), dtype=loss.dtype, device=loss.device))


class Loss:
    """A JSON-able loss configuration, called as ``loss(model, x0, schedule, generator) -> LossOutput``.

    ``name="simple"`` is ``L_simple`` (K = 1, lam = 0); ``name="sa"`` is ``L_simple + lam L_sa`` over K steps;
    ``name="ip"`` is Input Perturbation with ``gamma`` (K = 1, lam = 0; ``input_perturbation_loss``).
    ``antithetic=True`` pairs training timesteps t and T-1-t (recorded in ``config`` only when set)."""

    def __init__(self, name: str = "simple", K: int = 1, lam: float = 0.0, antithetic: bool = False,
                 gamma: float | None = None):
        check_choice("name", name, LOSS_NAMES)
        K = check_int("K", K, 1)
        lam = check_float("lam", lam, 0.0)
        if name != "sa" and (K != 1 or lam != 0.0):
            raise ValueError(f"the {name} loss takes K=1 and lam=0.0, got K={K} and lam={lam}; use name='sa'")
        if name == "ip":
            gamma = check_float("gamma", 0.1 if gamma is None else gamma, 0.0)
        elif gamma is not None:
            raise ValueError(f"gamma belongs to name='ip' (Input Perturbation), got gamma={gamma!r} with "
                             f"name={name!r}")
        check_type("antithetic", antithetic, bool)
        self.name, self.K, self.lam, self.antithetic, self.gamma = name, K, lam, antithetic, gamma

    @property
    def config(self) -> dict:
        cfg = {"name": self.name, "K": self.K, "lam": self.lam}
        if self.name == "ip":
            cfg["gamma"] = self.gamma
        if self.antithetic:
            cfg["antithetic"] = True
        return cfg

    @classmethod
    def from_config(cls, d: dict) -> "Loss":
        if not isinstance(d, dict):
            raise TypeError(f"config must be a dict, got {type(d).__name__}")
        unknown = set(d) - {"name", "K", "lam", "antithetic", "gamma"}
        if unknown:
            raise ValueError(f"config has unknown keys {sorted(unknown)}; allowed: name, K, lam, antithetic, gamma")
        return cls(**d)

    def __call__(self, model: Callable, x0: torch.Tensor, schedule: Schedule,
                 generator: torch.Generator | None = None) -> LossOutput:
        if self.name == "sa":
            return sequence_aware_loss(model, x0, schedule, self.K, self.lam, generator=generator,
                                       antithetic=self.antithetic)
        # the simple loss is Input Perturbation with gamma = 0, bit for bit
        return input_perturbation_loss(model, x0, schedule, self.gamma or 0.0, generator=generator,
                                       antithetic=self.antithetic)

    def __eq__(self, other) -> bool:
        return isinstance(other, Loss) and self.config == other.config

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.config.items())))

    def __repr__(self) -> str:
        args = {"simple": "", "ip": f", gamma={self.gamma}", "sa": f", K={self.K}, lam={self.lam}"}[self.name]
        return f"Loss({self.name!r}{args})"
