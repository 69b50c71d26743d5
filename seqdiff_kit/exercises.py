"""Self-checking exercises for the notebooks.

``check(exercise_id, answer)`` prints whether the answer is right. A right answer is told why; a wrong one gets
a graded hint (which way it is off, then a first hint, then a stronger one on each new try), never the
expected value or the full explanation, so there is nothing to copy. ``solution(exercise_id)`` prints the
model answer, how to compute it and why, for when a student gives up. ``check`` and ``solution`` return
None (a notebook cell shows no stray True/False); ``grade`` returns ``(right, message)`` without printing.

Every expected answer is computed here by the library (a schedule, the ideal denoiser, a sampler, a loss, the
closed forms of ``analysis``, a short training run), never typed in as a number, so the checks stay right if a
default changes. ``problem(exercise_id)`` returns the question and any inputs it needs; ``EXERCISES`` lists
the ids. Kinds: a number ("float"), an integer ("int"), a tensor ("tensor"), one word of ``choices``
("choice"), or one word per part ("choices"). Any answer, of any type, is answered in one line: ``check`` never
raises to the student. This module never imports plotly or ipywidgets.

Coding exercises (``CODE``): the student writes a function (``add_noise``, a DDIM step, a sampler, the simple and
the SA loss, eps* of a Gaussian, a Heun step) and ``check(exercise_id, function)`` runs it beside the kit's own
version on seeded cases; a wrong result is named by the typical mistake it reproduces. ``yours`` then plugs it
into the lesson. The model solutions are outside the package, in ``teacher/solutions.py``.
"""
from __future__ import annotations

import ast
import functools
import math
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Callable, Sequence

import torch

from ._validate import check_choice, check_int, check_type
from .data import GaussianMixture, digits, ring8
from .denoisers import IdealDenoiser
from .losses import sequence_aware_loss, simple_loss
from .samplers import Trajectory, generalized_step
from .schedule import Schedule
from .solvers import heun, sample


KINDS = ("float", "int", "tensor", "choice", "choices")


@dataclass(frozen=True)
class Exercise:
    """One exercise: ``expected()`` computes the answer; numbers within ``rtol``/``atol`` are right.

    ``hints`` are given one per wrong try, in order (the last one repeats); ``how`` is the model answer's
    computation (code), shown by ``solution`` with the value and ``why``. ``choices``: the words a "choice"
    answer (or each part of a "choices" answer) may be."""

    id: str
    question: str
    expected: Callable[[], object]
    why: str
    hints: tuple = ()
    how: str = ""
    rtol: float = 1e-3
    atol: float = 1e-6
    kind: str = "float"
    inputs: Callable[[], dict] = field(default=lambda: {})
    choices: tuple = ()


# ---------------------------------------------------------------------------------------------- answers
def _probs_06() -> dict:
    """Eight fixed rows of class probabilities: softmax of seeded logits of varying sharpness."""
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(8, 10, generator=g, dtype=torch.float64) * torch.linspace(1.0, 8.0, 8)[:, None]
    return {"probs": torch.softmax(logits, dim=-1)}


def _first_t_below(schedule: Schedule, level: float) -> int:
    """The first t with ``alpha_bar_t < level``."""
    return int(torch.nonzero(schedule.alpha_bars < level)[0])


def _snr(schedule: Schedule, t: int) -> float:
    """``SNR_t = alpha_bar_t / (1 - alpha_bar_t) = exp(log_snr_t)``."""
    return float(torch.exp(schedule.log_snr(t)))


def _std_xt_first_coordinate(t: int) -> float:
    """``sqrt(abar_t Var[x0_1] + 1 - abar_t)`` for ring8 under the default linear schedule."""
    a = float(Schedule.linear().alpha_bar(t))
    return math.sqrt(a * float(ring8().covariance()[0, 0]) + 1 - a)


def _ideal_eps_at(x, t: int) -> torch.Tensor:
    sch = Schedule.linear()
    return IdealDenoiser(ring8(), sch)(torch.as_tensor(x, dtype=torch.float64).reshape(1, 2),
                                       torch.tensor([t]))[0]


def _ddim_one_step() -> torch.Tensor:
    """One DDIM step from T-1 to the end with the ideal denoiser is ``x0_pred = E[x0 | x_T]``."""
    from .solvers import sample
    sch = Schedule.linear()
    x_T = _inputs_02_one_step()["x_T"]
    return sample(IdealDenoiser(ring8(), sch), x_T, sch, 1).final[0]


def _inputs_02_one_step() -> dict:
    return {"x_T": torch.tensor([[2.0, 0.5]], dtype=torch.float64)}


def _inputs_03_x0_pred() -> dict:
    g = torch.Generator().manual_seed(3)
    return {"x_t": torch.randn(4, 2, generator=g, dtype=torch.float64), "t": 600,
            "eps": torch.randn(4, 2, generator=g, dtype=torch.float64), "schedule": Schedule.linear()}


def _x0_pred() -> torch.Tensor:
    from .samplers import generalized_step
    p = _inputs_03_x0_pred()
    # a step to s = -1 returns x0_pred = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) as its second output
    return generalized_step(p["x_t"], p["eps"], p["t"], -1, p["schedule"])[1]


def _zero_model_loss() -> float:
    """``E ||eps - 0||^2 = sum_i E[eps_i^2] = D``, the feature count of the data (tests check it by Monte Carlo)."""
    return float(ring8().dim)


@functools.lru_cache(maxsize=1)
def _gamma_500() -> float:
    from .drift import gap_coefficients
    return float(gap_coefficients(Schedule.linear())[0][500])


def _bias_step() -> torch.Tensor:
    """Per-step displacement of a DDIM step whose eps is off by a constant ``b``: run both steps and subtract."""
    from .samplers import generalized_step
    p = _inputs_04_bias()
    sch, x = p["schedule"], p["x_t"]
    eps = IdealDenoiser(ring8(), sch)(x, torch.tensor([p["t"]]))
    good, _ = generalized_step(x, eps, p["t"], p["s"], sch)
    bad, _ = generalized_step(x, eps + p["b"], p["t"], p["s"], sch)
    return (bad - good)[0]


def _inputs_04_bias() -> dict:
    return {"x_t": torch.tensor([[0.3, -0.2]], dtype=torch.float64), "t": 499, "s": 399,
            "b": torch.tensor([0.1, 0.0], dtype=torch.float64), "schedule": Schedule.linear()}


