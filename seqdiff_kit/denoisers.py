"""Denoisers: everything is called as ``model(x, t) -> eps`` with ``x`` [B, ...] and ``t`` a LongTensor [B].

- ``IdealDenoiser``: the exact ``eps*(x, t) = E[eps | x_t = x]`` of a Gaussian mixture (no network can beat it).
- ``MLPDenoiser``: a small MLP for points in any dimension.
- ``TinyUNet``: a small U-Net for 1x8x8 images.
Each network records its constructor arguments in ``config`` so a checkpoint can rebuild it from JSON.
The networks check the type, dtype, device and shape of ``x`` and ``t``, not the values of ``x``: a check per
forward pass would synchronise a GPU at every training step, and the sampler and the losses check theirs once.
"""
from __future__ import annotations

import math
import threading

import torch
from einops import rearrange
from torch import nn

from . import _limits
from ._validate import check_float, check_int, check_tensor, check_timesteps, check_type, dtype_name
from .data import GaussianMixture
from .schedule import MAX_T, Schedule

# Upper bounds of the networks' integer arguments, the same for a constructor as for a checkpoint that asks for
# one (checkpoint.MODEL_ARG_LIMITS): depth bounds the time a build takes, and the parameter count the bounds
# allow is then checked against the memory available (``_limits.check_memory``) before anything is allocated.
ARG_LIMITS = {"dim": 65536, "width": 16384, "depth": 256, "time_dim": 16384, "channels": 4096, "T": MAX_T}


def _arg(name: str, value, low: int) -> int:
    return check_int(name, value, low, ARG_LIMITS[name])


def _check_params(cls: str, config: dict, n_params: int) -> None:
    """Refuse a network whose float32 weights cannot fit in the memory available, naming its arguments."""
    _limits.check_memory(f"{cls} size", "(" + ", ".join(f"{k}={v}" for k, v in config.items()) + ")",
                         4 * n_params, f"{n_params} float32 parameters")


def _check_call(x: torch.Tensor, t, T: int, model: nn.Module | None = None) -> torch.Tensor:
    """Check a denoiser's ``(x, t)`` (``x`` in the dtype and on the device of ``model``'s parameters when given);
    return ``t`` as a LongTensor [B]."""
    if model is None:
        check_tensor("x", x, min_ndim=1, dtypes="floating")
    else:
        p = next(model.parameters())
        hint = (f" (this model's parameters are {dtype_name(p.dtype)} on {p.device}: convert x, or the model "
                f"with model.to(dtype=..., device=...))")
        check_tensor("x", x, min_ndim=1, dtypes=(p.dtype,), device=p.device, hint=hint)
    return check_timesteps("t", t, T, batch=x.shape[0])


