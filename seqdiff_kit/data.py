"""Data with a known ground truth: Gaussian mixtures (exact density, noised marginal, posterior mean, eps*),
their 2-D presets, the 1-D Gaussian, the shipped 8x8 digits, and ``DATASETS``: every dataset by name.

For ``p(x0) = sum_i pi_i N(mu_i, S_i)`` and ``x_t = sqrt(a) x0 + sqrt(1 - a) eps`` (``a = alpha_bar_t``),
the noised marginal is ``p_t = sum_i pi_i N(sqrt(a) mu_i, a S_i + (1 - a) I)``. With ``S_i = U_i diag(l_i) U_i^T``
the noised covariance is ``U_i diag(a l_i + 1 - a) U_i^T``, so one eigendecomposition per component serves every t.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from einops import einsum, rearrange

from ._validate import check_choice, check_dtype_arg, check_float, check_int, check_tensor, check_values

# Bound on |means| and |covariances| entries: the mixture squares them (E[x x^T], Mahalanobis distances), and
# the squares must stay inside float64's range (about 1.8e308).
MAX_PARAMETER = 1e100

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
CHECKPOINT_DIR = DATA_DIR / "checkpoints"  # the shipped networks (recipes.SHIPPED names them)


def _feature_sum(v: torch.Tensor) -> torch.Tensor:
    """``v.sum(-1)``. A reduction over a last dimension of one or two entries costs far more than the one addition
    it makes, so those are added directly: the reduction's values exactly (``0 + a = a``, then ``a + b``), laid out
    contiguously as a reduction's result is (a later reduction over it then adds in the same order)."""
    if v.shape[-1] == 1:
        return v[..., 0].contiguous()
    if v.shape[-1] == 2:
        return (v[..., 0] + v[..., 1]).contiguous()
    return v.sum(-1)