def _k1_ratio() -> float:
    """``L_sa(K=1) = L_simple``, so ``total = (1 + lam) L_simple``: the ratio measured on a random linear model."""
    from .losses import sequence_aware_loss, simple_loss
    lam = _inputs_05_k1()["lam"]
    sch = Schedule.linear()
    lin = torch.nn.Linear(2, 2).double()
    torch.nn.init.normal_(lin.weight, generator=torch.Generator().manual_seed(0))
    model = lambda x, t: lin(x)  # noqa: E731
    x0 = ring8().sample(256, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        sa = sequence_aware_loss(model, x0, sch, K=1, lam=lam, generator=torch.Generator().manual_seed(2))
        simple = simple_loss(model, x0, sch, generator=torch.Generator().manual_seed(2))
    return float(sa.total / simple.total)


def _inputs_05_k1() -> dict:
    return {"lam": 0.5}


def _inputs_05_gauss() -> dict:
    return {"var": 0.25, "K": 2, "lam": 1.0, "steps": 10, "schedule": Schedule.linear()}


@functools.lru_cache(maxsize=1)
def _gauss_std_ratio() -> float:
    from .analysis import gaussian_sa_optimum, linear_sampler_std_ratio
    p = _inputs_05_gauss()
    a = gaussian_sa_optimum(p["var"], p["K"], p["lam"], p["schedule"])
    return linear_sampler_std_ratio(a, p["var"], p["schedule"], p["steps"])


def _inputs_02_axis() -> dict:
    return {"x": torch.tensor([[0.0, 2.5]], dtype=torch.float64), "t": 500}


def _ideal_eps_axis() -> torch.Tensor:
    p = _inputs_02_axis()
    return _ideal_eps_at(p["x"], p["t"])


@functools.lru_cache(maxsize=1)
def _ddpm_or_ddim_closer() -> str:
    """The sampler whose 10-step samples (ideal denoiser, 1000 points from one seeded x_T) have the
    log-likelihood gap to fresh data closer to 0."""
    from .metrics import loglik_gap
    from .solvers import sample
    sch, mix = Schedule.linear(), ring8()
    ideal, g = IdealDenoiser(mix, sch), torch.Generator().manual_seed(0)
    x_T = torch.randn(1000, 2, generator=g)
    data = mix.sample(1000, generator=g)
    ddim = loglik_gap(sample(ideal, x_T, sch, 10, eta=0.0).final, data, mix).gap
    ddpm = loglik_gap(sample(ideal, x_T, sch, 10, eta=1.0, generator=g).final, data, mix).gap
    return "DDPM" if abs(ddpm) < abs(ddim) else "DDIM"


@functools.lru_cache(maxsize=1)
def _less_training_on_clusters() -> str:
    """Train notebook 3's network (the RING8_FAST recipe) for only 150 updates and sample 500 points with
    50 DDIM steps: "yes" if their mean log-likelihood under the true density is within 1 of real data's."""
    from .metrics import mean_log_likelihood
    from .recipes import RING8_FAST, train
    from .solvers import sample
    trained = train(RING8_FAST.replace(name="exercise-03-less-training", steps=150), progress=False)
    mix, g = RING8_FAST.data(), torch.Generator().manual_seed(0)
    with torch.no_grad():
        final = sample(trained.model, torch.randn(500, 2, generator=g), trained.schedule, 50).final
    data = mix.sample(1000, generator=g)
    return "yes" if mean_log_likelihood(final, mix) > mean_log_likelihood(data, mix) - 1.0 else "no"


@functools.lru_cache(maxsize=1)
def _ddpm_drift() -> str:
    """Notebook 4's comparison: the shipped simple network against the ideal path, 400 points, 50 steps, from
    one seeded x_T: is the final drift with fresh noise (eta = 1) larger or smaller than with DDIM?"""
    from .checkpoint import load_checkpoint
    from .data import DATA_DIR
    from .drift import step_drift
    sch = Schedule.linear()
    model, _ = load_checkpoint(DATA_DIR / "checkpoints" / "ring8_simple")
    ideal = IdealDenoiser(ring8(), sch)
    final = {}
    for eta in (0.0, 1.0):
        g = torch.Generator().manual_seed(0)
        x_T = torch.randn(400, 2, generator=g)
        with torch.no_grad():
            final[eta] = float(step_drift(model, ideal, x_T, sch, 50, eta=eta, generator=g).mean("drift")[-1])
    return "smaller" if final[1.0] < final[0.0] else "larger"


def _inputs_05_k4() -> dict:
    return {"var": float(ring8().covariance()[0, 0]), "lam": 1.0, "steps": (10, 100), "schedule": Schedule.linear()}


@functools.lru_cache(maxsize=1)
def _k4_against_k2() -> tuple:
    """The closed form's std ratio with K = 4 against K = 2 (lam = 1, ring8's coordinate variance), at 10 and
    at 100 DDIM steps: "above" or "below" each."""
    from .analysis import gaussian_sa_optimum, linear_sampler_std_ratio
    p = _inputs_05_k4()
    a = {K: gaussian_sa_optimum(p["var"], K, p["lam"], p["schedule"]) for K in (2, 4)}
    return tuple("above" if linear_sampler_std_ratio(a[4], p["var"], p["schedule"], n)
                 > linear_sampler_std_ratio(a[2], p["var"], p["schedule"], n) else "below" for n in p["steps"])


def _inputs_07_gauss() -> dict:
    return {"var": 0.25, "schedule": Schedule.linear(), "t_stop": 99}


def _gauss_ideal_eps(var: float, schedule: Schedule):
    """The exact eps* of N(0, var): ``sqrt(1 - a_t) x / (a_t var + 1 - a_t)``."""
    a = schedule.alpha_bars
    w = (1 - a).sqrt() / (a * var + 1 - a)
    return lambda x, t: w[t].to(x.dtype)[:, None] * x


def _heun_calls() -> int:
    from .solvers import model_calls
    return model_calls("heun", 10)


def _last_step_variance() -> float:
    """Analytic-DPM's variance at the last of 10 trailing steps (t = 99 -> data) with the exact Gamma of N(0, v)."""
    from .solvers import analytic_variance
    p = _inputs_07_gauss()
    a = float(p["schedule"].alpha_bar(p["t_stop"]))
    gamma = (1 - a) / (a * p["var"] + 1 - a)
    return analytic_variance(a, 1.0, gamma)


def _ddim_order_ratio() -> float:
    """DDIM's error at t = 99 against the exact flow of N(0, v), 50 steps over 100 steps."""
    from .solvers import sample
    p = _inputs_07_gauss()
    v, sch, t_stop = p["var"], p["schedule"], p["t_stop"]
    x_T = torch.ones(1, 1, dtype=torch.float64)
    q = lambda t: float(sch.alpha_bar(t)) * v + 1 - float(sch.alpha_bar(t))  # noqa: E731
    exact = math.sqrt(q(t_stop) / q(sch.T - 1))
    errs = []
    for n in (50, 100):
        tr = sample(_gauss_ideal_eps(v, sch), x_T, sch, n, solver="ddim")
        errs.append(abs(float(tr.x[tr.timesteps.tolist().index(t_stop), 0, 0]) - exact))
    return errs[0] / errs[1]


EXERCISES: dict[str, Exercise] = {e.id: e for e in [
    Exercise("01-alpha-bar-half",
             "Linear schedule, T = 1000: what is the first timestep t with alpha_bar_t < 0.5?",
             lambda: _first_t_below(Schedule.linear(), 0.5),
             "alpha_bar_t = prod_{s<=t} (1 - beta_s); the linear betas are tiny at first, so half the signal "
             "survives until t is about a quarter of the way in.",
             hints=("alpha_bar_t is stored for every t: `schedules['linear'].alpha_bars` is a tensor of 1000 values.",
                    "`schedules['linear'].alpha_bars < 0.5` is True from some t on; `torch.nonzero(...)` lists "
                    "where, and you want the first entry.",
                    "Careful with 'first t below': at that t alpha_bar is already under 0.5, at t - 1 it is not."),
             how="int(torch.nonzero(schedules['linear'].alpha_bars < 0.5)[0])",
             kind="int", rtol=0, atol=0),
    Exercise("01-snr-cosine-500",
             "Cosine schedule, T = 1000: what is the signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t) at t = 500?",
             lambda: _snr(Schedule.cosine(), 500),
             "For the cosine schedule alpha_bar(t) ~ cos^2(pi t / 2T), so the SNR at the midpoint is close to 1.",
             hints=("Read alpha_bar at t = 500 from `schedules['cosine'].alpha_bars[500]`, then form the ratio.",
                    "SNR = a / (1 - a) with a = alpha_bar_500; `schedules['cosine'].log_snr(500).exp()` gives it too."),
             how="a = float(schedules['cosine'].alpha_bars[500]); a / (1 - a)", rtol=0.01),
    Exercise("01-std-xt",
             "ring8 data, linear schedule: what is the standard deviation of the first coordinate of x_t at t = 300?",
             lambda: _std_xt_first_coordinate(300),
             "Var[x_t] = alpha_bar_t Var[x0] + (1 - alpha_bar_t) because x0 and eps are independent; "
             "Var[x0_1] of ring8 is radius^2 / 2 + std^2.",
             hints=("Start from Var[x_t] = alpha_bar_t Var[x0] + (1 - alpha_bar_t): you need Var[x0] of the first "
                    "coordinate and alpha_bar_300.",
                    "`mixture.covariance()[0, 0]` is Var[x0_1]; `schedules['linear'].alpha_bars[300]` is alpha_bar; "
                    "the answer is a standard deviation, so take a square root at the end."),
             how="a = float(schedules['linear'].alpha_bars[300]); (a * float(mixture.covariance()[0, 0]) + 1 - a) ** 0.5",
             rtol=0.01),
    Exercise("02-eps-axis",
             "ring8, linear schedule: what is the ideal noise prediction eps*(x, t) at x = (0, 2.5), t = 500? "
             "(a tensor of 2 numbers; inputs in problem('02-eps-axis')) Predict the first number before computing.",
             _ideal_eps_axis,
             "Mirroring x1 -> -x1 maps the ring onto itself, so on the line x1 = 0 the score has no x1 part and "
             "eps*_1 = 0. The point lies outside the ring: the score points back inwards (down), and eps* = "
             "-sqrt(1 - alpha_bar) grad log p_t points the other way, outwards (up): eps*_2 > 0.",
             hints=("Call the ideal denoiser: `ideal(x, torch.tensor([t]))` with x of shape [1, 2].",
                    "Before computing: is the ring symmetric under x1 -> -x1? What does that say about the first "
                    "coordinate on the line x1 = 0? And the point is outside the ring: which way does the noise "
                    "'point'?"),
             how="p = exercises.problem('02-eps-axis'); ideal(p['x'], torch.tensor([p['t']]))[0]",
             kind="tensor", atol=1e-6, inputs=_inputs_02_axis),
    Exercise("02-ddim-one-step",
             "With the ideal denoiser, run DDIM with ONE step from x_T = (2.0, 0.5) at t = T-1 (inputs: "
             "problem('02-ddim-one-step')['x_T']). Where does the sample land? (a tensor of 2 numbers)",
             _ddim_one_step,
             "One step to the end returns x0_pred = E[x0 | x_T]: an average over all eight modes weighted by "
             "how likely each is given x_T. At t = T-1 x_T says almost nothing, so the average sits near the "
             "centre of the ring - one step, even with a perfect denoiser, cannot produce a sample on the ring.",
             hints=("`sample(ideal, x_T, schedule, 1)` runs one step; `.final` is where it lands ([1, 2]: take "
                    "`[0]`).",
                    "Use the x_T of the inputs as it is (float64, shape [1, 2]) and the schedule of this notebook."),
             how="x_T = exercises.problem('02-ddim-one-step')['x_T']; sample(ideal, x_T, schedule, 1).final[0]",
             kind="tensor", atol=1e-3, inputs=_inputs_02_one_step),
    Exercise("02-ddpm-or-ddim",
             "Ideal denoiser, 10 sampling steps, the same 1000 starting points: which sampler's log-likelihood "
             "gap to fresh data is closer to 0, 'DDPM' or 'DDIM'?",
             _ddpm_or_ddim_closer,
             "Both gaps are negative at 10 steps: a few large steps leave samples where real data rarely is. "
             "DDIM's comes out closer to 0 (here by about 0.25, with standard errors near 0.15; the same way "
             "round from four other seeds' starting points). Both stay far from 0: at 10 steps the step count, "
             "more than the choice of sampler, decides the error.",
             hints=("Sample both from the same x_T: `sample(ideal, x_T, schedule, 10, eta=0.0)` and "
                    "`sample(ideal, x_T, schedule, 10, eta=1.0, generator=gen)`.",
                    "Score each `.final` with `metrics.loglik_gap(samples, reference, mixture)`; compare the "
                    "absolute values of `.gap`: the target is 0."),
             how="abs(metrics.loglik_gap(sample(ideal, x_T, schedule, 10).final, reference, mixture).gap) < "
                 "abs(metrics.loglik_gap(sample(ideal, x_T, schedule, 10, eta=1.0, generator=gen).final, reference, "
                 "mixture).gap): 'DDIM'",
             kind="choice", choices=("DDPM", "DDIM")),
    Exercise("03-x0-pred",
             "Given x_t, t and eps in problem('03-x0-pred'), compute x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps) "
             "/ sqrt(alpha_bar_t) (a [4, 2] tensor).",
             _x0_pred,
             "Invert the forward process x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps for x0.",
             hints=("alpha_bar_t is `inputs['schedule'].alpha_bar(inputs['t'])` (a tensor: `float(...)` it).",
                    "Solve x_t = sqrt(a) x0 + sqrt(1 - a) eps for x0, elementwise on the [4, 2] tensors."),
             how="a = float(inputs['schedule'].alpha_bar(inputs['t'])); "
                 "(inputs['x_t'] - (1 - a) ** 0.5 * inputs['eps']) / a ** 0.5",
             kind="tensor", atol=1e-5, inputs=_inputs_03_x0_pred),
    Exercise("03-zero-model-loss",
             "A network that always predicts eps = 0 (2-D data): what simple loss E||eps - eps_theta||^2 "
             "does it get, on average?",
             _zero_model_loss,
             "E||eps||^2 = sum over the D = 2 coordinates of E[eps_i^2] = 1 each: the loss at initialisation "
             "starts near 2, and everything training achieves is measured against it.",
             hints=("With eps_theta = 0 the loss is E||eps||^2: the expected squared length of a standard normal "
                    "vector.",
                    "E[eps_i^2] is the variance of one coordinate of N(0, I); the squared length sums the "
                    "coordinates."),
             how="the data is 2-D and E[eps_i^2] = 1: 2 * 1.0", rtol=0.01),
    Exercise("03-less-training",
             "Train for only 150 updates (TRAIN_STEPS = 150) and sample with 50 DDIM steps: do the samples sit on "
             "the eight clusters about as tightly as real data (mean log-likelihood within 1 of the data's)? "
             "'yes' or 'no'",
             _less_training_on_clusters,
             "After 150 updates the network has learned the rough shape (a ring) but not the eight tight "
             "clusters: its samples smear along and across the ring, so their log-likelihood under the true "
             "density falls far below the data's. The total spread (std ratio) can still look almost right, "
             "which is why one number is not enough to judge a sampler.",
             hints=("Change TRAIN_STEPS in the parameters cell, re-run the training and sampling cells, then look "
                    "at the slider's last frame.",
                    "Compare `metrics.mean_log_likelihood(learned.final, mixture)` with the same for `reference` "
                    "(real data)."),
             how="TRAIN_STEPS = 150, re-run; metrics.mean_log_likelihood(learned.final, mixture) is many nats "
                 "below metrics.mean_log_likelihood(reference, mixture): 'no'",
             kind="choice", choices=("yes", "no")),
    Exercise("04-gamma-500",
             "Linear schedule: compute gamma_t = sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) at t = 500, "
             "the factor by which the estimation gap is carried from one step to the next.",
             _gamma_500,
             "gamma_t is the posterior mean's coefficient on x_t. One factor just below 1 forgets little, but "
             "the gap is carried through every later step: the product of gamma from t = 999 down to 100 is "
             "below 1e-3 and gamma_1 is about 0.45, so early errors are almost entirely forgotten and the last "
             "steps make the final gap (drift.gap_survival).",
             hints=("You need alpha_500 = 1 - beta_500, alpha_bar_499 and alpha_bar_500: `schedule.alphas`, "
                    "`schedule.alpha_bars`.",
                    "Mind the indices: alpha_bar_{t-1} is `schedule.alpha_bars[499]`."),
             how="a = schedule.alpha_bars; float(schedule.alphas[500].sqrt() * (1 - a[499]) / (1 - a[500]))",
             rtol=1e-4),
    Exercise("04-bias-step",
             "A DDIM step from t = 499 to s = 399 uses eps_ideal + b with b = (0.1, 0) (inputs: "
             "problem('04-bias-step')). By how much does it move the sample compared with the ideal step? "
             "(a tensor of 2 numbers: biased minus ideal)",
             _bias_step,
             "x_s = sqrt(a_s) x0_pred + sqrt(1 - a_s) eps is linear in eps, so a bias b moves x_s by "
             "(sqrt(1 - a_s) - sqrt(a_s) sqrt(1 - a_t) / sqrt(a_t)) b - here a negative multiple of b.",
             hints=("Take two steps with `seqdiff_kit.generalized_step(x, eps, t, s, schedule)`: one with the "
                    "ideal eps, one with eps + b; subtract.",
                    "The ideal eps is `IdealDenoiser(ring8(), schedule)(x_t, torch.tensor([t]))`; the step's first "
                    "output is x_s."),
             how="eps = IdealDenoiser(ring8(), s)(p['x_t'], torch.tensor([p['t']])); "
                 "(generalized_step(p['x_t'], eps + p['b'], 499, 399, s)[0] - generalized_step(p['x_t'], eps, 499, "
                 "399, s)[0])[0]",
             kind="tensor", atol=1e-5, inputs=_inputs_04_bias),
    Exercise("04-ddpm-drift",
             "Run notebook 4's comparison with ETA = 1.0 (DDPM, the same noise for both paths): is the final "
             "drift from the ideal path 'larger' or 'smaller' than with DDIM?",
             _ddpm_drift,
             "Smaller, although each DDPM step makes a LARGER local error (the sum of local errors nearly "
             "doubles): the fresh noise is the same for both paths, and a DDPM step carries less of the "
             "predicted noise forward (sqrt(1 - a_s - sigma^2) instead of sqrt(1 - a_s)), so it keeps less of "
             "the difference between the paths; less of the early errors survives to the end.",
             hints=("Set ETA = 1.0 in the parameters cell and re-run: the printed 'final drift' is the number to "
                    "compare with the DDIM run's.",
                    "Compare also the printed sum of local errors: if every step errs more, how can the end "
                    "be closer? Think of what shared fresh noise does to two nearby points."),
             how="step_drift(model, ideal, x_T, schedule, 50, eta=1.0, generator=gen).mean('drift')[-1] against "
                 "the same with eta=0.0 (same seed): 'smaller'",
             kind="choice", choices=("larger", "smaller")),
    Exercise("05-k1-ratio",
             "With K = 1 and lam = 0.5, what is the sequence-aware total loss divided by the simple loss "
             "(same x0, t and noise)?",
             _k1_ratio,
             "With K = 1 the sum over the window has one term, so L_sa = L_simple and the total is (1 + lam) "
             "L_simple: K = 1 only rescales the loss (and the learning rate).",
             hints=("Write out L_sa for K = 1: the sum over k = 0..K-1 has a single term, with 1/K^2 = 1.",
                    "Then the total is L_simple + lam * L_sa with L_sa equal to what? (`losses.sequence_aware_loss` "
                    "and `losses.simple_loss` with the same `generator` seed confirm it.)"),
             how="1 + lam = 1.5", rtol=1e-6, inputs=_inputs_05_k1),
    Exercise("05-gauss-std-ratio",
             "1-D Gaussian data (var = 0.25), linear schedule: with the population optimum of the SA loss "
             "(K = 2, lam = 1; analysis.gaussian_sa_optimum), what is std(final sample) / std(data) for 10 "
             "DDIM steps (analysis.linear_sampler_std_ratio)?",
             _gauss_std_ratio,
             "The simple loss's optimum is the exact eps*, yet 10 DDIM steps shrink the samples (ratio < 1). "
             "With independent noises the SA optimum predicts a smaller noise than eps* (a_t / a*_t < 1), so "
             "x0_pred lies farther out and the samples widen: this pushes the ratio towards 1 at few steps and "
             "past it at many.",
             hints=("`gaussian_sa_optimum(var, K, lam, schedule)` gives the optimal a_t; pass it to "
                    "`linear_sampler_std_ratio(a, var, schedule, steps)`.",
                    "Use var = 0.25 (not the ring's variance), K = 2, lam = 1.0 and steps = 10, as in "
                    "problem('05-gauss-std-ratio')."),
             how="p = exercises.problem('05-gauss-std-ratio'); linear_sampler_std_ratio(gaussian_sa_optimum("
                 "p['var'], p['K'], p['lam'], p['schedule']), p['var'], p['schedule'], p['steps'])",
             rtol=1e-3, inputs=_inputs_05_gauss),
    Exercise("05-k4",
             "Closed form (ring8's coordinate variance, lam = 1): is the std ratio of DDIM samples with K = 4 "
             "'above' or 'below' the one with K = 2, at 10 steps and at 100 steps? (two words, in that order)",
             _k4_against_k2,
             "Above at both: a longer window sums more neighbouring errors, so the SA optimum departs further "
             "from eps* and predicts a smaller noise; the samples widen more. At 10 steps that moves the ratio "
             "from below 1 to above it, at 100 steps (where the ideal ratio is about 1) it over-disperses more.",
             hints=("Compute `gaussian_sa_optimum(var, K, 1.0, schedule)` for K = 2 and K = 4, with var = "
                    "float(mixture.covariance()[0, 0]).",
                    "Feed each to `linear_sampler_std_ratio(a, var, schedule, steps)` for steps = 10 and 100 and "
                    "compare pairwise."),
             how="p = exercises.problem('05-k4'); [linear_sampler_std_ratio(gaussian_sa_optimum(p['var'], 4, 1.0, "
                 "schedule), p['var'], schedule, n) > linear_sampler_std_ratio(gaussian_sa_optimum(p['var'], 2, "
                 "1.0, schedule), p['var'], schedule, n) for n in (10, 100)]",
             kind="choices", choices=("above", "below"), inputs=_inputs_05_k4),
    Exercise("06-zero-model-loss-digits",
             "A network that always predicts eps = 0 on the 8x8 digits: what simple loss E||eps - eps_theta||^2 "
             "does it get, on average?",
             lambda: float(digits()[0][0].numel()),
             "E||eps||^2 sums E[eps_i^2] = 1 over the 64 pixels: the loss starts near 64 and the shipped "
             "networks end near 5, so they predict most of the noise.",
             hints=("As in notebook 3: with eps_theta = 0 the loss is E||eps||^2, a sum over the coordinates.",
                    "How many coordinates does one 8x8 image have?"),
             how="8 * 8 pixels, E[eps_i^2] = 1 each: 64.0", rtol=0.01),
    Exercise("06-confidence-share",
             "problem('06-confidence-share')['probs'] holds class probabilities [8, 10] of eight images. What "
             "share of the images does the classifier label with confidence >= 0.9 (max probability)?",
             lambda: float((_probs_06()["probs"].max(dim=-1).values >= 0.9).double().mean()),
             "An image counts as recognisable when its largest class probability reaches 0.9; the share is "
             "the fraction of rows whose maximum passes that bar.",
             hints=("Take each row's largest probability: `probs.max(dim=-1).values`.",
                    "Count the rows whose maximum is >= 0.9 and divide by the number of rows (a share, not a "
                    "count)."),
             how="probs = exercises.problem('06-confidence-share')['probs']; "
                 "float((probs.max(dim=-1).values >= 0.9).double().mean())",
             rtol=1e-9, inputs=_probs_06),
    Exercise("06-trailing-5",
             "Linear schedule, T = 1000: which 5 timesteps does a 5-step sampler with 'trailing' spacing visit? "
             "(a tensor of 5 integers, descending)",
             lambda: Schedule.linear().timesteps(5, "trailing").double(),
             "Trailing spacing starts at T-1 = 999 and takes jumps of T/5 = 200: each DDIM step there bridges "
             "200 training timesteps, which is where errors per step are largest.",
             hints=("`schedule.timesteps(steps, spacing)` returns them.",
                    "Trailing spacing starts at T - 1 and goes down in equal jumps of T / steps."),
             how="schedule.timesteps(5, 'trailing')", kind="tensor", rtol=0, atol=0),
    Exercise("07-heun-calls",
             "How many times does Heun's method call the model in a 10-step run? (solvers.model_calls, or count "
             "the calls with a model that counts them)",
             _heun_calls,
             "Each step evaluates the model at x_t and again at the Euler guess x' at the next timestep; the last "
             "step, to the data, is a plain Euler (DDIM) step: 2 x 10 - 1 calls. Compare solvers at equal calls, "
             "not only at equal steps.",
             hints=("Heun takes an Euler guess to the next timestep and calls the model there too.",
                    "Every step but the last calls the model twice; the last step, to the data, once."),
             how="solvers.model_calls('heun', 10)", kind="int", rtol=0, atol=0),
    Exercise("07-last-step-variance",
             "1-D Gaussian data N(0, 0.25), linear schedule, 10 trailing steps: the last step jumps from t = 99 to "
             "the data. With the exact Gamma_t = (1 - a) / (a v + 1 - a), what variance does Analytic-DPM add at "
             "that last step? (solvers.analytic_variance(a_99, 1.0, gamma))",
             _last_step_variance,
             "At the last step lam = 0 and c = 1, so sigma*^2 = (1 - a) / a (1 - Gamma) = Var[x0 | x_99], the "
             "posterior variance of the data given x_99: exactly the spread that a step returning the posterior "
             "mean throws away.",
             hints=("At the last step s = -1: alpha_bar_s = 1, so lam = 0 and c = 1.",
                    "Then sigma*^2 = (1 - a) / a (1 - Gamma) with a = alpha_bar_99: the posterior variance of x0."),
             how="a = float(schedule.alpha_bar(99)); solvers.analytic_variance(a, 1.0, (1 - a) / (a * 0.25 + 1 - a))",
             rtol=1e-6, inputs=_inputs_07_gauss),
    Exercise("07-ddim-order",
             "1-D Gaussian N(0, 0.25): run DDIM with the exact eps* for 50 and for 100 trailing steps and compare "
             "the state at t = 99 with the exact probability-flow solution x_T sqrt(q_99 / q_999), q = a v + 1 - a. "
             "What is the ratio error(50 steps) / error(100 steps)?",
             _ddim_order_ratio,
             "DDIM is a first-order solver of the probability-flow ODE: halving the step halves the error (ratio "
             "about 2). DPM-Solver++(2M) and Heun are second order: their ratio is about 4.",
             hints=("The model: eps*(x, t) = sqrt(1 - a_t) x / (a_t v + 1 - a_t); sample with solver='ddim' and "
                    "read the state at t = 99 from the trajectory (tr.x[tr.timesteps.tolist().index(99)]).",
                    "Divide |state - exact| at 50 steps by the same at 100 steps: a first-order method gives 2."),
             how="e = [abs(float(solvers.sample(eps_star, x_T, schedule, n).x[9 * n // 10, 0, 0]) - exact) "
                 "for n in (50, 100)]; e[0] / e[1]",
             rtol=0.01, inputs=_inputs_07_gauss),
]}


# ---------------------------------------------------------------------------------------------- grading
def problem(exercise_id: str) -> dict:
    """The question text and the inputs it needs: ``{"question": str, **inputs}``; for a coding exercise its task
    and the signature to write: ``{"question": str, "signature": str}``."""
    ex = _get(exercise_id)
    if isinstance(ex, CodeExercise):
        return {"question": ex.task, "signature": ex.signature}
    return {"question": ex.question, **ex.inputs()}


def _get(exercise_id):
    check_type("exercise_id", exercise_id, str)  # first, so a non-str gets a TypeError, not a lookup error
    every = {**EXERCISES, **CODE}
    return every[check_choice("exercise_id", exercise_id, every)]


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0][:160] if text else type(err).__name__)