class IdealDenoiser(nn.Module):
    """The exact noise predictor of a Gaussian mixture under a schedule:
    ``eps*(x, t) = -sqrt(1 - alpha_bar_t) grad_x log p_t(x)`` (computed in float64, returned in x's dtype)."""

    def __init__(self, mixture: GaussianMixture, schedule: Schedule):
        super().__init__()
        self.mixture = check_type("mixture", mixture, GaussianMixture)
        self.schedule = check_type("schedule", schedule, Schedule)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = _check_call(x, t, self.schedule.T)
        return _in_dtype_of("eps*(x, t)", self.mixture.ideal_eps(x, self.schedule.alpha_bars[t.cpu()]), x)

    def x0(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The ideal ``E[x0 | x_t = x]``."""
        t = _check_call(x, t, self.schedule.T)
        return _in_dtype_of("E[x0 | x_t = x]", self.mixture.posterior_mean(x, self.schedule.alpha_bars[t.cpu()]), x)


def _in_dtype_of(what: str, value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A float64 result cast to ``x``'s dtype, or a ValueError when it does not fit there."""
    out = value.to(x.dtype)
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"{what} does not fit in x's dtype {dtype_name(x.dtype)}: its largest magnitude is "
                         f"{float(value.abs().max()):.3g} (max |x| = {float(x.abs().max()):.3g})")
    return out


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of timesteps ``t`` [B] (real numbers): ``[cos(t w_k), sin(t w_k)]`` with
    ``w_k = max_period^(-k / (dim/2))``."""
    check_tensor("t", t, ndim=1, dtypes="real")
    big = torch.finfo(torch.float32).max  # the embedding computes in float32
    if not bool((t.double().abs() <= big).all()):
        raise ValueError(f"t must be finite and inside float32's range (|t| <= {big:.3g}), got values from "
                         f"{float(t.min()):.3g} to {float(t.max()):.3g}")
    # max_period >= 1 keeps every frequency max_period^(-k / (dim/2)) at most 1 (no overflow to inf)
    return _embedding(t, check_int("dim", dim, 1), check_float("max_period", max_period, 1.0))


def _embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([args.cos(), args.sin()], dim=-1)
    if dim % 2:  # a zero column (not zeros_like(emb[:, :1]), which is empty when dim = 1)
        emb = torch.cat([emb, emb.new_zeros(emb.shape[0], 1)], dim=-1)
    return emb


# Rows embedded for a batch whose timesteps are all equal: a one-row matrix product takes another BLAS kernel,
# whose rounding differs from the batched product's; with a few equal rows each row comes out as in the batch
# (on the BLAS builds we measured), so a sampler step keeps the bits of embedding every point.
EQUAL_T_ROWS = 8


def distinct_timesteps(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | slice | None]:
    """``(t_u, index)`` with ``t == gather_rows(t_u, index)``, so that the time embedding is computed once per
    row of ``t_u``: every t equal (a sampler step): ``EQUAL_T_ROWS`` copies and the slice of the first row; every
    t distinct, or at most ``EQUAL_T_ROWS`` of them: ``t`` and None; otherwise each distinct t once and an
    index [B] into them."""
    if t.numel() <= EQUAL_T_ROWS:
        return t, None
    if bool((t == t[0]).all()):
        return t[:EQUAL_T_ROWS], slice(0, 1)
    t_u, index = torch.unique(t, return_inverse=True)
    if t_u.numel() == t.numel():
        return t, None
    return t_u, index


def gather_rows(v: torch.Tensor, index: torch.Tensor | slice | None) -> torch.Tensor:
    """``v[index]``, or ``v`` itself when ``index`` is None (``distinct_timesteps``)."""
    return v if index is None else v[index]


class MLPDenoiser(nn.Module):
    """``eps_theta(x, t)``: an MLP on ``[x, time_mlp(embedding(t))]`` with SiLU activations.

    ``depth`` hidden layers of ``width`` units; the time embedding is added to every hidden layer."""

    def __init__(self, dim: int = 2, width: int = 128, depth: int = 3, time_dim: int = 64, T: int = 1000):
        super().__init__()
        self.config = {"dim": _arg("dim", dim, 1), "width": _arg("width", width, 1), "depth": _arg("depth", depth, 1),
                       "time_dim": _arg("time_dim", time_dim, 2), "T": _arg("T", T, 1)}
        _check_params("MLPDenoiser", self.config,  # time MLP, input, hidden and output layers
                      time_dim * width + width * width + 2 * width + (dim + 1) * width + depth * (width + 1) * width
                      + (width + 1) * dim)
        self.dim, self.T, self.time_dim = dim, T, time_dim
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.inp = nn.Linear(dim, width)
        self.hidden = nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])
        self.out = nn.Linear(width, dim)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = _check_call(x, t, self.T, self)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape [B, {self.dim}], got {tuple(x.shape)}")
        # once per distinct t: a sampler step has a single t, a training batch often repeats some
        t_u, index = distinct_timesteps(t)
        temb = gather_rows(self.time_mlp(_embedding(t_u, self.time_dim).to(x.dtype)), index)
        h = self.inp(x)
        for layer in self.hidden:
            h = layer(self.act(h + temb))
        return self.out(self.act(h))


def _groups(channels: int) -> int:
    """GroupNorm group count: up to 8 groups that divide ``channels``."""
    return math.gcd(8, channels)


class _ResBlock(nn.Module):
    """``h = conv(SiLU(GN(x))) + proj(temb)``; ``out = conv(SiLU(GN(h))) + skip(x)``.

    The time embedding enters as a per-channel bias between the two convolutions (DDPM-style)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        # a 1x1 projection only where the channel count changes, identity otherwise
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, emb: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """``emb`` [U, emb_dim]: a row per distinct timestep, gathered to the batch by ``index``."""
        h = self.conv1(self.act(self.norm1(x)))
        h = h + rearrange(gather_rows(self.temb(emb), index), "b c -> b c 1 1")
        h = self.conv2(self.act(self.norm2(h)))
        return h + self.skip(x)