class GaussianMixture:
    """``sum_i weights[i] N(means[i], covariances[i])`` in any dimension D.

    ``covariances`` is [M, D, D] (full) or [M, D] (diagonal). Computations run in float64.
    """

    def __init__(self, weights, means, covariances, name: str = "mixture"):
        w = check_values("weights", weights).cpu()
        mu = check_values("means", means, low=-MAX_PARAMETER, high=MAX_PARAMETER).cpu()
        cov = check_values("covariances", covariances, low=-MAX_PARAMETER, high=MAX_PARAMETER).cpu()
        if w.ndim != 1 or w.numel() < 1:
            raise ValueError(f"weights must be a 1-D list of M >= 1 numbers, got shape {tuple(w.shape)}")
        M = w.numel()
        if bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
            raise ValueError(f"weights must be finite and non-negative, got {w.tolist()}")
        if abs(float(w.sum()) - 1.0) > 1e-6:
            raise ValueError(f"weights must sum to 1 (within 1e-6), got a sum of {float(w.sum()):.8g}")
        if mu.ndim != 2 or mu.shape[0] != M:
            raise ValueError(f"means must have shape [M, D] with M = {M}, got {tuple(mu.shape)}")
        D = mu.shape[1]
        if cov.shape == (M, D):
            cov = torch.diag_embed(cov)
        if cov.shape != (M, D, D):
            raise ValueError(f"covariances must have shape [M, D, D] = [{M}, {D}, {D}] or [M, D], "
                             f"got {tuple(cov.shape)}")
        if not torch.allclose(cov, cov.transpose(-1, -2), atol=1e-10):
            raise ValueError("covariances must be symmetric")
        evals, evecs = torch.linalg.eigh(cov)
        if bool((evals <= 0).any()):
            bad = int(torch.nonzero((evals <= 0).any(-1))[0])
            raise ValueError(f"covariances must be positive definite; component {bad} has eigenvalues "
                             f"{evals[bad].tolist()} (all must be > 0)")
        self.name = name
        self.weights, self.means, self.covariances = w, mu, cov
        self._evals, self._evecs = evals, evecs  # S_i = U_i diag(l_i) U_i^T

    # ------------------------------------------------------------------ facts
    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.weights.numel()

    def __repr__(self) -> str:
        return f"GaussianMixture({self.name}, M={self.n_components}, D={self.dim})"

    def mean(self) -> torch.Tensor:
        """``E[x] = sum_i pi_i mu_i``."""
        return self.weights @ self.means

    def covariance(self) -> torch.Tensor:
        """``Cov[x] = sum_i pi_i (S_i + mu_i mu_i^T) - E[x] E[x]^T``."""
        m = self.mean()
        second = einsum(self.weights, self.covariances + einsum(self.means, self.means, "m i, m j -> m i j"),
                        "m, m i j -> i j")
        return second - torch.outer(m, m)

    def noised(self, alpha_bar: float) -> "GaussianMixture":
        """The exact marginal of ``x_t``: ``sum_i pi_i N(sqrt(a) mu_i, a S_i + (1 - a) I)``."""
        a = check_float("alpha_bar", alpha_bar, 0.0, 1.0)
        eye = torch.eye(self.dim, dtype=torch.float64)
        return GaussianMixture(self.weights, math.sqrt(a) * self.means, a * self.covariances + (1 - a) * eye,
                               name=f"{self.name}@alpha_bar={a:.4g}")

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, generator: torch.Generator | None = None, return_labels: bool = False,
               dtype=torch.float32):
        """``n`` draws: pick component i with probability pi_i, then ``mu_i + U_i diag(sqrt(l_i)) z``."""
        n = check_int("n", n, 1)
        check_dtype_arg("dtype", dtype, "floating")
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = self.means[labels] + einsum(self._evecs[labels], self._evals[labels].sqrt() * z, "n i j, n j -> n i")
        x = x.to(dtype)
        return (x, labels) if return_labels else x

    # ------------------------------------------------------------------ exact quantities at alpha_bar
    def _components(self, x: torch.Tensor, alpha_bar):
        """Per-component pieces at noise level a (a scalar or [B]), for x [B, D] (all float64):
        z = U^T (x - sqrt(a) mu)  [B, M, D], var = a l + 1 - a  [B, M, D], log N_i(x)  [B, M]."""
        check_tensor("x", x, ndim=2, dtypes="real")
        if x.shape[1] != self.dim:
            raise ValueError(f"x must have shape [B, {self.dim}] for this {self.dim}-D mixture, got {tuple(x.shape)}")
        x = x.to(torch.float64)
        a = check_values("alpha_bar", alpha_bar, low=0.0, high=1.0).to(x.device)
        a = a.expand(x.shape[0]) if a.ndim == 0 else a
        if a.shape != (x.shape[0],):
            raise ValueError(f"alpha_bar must be a scalar or have shape [B] = [{x.shape[0]}], got {tuple(a.shape)}")
        sa = a.sqrt()[:, None, None]
        diff = x[:, None, :] - sa * self.means[None]                               # [B, M, D]
        z = einsum(self._evecs, diff, "m d k, b m d -> b m k")                     # U^T diff
        var = a[:, None, None] * self._evals[None] + (1 - a)[:, None, None]       # [B, M, D]
        log_n = -0.5 * (_feature_sum(z**2 / var) + _feature_sum(var.log()) + self.dim * math.log(2 * math.pi))
        # checked on the result (the callers, e.g. a sampler, checked their inputs): a row without one finite
        # component density has no responsibilities
        lost = ~torch.isfinite(log_n).any(dim=1)
        if bool(lost.any()):
            b = int(torch.nonzero(lost)[0])
            raise ValueError(f"x must be finite and near enough to the mixture for float64: x[{b}] = {x[b].tolist()} "
                             f"has no finite density under any component")
        return x, a, z, var, log_n

    def log_prob(self, x: torch.Tensor, alpha_bar=1.0) -> torch.Tensor:
        """``log p_t(x) = logsumexp_i (log pi_i + log N(x; sqrt(a) mu_i, a S_i + (1 - a) I))``; [B], float64.

        ``alpha_bar = 1`` (the default) is the clean data density."""
        _, _, _, _, log_n = self._components(x, alpha_bar)
        return torch.logsumexp(self._log_weights() + log_n, dim=1)

    def _log_weights(self) -> torch.Tensor:
        return torch.where(self.weights > 0, self.weights.log(), torch.full_like(self.weights, -math.inf))

    def _posterior(self, x: torch.Tensor, alpha_bar):
        """``(a, z, var, r)``: the pieces of ``_components`` and the responsibilities ``r`` [B, M]."""
        _, a, z, var, log_n = self._components(x, alpha_bar)
        return a, z, var, torch.softmax(self._log_weights() + log_n, dim=1)

    def responsibilities(self, x: torch.Tensor, alpha_bar) -> torch.Tensor:
        """``r_i(x) = p(component i | x_t = x)`` [B, M], a softmax (stable far from every mode)."""
        return self._posterior(x, alpha_bar)[3]

    def _score(self, z: torch.Tensor, var: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        per = einsum(self._evecs, z / var, "m d k, b m k -> b m d")
        return -einsum(r, per, "b m, b m d -> b d")

    def score(self, x: torch.Tensor, alpha_bar) -> torch.Tensor:
        """``grad_x log p_t(x) = -sum_i r_i (a S_i + (1 - a) I)^{-1} (x - sqrt(a) mu_i)``; [B, D] float64."""
        _, z, var, r = self._posterior(x, alpha_bar)
        return self._score(z, var, r)

    def ideal_eps(self, x: torch.Tensor, alpha_bar) -> torch.Tensor:
        """The ideal noise prediction ``eps*(x, t) = E[eps | x_t = x] = -sqrt(1 - a) grad log p_t(x)``; float64."""
        a, z, var, r = self._posterior(x, alpha_bar)
        return -(1 - a).sqrt()[:, None] * self._score(z, var, r)

    def posterior_mean(self, x: torch.Tensor, alpha_bar) -> torch.Tensor:
        """``E[x0 | x_t = x] = sum_i r_i (mu_i + sqrt(a) S_i (a S_i + (1 - a) I)^{-1} (x - sqrt(a) mu_i))``.

        Written per component (not through Tweedie's division by sqrt(a)) so it stays finite as a -> 0."""
        a, z, var, r = self._posterior(x, alpha_bar)
        return einsum(r, self._component_means(a, z, var), "b m, b m d -> b d")

    def _component_means(self, a: torch.Tensor, z: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """``m_i = mu_i + sqrt(a) S_i (a S_i + (1 - a) I)^{-1} (x - sqrt(a) mu_i)`` [B, M, D] from the pieces of
        ``_posterior``."""
        shrink = einsum(self._evecs, self._evals[None] * z / var, "m d k, b m k -> b m d")
        return self.means[None] + a.sqrt()[:, None, None] * shrink

    def posterior_covariance(self, x: torch.Tensor, alpha_bar) -> torch.Tensor:
        """``Cov[x0 | x_t = x] = sum_i r_i (C_i + (m_i - m)(m_i - m)^T)`` [B, D, D], float64: the
        responsibility-weighted posterior covariances of the components plus the spread of their posterior means
        ``m_i`` (``posterior_mean``'s terms) around ``m = E[x0 | x_t = x]``, where

            C_i = (S_i^{-1} + a / (1 - a) I)^{-1} = U_i diag(l_i (1 - a) / (a l_i + 1 - a)) U_i^T."""
        a, z, var, r = self._posterior(x, alpha_bar)
        per = self._component_means(a, z, var)                                    # [B, M, D]
        dev = per - einsum(r, per, "b m, b m d -> b d")[:, None, :]
        c_eig = self._evals[None] * (1 - a)[:, None, None] / var                  # [B, M, D]
        within = einsum(self._evecs, c_eig, self._evecs, "m d k, b m k, m e k -> b m d e")
        between = einsum(dev, dev, "b m d, b m e -> b m d e")
        return einsum(r, within + between, "b m, b m d e -> b d e")


# ---------------------------------------------------------------------- presets
def ring8(radius: float = 1.5, std: float = 0.1) -> GaussianMixture:
    """Eight equal isotropic Gaussians on a circle (the classic mode-coverage toy)."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    return GaussianMixture(torch.full((8,), 1 / 8), means, torch.full((8, 2), std**2), name="ring8")


def grid25(spacing: float = 0.7, std: float = 0.05) -> GaussianMixture:
    """A 5x5 grid of equal isotropic Gaussians centred on the origin."""
    g = (torch.arange(5, dtype=torch.float64) - 2) * spacing
    means = torch.cartesian_prod(g, g)
    return GaussianMixture(torch.full((25,), 1 / 25), means, torch.full((25, 2), std**2), name="grid25")


def two_moons(n_per_moon: int = 8, std_along: float = 0.18, std_across: float = 0.06) -> GaussianMixture:
    """A two-moons-like mixture: elongated Gaussians (full covariances) tangent to two interleaved arcs."""
    n_per_moon = check_int("n_per_moon", n_per_moon, 2)
    s = torch.linspace(0, math.pi, n_per_moon, dtype=torch.float64)
    upper, lower = torch.stack([s.cos(), s.sin()], 1), torch.stack([1 - s.cos(), 0.5 - s.sin()], 1)
    means = torch.cat([upper, lower]) - torch.tensor([0.5, 0.25], dtype=torch.float64)
    tangents = torch.cat([torch.stack([-s.sin(), s.cos()], 1), torch.stack([s.sin(), -s.cos()], 1)])
    normals = torch.stack([-tangents[:, 1], tangents[:, 0]], 1)
    covs = (std_along**2 * einsum(tangents, tangents, "m i, m j -> m i j")
            + std_across**2 * einsum(normals, normals, "m i, m j -> m i j"))
    M = means.shape[0]
    return GaussianMixture(torch.full((M,), 1 / M), 1.2 * means, 1.44 * covs, name="two_moons")


PRESETS = {"ring8": ring8, "grid25": grid25, "two_moons": two_moons}


def preset(name: str) -> GaussianMixture:
    """One of the 2-D presets by name: ``ring8``, ``grid25`` or ``two_moons``."""
    return PRESETS[check_choice("dataset", name, PRESETS)]()


def gauss1d(var: float = 0.25) -> GaussianMixture:
    """The 1-D Gaussian ``N(0, var)``: one component, where the SA loss's optimum has a closed form
    (``analysis.gaussian_sa_optimum``)."""
    var = check_float("var", var, 0.0, low_open=True)
    return GaussianMixture(torch.ones(1), torch.zeros(1, 1), torch.full((1, 1), var), name="gauss1d")


# ---------------------------------------------------------------------- digits
def digits(path: str | Path | None = None, dtype=torch.float32):
    """The 1797 8x8 handwritten digits (UCI, as shipped with scikit-learn), scaled from [0, 16] to [-1, 1].

    Returns ``(images [1797, 1, 8, 8], labels [1797])``. The file is ``data/digits.npz``
    (regenerate it with ``scripts/make_digits.py``)."""
    path = Path(path) if path is not None else DATA_DIR / "digits.npz"
    if not path.is_file():
        raise FileNotFoundError(f"digits file not found at {path}; run scripts/make_digits.py to create it")
    images, labels = _read_digits(path)
    x = rearrange(torch.from_numpy(images.astype(np.float32)), "n h w -> n 1 h w") / 8.0 - 1.0
    return x.to(dtype), torch.from_numpy(labels.astype(np.int64))


def _read_digits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(images [N, H, W] in [0, 16], labels [N] integers)`` of a digits ``.npz`` (never a pickle); a ValueError
    naming the file and what it lacks otherwise."""
    where = f"digits file {str(path)!r}"
    try:
        f = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{where} is not a NumPy .npz archive ({' '.join(str(err).split())[:100]})") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"{where} holds one array, not an .npz archive with 'images' and 'labels'")
    with f:
        missing = [k for k in ("images", "labels") if k not in f.files]
        if missing:
            raise ValueError(f"{where} lacks {missing} (it holds {f.files[:5]}); it must hold images [N, 8, 8] and "
                             f"labels [N] (scripts/make_digits.py writes it)")
        try:
            images, labels = f["images"], f["labels"]
        except (ValueError, OSError, EOFError) as err:  # an object array (a pickle) or a torn archive
            raise ValueError(f"{where}: {' '.join(str(err).split())[:100]}") from None
    if images.ndim != 3 or images.dtype.kind not in "iuf" or not np.isfinite(images).all():
        raise ValueError(f"{where}: 'images' must be finite numbers [N, H, W], got {images.dtype} {list(images.shape)}")
    if labels.shape != images.shape[:1] or labels.dtype.kind not in "iu":
        raise ValueError(f"{where}: 'labels' must be integers [{images.shape[0]}] (one per image), got {labels.dtype} "
                         f"{list(labels.shape)}")
    return images, labels


# ---------------------------------------------------------------------- every dataset by name
# name -> the training data: a GaussianMixture (fresh draws) or a tensor of clean samples [N, ...]
DATASETS = {**{name: PRESETS[name] for name in sorted(PRESETS)}, "digits": lambda: digits()[0], "gauss1d": gauss1d}
# older names still found in checkpoints: the shipped digits models record "digits8x8"
DATASET_ALIASES = {"digits8x8": "digits"}


def dataset(name: str):
    """The data of a dataset name (``DATASETS``, or an alias recorded in older checkpoints)."""
    name = DATASET_ALIASES.get(name, name)
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {list(DATASETS)}, got {name!r}")
    return DATASETS[name]()


def sample_shape(data) -> tuple[int, ...]:
    """The shape of one sample of ``data`` (a ``GaussianMixture`` or a tensor [N, ...])."""
    return (data.dim,) if isinstance(data, GaussianMixture) else tuple(data.shape[1:])
