"""Noise schedules: betas, alpha_bar, the forward process and the sampling timesteps.

Conventions (docs/architecture.md, "Notation"): the time index is ``t`` in {0, ..., T-1}; ``alpha_bar(-1) := 1``
is the clean data. The forward process is ``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps``.
Everything is stored in float64 (the maths is cheap and the ideal denoiser needs the precision);
callers get tensors in the dtype of their data.
"""
from __future__ import annotations

import math

import torch

from ._validate import check_choice, check_float, check_int, check_tensor, check_timesteps, check_values

NAMES = ("linear", "cosine", "quadratic", "sigmoid")
SPACINGS = ("leading", "uniform", "trailing", "linspace", "quad", "karras")
KARRAS_RHO = 7.0
# the smallest beta_0 with 1 - beta_0 < 1 in float64 for sure (every step divides by sqrt(1 - alpha_bar_t))
MIN_BETA = 2.0**-52
# the most timesteps a schedule has (a checkpoint may ask for no more): a thousand times the usual T, and a
# bound, so that a typo like T=10**9 is refused instead of filling the memory
MAX_T = 1_000_000


class Schedule:
    """A discrete variance schedule ``beta_0, ..., beta_{T-1}``; ``alpha_t = 1 - beta_t``, ``alpha_bar_t = prod_{s <=
    t} alpha_s``."""

    def __init__(self, betas, name: str = "custom"):
        betas = check_values("betas", betas).flatten().cpu()
        if not 1 <= betas.numel() <= MAX_T:
            raise ValueError(f"T (the number of betas) must be in [1, {MAX_T}], got {betas.numel()}")
        if not bool(torch.isfinite(betas).all()) or bool((betas <= 0).any()) or bool((betas >= 1).any()):
            raise ValueError(f"betas must all lie in (0, 1), got min {betas.min().item()} and max {betas.max().item()}")
        alpha_bars = torch.cumprod(1.0 - betas, dim=0)
        # every step divides by sqrt(alpha_bar_t) or sqrt(1 - alpha_bar_t): both must be > 0 in float64
        if float(alpha_bars[0]) >= 1.0:
            raise ValueError(f"betas[0] must be large enough that alpha_bar_0 = 1 - beta_0 < 1 in float64 "
                             f"(beta_0 >= {MIN_BETA:.3g} is), got {float(betas[0]):.3g}")
        if float(alpha_bars[-1]) <= 0.0:
            first = int(torch.nonzero(alpha_bars <= 0)[0])
            raise ValueError(f"betas make alpha_bar_t underflow to 0 in float64 from t = {first}: use smaller "
                             f"betas or fewer of them (T = {betas.numel()})")
        self.name = name
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alpha_bars = alpha_bars

    # ------------------------------------------------------------------ constructors
    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "Schedule":
        """DDPM's linear schedule: ``beta_t = beta_start + (beta_end - beta_start) t / (T - 1)``."""
        return cls._from_range("linear", T, beta_start, beta_end)

    @classmethod
    def quadratic(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "Schedule":
        """``beta_t = (sqrt(beta_start) + (sqrt(beta_end) - sqrt(beta_start)) t / (T - 1))^2``."""
        return cls._from_range("quadratic", T, beta_start, beta_end)

    @classmethod
    def sigmoid(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "Schedule":
        """``beta_t = beta_start + (beta_end - beta_start) sigmoid(-6 + 12 t / (T - 1))``."""
        return cls._from_range("sigmoid", T, beta_start, beta_end)

    @classmethod
    def _from_range(cls, name: str, T: int, beta_start: float, beta_end: float) -> "Schedule":
        T = check_int("T", T, 1, MAX_T)
        lo = check_float("beta_start", beta_start, MIN_BETA, 1.0, high_open=True)
        hi = check_float("beta_end", beta_end, 0.0, 1.0, low_open=True, high_open=True)
        if name == "linear":
            betas = torch.linspace(lo, hi, T, dtype=torch.float64)
        elif name == "quadratic":
            betas = torch.linspace(math.sqrt(lo), math.sqrt(hi), T, dtype=torch.float64) ** 2
        else:
            betas = lo + (hi - lo) * torch.sigmoid(torch.linspace(-6.0, 6.0, T, dtype=torch.float64))
        return _built(cls, betas, name, T, hi)

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> "Schedule":
        """Nichol and Dhariwal: ``alpha_bar(t) = f(t)/f(0)``, ``f(t) = cos(((t/T) + s)/(1 + s) pi/2)^2``,
        ``beta_t = min(1 - alpha_bar(t+1)/alpha_bar(t), max_beta)``."""
        T = check_int("T", T, 1, MAX_T)
        s = check_float("s", s, 0.0)
        max_beta = check_float("max_beta", max_beta, 0.0, 1.0, low_open=True, high_open=True)
        u = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(min=1e-12, max=max_beta)
        return _built(cls, betas, "cosine", T, max_beta, "max_beta")

    @classmethod
    def from_name(cls, name: str, T: int = 1000) -> "Schedule":
        """Build one of the named schedules with its default parameters."""
        check_choice("schedule", name, NAMES)
        return getattr(cls, name)(T)

    def config(self) -> dict:
        """A JSON-able description that ``from_config`` turns back into an equal schedule."""
        if self.name in NAMES and torch.equal(
                self.betas, Schedule.from_name(self.name, self.T).betas):
            return {"name": self.name, "T": self.T}
        return {"name": "custom", "betas": self.betas.tolist()}

    @classmethod
    def from_config(cls, config: dict) -> "Schedule":
        if config.get("name") == "custom":
            return cls(config["betas"])
        return cls.from_name(config["name"], config["T"])

    # ------------------------------------------------------------------ basic facts
    @property
    def T(self) -> int:
        return self.betas.numel()

    def __len__(self) -> int:
        return self.T

    def __repr__(self) -> str:
        return f"Schedule({self.name}, T={self.T}, alpha_bar[T-1]={self.alpha_bars[-1].item():.3g})"

    def alpha_bar(self, t) -> torch.Tensor:
        """``alpha_bar_t`` for integer ``t`` in [-1, T-1] (any shape), with ``alpha_bar_{-1} = 1``. float64, CPU."""
        return self._alpha_bar(check_timesteps("t", t, self.T, allow_clean=True))

    def _alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        padded = torch.cat([self.alpha_bars, torch.ones(1, dtype=torch.float64)])
        return padded[t.cpu()]  # index -1 reads the appended 1

    def sigma(self, t) -> torch.Tensor:
        """The equivalent variance-exploding noise level ``sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)``."""
        a = self.alpha_bar(t)
        return torch.sqrt((1 - a) / a)

    def log_snr(self, t) -> torch.Tensor:
        """``lambda_t = log(alpha_bar_t / (1 - alpha_bar_t))`` (``+inf`` at ``t = -1``)."""
        a = self.alpha_bar(t)
        return torch.log(a) - torch.log1p(-a)

    @staticmethod
    def alpha_bar_from_sigma(sigma) -> torch.Tensor:
        """``alpha_bar = 1 / (1 + sigma^2)``."""
        sigma = check_values("sigma", sigma, low=0.0)
        return 1.0 / (1.0 + sigma**2)

    @staticmethod
    def alpha_bar_from_log_snr(log_snr) -> torch.Tensor:
        """``alpha_bar = sigmoid(lambda)``."""
        return torch.sigmoid(check_values("log_snr", log_snr))

    def t_from_log_snr(self, log_snr) -> torch.Tensor:
        """Continuous ``t`` whose log-SNR is ``log_snr``, interpolated linearly in [0, T-1] (round it for the
        nearest timestep)."""
        return self._t_from_log_snr(check_values("log_snr", log_snr))

    def _t_from_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        if self.T == 1:
            return torch.zeros_like(lam)
        inc = self.log_snr(torch.arange(self.T)).flip(0)  # increasing, as searchsorted wants
        lam = lam.clamp(inc[0], inc[-1]).contiguous()
        idx = torch.searchsorted(inc, lam).clamp(1, self.T - 1)
        lo, hi = inc[idx - 1], inc[idx]
        return (self.T - 1) - ((idx - 1).to(torch.float64) + ((lam - lo) / (hi - lo)).clamp(0, 1))

    def t_from_alpha_bar(self, alpha_bar) -> torch.Tensor:
        """Continuous ``t`` with the given ``alpha_bar`` (interpolated in log-SNR)."""
        a = check_values("alpha_bar", alpha_bar, low=0.0, high=1.0)
        return self._t_from_log_snr(torch.log(a) - torch.log1p(-a))

    def t_from_sigma(self, sigma) -> torch.Tensor:
        """Continuous ``t`` with the given ``sigma`` (``lambda = -2 log sigma``)."""
        return self._t_from_log_snr(-2 * torch.log(check_values("sigma", sigma, low=0.0)))

    def karras_sigmas(self, steps: int, rho: float = KARRAS_RHO) -> torch.Tensor:
        """Karras et al.'s (2022) noise levels, descending from ``sigma(T-1)`` to ``sigma(0)`` (float64 [steps]):
        ``sigma_i = (sigma_max^(1/rho) + i/(steps-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``."""
        steps = check_int("steps", steps, 2)
        rho = check_float("rho", rho, 0.0, low_open=True)
        hi, lo = float(self.sigma(self.T - 1)) ** (1 / rho), float(self.sigma(0)) ** (1 / rho)
        return (hi + torch.linspace(0, 1, steps, dtype=torch.float64) * (lo - hi)) ** rho

    # ------------------------------------------------------------------ forward process
    def add_noise(self, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise``; ``t`` is a LongTensor [B] (or a scalar) in
        [-1, T-1]; ``x0`` and ``noise`` finite floating-point tensors of one shape, dtype and device."""
        check_tensor("x0", x0, min_ndim=1, finite=True, dtypes="floating")
        check_tensor("noise", noise, finite=True, dtypes=(x0.dtype,), device=x0.device, hint=" (the dtype of x0)")
        if noise.shape != x0.shape:
            raise ValueError(f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}")
        t = check_timesteps("t", t, self.T, batch=x0.shape[0], allow_clean=True)
        return forward_noise(x0, self._alpha_bar(t), noise)

    def sample_t(self, batch: int, generator: torch.Generator | None = None, device="cpu",
                 antithetic: bool = False) -> torch.Tensor:
        """Uniform training timesteps in {0, ..., T-1}; ``antithetic`` pairs each t with T-1-t."""
        batch = check_int("batch", batch, 1)
        if not antithetic:
            return torch.randint(0, self.T, (batch,), generator=generator).to(device)
        half = torch.randint(0, self.T, ((batch + 1) // 2,), generator=generator)
        return torch.cat([half, self.T - 1 - half])[:batch].to(device)

    # ------------------------------------------------------------------ sampling timesteps
    def timesteps(self, steps: int, spacing: str = "trailing") -> torch.Tensor:
        """Exactly ``steps`` distinct timesteps in [0, T-1], strictly decreasing.

        - ``leading`` (alias ``uniform``): ``t_i = i * (T // steps)`` (DDIM's choice; never reaches T-1)
        - ``trailing``: ``t_i = round(T - i T / steps) - 1`` (starts at T-1, ends at ``~T/steps - 1``)
        - ``linspace``: ``round(linspace(T-1, 0, steps))`` (both ends)
        - ``quad``: ``round((T-1) u^2)`` for ``u`` uniform in [0, 1], then nudged apart so that the small,
          crowded timesteps stay distinct (``range(0, T, T // N)`` and naive rounding get the count wrong).
        - ``karras``: Karras et al.'s (2022) placement (``karras_sigmas`` with ``rho = 7``), each sigma mapped to
          the nearest timestep in log-SNR (``t_from_sigma``, rounded), then nudged apart like ``quad``.
        """
        steps = check_int("steps", steps, 1, self.T)
        check_choice("spacing", spacing, SPACINGS)
        T, i = self.T, torch.arange(steps, dtype=torch.float64)
        if spacing in ("leading", "uniform"):
            t = (i * (T // steps)).long()
        elif spacing == "trailing":
            t = torch.round(T - i * T / steps).long() - 1
        elif steps == 1:  # linspace, quad and karras start at T - 1
            t = torch.tensor([T - 1])
        elif spacing == "linspace":
            t = torch.round(torch.linspace(0, T - 1, steps, dtype=torch.float64)).long()
        elif spacing == "quad":
            t = _make_distinct(torch.round((T - 1) * (i / (steps - 1)) ** 2).long(), T)
        else:  # karras
            t = _make_distinct(torch.sort(torch.round(self.t_from_sigma(self.karras_sigmas(steps))).long()).values, T)
        return torch.sort(t).values.flip(0).contiguous()


def forward_noise(x0: torch.Tensor, alpha_bar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) noise`` for float64 ``alpha_bar`` [B] and ``x0``, ``noise``
    [B, ...] (``Schedule.add_noise`` is the checked entry). The square roots are taken in float64 and cast to
    ``x0``'s dtype: in float16, ``1 - alpha_bar`` near the data rounds to 0."""
    a = alpha_bar.reshape(-1, *([1] * (x0.ndim - 1)))
    return (a.sqrt().to(device=x0.device, dtype=x0.dtype) * x0
            + (1 - a).sqrt().to(device=x0.device, dtype=x0.dtype) * noise.to(x0.dtype))


def _make_distinct(t: torch.Tensor, T: int) -> torch.Tensor:
    """Push an ascending integer sequence apart so it is strictly increasing inside [0, T-1]."""
    v = t.tolist()  # plain ints: this runs for every step count in the tests
    n = len(v)
    for k in range(1, n):
        v[k] = max(v[k], v[k - 1] + 1)
    for k in range(n - 1, -1, -1):  # then pull the top back under T-1
        v[k] = min(v[k], T - 1 - (n - 1 - k))
    return torch.tensor(v, dtype=torch.long)


def _built(cls, betas: torch.Tensor, name: str, T: int, beta_max: float, beta_max_name: str = "beta_end"):
    """``cls(betas, name)``; a schedule that cannot be used (alpha_bar underflowing to 0) is reported in terms
    of the constructor's arguments."""
    try:
        return cls(betas, name=name)
    except ValueError as err:
        raise ValueError(f"T = {T} and {beta_max_name} = {beta_max:.6g} give an unusable {name} schedule: "
                         f"{err}") from None