def _as_tensor(answer) -> torch.Tensor:
    if isinstance(answer, str):
        raise TypeError(f"that is the text {answer!r}: answer with numbers, without quotes")
    if isinstance(answer, torch.Tensor):
        return answer.detach().to(torch.float64).cpu()
    try:
        return torch.as_tensor(answer, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"answer must be a number, a list of numbers or a tensor, got {type(answer).__name__}") \
            from err


def _words(ex: Exercise, answer) -> tuple:
    """A "choice" answer as a 1-tuple, a "choices" answer as a tuple of words, each checked against the choices."""
    if ex.kind == "choice":
        if not isinstance(answer, str):
            raise TypeError(f"answer with one word in quotes, one of {list(ex.choices)}, not {answer!r}")
        answer = (answer,)
    elif isinstance(answer, str) or not isinstance(answer, Sequence):
        raise TypeError(f"answer with a list of words, each one of {list(ex.choices)}, not {answer!r}")
    words = tuple(str(w).strip() for w in answer)
    lowered = {c.lower(): c for c in ex.choices}
    for w in words:
        if w.lower() not in lowered:
            raise ValueError(f"answer with the words {list(ex.choices)}, got {w!r}")
    return tuple(lowered[w.lower()] for w in words)


def _off_by(value: float, expected: float) -> str:
    """Which way a number is off, and roughly how far, without saying where the answer is."""
    if not math.isfinite(value):
        return "it is not a finite number"
    if abs(expected) > 1e-9 and value != 0 and math.copysign(1, value) != math.copysign(1, expected):
        return "its sign is wrong"
    ratio = abs(value / expected) if expected != 0 else math.inf
    side = "too large" if value > expected else "too small"
    if 0.9 <= ratio <= 1.1:
        return f"it is close but a little {side}"
    if 0.5 <= ratio <= 2:
        return f"it is {side}"
    return f"it is far {side} (off by more than a factor of 2)"


