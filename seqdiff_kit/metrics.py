"""Sample-quality metrics: pure functions of sample tensors (a leaf module; it only reads ``data``).

- ``mmd``: unbiased squared maximum mean discrepancy with a sum of RBF kernels.
- ``sliced_wasserstein``: the 1-D Wasserstein distance averaged over random projections.
- ``mean_log_likelihood``: the exact mean log-density of samples under the true Gaussian mixture.
- ``frechet_distance``: the Frechet (2-Wasserstein) distance between Gaussians fitted to two feature sets.

Images ``[N, C, H, W]`` (or any ``[N, ...]``) are flattened to ``[N, D]``. Everything is computed in float64
and returned as a Python float.
"""
from __future__ import annotations

from collections.abc import Sequence
from numbers import Real

import torch
from einops import rearrange

from ._validate import check_int, check_tensor, check_type
from .data import GaussianMixture

# Multiples of the median pairwise distance used when ``mmd`` is given no bandwidths: a spread of scales
# keeps the test sensitive both to a shift of the whole cloud and to errors in its fine structure.
MEDIAN_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)


def _flat(name: str, x, min_n: int = 1) -> torch.Tensor:
    """``x`` [N, ...] as a float64 matrix [N, D] (images flattened)."""
    check_tensor(name, x, min_ndim=1, finite=True)
    if x.shape[0] < min_n:
        raise ValueError(f"{name} must hold at least {min_n} samples, got {x.shape[0]} (shape {tuple(x.shape)})")
    x = x.detach().to(torch.float64)
    return rearrange(x, "n ... -> n (...)") if x.ndim > 1 else rearrange(x, "n -> n 1")


