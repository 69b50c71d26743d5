"""A fixed corpus of careless and hostile library calls (issue 16), one bad argument at a time.

Every call should either return finite values or raise a ValueError/TypeError. The script prints, per module and
in total, how many calls returned finite values, raised a clean error, returned NaN/inf without a word
("silent") or raised anything else ("crash"), then lists the silent and crashing cases.

    PYTHONPATH=<checkout> python scripts/fuzz_library.py [--list]

It only uses functions that existed before the fix, so the same corpus measures any checkout.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import warnings
from collections import Counter, defaultdict

import torch

from seqdiff_kit import analysis, drift, metrics
from seqdiff_kit.data import GaussianMixture, ring8
from seqdiff_kit.denoisers import IdealDenoiser, MLPDenoiser, TinyUNet, timestep_embedding
from seqdiff_kit.losses import sequence_aware_loss, simple_loss
from seqdiff_kit.samplers import make_noise
from seqdiff_kit.schedule import Schedule
from seqdiff_kit.solvers import sample

T = 100
SCHED = Schedule.linear(T, 1e-4, 0.2)
MIX = ring8()
IDEAL = IdealDenoiser(MIX, SCHED)
torch.manual_seed(0)
MLP = MLPDenoiser(dim=2, width=16, depth=1, time_dim=8, T=T)
UNET = TinyUNet(channels=4, time_dim=8, T=T)


def variants(base: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """The bad and edge-case versions of a valid float tensor: other dtypes, a meta tensor, special values."""
    out = []
    for dt in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64, torch.int32, torch.bool,
               torch.complex64):
        out.append((f"dtype={str(dt)[6:]}", base.to(dt)))
    out.append(("device=meta", base.to("meta")))
    for dt in (torch.float32, torch.float64):
        for label, fill in (("nan", math.nan), ("inf", math.inf), ("-inf", -math.inf)):
            v = base.clone().to(dt)
            v.view(-1)[0] = fill
            out.append((f"{str(dt)[6:]} one {label}", v))
        for label, value in (("huge 1e30", 1e30), ("tiny 1e-30", 1e-30), ("zeros", 0.0)):
            out.append((f"{str(dt)[6:]} {label}", torch.full_like(base, value, dtype=dt)))
    out.append(("float64 huge 1e300", torch.full_like(base, 1e300, dtype=torch.float64)))
    out.append(("float64 mixed 1e300", base.double() * 1e300))
    return out


def t_variants(B: int) -> list[tuple[str, object]]:
    return [("float t", torch.full((B,), 3.0)), ("bool t", torch.ones(B, dtype=torch.bool)),
            ("meta t", torch.zeros(B, dtype=torch.long, device="meta")), ("t = T", torch.full((B,), T)),
            ("t = -5", torch.full((B,), -5)), ("t shape", torch.zeros(B + 1, dtype=torch.long)),
            ("t list", [1] * B), ("t str", "3"), ("t complex", torch.zeros(B, dtype=torch.complex64))]


def scalar_variants() -> list[tuple[str, object]]:
    return [("nan", math.nan), ("inf", math.inf), ("-1", -1.0), ("0", 0.0), ("1e-300", 1e-300), ("1e300", 1e300),
            ("str", "1"), ("bool", True), ("None", None)]


def cases():
    g = torch.Generator().manual_seed(0)
    x2 = torch.randn(8, 2, generator=g)
    img = torch.randn(4, 1, 8, 8, generator=g)
    t8 = torch.randint(0, T, (8,), generator=g)
    # ---------------------------------------------------------------- schedule
    for lab, v in variants(torch.full((T,), 0.01)):
        yield "schedule", f"Schedule(betas {lab})", lambda v=v: Schedule(v)
    for name in ("linear", "cosine", "quadratic", "sigmoid"):
        yield "schedule", f"from_config({name}, T=10**9)", lambda n=name: Schedule.from_config({"name": n, "T": 10**9})
    for lab, v in variants(x2):
        yield "schedule", f"add_noise(x0 {lab})", lambda v=v: SCHED.add_noise(v, t8, torch.randn(8, 2))
        yield "schedule", f"add_noise(noise {lab})", lambda v=v: SCHED.add_noise(x2, t8, v)
    for lab, v in t_variants(8):
        yield "schedule", f"add_noise({lab})", lambda v=v: SCHED.add_noise(x2, v, torch.randn(8, 2))
        yield "schedule", f"alpha_bar({lab})", lambda v=v: SCHED.alpha_bar(v)
        yield "schedule", f"log_snr({lab})", lambda v=v: SCHED.log_snr(v)
    for lab, v in variants(torch.tensor([0.5, 1.0, 2.0])):
        for fn in ("alpha_bar_from_sigma", "alpha_bar_from_log_snr", "t_from_log_snr", "t_from_sigma",
                   "t_from_alpha_bar"):
            yield "schedule", f"{fn}({lab})", lambda v=v, fn=fn: getattr(SCHED, fn)(v)
    for lab, v in scalar_variants():
        yield "schedule", f"linear(beta_end={lab})", lambda v=v: Schedule.linear(10, 1e-4, v)
        yield "schedule", f"cosine(s={lab})", lambda v=v: Schedule.cosine(10, v)
    yield "schedule", "Schedule(tiny betas)", lambda: Schedule([1e-20, 1e-20])
    yield "schedule", "Schedule(betas underflowing alpha_bar)", lambda: Schedule(torch.full((1000,), 0.9))
    # ---------------------------------------------------------------- data
    w, mu, cov = MIX.weights, MIX.means, MIX.covariances
    for lab, v in variants(mu):
        yield "data", f"GaussianMixture(means {lab})", lambda v=v: GaussianMixture(w, v, cov)
    for lab, v in variants(cov):
        yield "data", f"GaussianMixture(covariances {lab})", lambda v=v: GaussianMixture(w, mu, v)
    for lab, v in variants(w):
        yield "data", f"GaussianMixture(weights {lab})", lambda v=v: GaussianMixture(v, mu, cov)
    for lab, v in variants(x2):
        for fn in ("log_prob", "score", "ideal_eps", "posterior_mean", "responsibilities"):
            yield "data", f"{fn}(x {lab})", lambda v=v, fn=fn: getattr(MIX, fn)(v, 0.5)
    for lab, v in scalar_variants():
        yield "data", f"ideal_eps(alpha_bar={lab})", lambda v=v: MIX.ideal_eps(x2, v)
        yield "data", f"noised({lab})", lambda v=v: MIX.noised(v)
    for dt in (torch.int64, torch.bool, torch.complex64, torch.float16):
        yield "data", f"sample(dtype={dt})", lambda dt=dt: MIX.sample(4, dtype=dt)
    # ---------------------------------------------------------------- denoisers
    # sizes that once built until stopped (issue 25): refused before anything is allocated, or built if they fit
    for label, build in (("MLPDenoiser(depth=2**40)", lambda: MLPDenoiser(depth=2**40)),
                         ("MLPDenoiser(width=10**6)", lambda: MLPDenoiser(width=10**6)),
                         ("MLPDenoiser(width=16384, depth=256)", lambda: MLPDenoiser(width=16384, depth=256)),
                         ("MLPDenoiser(time_dim=10**9)", lambda: MLPDenoiser(time_dim=10**9)),
                         ("TinyUNet(channels=10**6)", lambda: TinyUNet(channels=10**6)),
                         ("TinyUNet(T=10**12)", lambda: TinyUNet(T=10**12))):
        yield "denoisers", label, build
    for lab, v in variants(x2):
        yield "denoisers", f"IdealDenoiser(x {lab})", lambda v=v: IDEAL(v, t8)
        yield "denoisers", f"IdealDenoiser.x0(x {lab})", lambda v=v: IDEAL.x0(v, t8)
        yield "denoisers", f"MLPDenoiser(x {lab})", lambda v=v: MLP(v, t8)
    for lab, v in variants(img):
        yield "denoisers", f"TinyUNet(x {lab})", lambda v=v: UNET(v, t8[:4])
    for lab, v in t_variants(8):
        yield "denoisers", f"IdealDenoiser({lab})", lambda v=v: IDEAL(x2, v)
        yield "denoisers", f"MLPDenoiser({lab})", lambda v=v: MLP(x2, v)
        yield "denoisers", f"timestep_embedding({lab})", lambda v=v: timestep_embedding(v, 8)
    # ---------------------------------------------------------------- losses
    for lab, v in variants(x2):
        yield "losses", f"simple_loss(x0 {lab})", lambda v=v: simple_loss(MLP, v, SCHED, generator=g)
        yield "losses", f"sequence_aware_loss(x0 {lab})", lambda v=v: sequence_aware_loss(MLP, v, SCHED, 2, 1.0,
                                                                                        generator=g)
        yield "losses", f"simple_loss(noise {lab})", lambda v=v: simple_loss(MLP, x2, SCHED, noise=v, generator=g)
    for lab, v in t_variants(8):
        yield "losses", f"simple_loss({lab})", lambda v=v: simple_loss(MLP, x2, SCHED, t=v, generator=g)
    for lab, v in scalar_variants():
        yield "losses", f"sequence_aware_loss(lam={lab})", lambda v=v: sequence_aware_loss(MLP, x2, SCHED, 2, v)
    # ---------------------------------------------------------------- samplers
    for lab, v in variants(x2):
        for eta in (0.0, 1.0):
            yield "samplers", f"sample(ideal, x_T {lab}, eta={eta})", lambda v=v, eta=eta: sample(
                IDEAL, v, SCHED, 5, eta=eta, spacing="leading", generator=torch.Generator().manual_seed(0))
        yield "samplers", f"sample(mlp, x_T {lab})", lambda v=v: sample(MLP, v, SCHED, 5)
    for lab, v in variants(torch.randn(5, 8, 2, generator=g)):
        yield "samplers", f"sample(noise {lab})", lambda v=v: sample(IDEAL, x2, SCHED, 5, eta=1.0, noise=v)
    for lab, v in [("float timesteps", torch.tensor([9.5, 3.0])), ("meta timesteps", torch.tensor([9, 3],
                   device="meta")), ("nan timesteps", [math.nan, 1.0]), ("bool timesteps", [True, False])]:
        yield "samplers", f"sample({lab})", lambda v=v: sample(IDEAL, x2, SCHED, timesteps=v)
    for lab, v in scalar_variants():
        yield "samplers", f"sample(eta={lab})", lambda v=v: sample(IDEAL, x2, SCHED, 5, eta=v)
        yield "samplers", f"sample(clip_x0={lab})", lambda v=v: sample(IDEAL, x2, SCHED, 5, clip_x0=v)
    for lab, v in variants(x2.double()):
        yield "samplers", f"make_noise(dtype={lab})", lambda v=v: make_noise(3, (2,), dtype=v.dtype)
        break
    # ---------------------------------------------------------------- drift
    for lab, v in variants(x2):
        yield "drift", f"step_drift(x_T {lab})", lambda v=v: drift.step_drift(MLP, IDEAL, v, SCHED, 4)
        yield "drift", f"estimation_gap(x0 {lab})", lambda v=v: drift.estimation_gap(IDEAL, v, SCHED, 5,
                                                                                    generator=g)
        yield "drift", f"total_std(x {lab})", lambda v=v: drift.total_std(v)
        yield "drift", f"variance_ratio(y {lab})", lambda v=v: drift.variance_ratio(x2, v)
        yield "drift", f"distribution_drift(data {lab})", lambda v=v: drift.distribution_drift(
            IDEAL, v, SCHED, 3, n_samples=8, generator=torch.Generator().manual_seed(0))
    yield "drift", "variance_ratio(constant y)", lambda: drift.variance_ratio(x2, torch.ones(8, 2))
    yield "drift", "variance_ratio(list x)", lambda: drift.variance_ratio([], x2)
    yield "drift", "paths_drift(paths=str)", lambda: drift.paths_drift(MLP, "paths", SCHED)
    for lab, v in t_variants(8):
        yield "drift", f"estimation_gap(start_{lab})", lambda v=v: drift.estimation_gap(IDEAL, x2, SCHED, v,
                                                                                      generator=g)
    # ---------------------------------------------------------------- metrics
    for lab, v in variants(x2):
        yield "metrics", f"mmd(x {lab})", lambda v=v: metrics.mmd(v, x2)
        yield "metrics", f"sliced_wasserstein(x {lab})", lambda v=v: metrics.sliced_wasserstein(v, x2, 16)
        yield "metrics", f"mean_log_likelihood(x {lab})", lambda v=v: metrics.mean_log_likelihood(v, MIX)
        yield "metrics", f"frechet_distance(feat_x {lab})", lambda v=v: metrics.frechet_distance(v, x2)
        yield "metrics", f"gaussian_frechet_distance(mu1 {lab})", lambda v=v: metrics.gaussian_frechet_distance(
            v[0], torch.eye(2), x2[1], torch.eye(2))
        yield "metrics", f"median_bandwidth(x {lab})", lambda v=v: metrics.median_bandwidth(v, x2)
    for lab, v in scalar_variants() + [("1e-200", 1e-200), ("1e-10", 1e-10), ("[1, nan]", [1.0, math.nan])]:
        yield "metrics", f"mmd(bandwidths={lab})", lambda v=v: metrics.mmd(x2, x2 + 1, v)
    for p in (1, 2, 50, 400, 2000, 10**6, 0, -1, 2.5, True):
        yield "metrics", f"sliced_wasserstein(p={p})", lambda p=p: metrics.sliced_wasserstein(x2, x2 + 3, 16, p=p)
        yield "metrics", f"sliced_wasserstein(p={p}, near)", lambda p=p: metrics.sliced_wasserstein(
            x2, x2 + 1e-3, 16, p=p)
    # ---------------------------------------------------------------- analysis
    for lab, v in variants(torch.full((T,), 0.5)):
        yield "analysis", f"gaussian_sa_objective(a {lab})", lambda v=v: analysis.gaussian_sa_objective(
            v, 1.0, 2, 1.0, SCHED)
        yield "analysis", f"linear_sampler_std_ratio(a {lab})", lambda v=v: analysis.linear_sampler_std_ratio(
            v, 1.0, SCHED, 5)
    for lab, v in scalar_variants():
        yield "analysis", f"gaussian_sa_optimum(var={lab})", lambda v=v: analysis.gaussian_sa_optimum(
            v, 2, 1.0, SCHED)
        yield "analysis", f"gaussian_sa_optimum(lam={lab})", lambda v=v: analysis.gaussian_sa_optimum(
            1.0, 2, v, SCHED)


def finite(value, seen=None) -> bool:
    """Whether every number reachable from ``value`` is finite (tensors, floats, dataclasses, tuples, dicts)."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return True
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        if value.device.type == "meta":
            return False  # a "result" without values
        return not (value.is_floating_point() or value.is_complex()) or bool(torch.isfinite(value).all())
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list every silent and crashing case")
    parser.add_argument("--all", action="store_true", help="list every case with its outcome")
    args = parser.parse_args()
    counts: dict[str, Counter] = defaultdict(Counter)
    bad = []
    for module, label, call in cases():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out = call()
                kind = "finite" if finite(out) else "silent"
                detail = "finite result" if kind == "finite" else "non-finite result"
            except (ValueError, TypeError) as err:
                kind, detail = "clean", f"{type(err).__name__}: {err}"
            except Exception as err:  # noqa: BLE001 - counting what escapes is the point
                kind, detail = "crash", f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
        counts[module][kind] += 1
        if kind in ("silent", "crash") or args.all:
            bad.append((module, label, kind, detail))
    kinds = ("finite", "clean", "silent", "crash")
    print(f"{'module':<10} {'cases':>6} " + " ".join(f"{k:>7}" for k in kinds))
    total = Counter()
    for module, c in counts.items():
        total.update(c)
        print(f"{module:<10} {sum(c.values()):>6} " + " ".join(f"{c[k]:>7}" for k in kinds))
    print(f"{'total':<10} {sum(total.values()):>6} " + " ".join(f"{total[k]:>7}" for k in kinds))
    if args.list or args.all:
        for module, label, kind, detail in bad:
            print(f"{kind:<6} {module:<9} {label}: {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