def _judge_words(ex: Exercise, answer, expected) -> tuple[bool, str]:
    words = _words(ex, answer)
    want = expected if isinstance(expected, tuple) else (expected,)
    if len(words) != len(want):
        return False, f"[{ex.id}] not quite: the question asks for {len(want)} word(s), you gave {len(words)}"
    if words == want:
        return True, f"[{ex.id}] right: {', '.join(words)}. Why: {ex.why}"
    wrong = [str(k + 1) for k, (w, e) in enumerate(zip(words, want)) if w != e]
    where = ("" if len(want) == 1 else f" (part {wrong[0]} is not)" if len(wrong) == 1
             else f" (parts {', '.join(wrong[:-1])} and {wrong[-1]} are not)")
    return False, f"[{ex.id}] not quite: that is not what the numbers show{where}"


def _judge_number(ex: Exercise, answer, expected) -> tuple[bool, str]:
    if isinstance(answer, str):
        raise TypeError(f"that is the text {answer!r}: answer with a number, without quotes")
    if isinstance(answer, bool):
        raise TypeError("that is True/False: answer with a number")
    if isinstance(answer, torch.Tensor) and answer.numel() != 1:
        raise TypeError(f"answer with a single number, not a tensor of shape {tuple(answer.shape)}")
    value = float(answer) if isinstance(answer, (Real, torch.Tensor)) else float(_as_tensor(answer))
    if ex.kind == "int":
        shown = f"{int(value) if value.is_integer() else value}"
        if value == float(expected):
            return True, f"[{ex.id}] right: {shown}. Why: {ex.why}"
        return False, f"[{ex.id}] not quite: {shown} is {'too small' if value < expected else 'too large'}"
    if math.isfinite(value) and math.isclose(value, expected, rel_tol=ex.rtol, abs_tol=ex.atol):
        return True, f"[{ex.id}] right: {value:.6g}. Why: {ex.why}"
    return False, f"[{ex.id}] not quite: {value:.6g} - {_off_by(value, expected)}"