def _pair(x, y, min_n: int = 1, names: tuple[str, str] = ("x", "y")) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` and ``y`` as float64 matrices (``_flat``) with the same number of features, on ``x``'s device."""
    xf, yf = _flat(names[0], x, min_n), _flat(names[1], y, min_n)
    if xf.shape[1] != yf.shape[1]:
        raise ValueError(f"{names[0]} and {names[1]} must have the same number of features per sample, got shapes "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    return xf, yf.to(xf.device)


def median_bandwidth(x: torch.Tensor, y: torch.Tensor, max_points: int = 1000) -> float:
    """The median heuristic: ``median_{i<j} ||z_i - z_j||`` over the pooled samples ``z = [x; y]``.

    Uses the first ``max_points // 2`` rows of each set (deterministic) to bound the cost."""
    xf, yf = _pair(x, y)
    half = max(1, max_points // 2)
    z = torch.cat([xf[:half], yf[:half]])
    d = torch.cdist(z, z)
    iu = torch.triu_indices(z.shape[0], z.shape[0], offset=1)
    med = float(d[iu[0], iu[1]].median()) if iu.shape[1] else 0.0
    return med if med > 0 else 1.0  # all points equal: any positive scale gives the same (zero) MMD


def _bandwidths(bandwidths, xf, yf) -> torch.Tensor:
    if bandwidths is None:
        med = median_bandwidth(xf, yf)
        return torch.tensor([m * med for m in MEDIAN_MULTIPLIERS], dtype=torch.float64)
    if isinstance(bandwidths, Real) and not isinstance(bandwidths, bool):
        h = torch.tensor([float(bandwidths)], dtype=torch.float64)
    elif isinstance(bandwidths, (Sequence, torch.Tensor)) and not isinstance(bandwidths, (str, bytes)):
        h = torch.as_tensor(bandwidths, dtype=torch.float64).flatten()
    else:
        raise TypeError(f"bandwidths must be None, a positive number or a sequence of them, "
                        f"got {type(bandwidths).__name__}")
    if h.numel() < 1 or not bool(torch.isfinite(h).all()) or bool((h <= 0).any()):
        raise ValueError(f"bandwidths must be finite and > 0 (at least one), got {h.tolist()}")
    return h


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidths=None) -> float:
    """Unbiased squared MMD between samples ``x`` [N, ...] and ``y`` [M, ...]:

        MMD^2 = 1/(N(N-1)) sum_{i != j} k(x_i, x_j) + 1/(M(M-1)) sum_{i != j} k(y_i, y_j)
                - 2/(N M) sum_{i, j} k(x_i, y_j),
        k(a, b) = sum_h exp(-||a - b||^2 / (2 h^2)).

    ``bandwidths``: the ``h`` values (a number or a sequence); ``None`` uses ``MEDIAN_MULTIPLIERS`` times the
    median pairwise distance of the pooled samples. The estimate is unbiased, so it can be slightly negative
    when the two distributions are equal.
    """
    xf, yf = _pair(x, y, min_n=2)
    h = _bandwidths(bandwidths, xf, yf).to(xf.device)
    gamma = 1.0 / (2.0 * h**2)

    def kernel_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(a, b).pow(2)
        # [H, n, m] summed over the bandwidths: one pass per bandwidth keeps memory at one [n, m] matrix
        return sum(torch.exp(-g * d2) for g in gamma)

    n, m = xf.shape[0], yf.shape[0]
    kxx, kyy, kxy = kernel_sum(xf, xf), kernel_sum(yf, yf), kernel_sum(xf, yf)
    # unbiased: drop the diagonals (each equals the number of bandwidths)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def _quantile_w(xs: torch.Tensor, ys: torch.Tensor, p: float) -> torch.Tensor:
    """Exact ``W_p^p`` between the 1-D empirical measures in each column of sorted ``xs`` [N, P], ``ys`` [M, P]:
    ``int_0^1 |F^-1(u) - G^-1(u)|^p du``, the quantile functions being piecewise constant."""
    n, m = xs.shape[0], ys.shape[0]
    if n == m:
        return (xs - ys).abs().pow(p).mean(0)
    # breakpoints of both quantile functions; on each interval both are constant
    u = torch.cat([torch.arange(1, n + 1, dtype=torch.float64) / n, torch.arange(1, m + 1, dtype=torch.float64) / m])
    u = torch.sort(u).values
    du = torch.diff(u, prepend=torch.zeros(1, dtype=torch.float64))
    mid = u - du / 2
    ix = torch.clamp(torch.floor(mid * n).long(), max=n - 1).to(xs.device)
    iy = torch.clamp(torch.floor(mid * m).long(), max=m - 1).to(xs.device)
    return ((xs[ix] - ys[iy]).abs().pow(p) * du.to(xs.device)[:, None]).sum(0)


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, n_projections: int = 256,
                       generator: torch.Generator | None = None, p: int = 1) -> float:
    """Sliced Wasserstein distance ``SW_p = (E_theta W_p^p(theta^T x, theta^T y))^(1/p)`` over directions
    ``theta`` uniform on the unit sphere (``n_projections`` Monte-Carlo draws).

    Each 1-D ``W_p`` is exact for the empirical measures (any ``N`` and ``M``). For ``p = 1`` and ``y = x + d``
    it equals ``||d|| E|theta_1|``. ``generator=None`` uses a fixed seed (0), so the result is reproducible.
    """
    xf, yf = _pair(x, y)
    n_projections = check_int("n_projections", n_projections, 1)
    p = check_int("p", p, 1)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    theta = torch.randn(xf.shape[1], n_projections, generator=generator, dtype=torch.float64).to(xf.device)
    theta = theta / torch.linalg.vector_norm(theta, dim=0, keepdim=True)
    xs = torch.sort(xf @ theta, dim=0).values
    ys = torch.sort(yf @ theta, dim=0).values
    wpp = _quantile_w(xs, ys, float(p))
    return float(wpp.mean() ** (1.0 / p))


def mean_log_likelihood(x: torch.Tensor, mixture: GaussianMixture) -> float:
    """``(1/N) sum_i log p(x_i)`` with ``p`` the exact density of the true ``mixture`` (``x`` [N, D])."""
    check_type("mixture", mixture, GaussianMixture)
    xf = _flat("x", x)
    if xf.shape[1] != mixture.dim:
        raise ValueError(f"x must have {mixture.dim} features per sample for this {mixture.dim}-D mixture, "
                         f"got shape {tuple(x.shape)}")
    return float(mixture.log_prob(xf.cpu()).mean())


def _sqrt_psd(s: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric PSD matrix by ``eigh`` (negative round-off eigenvalues -> 0)."""
    evals, evecs = torch.linalg.eigh((s + s.T) / 2)
    return (evecs * evals.clamp(min=0).sqrt()) @ evecs.T


def gaussian_frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """Squared Frechet distance between ``N(mu1, S1)`` and ``N(mu2, S2)``:

        ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1^(1/2) S2 S1^(1/2))^(1/2)),

    with both square roots taken by ``eigh`` of symmetric matrices in float64 (stable, no complex parts)."""
    mu1, mu2 = (torch.as_tensor(v, dtype=torch.float64).flatten() for v in (mu1, mu2))
    cov1, cov2 = (torch.as_tensor(v, dtype=torch.float64) for v in (cov1, cov2))
    F = mu1.numel()
    if mu2.numel() != F or cov1.shape != (F, F) or cov2.shape != (F, F):
        raise ValueError(f"means must both have {F} entries and covariances shape [{F}, {F}], got "
                         f"{tuple(mu2.shape)}, {tuple(cov1.shape)} and {tuple(cov2.shape)}")
    root1 = _sqrt_psd(cov1)
    inner = root1 @ cov2 @ root1
    tr_sqrt = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum()
    d = (mu1 - mu2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * tr_sqrt
    return max(float(d), 0.0)  # the true value is >= 0; clip round-off


def _gaussian_fit(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample mean and unbiased covariance ``(mu, (f - mu)^T (f - mu) / (N - 1))`` of a float64 matrix [N, F]."""
    mu = f.mean(0)
    c = f - mu
    return mu, (c.T @ c) / (f.shape[0] - 1)


def frechet_distance(feat_x: torch.Tensor, feat_y: torch.Tensor) -> float:
    """Squared Frechet distance between Gaussians fitted to ``feat_x`` [N, F] and ``feat_y`` [M, F]
    (sample means and unbiased covariances, float64); see ``gaussian_frechet_distance`` for the formula."""
    fx, fy = _pair(feat_x, feat_y, min_n=2, names=("feat_x", "feat_y"))
    return gaussian_frechet_distance(*_gaussian_fit(fx), *_gaussian_fit(fy))


def _check_digits(name: str, x) -> None:
    check_tensor(name, x, finite=True)
    if tuple(x.shape[1:]) not in ((1, 8, 8), (8, 8)) or x.shape[0] < 2:
        raise ValueError(f"{name} must have shape [N, 1, 8, 8] or [N, 8, 8] with N >= 2, got {tuple(x.shape)}")


def _digit_stats(name: str, images: torch.Tensor, classifier) -> tuple[torch.Tensor, torch.Tensor]:
    # lazy import: the classifier (and its weights) are only needed by image users
    from .classifier import digit_features

    return _gaussian_fit(_flat(f"features of {name}", digit_features(images, classifier), min_n=2))


def digit_feature_stats(images: torch.Tensor, classifier=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, S)``: the mean [F] and unbiased covariance [F, F] (float64) of ``classifier.features(x)`` over
    ``images`` [N, 1, 8, 8] or [N, 8, 8] in [-1, 1], N >= 2 (the shipped classifier when ``classifier`` is
    None). Compute a fixed reference's statistics once and pass them to ``digit_frechet_distance`` as
    ``reference_stats``."""
    _check_digits("images", images)
    return _digit_stats("images", images, classifier)


def digit_frechet_distance(samples: torch.Tensor, reference: torch.Tensor | None = None, classifier=None, *,
                           reference_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> float:
    """Squared Frechet distance between Gaussians fitted to digit-classifier features of two image sets:

        FD = ||mu_s - mu_r||^2 + tr(S_s) + tr(S_r) - 2 tr((S_s^(1/2) S_r S_s^(1/2))^(1/2)),

    with ``(mu, S)`` the mean and covariance of ``classifier.features(x)`` (the 64-D penultimate layer of the
    shipped ``data/classifier`` when ``classifier`` is None). ``samples`` and ``reference`` are [N, 1, 8, 8]
    (or [N, 8, 8]) images in [-1, 1]. Give either ``reference`` or ``reference_stats``, the reference's
    ``digit_feature_stats`` under the same classifier (the same number, without recomputing them).
    The estimate is biased upwards at small N: compare models at the same N (docs/digits_results.md gives the
    scale: the score of real digits against real digits, and of noise).
    """
    if (reference is None) == (reference_stats is None):
        raise ValueError("give exactly one of reference (images) and reference_stats (digit_feature_stats), got "
                         + ("both" if reference is not None else "neither"))
    _check_digits("samples", samples)
    if reference is not None:
        _check_digits("reference", reference)
        reference_stats = _digit_stats("reference", reference, classifier)
    return gaussian_frechet_distance(*_digit_stats("samples", samples, classifier), *reference_stats)