class TinyUNet(nn.Module):
    """``eps_theta(x, t)`` for 1-channel images (the 8x8 digits, in [-1, 1]), a two-level U-Net.

    ``emb = MLP(timestep_embedding(t, time_dim))``;
    ``h8 = Res(conv_in(x), emb)`` at 8x8 (C channels); ``h4 = Res(down(h8), emb)`` at 4x4 (2C channels);
    ``u = Res(concat[up(h4), h8], emb)`` at 8x8 (C); ``eps = conv_out(SiLU(GN(u)))``.
    GroupNorm works per sample, so each output depends only on its own input (no batch coupling).
    Any even height and width work; ``channels`` (default 32) must be even. About 202k parameters at C = 32.
    """

    def __init__(self, channels: int = 32, time_dim: int = 64, T: int = 1000):
        super().__init__()
        channels = _arg("channels", channels, 2)
        if channels % 2:
            raise ValueError(f"channels must be an even integer >= 2, got {channels}")
        self.config = {"channels": channels, "time_dim": _arg("time_dim", time_dim, 2), "T": _arg("T", T, 1)}
        # an upper bound of the parameter count (within 10% of it)
        _check_params("TinyUNet", self.config, 200 * channels**2 + 4 * channels * time_dim + 100 * channels)
        C, emb_dim = channels, 4 * channels
        self.T, self.time_dim = T, time_dim
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(1, C, 3, padding=1)
        self.enc = _ResBlock(C, C, emb_dim)
        self.down = nn.Conv2d(C, 2 * C, 3, stride=2, padding=1)          # 8x8 -> 4x4
        self.mid = _ResBlock(2 * C, 2 * C, emb_dim)
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                nn.Conv2d(2 * C, C, 3, padding=1))       # 4x4 -> 8x8
        self.dec = _ResBlock(2 * C, C, emb_dim)                            # input: [up, skip] concatenated
        self.norm_out = nn.GroupNorm(_groups(C), C)
        self.conv_out = nn.Conv2d(C, 1, 3, padding=1)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = _check_call(x, t, self.T, self)
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(f"x must have shape [B, 1, H, W] with even H and W (e.g. [B, 1, 8, 8]), "
                             f"got {tuple(x.shape)}")
        # once per distinct t (one row per distinct timestep; each block gathers its projection to the batch)
        t_u, index = distinct_timesteps(t.to(x.device))
        emb = self.time_mlp(_embedding(t_u, self.time_dim).to(x.dtype))
        h8 = self.enc(self.conv_in(x), emb, index)
        h4 = self.mid(self.down(h8), emb, index)
        u = self.dec(torch.cat([self.up(h4), h8], dim=1), emb, index)
        return self.conv_out(self.act(self.norm_out(u)))


# the global generator is process-wide: two threads seeding it at once (a Dask worker with several threads
# running experiment jobs) would draw each other's weights
_SEED_LOCK = threading.Lock()


def seeded_model(build, seed: int, **kwargs) -> nn.Module:
    """``build(**kwargs)`` with its initial weights drawn from ``torch.manual_seed(seed)``, leaving the global
    random state as it was. Thread-safe: builds in other threads wait, so each draws from its own seed."""
    seed = check_int("seed", seed)
    if not callable(build):
        raise TypeError(f"build must be callable (a model class or factory), got {type(build).__name__}")
    with _SEED_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(**kwargs)