def _judge_tensor(ex: Exercise, answer, expected) -> tuple[bool, str]:
    value, expected = _as_tensor(answer), expected.to(torch.float64)
    if value.shape != expected.shape:
        return False, (f"[{ex.id}] not quite: your answer has shape {tuple(value.shape)}, the question asks for "
                       f"shape {tuple(expected.shape)}")
    close = torch.isclose(value, expected, rtol=ex.rtol, atol=ex.atol) & torch.isfinite(value)
    if bool(close.all()):
        return True, f"[{ex.id}] right. Why: {ex.why}"
    flat_v, flat_e = value.flatten().tolist(), expected.flatten().tolist()
    off = [k for k, ok in enumerate(close.flatten().tolist()) if not ok]
    parts = [f"entry {k}: {_off_by(flat_v[k], flat_e[k])}" for k in off[:4]]
    more = f" (and {len(off) - 4} more)" if len(off) > 4 else ""
    return False, f"[{ex.id}] not quite: {len(off)} of {len(flat_v)} entries are off - " + "; ".join(parts) + more


def _verdict(ex: Exercise, answer) -> tuple[str, str]:
    """``(state, one-line message)``, state "right", "wrong" or "open" (no answer yet, or one that cannot be read
    as an answer of this kind: a word for a number, a list for one word; it costs no try)."""
    if answer is None:
        return "open", f"[{ex.id}] no answer yet: replace None with your answer. Question: {ex.question}"
    judge = (_judge_words if ex.kind in ("choice", "choices") else _judge_number if ex.kind in ("int", "float")
             else _judge_tensor)
    try:
        ok, message = judge(ex, answer, ex.expected())
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:
        return "open", f"[{ex.id}] cannot read that as an answer: {_one_line(err)}"
    return ("right" if ok else "wrong"), message


def grade(exercise_id: str, answer, *, part: str = "all") -> tuple[bool, str]:
    """``(right, one-line message)`` without printing. A wrong answer's message says which way it is off (never
    the expected value); ``answer=None`` means not answered yet; an answer of the wrong type is not right and
    says what kind of answer is wanted. A coding exercise (``CODE``) takes the student's function; ``part``
    picks its cases: "basic", "edge" (the hidden tests of the nbgrader course) or "all"."""
    ex = _get(exercise_id)
    check_choice("part", part, ("all", "basic", "edge"))
    if isinstance(ex, CodeExercise):
        state, message = _code_verdict(ex, answer, part)
    else:
        state, message = _verdict(ex, answer)
    return state == "right", message


# wrong tries per exercise in this session: each new wrong try gets the next hint
_TRIES: dict[str, int] = {}


def hint(exercise_id: str, tries: int) -> str:
    """The hint after ``tries`` wrong answers (1 = the first hint; the last hint repeats)."""
    ex = _get(exercise_id)
    if not ex.hints:
        return "re-read the question and the cells above it."
    return ex.hints[min(max(tries, 1), len(ex.hints)) - 1]


def check(exercise_id: str, answer) -> None:
    """Print whether ``answer`` (a coding exercise: the student's function) is right for ``exercise_id``: why
    when it is; what is wrong, in one line, and the next hint when it is not (never the expected value). Never
    raises: any input gets a printed answer. Returns None; ``solution(exercise_id)`` shows the answer."""
    try:
        ex = _get(exercise_id)
    except (TypeError, ValueError) as err:
        print(f"✘ {_one_line(err)}")
        return
    state, message = _code_verdict(ex, answer) if isinstance(ex, CodeExercise) else _verdict(ex, answer)
    if state != "wrong":
        print(("✔ " if state == "right" else "✘ ") + message)
        return
    tries = _TRIES[exercise_id] = _TRIES.get(exercise_id, 0) + 1
    print(f"✘ {message}.\n  Hint {min(tries, max(len(ex.hints), 1))}: {hint(exercise_id, tries)}"
          f"\n  (Stuck? exercises.solution({exercise_id!r}) shows the model answer.)")


def solution(exercise_id: str) -> None:
    """Print the model answer of ``exercise_id``: its value, how to compute it, and why (a coding exercise:
    where the kit's own version is, and the teacher's solution when ``teacher/solutions.py`` is there).
    Returns None."""
    ex = _get(exercise_id)
    if isinstance(ex, CodeExercise):
        name = ex.signature.split("(")[0]
        print(f"[{ex.id}] the kit's own version: {ex.how}\n  Why: {ex.why}")
        if TEACHER_SOLUTIONS.is_file():
            print(f"  The teacher's solution ({TEACHER_SOLUTIONS.name}):\n{solution_source(name)}")
        return
    value = ex.expected()
    if isinstance(value, torch.Tensor):
        shown = str((value.numpy().round(6) + 0.0).tolist())  # + 0.0: no "-0.0"
    elif isinstance(value, tuple):
        shown = ", ".join(value)
    elif isinstance(value, float):
        shown = f"{value:.6g}"
    else:
        shown = str(value)
    print(f"[{ex.id}] model answer: {shown}\n  How: {ex.how or '(see the question)'}\n  Why: {ex.why}")


# ---------------------------------------------------------------------------------------------- coding exercises
# The student writes a function; it is run on seeded random inputs beside the kit's own version. A wrong result
# that matches a typical mistake (``bugs``) is named in one line; else the first case where it goes wrong is.
TEACHER_SOLUTIONS = Path(__file__).resolve().parent.parent / "teacher" / "solutions.py"


@dataclass(frozen=True)
class CodeExercise:
    """A function to write, ``signature``. ``cases()`` gives ``(label, kwargs, edge)`` triples (``edge``: t = 0,
    t = T-1, the last step, the mask: the nbgrader course's hidden tests); ``reference`` is the kit's answer, with
    the same signature, so ``yours`` can stand one in for the other. ``bugs``: ``(reading, wrong_version)`` pairs,
    checked in order. ``how`` says where the kit's own version is."""

    id: str
    signature: str
    task: str
    cases: Callable[[], list]
    reference: Callable[..., torch.Tensor]
    why: str
    hints: tuple = ()
    bugs: tuple = ()
    how: str = ""


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(27)


def _ab(schedule: Schedule, t, like: torch.Tensor) -> torch.Tensor:
    """alpha_bar(t) (t an int or [B], -1 the data) shaped [B, 1, ...] against ``like`` [B, ...], float64."""
    return schedule.alpha_bar(torch.as_tensor(t)).reshape(-1, *[1] * (like.ndim - 1))


def _toy_model(x: torch.Tensor, t) -> torch.Tensor:
    """A fixed model of x and t: a wrong x_t, a shifted t or a skipped call changes what it returns."""
    t = torch.as_tensor(t).to(x.dtype).reshape(-1, *[1] * (x.ndim - 1))
    return 0.5 * x + torch.sin(t / 50)


def _sq(v: torch.Tensor) -> torch.Tensor:
    """``||v_b||^2`` per sample [B]."""
    return v.pow(2).flatten(1).sum(1)


def _noised(x0, a, noise, sign=1.0):
    return (a.sqrt() * x0 + sign * (1 - a).sqrt() * noise).to(x0.dtype)


def _ddim(x, eps, a_t, a_s, sign=1.0):
    x0 = (x - sign * (1 - a_t) ** 0.5 * eps) / a_t ** 0.5
    return (a_s ** 0.5 * x0 + (1 - a_s) ** 0.5 * eps).to(x.dtype)


def _heun(model, x, t, s, schedule, t_corr=None):
    a_t, a_s = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(s))
    sig_t, sig_s = ((1 - a_t) / a_t) ** 0.5, ((1 - a_s) / a_s) ** 0.5
    b = torch.full((x.shape[0],), t)
    eps = model(x, b)
    guess = a_s ** 0.5 * (x / a_t ** 0.5 + (sig_s - sig_t) * eps)
    eps_s = model(guess, b * 0 + (s if t_corr is None else t_corr))
    return a_s ** 0.5 * (x / a_t ** 0.5 + (sig_s - sig_t) * 0.5 * (eps + eps_s))


def _path(model, x_T, schedule, pairs, restart=False):
    xs = [x_T]
    for t, s in pairs:
        x = x_T if restart else xs[-1]
        xs.append(_ddim(x, model(x, torch.full((x.shape[0],), t)), float(schedule.alpha_bar(t)),
                        float(schedule.alpha_bar(s))))
    return torch.stack(xs)


def _sa(model, x0, t, noise, schedule, K, mask=True, each=False, norm=None, wrap=False):
    """The SA term with switches for its typical mistakes (no mask, squares of each term, no 1/K^2)."""
    total = 0
    for k in range(K):
        tk = t - k if wrap else (t - k).clamp(min=0)
        r = noise[k] - model(_noised(x0, _ab(schedule, tk, x0) if not wrap else
                                     schedule.alpha_bars[tk].reshape(-1, *[1] * (x0.ndim - 1)), noise[k]), tk)
        keep = ((t >= k) | (not mask)).to(x0.dtype).reshape(-1, *[1] * (x0.ndim - 1))
        total = total + (_sq(keep * r) if each else keep * r)
    return ((total if each else _sq(total)) / (K * K if norm is None else norm)).mean()


def _cases_alpha_bars():
    g = _gen()
    return [("the linear betas (T = 1000)", {"betas": Schedule.linear().betas.clone()}, False),
            ("5 random betas in float32", {"betas": torch.rand(5, generator=g) * 0.3 + 0.01}, False),
            ("the cosine betas, up to t = T-1 where beta is 0.999", {"betas": Schedule.cosine().betas.clone()},
             True)]


def _case_maker(g, dtype=torch.float64):
    return lambda *shape: torch.randn(shape, generator=g, dtype=dtype)


def _cases_add_noise():
    sch, g = Schedule.linear(), _gen()

    def case(shape, t, dtype=torch.float64):
        r = _case_maker(g, dtype)
        return {"x0": r(*shape), "t": torch.as_tensor(t), "noise": r(*shape), "schedule": sch}
    return [("6 points, t in [1, 998]", case((6, 2), torch.randint(1, 999, (6,), generator=g)), False),
            ("3 digits [3, 1, 8, 8] in float32", case((3, 1, 8, 8), [10, 400, 900], torch.float32), False),
            ("t = 0 and t = T-1", case((2, 2), [0, 999]), True),
            ("t = -1, the clean data", case((3, 2), [-1, 5, -1]), True)]


def _cases_gauss_eps():
    sch, g = Schedule.linear(), _gen()

    def case(B, D, t, dtype=torch.float64):
        r = _case_maker(g, dtype)
        return {"x": 2 * r(B, D), "alpha_bar": float(sch.alpha_bar(t)), "mean": r(D), "var": 0.3}
    return [("5 points in 2-D at t = 500", case(5, 2, 500), False),
            ("4 points in 3-D at t = 200, float32", case(4, 3, 200, torch.float32), False),
            ("t = 0 (alpha_bar near 1)", case(3, 2, 0), True), ("t = T-1 (alpha_bar near 0)", case(3, 2, 999), True)]


def _loss_cases(K=None):
    sch, g = Schedule.linear(), _gen()

    def case(shape, t, dtype=torch.float64, k=None):
        r = _case_maker(g, dtype)
        kw = {"model": _toy_model, "x0": r(*shape), "t": torch.as_tensor(t),
              "noise": r(*shape) if k is None else r(k, *shape), "schedule": sch}
        return kw if k is None else {**kw, "K": k}  # in the signature's order: the student's function is called
        # positionally, so its own parameter names do not matter
    low = 0 if K is None else 3
    return [("8 points, t in [{}, 998]".format(low), case((8, 2), torch.randint(low, 999, (8,), generator=g), k=K),
             False),
            ("4 digits [4, 1, 8, 8] in float32", case((4, 1, 8, 8), [3, 50, 500, 990], torch.float32,
                                                      k=None if K is None else 3), False),
            ("t = 0, 1 and 2 (the mask decides)" if K else "t = 0 for every point",
             case((3, 2), [0, 1, 2] if K else [0, 0, 0], k=None if K is None else 3), True),
            ("t = T-1 for every point", case((3, 2), [999] * 3, k=K), True)]


def _cases_steps(heun=False):
    sch, g = Schedule.linear(), _gen()

    def case(shape, t, s, dtype=torch.float64):
        r = _case_maker(g, dtype)
        return {**({"model": _toy_model} if heun else {}), "x": r(*shape), **({} if heun else {"eps": r(*shape)}),
                "t": t, "s": s, "schedule": sch}
    return [("t = 499 -> s = 399", case((6, 2), 499, 399), False),
            ("t = 800 -> s = 650 in float32", case((4, 2), 800, 650, torch.float32), False),
            ("t = T-1 = 999 -> s = 899", case((3, 2), 999, 899), True),
            ("the last step, t = 99 -> s = -1 (the data)", case((3, 2), 99, -1), True)]


def _cases_sampler():
    sch, g = Schedule.linear(), _gen()

    def case(B, ts, dtype=torch.float64):
        return {"model": _toy_model, "x_T": torch.randn(B, 2, generator=g, dtype=dtype), "schedule": sch,
                "timesteps": list(ts)}
    return [("5 trailing steps, 4 points", case(4, sch.timesteps(5).tolist()), False),
            ("3 steps in float32", case(3, [900, 500, 100], torch.float32), False),
            ("1 step, from T-1 straight to the data", case(3, [999]), True),
            ("steps down to t = 0", case(2, [40, 20, 0]), True)]


# the kit's own versions, with the signatures the students write
def _ref_alpha_bars(betas):
    return Schedule(betas.double()).alpha_bars.to(betas.dtype)


def _ref_add_noise(x0, t, noise, schedule):
    return schedule.add_noise(x0, t, noise)


def _ref_gauss_eps(x, alpha_bar, mean, var):
    d = mean.numel()
    one = GaussianMixture(torch.ones(1), mean.double()[None], var * torch.eye(d, dtype=torch.float64)[None])
    return one.ideal_eps(x.double(), alpha_bar).to(x.dtype)


def _ref_simple(model, x0, t, noise, schedule):
    return simple_loss(model, x0, schedule, t=t, noise=noise).simple


def _ref_ddim_step(x, eps, t, s, schedule):
    return generalized_step(x, eps, t, s, schedule)[0]


def _ref_sampler(model, x_T, schedule, timesteps):
    return sample(model, x_T, schedule, timesteps=timesteps).x


def _ref_sa(model, x0, t, noise, schedule, K):
    return sequence_aware_loss(model, x0, schedule, K, 1.0, t=t, noise=noise).sa


def _ref_heun_step(model, x, t, s, schedule):
    return next(iter(heun(model, x, schedule, [t, s] if s >= 0 else [t]))).x_s


_WRAP = ("at t = -1 (the clean data) alpha_bar is 1, but schedule.alpha_bars[-1] is the LAST timestep's: use "
         "schedule.alpha_bar(t)")
_OFF = "off by one timestep: use alpha_bar at t itself (alpha_bars[t] holds alpha_bar_t, t counted from 0)"
_T_MAX = 999
CODE: dict[str, CodeExercise] = {e.id: e for e in [
    CodeExercise(
        "01-alpha-bars", "alpha_bars_from_betas(betas)",
        "From the betas [T] of a schedule, return alpha_bar_t = prod_{s <= t} (1 - beta_s) for every t ([T], the "
        "betas' dtype).", _cases_alpha_bars, _ref_alpha_bars,
        "Each step keeps a share 1 - beta_s of the signal's variance, so after t + 1 steps the share left is the "
        "product: alpha_bar falls from 1 - beta_0 towards 0.",
        hints=("alpha_bar_t is a running PRODUCT over s = 0..t (torch has one for tensors, along a dimension).",
               "Of what? alpha_s = 1 - beta_s, the share each step keeps."),
        bugs=(("a running sum: alpha_bar_t is the PRODUCT of the (1 - beta_s)",
               lambda betas: torch.cumsum(1 - betas, 0)),
              ("a product of the betas: multiply alpha_s = 1 - beta_s, the share each step keeps",
               lambda betas: torch.cumprod(betas, 0)),
              ("off by one timestep: alpha_bar_0 is already 1 - beta_0 (the product runs over s <= t)",
               lambda betas: torch.cat([betas.new_ones(1), torch.cumprod(1 - betas, 0)[:-1]]))),
        how="seqdiff_kit.Schedule(betas).alpha_bars"),
    CodeExercise(
        "01-add-noise", "add_noise(x0, t, noise, schedule)",
        "Return x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise for a batch: x0, noise [B, ...] (points "
        "or images), t a LongTensor [B] in [-1, T-1] (t = -1: the clean data), in x0's dtype.",
        _cases_add_noise, _ref_add_noise,
        "alpha_bar_t is the share of the signal's variance left at t; x0 and the noise are independent, so "
        "Var[x_t] = alpha_bar Var[x0] + 1 - alpha_bar. One coefficient per sample, broadcast over its features.",
        hints=("schedule.alpha_bar(t) gives alpha_bar for a tensor of timesteps (and 1 at t = -1).",
               "It has shape [B]: reshape it to [B, 1, ...] (one 1 per feature dimension of x0) to multiply x0, "
               "and cast it to x0's dtype."),
        bugs=(("wrong sign: x_t ADDS the noise, + sqrt(1 - alpha_bar_t) noise",
               lambda x0, t, noise, schedule: _noised(x0, _ab(schedule, t, x0), noise, -1.0)),
              ("no square roots: alpha_bar is a share of the VARIANCE, so x0 is scaled by sqrt(alpha_bar)",
               lambda x0, t, noise, schedule: (_ab(schedule, t, x0) * x0 + (1 - _ab(schedule, t, x0)) * noise)),
              ("signal and noise swapped: x0 gets sqrt(alpha_bar_t), the noise sqrt(1 - alpha_bar_t)",
               lambda x0, t, noise, schedule: _noised(noise, _ab(schedule, t, x0), x0)),
              (_WRAP, lambda x0, t, noise, schedule: _noised(x0, schedule.alpha_bars[t].reshape(_ab(
                  schedule, t, x0).shape), noise)),
              (_OFF, lambda x0, t, noise, schedule: _noised(x0, _ab(schedule, t - 1, x0), noise)),
              (_OFF, lambda x0, t, noise, schedule: _noised(x0, _ab(schedule, (t + 1).clamp(max=_T_MAX), x0),
                                                           noise)),
              ("wrong broadcast: alpha_bar(t) [B] must line up with the batch dimension of x0, reshape it to "
               "[B, 1, ...]", lambda x0, t, noise, schedule: _noised(x0, schedule.alpha_bar(t), noise))),
        how="seqdiff_kit.Schedule.add_noise (seqdiff_kit/schedule.py)"),
    CodeExercise(
        "02-gauss-eps", "gauss_eps(x, alpha_bar, mean, var)",
        "Data N(mean, var I): return the ideal noise prediction eps*(x) = E[eps | x_t = x] at a noise level "
        "alpha_bar (a float), for x [B, D], mean [D], var a float; in x's dtype.",
        _cases_gauss_eps, _ref_gauss_eps,
        "x_t ~ N(sqrt(a) mu, (a var + 1 - a) I), so its score is -(x - sqrt(a) mu) / (a var + 1 - a) and eps* = "
        "-sqrt(1 - a) score: it points from the noised mean towards x, all noise at a = 0, none at a = 1.",
        hints=("First the noised data: x_t = sqrt(a) x0 + sqrt(1 - a) eps is Gaussian too: what are its mean and "
               "variance?",
               "eps* = -sqrt(1 - a) * grad log p_t(x); for a Gaussian, grad log p = -(x - its mean) / its variance."),
        bugs=(("wrong sign: eps* points from the noised mean TOWARDS x (it is MINUS sqrt(1 - alpha_bar) times "
               "the score)", lambda x, alpha_bar, mean, var: -_ref_gauss_eps(x, alpha_bar, mean, var)),
              ("the noised data's mean is sqrt(alpha_bar) mean, not mean", lambda x, alpha_bar, mean, var: (
                  (1 - alpha_bar) ** 0.5 * (x - mean) / (alpha_bar * var + 1 - alpha_bar))),
              ("the noised data's variance is alpha_bar var + 1 - alpha_bar", lambda x, alpha_bar, mean, var: (
                  (1 - alpha_bar) ** 0.5 * (x - alpha_bar ** 0.5 * mean) / (var + 1 - alpha_bar))),
              ("that is minus the score; eps* is sqrt(1 - alpha_bar) times it", lambda x, alpha_bar, mean, var: (
                  (x - alpha_bar ** 0.5 * mean) / (alpha_bar * var + 1 - alpha_bar)))),
        how="seqdiff_kit.GaussianMixture.ideal_eps with one component (seqdiff_kit/data.py)"),
    CodeExercise(
        "03-simple-loss", "my_simple_loss(model, x0, t, noise, schedule)",
        "Return the simple loss (1/B) sum_b ||noise_b - model(x_t, t)_b||^2 (a scalar tensor) with x_t = "
        "sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise; t [B] in [0, T-1], x0 and noise [B, ...].",
        lambda: _loss_cases(), _ref_simple,
        "The network sees only x_t and t and is scored on the noise that was actually added: the squared error "
        "summed over a sample's features, averaged over the batch (so 2-D points and 64-pixel digits differ in "
        "scale by their dimension).",
        hints=("Build x_t as in notebook 1 (alpha_bar reshaped to [B, 1, ...]), call model(x_t, t), compare with "
               "noise.",
               "Square the error, sum it over every dimension but the batch (.flatten(1).sum(1)), then .mean()."),
        bugs=(("averaged over the features too: SUM the squares over a sample's features, average over the batch",
               lambda model, x0, t, noise, schedule: (noise - model(_noised(x0, _ab(schedule, t, x0), noise),
                                                                    t)).pow(2).mean()),
              ("summed over the batch too: average the per-sample squared norms over the batch",
               lambda model, x0, t, noise, schedule: _sq(noise - model(_noised(x0, _ab(schedule, t, x0), noise),
                                                                       t)).sum()),
              ("the target is the noise, not x0", lambda model, x0, t, noise, schedule: _sq(
                  x0 - model(_noised(x0, _ab(schedule, t, x0), noise), t)).mean()),
              ("the model must see the noised x_t, not x0", lambda model, x0, t, noise, schedule: _sq(
                  noise - model(x0, t)).mean()),
              ("wrong sign in x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) noise",
               lambda model, x0, t, noise, schedule: _sq(noise - model(_noised(x0, _ab(schedule, t, x0), noise,
                                                                               -1.0), t)).mean()),
              (_OFF, lambda model, x0, t, noise, schedule: _sq(noise - model(_noised(x0, _ab(schedule, t - 1, x0),
                                                                                     noise), t)).mean())),
        how="seqdiff_kit.losses.simple_loss(model, x0, schedule, t=t, noise=noise).simple"),
    CodeExercise(
        "04-ddim-step", "ddim_step(x, eps, t, s, schedule)",
        "One DDIM step from x_t to x_s (ints t > s, s = -1 at the last step, where alpha_bar = 1): x0_pred = "
        "(x - sqrt(1 - a_t) eps) / sqrt(a_t), then x_s = sqrt(a_s) x0_pred + sqrt(1 - a_s) eps; x's dtype.",
        lambda: _cases_steps(), _ref_ddim_step,
        "DDIM keeps the predicted noise and moves the predicted clean point to the noise level of s: at s = -1 "
        "it returns x0_pred itself.",
        hints=("a_t = float(schedule.alpha_bar(t)) and a_s = float(schedule.alpha_bar(s)): alpha_bar(-1) is 1.",
               "First invert the forward process for x0_pred, then noise it again to level s with the SAME eps."),
        bugs=(("at s = -1 (the data) alpha_bar is 1, but schedule.alpha_bars[-1] is the LAST timestep's: use "
               "schedule.alpha_bar(s)", lambda x, eps, t, s, schedule: _ddim(
                   x, eps, float(schedule.alpha_bars[t]), float(schedule.alpha_bars[s]))),
              ("wrong sign: x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)",
               lambda x, eps, t, s, schedule: _ddim(x, eps, float(schedule.alpha_bar(t)),
                                                    float(schedule.alpha_bar(s)), -1.0)),
              ("that is x0_pred: the step goes on to x_s = sqrt(alpha_bar_s) x0_pred + sqrt(1 - alpha_bar_s) eps",
               lambda x, eps, t, s, schedule: _ddim(x, eps, float(schedule.alpha_bar(t)), 1.0)),
              ("t and s swapped: x0_pred uses alpha_bar_t, the new point alpha_bar_s",
               lambda x, eps, t, s, schedule: _ddim(x, eps, float(schedule.alpha_bar(s)),
                                                    float(schedule.alpha_bar(t)))),
              (_OFF, lambda x, eps, t, s, schedule: _ddim(x, eps, float(schedule.alpha_bar(t - 1)),
                                                          float(schedule.alpha_bar(max(s - 1, -1)))))),
        how="seqdiff_kit.samplers.generalized_step(x, eps, t, s, schedule)[0]"),
    CodeExercise(
        "04-sampler", "ddim_sampler(model, x_T, schedule, timesteps)",
        "Run DDIM from x_T over the descending timesteps (a list of ints; after the last one the step goes to "
        "s = -1, the data) and return the whole path, a tensor [len(timesteps) + 1, *x_T.shape]: x_T first, the "
        "sample last.", _cases_sampler, _ref_sampler,
        "A sampler is a loop of steps, each from the previous step's output: the path records every state, from "
        "the noise to the sample, which is what the path dashboard draws.",
        hints=("Pair each t with the next timestep s (and -1 after the last): zip(timesteps, timesteps[1:] + [-1]).",
               "Keep a list, xs = [x_T]; each step calls the model at (xs[-1], t) as a tensor of timesteps "
               "torch.full((B,), t), appends the step's output; return torch.stack(xs)."),
        bugs=(("the path must start with x_T: record the starting point before the first step",
               lambda model, x_T, schedule, timesteps: _ref_sampler(model, x_T, schedule, timesteps)[1:]),
              ("the last step, to the data (s = -1), is missing",
               lambda model, x_T, schedule, timesteps: _ref_sampler(model, x_T, schedule, timesteps)[:-1]),
              ("each step must start from the previous step's output, not from x_T",
               lambda model, x_T, schedule, timesteps: _path(model, x_T, schedule, zip(
                   timesteps, timesteps[1:] + [-1]), restart=True)),
              ("step from each t to the NEXT timestep of the list (and to -1 after the last), not to t - 1",
               lambda model, x_T, schedule, timesteps: _path(model, x_T, schedule, [(t, t - 1) for t in timesteps]))),
        how="seqdiff_kit.solvers.sample(model, x_T, schedule, timesteps=timesteps).x"),
    CodeExercise(
        "05-sa-loss", "sa_term(model, x0, t, noise, schedule, K)",
        "Return L_sa = (1/B) sum_b (1/K^2) ||sum_{k<K} 1[t_b >= k] (noise_k - model(x_{t-k}, t - k))_b||^2 "
        "(a scalar), x_{t-k} = sqrt(alpha_bar_{t-k}) x0 + sqrt(1 - alpha_bar_{t-k}) noise_k; noise [K, B, ...].",
        lambda: _loss_cases(K=2), _ref_sa,
        "The SA term squares the SUM of K neighbouring errors, so errors that point the same way along a "
        "sampler's path cost more than ones that cancel; a term with t - k < 0 does not exist and is masked out.",
        hints=("Loop over k: x_{t-k} from noise[k], the residual noise[k] - model(x_{t-k}, t - k); add them up, "
               "square the sum's norm per sample, divide by K^2, average.",
               "Where t - k < 0 that term must not count: multiply its residual by (t >= k) reshaped to [B, 1, ...] "
               "(and call the model at (t - k).clamp(min=0), a valid timestep)."),
        bugs=(("missing mask: a term with t - k < 0 does not exist, multiply each residual by 1[t >= k]",
               lambda model, x0, t, noise, schedule, K: _sa(model, x0, t, noise, schedule, K, mask=False)),
              ("missing mask: a term with t - k < 0 does not exist (and alpha_bars[t - k] wraps around there)",
               lambda model, x0, t, noise, schedule, K: _sa(model, x0, t, noise, schedule, K, mask=False,
                                                            wrap=True)),
              ("square the SUM over k of the residuals, not each residual",
               lambda model, x0, t, noise, schedule, K: _sa(model, x0, t, noise, schedule, K, each=True)),
              ("missing the 1/K^2", lambda model, x0, t, noise, schedule, K: _sa(model, x0, t, noise, schedule,
                                                                                  K, norm=1))),
        how="seqdiff_kit.losses.sequence_aware_loss(model, x0, schedule, K, 1.0, t=t, noise=noise).sa"),
    CodeExercise(
        "07-heun-step", "heun_step(model, x, t, s, schedule)",
        "One Heun step of the probability-flow ODE from t to s in x~ = x / sqrt(a), sigma~ = sqrt((1 - a) / a): "
        "an Euler guess x' with eps(x, t), then the average of eps(x, t) and eps(x', s); s = -1 (the last step) "
        "is the plain Euler step. model(x, t) takes t as a tensor [B].", lambda: _cases_steps(heun=True),
        _ref_heun_step,
        "Heun averages the slope at both ends of the step, which cancels the first-order error of Euler's "
        "method (DDIM): two model calls per step, and second-order accuracy.",
        hints=("Euler guess: x' = sqrt(a_s) (x / sqrt(a_t) + (sig_s - sig_t) eps_t), sig = sqrt((1 - a) / a); then "
               "eps_s = model(x', s).",
               "x_s = sqrt(a_s) (x / sqrt(a_t) + (sig_s - sig_t) (eps_t + eps_s) / 2); at s = -1 return the Euler "
               "step (eps_s does not exist there)."),
        bugs=(("that is the Euler (DDIM) step: correct it with the slope at the guess, eps(x', s), and average",
               lambda model, x, t, s, schedule: _ddim(x, model(x, torch.full((x.shape[0],), t)),
                                                      float(schedule.alpha_bar(t)), float(schedule.alpha_bar(s)))),
              ("the corrector calls the model at s, where the Euler guess lives, not at t",
               lambda model, x, t, s, schedule: _heun(model, x, t, s, schedule, t_corr=t)),
              ("the last step, to s = -1 (the data), is the plain Euler step: there is no timestep -1 to call the "
               "model at", lambda model, x, t, s, schedule: _heun(model, x, t, s, schedule))),
        how="seqdiff_kit.solvers.heun (one step of it)"),
]}


def _matching_bug(ex: CodeExercise, got: torch.Tensor, kwargs: dict, want: torch.Tensor) -> str | None:
    """The reading of the first typical mistake whose result ``got`` reproduces (and the right answer does not)."""
    if got.is_complex():
        return None
    for reading, wrong in ex.bugs:
        try:
            with torch.no_grad():
                b = wrong(**_copy(kwargs)).detach()
        except Exception:  # noqa: BLE001 - a mistake that cannot even run on this case does not match
            continue
        if (b.shape == got.shape and torch.allclose(got.double(), b.double(), rtol=1e-4, atol=1e-6)
                and not (b.shape == want.shape and torch.allclose(b.double(), want.double(), rtol=1e-4, atol=1e-6))):
            return reading
    return None


def _copy(kwargs: dict) -> dict:
    return {k: v.clone() if isinstance(v, torch.Tensor) else list(v) if isinstance(v, list) else v
            for k, v in kwargs.items()}


def _raised(ex: CodeExercise, err: Exception, label: str) -> str:
    text = _one_line(err)
    why = ""
    if "size of tensor" in text or "broadcast" in text:
        why = " - a wrong broadcast? a coefficient per sample [B] must be reshaped to [B, 1, ...] to multiply x"
    elif isinstance(err, IndexError) or "out of bounds" in text:
        why = " - a timestep outside [0, T-1]? alpha_bar at t = -1 (the data) is 1: schedule.alpha_bar(t)"
    return f"[{ex.id}] {ex.signature.split('(')[0]} raised {type(err).__name__} on {label}: {text}{why}"


def _run_case(ex: CodeExercise, fn: Callable, label: str, kwargs: dict) -> tuple[str, str] | None:
    """None when ``fn`` agrees with the kit on this case, else ``(state, one-line message)``."""
    want = ex.reference(**_copy(kwargs)).detach()
    try:
        got = fn(*_copy(kwargs).values())
    except NotImplementedError:
        return "open", f"[{ex.id}] not yet written: fill in {ex.signature.split('(')[0]} and run its cell again"
    except Exception as err:  # noqa: BLE001 - the student's code: any error is answered in one line
        return "wrong", _raised(ex, err, label)
    if isinstance(got, (list, tuple)) and got and all(isinstance(g, torch.Tensor) for g in got):
        if len({g.shape for g in got}) > 1:
            return "wrong", f"[{ex.id}] returned tensors of different shapes on {label}: every state has x's shape"
        got = torch.stack(list(got))
    if not isinstance(got, torch.Tensor):
        return "wrong", f"[{ex.id}] returned a {type(got).__name__} on {label}: return a tensor"
    got = got.detach()
    reading = _matching_bug(ex, got, kwargs, want)
    if reading:
        return "wrong", f"[{ex.id}] not quite on {label}: {reading}"
    if got.shape != want.shape:
        return "wrong", f"[{ex.id}] returned shape {tuple(got.shape)} on {label}; the kit's has {tuple(want.shape)}"
    if got.dtype != want.dtype:
        return "wrong", (f"[{ex.id}] returned {str(got.dtype)[6:]} on {label}; keep the inputs' dtype, "
                         f"{str(want.dtype)[6:]} (cast the float64 coefficients with .to(x.dtype))")
    if not bool(torch.isfinite(got).all()):
        return "wrong", f"[{ex.id}] returned NaN or inf on {label}"
    tol = (1e-4, 1e-5) if want.dtype in (torch.float32, torch.float16, torch.bfloat16) else (1e-7, 1e-9)
    if not torch.allclose(got.double(), want.double(), rtol=tol[0], atol=tol[1]):
        err = float((got.double() - want.double()).abs().max())
        return "wrong", f"[{ex.id}] wrong values on {label} (largest error {err:.2g})"
    return None


def _code_verdict(ex: CodeExercise, fn, part: str = "all") -> tuple[str, str]:
    """``(state, one-line message)`` of the student's function on the cases of ``part`` (all, basic, edge)."""
    name = ex.signature.split("(")[0]
    if fn is None:
        return "open", f"[{ex.id}] no function yet: write {ex.signature} and pass it: check({ex.id!r}, {name})"
    if not callable(fn):
        return "open", f"[{ex.id}] pass your function itself, check({ex.id!r}, {name}), not a {type(fn).__name__}"
    cases = [(label, kw) for label, kw, edge in ex.cases() if part == "all" or edge == (part == "edge")]
    for label, kwargs in cases:
        try:
            problem = _run_case(ex, fn, label, kwargs)
        except Exception as err:  # noqa: BLE001 - a result too odd to compare (complex, sparse...): one line too
            problem = "wrong", f"[{ex.id}] {name} returned something that cannot be compared on {label}: " \
                               f"{_one_line(err)}"
        if problem is not None:
            return problem
    return "right", f"[{ex.id}] right on all {len(cases)} cases ({'; '.join(c[0] for c in cases)}). Why: {ex.why}"


def yours(exercise_id: str, fn: Callable) -> Callable:
    """``fn`` when it passes ``check(exercise_id, fn)``, else the kit's own version (same signature): the cells
    after an exercise run with either, so a lesson never stops at an unwritten or wrong function."""
    ex = _get(exercise_id)
    if not isinstance(ex, CodeExercise):
        raise ValueError(f"exercise_id must be a coding exercise, one of {sorted(CODE)}, got {exercise_id!r}")
    return fn if _code_verdict(ex, fn)[0] == "right" else ex.reference


def trajectory(path, timesteps) -> Trajectory:
    """A path [N + 1, B, ...] (``ddim_sampler``'s) over ``timesteps`` [N] as a ``Trajectory`` for the dashboards
    (the predictions it does not record are NaN)."""
    x = torch.stack(list(path)) if isinstance(path, (list, tuple)) else path
    ts = torch.as_tensor(list(timesteps))
    nan = torch.full_like(x[:-1], math.nan)
    return Trajectory(ts, torch.arange(ts.numel()), x.detach(), nan, nan)


def train_with(loss: Callable, model: torch.nn.Module, data, schedule: Schedule, *, steps: int = 300,
               batch_size: int = 256, lr: float = 2e-3, seed: int = 0) -> list[float]:
    """Train ``model`` in place with Adam on ``loss(model, x0, t, noise, schedule)`` (``my_simple_loss``'s
    signature) over fresh draws of the mixture ``data``; returns the loss of every update."""
    steps, batch_size = check_int("steps", steps, 1), check_int("batch_size", batch_size, 1)
    g = torch.Generator().manual_seed(check_int("seed", seed))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    out = []
    for _ in range(steps):
        x0 = data.sample(batch_size, generator=g)
        t = schedule.sample_t(batch_size, generator=g)
        value = loss(model, x0, t, torch.randn(x0.shape, generator=g, dtype=x0.dtype), schedule)
        opt.zero_grad()
        value.backward()
        opt.step()
        out.append(float(value.detach()))
    return out


def solution_source(name: str) -> str:
    """The source of the teacher's solution ``name`` in ``teacher/solutions.py`` (for ``solution`` and the
    nbgrader course), found by the function's name."""
    text = TEACHER_SOLUTIONS.read_text(encoding="utf-8")
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return ast.get_source_segment(text, node)
    raise ValueError(f"name must be a function of {TEACHER_SOLUTIONS}, got {name!r}")
