"""Self-checking exercises for the notebooks.

``check(exercise_id, answer)`` prints whether an answer is right: why, when it is; else which way it is off and a
hint that gets stronger on each new try, never the expected value. ``solution`` prints the model answer, how to
compute it and why; ``grade`` returns ``(right, message)`` without printing; ``problem`` returns the question and
its inputs. Every expected answer is computed by the library, never typed in. Any answer, of any type, gets one
line: ``check`` never raises to the student. This module never imports plotly or ipywidgets.

Coding exercises (``CODE``): ``check(exercise_id, function)`` runs the student's function beside the kit's own on
seeded cases and names a wrong result by the typical mistake it reproduces; ``yours`` plugs it into the lesson.
The model solutions are in ``teacher/solutions.py``.
"""
from __future__ import annotations

import ast
import copy
import functools
import math
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Sequence

import torch

from ._validate import check_choice, check_int, check_type
from .analysis import gaussian_sa_optimum, linear_sampler_std_ratio
from .checkpoint import load_checkpoint
from .data import CHECKPOINT_DIR, GaussianMixture, digits, ring8
from .denoisers import IdealDenoiser
from .drift import gap_coefficients, step_drift
from .losses import sequence_aware_loss, simple_loss
from .metrics import loglik_gap, mean_log_likelihood
from .recipes import RING8_FAST, train
from .samplers import Trajectory, generalized_step
from .schedule import Schedule
from .solvers import analytic_variance, heun, model_calls, sample

_LINEAR = Schedule.linear()
TEACHER_SOLUTIONS = Path(__file__).resolve().parent.parent / "teacher" / "solutions.py"


@dataclass(frozen=True, eq=False)
class Exercise:
    """One exercise: ``answer(**inputs)`` computes the expected value. ``kind``: a number ("float"), an integer
    ("int"), a tensor ("tensor"), one word of ``choices`` ("choice") or one word per part ("choices"); numbers
    within ``rtol``/``atol`` are right. ``hints`` are given one per wrong try, in order (the last one repeats);
    ``how`` is the model answer's computation (code), shown by ``solution`` with the value and ``why``."""

    id: str
    kind: str
    answer: Callable[..., object]
    question: str
    why: str
    hints: tuple
    how: str
    rtol: float = 1e-3
    atol: float = 1e-6
    inputs: dict = field(default_factory=dict)
    choices: tuple = ()

    @functools.cache  # noqa: B019 - the exercises live as long as the module; some answers train or sample
    def expected(self):
        return self.answer(**self.inputs)


# ---------------------------------------------------------------------------------------------- answers
def _randn(seed: int, **shapes) -> dict:
    """float64 standard normal tensors of ``shapes``, drawn in order from one generator seeded ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=g, dtype=torch.float64) for name, shape in shapes.items()}


def _std_x300() -> float:
    """``sqrt(abar_t Var[x0_1] + 1 - abar_t)`` for ring8 at t = 300: x0 and the noise are independent."""
    a = float(_LINEAR.alpha_bar(300))
    return math.sqrt(a * float(ring8().covariance()[0, 0]) + 1 - a)


def _ddpm_or_ddim_closer() -> str:
    """The sampler whose 10-step samples (ideal denoiser, 1000 points from one seeded x_T) have the
    log-likelihood gap to fresh data closer to 0."""
    mix, g = ring8(), torch.Generator().manual_seed(0)
    ideal, x_T = IdealDenoiser(mix, _LINEAR), torch.randn(1000, 2, generator=g)
    data = mix.sample(1000, generator=g)
    ddim = loglik_gap(sample(ideal, x_T, _LINEAR, 10, eta=0.0).final, data, mix).gap
    ddpm = loglik_gap(sample(ideal, x_T, _LINEAR, 10, eta=1.0, generator=g).final, data, mix).gap
    return "DDPM" if abs(ddpm) < abs(ddim) else "DDIM"


def _less_training_on_clusters() -> str:
    """Train notebook 3's network (the RING8_FAST recipe) for only 150 updates and sample 500 points with
    50 DDIM steps: "yes" if their mean log-likelihood under the true density is within 1 of real data's."""
    trained = train(RING8_FAST.replace(name="exercise-03-less-training", steps=150), progress=False)
    mix, g = RING8_FAST.data(), torch.Generator().manual_seed(0)
    with torch.no_grad():
        final = sample(trained.model, torch.randn(500, 2, generator=g), trained.schedule, 50).final
    data = mix.sample(1000, generator=g)
    return "yes" if mean_log_likelihood(final, mix) > mean_log_likelihood(data, mix) - 1.0 else "no"


def _bias_step(x_t, t, s, b, schedule) -> torch.Tensor:
    """Per-step displacement of a DDIM step whose eps is off by a constant ``b``: run both steps and subtract."""
    eps = IdealDenoiser(ring8(), schedule)(x_t, torch.tensor([t]))
    return (generalized_step(x_t, eps + b, t, s, schedule)[0] - generalized_step(x_t, eps, t, s, schedule)[0])[0]


def _ddpm_drift() -> str:
    """Notebook 4's comparison: the shipped simple network against the ideal path, 400 points, 50 steps, from
    one seeded x_T: is the final drift with fresh noise (eta = 1) larger or smaller than with DDIM?"""
    model, _ = load_checkpoint(CHECKPOINT_DIR / "ring8_simple")
    final = []
    for eta in (0.0, 1.0):
        g = torch.Generator().manual_seed(0)
        x_T = torch.randn(400, 2, generator=g)
        with torch.no_grad():
            drift = step_drift(model, IdealDenoiser(ring8(), _LINEAR), x_T, _LINEAR, 50, eta=eta, generator=g)
        final.append(float(drift.mean("drift")[-1]))
    return "smaller" if final[1] < final[0] else "larger"


def _k1_ratio(lam: float) -> float:
    """``L_sa(K=1) = L_simple``, so ``total = (1 + lam) L_simple``: the ratio measured on a random linear model."""
    w = torch.randn(2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x0 = ring8().sample(256, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = sequence_aware_loss(lambda x, t: x @ w, x0, _LINEAR, K=1, lam=lam, generator=torch.Generator().manual_seed(2))
    return float(out.total / out.simple)


def _sa_std_ratio(var, K, lam, steps, schedule) -> float:
    """std(final sample) / std(data) of DDIM with the SA loss's population optimum on N(0, var) (closed form)."""
    return linear_sampler_std_ratio(gaussian_sa_optimum(var, K, lam, schedule), var, schedule, steps)


def _k4_against_k2(var, lam, steps, schedule) -> tuple:
    """The closed form's std ratio with K = 4 against K = 2, "above" or "below", at each step count."""
    return tuple("above" if _sa_std_ratio(var, 4, lam, n, schedule) > _sa_std_ratio(var, 2, lam, n, schedule)
                 else "below" for n in steps)


def _last_step_variance(var, schedule, t_stop) -> float:
    """Analytic-DPM's variance at the last step (t_stop -> data) with the exact Gamma of N(0, var)."""
    a = float(schedule.alpha_bar(t_stop))
    return analytic_variance(a, 1.0, (1 - a) / (a * var + 1 - a))


def _ddim_order_ratio(var, schedule, t_stop) -> float:
    """DDIM's error at t_stop, against the exact flow of N(0, var) from x_T = 1, x_T sqrt(q_stop / q_{T-1}) with
    q = a var + 1 - a, with 50 steps over that with 100 steps."""
    q = schedule.alpha_bars * var + 1 - schedule.alpha_bars
    ideal = IdealDenoiser(GaussianMixture([1.0], [[0.0]], [[var]]), schedule)
    exact, errs = math.sqrt(q[t_stop] / q[-1]), []
    for n in (50, 100):
        tr = sample(ideal, torch.ones(1, 1, dtype=torch.float64), schedule, n)
        errs.append(abs(float(tr.x[tr.timesteps.tolist().index(t_stop), 0, 0]) - exact))
    return errs[0] / errs[1]


_GAUSS_07 = {"var": 0.25, "schedule": _LINEAR, "t_stop": 99}
EXERCISES: dict[str, Exercise] = {e.id: e for e in [
    Exercise(
        "01-alpha-bar-half", "int", lambda: int(torch.nonzero(Schedule.linear().alpha_bars < 0.5)[0]),
        "Linear schedule, T = 1000: what is the first timestep t with alpha_bar_t < 0.5?",
        "alpha_bar_t = prod_{s<=t} (1 - beta_s); the linear betas are tiny at first, so half the signal survives "
        "until t is about a quarter of the way in.",
        hints=("alpha_bar_t is stored for every t: `schedules['linear'].alpha_bars` is a tensor of 1000 values.",
               "`schedules['linear'].alpha_bars < 0.5` is True from some t on; `torch.nonzero(...)` lists where, and "
               "you want the first entry.",
               "Careful with 'first t below': at that t alpha_bar is already under 0.5, at t - 1 it is not."),
        how="int(torch.nonzero(schedules['linear'].alpha_bars < 0.5)[0])"),
    Exercise(
        "01-snr-cosine-500", "float", lambda: float(torch.exp(Schedule.cosine().log_snr(500))),
        "Cosine schedule, T = 1000: what is the signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t) at t = 500?",
        "For the cosine schedule alpha_bar(t) ~ cos^2(pi t / 2T), so the SNR at the midpoint is close to 1.",
        hints=("Read alpha_bar at t = 500 from `schedules['cosine'].alpha_bars[500]`, then form the ratio.",
               "SNR = a / (1 - a) with a = alpha_bar_500; `schedules['cosine'].log_snr(500).exp()` gives it too."),
        how="a = float(schedules['cosine'].alpha_bars[500]); a / (1 - a)", rtol=0.01),
    Exercise(
        "01-std-xt", "float", _std_x300, "ring8 data, linear schedule: what is the standard deviation of the first "
        "coordinate of x_t at t = 300?",
        "Var[x_t] = alpha_bar_t Var[x0] + (1 - alpha_bar_t) because x0 and eps are independent; Var[x0_1] of ring8 is "
        "radius^2 / 2 + std^2.",
        hints=("Start from Var[x_t] = alpha_bar_t Var[x0] + (1 - alpha_bar_t): you need Var[x0] of the first "
               "coordinate and alpha_bar_300.",
               "`mixture.covariance()[0, 0]` is Var[x0_1]; `schedules['linear'].alpha_bars[300]` is alpha_bar; the "
               "answer is a standard deviation, so take a square root at the end."),
        how="a = float(schedules['linear'].alpha_bars[300]); (a * float(mixture.covariance()[0, 0]) + 1 - a) ** 0.5",
        rtol=0.01),
    Exercise(
        "02-eps-axis", "tensor", lambda x, t: IdealDenoiser(ring8(), _LINEAR)(x, torch.tensor([t]))[0],
        "ring8, linear schedule: what is the ideal noise prediction eps*(x, t) at x = (0, 2.5), t = 500? (a tensor of "
        "2 numbers; inputs in problem('02-eps-axis')) Predict the first number before computing.",
        "Mirroring x1 -> -x1 maps the ring onto itself, so on the line x1 = 0 the score has no x1 part and eps*_1 = "
        "0. The point lies outside the ring: the score points back inwards (down), and eps* = -sqrt(1 - alpha_bar) "
        "grad log p_t points the other way, outwards (up): eps*_2 > 0.",
        hints=("Call the ideal denoiser: `ideal(x, torch.tensor([t]))` with x of shape [1, 2].",
               "Before computing: is the ring symmetric under x1 -> -x1? What does that say about the first "
               "coordinate on the line x1 = 0? And the point is outside the ring: which way does the noise 'point'?"),
        how="p = exercises.problem('02-eps-axis'); ideal(p['x'], torch.tensor([p['t']]))[0]",
        inputs={"x": torch.tensor([[0.0, 2.5]], dtype=torch.float64), "t": 500}),
    Exercise(
        # one DDIM step from T-1 to the end with the ideal denoiser is x0_pred = E[x0 | x_T]
        "02-ddim-one-step", "tensor", lambda x_T: sample(IdealDenoiser(ring8(), _LINEAR), x_T, _LINEAR, 1).final[0],
        "With the ideal denoiser, run DDIM with ONE step from x_T = (2.0, 0.5) at t = T-1 (inputs: "
        "problem('02-ddim-one-step')['x_T']). Where does the sample land? (a tensor of 2 numbers)",
        "One step to the end returns x0_pred = E[x0 | x_T]: an average over all eight modes weighted by how likely "
        "each is given x_T. At t = T-1 x_T says almost nothing, so the average sits near the centre of the ring - one "
        "step, even with a perfect denoiser, cannot produce a sample on the ring.",
        hints=("`sample(ideal, x_T, schedule, 1)` runs one step; `.final` is where it lands ([1, 2]: take `[0]`).",
               "Use the x_T of the inputs as it is (float64, shape [1, 2]) and the schedule of this notebook."),
        how="x_T = exercises.problem('02-ddim-one-step')['x_T']; sample(ideal, x_T, schedule, 1).final[0]",
        atol=1e-3, inputs={"x_T": torch.tensor([[2.0, 0.5]], dtype=torch.float64)}),
    Exercise(
        "02-ddpm-or-ddim", "choice", _ddpm_or_ddim_closer, "Ideal denoiser, 10 sampling steps, the same 1000 starting "
        "points: which sampler's log-likelihood gap to fresh data is closer to 0, 'DDPM' or 'DDIM'?",
        "Both gaps are negative at 10 steps: a few large steps leave samples where real data rarely is. DDIM's comes "
        "out closer to 0 (here by about 0.25, with standard errors near 0.15; the same way round from four other "
        "seeds' starting points). Both stay far from 0: at 10 steps the step count, more than the choice of sampler, "
        "decides the error.",
        hints=("Sample both from the same x_T: `sample(ideal, x_T, schedule, 10, eta=0.0)` and `sample(ideal, x_T, "
               "schedule, 10, eta=1.0, generator=gen)`.",
               "Score each `.final` with `metrics.loglik_gap(samples, reference, mixture)`; compare the absolute "
               "values of `.gap`: the target is 0."),
        how="abs(metrics.loglik_gap(sample(ideal, x_T, schedule, 10).final, reference, mixture).gap) < "
            "abs(metrics.loglik_gap(sample(ideal, x_T, schedule, 10, eta=1.0, generator=gen).final, reference, "
            "mixture).gap): 'DDIM'", choices=("DDPM", "DDIM")),
    Exercise(
        # a step to s = -1 returns x0_pred = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) as its second output
        "03-x0-pred", "tensor", lambda x_t, t, eps, schedule: generalized_step(x_t, eps, t, -1, schedule)[1],
        "Given x_t, t and eps in problem('03-x0-pred'), compute x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps) / "
        "sqrt(alpha_bar_t) (a [4, 2] tensor).",
        "Invert the forward process x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps for x0.",
        hints=("alpha_bar_t is `inputs['schedule'].alpha_bar(inputs['t'])` (a tensor: `float(...)` it).",
               "Solve x_t = sqrt(a) x0 + sqrt(1 - a) eps for x0, elementwise on the [4, 2] tensors."),
        how="a = float(inputs['schedule'].alpha_bar(inputs['t'])); (inputs['x_t'] - (1 - a) ** 0.5 * inputs['eps']) / "
            "a ** 0.5", atol=1e-5, inputs={**_randn(3, x_t=(4, 2), eps=(4, 2)), "t": 600, "schedule": _LINEAR}),
    Exercise(
        # E||eps - 0||^2 = sum_i E[eps_i^2] = D, the feature count of the data (tests check it by Monte Carlo)
        "03-zero-model-loss", "float", lambda: float(ring8().dim), "A network that always predicts eps = 0 (2-D "
        "data): what simple loss E||eps - eps_theta||^2 does it get, on average?",
        "E||eps||^2 = sum over the D = 2 coordinates of E[eps_i^2] = 1 each: the loss at initialisation starts near "
        "2, and everything training achieves is measured against it.",
        hints=("With eps_theta = 0 the loss is E||eps||^2: the expected squared length of a standard normal vector.",
               "E[eps_i^2] is the variance of one coordinate of N(0, I); the squared length sums the coordinates."),
        how="the data is 2-D and E[eps_i^2] = 1: 2 * 1.0", rtol=0.01),
    Exercise(
        "03-less-training", "choice", _less_training_on_clusters, "Train for only 150 updates (TRAIN_STEPS = 150) and "
        "sample with 50 DDIM steps: do the samples sit on the eight clusters about as tightly as real data (mean "
        "log-likelihood within 1 of the data's)? 'yes' or 'no'",
        "After 150 updates the network has learned the rough shape (a ring) but not the eight tight clusters: its "
        "samples smear along and across the ring, so their log-likelihood under the true density falls far below the "
        "data's. The total spread (std ratio) can still look almost right, which is why one number is not enough to "
        "judge a sampler.",
        hints=("Change TRAIN_STEPS in the parameters cell, re-run the training and sampling cells, then look at the "
               "slider's last frame.",
               "Compare `metrics.mean_log_likelihood(learned.final, mixture)` with the same for `reference` (real "
               "data)."),
        how="TRAIN_STEPS = 150, re-run; metrics.mean_log_likelihood(learned.final, mixture) is many nats below "
            "metrics.mean_log_likelihood(reference, mixture): 'no'", choices=("yes", "no")),
    Exercise(
        "04-gamma-500", "float", lambda: float(gap_coefficients(_LINEAR)[0][500]), "Linear schedule: compute gamma_t "
        "= sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) at t = 500, the factor by which the estimation gap "
        "is carried from one step to the next.",
        "gamma_t is the posterior mean's coefficient on x_t. One factor just below 1 forgets little, but the gap is "
        "carried through every later step: the product of gamma from t = 999 down to 100 is below 1e-3 and gamma_1 is "
        "about 0.45, so early errors are almost entirely forgotten and the last steps make the final gap "
        "(drift.gap_survival).",
        hints=("You need alpha_500 = 1 - beta_500, alpha_bar_499 and alpha_bar_500: `schedule.alphas`, "
               "`schedule.alpha_bars`.",
               "Mind the indices: alpha_bar_{t-1} is `schedule.alpha_bars[499]`."),
        how="a = schedule.alpha_bars; float(schedule.alphas[500].sqrt() * (1 - a[499]) / (1 - a[500]))", rtol=1e-4),
    Exercise(
        "04-bias-step", "tensor", _bias_step, "A DDIM step from t = 499 to s = 399 uses eps_ideal + b with b = (0.1, "
        "0) (inputs: problem('04-bias-step')). By how much does it move the sample compared with the ideal step? (a "
        "tensor of 2 numbers: biased minus ideal)",
        "x_s = sqrt(a_s) x0_pred + sqrt(1 - a_s) eps is linear in eps, so a bias b moves x_s by (sqrt(1 - a_s) - "
        "sqrt(a_s) sqrt(1 - a_t) / sqrt(a_t)) b - here a negative multiple of b.",
        hints=("Take two steps with `seqdiff_kit.generalized_step(x, eps, t, s, schedule)`: one with the ideal eps, "
               "one with eps + b; subtract.",
               "The ideal eps is `IdealDenoiser(ring8(), schedule)(x_t, torch.tensor([t]))`; the step's first output "
               "is x_s."),
        how="eps = IdealDenoiser(ring8(), s)(p['x_t'], torch.tensor([p['t']])); (generalized_step(p['x_t'], eps + "
            "p['b'], 499, 399, s)[0] - generalized_step(p['x_t'], eps, 499, 399, s)[0])[0]",
        atol=1e-5, inputs={"x_t": torch.tensor([[0.3, -0.2]], dtype=torch.float64), "t": 499, "s": 399,
                           "b": torch.tensor([0.1, 0.0], dtype=torch.float64), "schedule": _LINEAR}),
    Exercise(
        "04-ddpm-drift", "choice", _ddpm_drift, "Run notebook 4's comparison with ETA = 1.0 (DDPM, the same noise for "
        "both paths): is the final drift from the ideal path 'larger' or 'smaller' than with DDIM?",
        "Smaller, although each DDPM step makes a LARGER local error (the sum of local errors nearly doubles): the "
        "fresh noise is the same for both paths, and a DDPM step carries less of the predicted noise forward (sqrt(1 "
        "- a_s - sigma^2) instead of sqrt(1 - a_s)), so it keeps less of the difference between the paths; less of "
        "the early errors survives to the end.",
        hints=("Set ETA = 1.0 in the parameters cell and re-run: the printed 'final drift' is the number to compare "
               "with the DDIM run's.",
               "Compare also the printed sum of local errors: if every step errs more, how can the end be closer? "
               "Think of what shared fresh noise does to two nearby points."),
        how="step_drift(model, ideal, x_T, schedule, 50, eta=1.0, generator=gen).mean('drift')[-1] against the same "
            "with eta=0.0 (same seed): 'smaller'", choices=("larger", "smaller")),
    Exercise(
        "05-k1-ratio", "float", _k1_ratio, "With K = 1 and lam = 0.5, what is the sequence-aware total loss divided "
        "by the simple loss (same x0, t and noise)?",
        "With K = 1 the sum over the window has one term, so L_sa = L_simple and the total is (1 + lam) L_simple: K = "
        "1 only rescales the loss (and the learning rate).",
        hints=("Write out L_sa for K = 1: the sum over k = 0..K-1 has a single term, with 1/K^2 = 1.",
               "Then the total is L_simple + lam * L_sa with L_sa equal to what? (`losses.sequence_aware_loss` and "
               "`losses.simple_loss` with the same `generator` seed confirm it.)"),
        how="1 + lam = 1.5", rtol=1e-6, inputs={"lam": 0.5}),
    Exercise(
        "05-gauss-std-ratio", "float", _sa_std_ratio, "1-D Gaussian data (var = 0.25), linear schedule: with the "
        "population optimum of the SA loss (K = 2, lam = 1; analysis.gaussian_sa_optimum), what is std(final sample) "
        "/ std(data) for 10 DDIM steps (analysis.linear_sampler_std_ratio)?",
        "The simple loss's optimum is the exact eps*, yet 10 DDIM steps shrink the samples (ratio < 1). With "
        "independent noises the SA optimum predicts a smaller noise than eps* (a_t / a*_t < 1), so x0_pred lies "
        "farther out and the samples widen: this pushes the ratio towards 1 at few steps and past it at many.",
        hints=("`gaussian_sa_optimum(var, K, lam, schedule)` gives the optimal a_t; pass it to "
               "`linear_sampler_std_ratio(a, var, schedule, steps)`.",
               "Use var = 0.25 (not the ring's variance), K = 2, lam = 1.0 and steps = 10, as in "
               "problem('05-gauss-std-ratio')."),
        how="p = exercises.problem('05-gauss-std-ratio'); linear_sampler_std_ratio(gaussian_sa_optimum(p['var'], "
            "p['K'], p['lam'], p['schedule']), p['var'], p['schedule'], p['steps'])",
        inputs={"var": 0.25, "K": 2, "lam": 1.0, "steps": 10, "schedule": _LINEAR}),
    Exercise(
        "05-k4", "choices", _k4_against_k2, "Closed form (ring8's coordinate variance, lam = 1): is the std ratio of "
        "DDIM samples with K = 4 'above' or 'below' the one with K = 2, at 10 steps and at 100 steps? (two words, in "
        "that order)",
        "Above at both: a longer window sums more neighbouring errors, so the SA optimum departs further from eps* "
        "and predicts a smaller noise; the samples widen more. At 10 steps that moves the ratio from below 1 to above "
        "it, at 100 steps (where the ideal ratio is about 1) it over-disperses more.",
        hints=("Compute `gaussian_sa_optimum(var, K, 1.0, schedule)` for K = 2 and K = 4, with var = "
               "float(mixture.covariance()[0, 0]).",
               "Feed each to `linear_sampler_std_ratio(a, var, schedule, steps)` for steps = 10 and 100 and compare "
               "pairwise."),
        how="p = exercises.problem('05-k4'); [linear_sampler_std_ratio(gaussian_sa_optimum(p['var'], 4, 1.0, "
            "schedule), p['var'], schedule, n) > linear_sampler_std_ratio(gaussian_sa_optimum(p['var'], 2, 1.0, "
            "schedule), p['var'], schedule, n) for n in (10, 100)]", choices=("above", "below"),
        inputs={"var": float(ring8().covariance()[0, 0]), "lam": 1.0, "steps": (10, 100), "schedule": _LINEAR}),
    Exercise(
        "06-zero-model-loss-digits", "float", lambda: float(digits()[0][0].numel()), "A network that always predicts "
        "eps = 0 on the 8x8 digits: what simple loss E||eps - eps_theta||^2 does it get, on average?",
        "E||eps||^2 sums E[eps_i^2] = 1 over the 64 pixels: the loss starts near 64 and the shipped networks end near "
        "5, so they predict most of the noise.",
        hints=("As in notebook 3: with eps_theta = 0 the loss is E||eps||^2, a sum over the coordinates.",
               "How many coordinates does one 8x8 image have?"),
        how="8 * 8 pixels, E[eps_i^2] = 1 each: 64.0", rtol=0.01),
    Exercise(
        "06-confidence-share", "float", lambda probs: float((probs.max(dim=-1).values >= 0.9).double().mean()),
        "problem('06-confidence-share')['probs'] holds class probabilities [8, 10] of eight images. What share of the "
        "images does the classifier label with confidence >= 0.9 (max probability)?",
        "An image counts as recognisable when its largest class probability reaches 0.9; the share is the fraction of "
        "rows whose maximum passes that bar.",
        hints=("Take each row's largest probability: `probs.max(dim=-1).values`.",
               "Count the rows whose maximum is >= 0.9 and divide by the number of rows (a share, not a count)."),
        how="probs = exercises.problem('06-confidence-share')['probs']; float((probs.max(dim=-1).values >= "
            "0.9).double().mean())", # eight rows of class probabilities: softmax of seeded logits of varying sharpness
        rtol=1e-9, inputs={"probs": torch.softmax(_randn(6, logits=(8, 10))["logits"]
                                                  * torch.linspace(1.0, 8.0, 8)[:, None], dim=-1)}),
    Exercise(
        "06-trailing-5", "tensor", lambda: Schedule.linear().timesteps(5, "trailing").double(),
        "Linear schedule, T = 1000: which 5 timesteps does a 5-step sampler with 'trailing' spacing visit? (a tensor "
        "of 5 integers, descending)",
        "Trailing spacing starts at T-1 = 999 and takes jumps of T/5 = 200: each DDIM step there bridges 200 training "
        "timesteps, which is where errors per step are largest.",
        hints=("`schedule.timesteps(steps, spacing)` returns them.",
               "Trailing spacing starts at T - 1 and goes down in equal jumps of T / steps."),
        how="schedule.timesteps(5, 'trailing')", rtol=0, atol=0),
    Exercise(
        "07-heun-calls", "int", lambda: model_calls("heun", 10), "How many times does Heun's method call the model in "
        "a 10-step run? (solvers.model_calls, or count the calls with a model that counts them)",
        "Each step evaluates the model at x_t and again at the Euler guess x' at the next timestep; the last step, to "
        "the data, is a plain Euler (DDIM) step: 2 x 10 - 1 calls. Compare solvers at equal calls, not only at equal "
        "steps.",
        hints=("Heun takes an Euler guess to the next timestep and calls the model there too.",
               "Every step but the last calls the model twice; the last step, to the data, once."),
        how="solvers.model_calls('heun', 10)"),
    Exercise(
        "07-last-step-variance", "float", _last_step_variance, "1-D Gaussian data N(0, 0.25), linear schedule, 10 "
        "trailing steps: the last step jumps from t = 99 to the data. With the exact Gamma_t = (1 - a) / (a v + 1 - "
        "a), what variance does Analytic-DPM add at that last step? (solvers.analytic_variance(a_99, 1.0, gamma))",
        "At the last step lam = 0 and c = 1, so sigma*^2 = (1 - a) / a (1 - Gamma) = Var[x0 | x_99], the posterior "
        "variance of the data given x_99: exactly the spread that a step returning the posterior mean throws away.",
        hints=("At the last step s = -1: alpha_bar_s = 1, so lam = 0 and c = 1.",
               "Then sigma*^2 = (1 - a) / a (1 - Gamma) with a = alpha_bar_99: the posterior variance of x0."),
        how="a = float(schedule.alpha_bar(99)); solvers.analytic_variance(a, 1.0, (1 - a) / (a * 0.25 + 1 - a))",
        rtol=1e-6, inputs=_GAUSS_07),
    Exercise(
        "07-ddim-order", "float", _ddim_order_ratio, "1-D Gaussian N(0, 0.25): run DDIM with the exact eps* for 50 "
        "and for 100 trailing steps and compare the state at t = 99 with the exact probability-flow solution x_T "
        "sqrt(q_99 / q_999), q = a v + 1 - a. What is the ratio error(50 steps) / error(100 steps)?",
        "DDIM is a first-order solver of the probability-flow ODE: halving the step halves the error (ratio about 2). "
        "DPM-Solver++(2M) and Heun are second order: their ratio is about 4.",
        hints=("The model: eps*(x, t) = sqrt(1 - a_t) x / (a_t v + 1 - a_t); sample with solver='ddim' and read the "
               "state at t = 99 from the trajectory (tr.x[tr.timesteps.tolist().index(99)]).",
               "Divide |state - exact| at 50 steps by the same at 100 steps: a first-order method gives 2."),
        how="e = [abs(float(solvers.sample(eps_star, x_T, schedule, n).x[9 * n // 10, 0, 0]) - exact) for n in (50, "
            "100)]; e[0] / e[1]", rtol=0.01, inputs=_GAUSS_07),
]}


# ---------------------------------------------------------------------------------------------- grading
def problem(exercise_id: str) -> dict:
    """The question text and the inputs it needs: ``{"question": str, **inputs}``; for a coding exercise its task
    and the signature to write: ``{"question": str, "signature": str}``."""
    ex = _get(exercise_id)
    if isinstance(ex, CodeExercise):
        return {"question": ex.task, "signature": ex.signature}
    return {"question": ex.question, **copy.deepcopy(ex.inputs)}


def _get(exercise_id):
    check_type("exercise_id", exercise_id, str)  # first, so a non-str gets a TypeError, not a lookup error
    every = {**EXERCISES, **CODE}
    return every[check_choice("exercise_id", exercise_id, every)]


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:160] if text else type(err).__name__


def _as_tensor(answer, what: str) -> torch.Tensor:
    if isinstance(answer, str):
        raise TypeError(f"that is the text {answer!r}: answer with {what}, without quotes")
    if isinstance(answer, torch.Tensor):
        return answer.detach().to(torch.float64).cpu()
    try:
        return torch.as_tensor(answer, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"answer must be a number, a list of numbers or a tensor, got {type(answer).__name__}") \
            from err


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


def _judge_words(ex: Exercise, answer, want) -> tuple[bool, str]:
    """A "choice" answer is one word, a "choices" answer a list of words, each one of ``ex.choices``."""
    if ex.kind == "choice":
        if not isinstance(answer, str):
            raise TypeError(f"answer with one word in quotes, one of {list(ex.choices)}, not {answer!r}")
        answer, want = (answer,), (want,)
    elif isinstance(answer, str) or not isinstance(answer, Sequence):
        raise TypeError(f"answer with a list of words, each one of {list(ex.choices)}, not {answer!r}")
    lowered = {c.lower(): c for c in ex.choices}
    words = [str(w).strip() for w in answer]
    for w in words:
        if w.lower() not in lowered:
            raise ValueError(f"answer with the words {list(ex.choices)}, got {w!r}")
    words = tuple(lowered[w.lower()] for w in words)
    if len(words) != len(want):
        return False, f"[{ex.id}] not quite: the question asks for {len(want)} word(s), you gave {len(words)}"
    if words == want:
        return True, f"[{ex.id}] right: {', '.join(words)}. Why: {ex.why}"
    wrong = [str(k + 1) for k, (w, e) in enumerate(zip(words, want)) if w != e]
    where = ("" if len(want) == 1 else f" (part {wrong[0]} is not)" if len(wrong) == 1
             else f" (parts {', '.join(wrong[:-1])} and {wrong[-1]} are not)")
    return False, f"[{ex.id}] not quite: that is not what the numbers show{where}"


def _judge_number(ex: Exercise, answer, want) -> tuple[bool, str]:
    if isinstance(answer, bool):
        raise TypeError("that is True/False: answer with a number")
    if isinstance(answer, torch.Tensor) and answer.numel() != 1:
        raise TypeError(f"answer with a single number, not a tensor of shape {tuple(answer.shape)}")
    value = float(answer) if isinstance(answer, (Real, torch.Tensor)) else float(_as_tensor(answer, "a number"))
    if ex.kind == "int":
        shown = f"{int(value) if value.is_integer() else value}"
        if value == float(want):
            return True, f"[{ex.id}] right: {shown}. Why: {ex.why}"
        return False, f"[{ex.id}] not quite: {shown} is {'too small' if value < want else 'too large'}"
    if math.isfinite(value) and math.isclose(value, want, rel_tol=ex.rtol, abs_tol=ex.atol):
        return True, f"[{ex.id}] right: {value:.6g}. Why: {ex.why}"
    return False, f"[{ex.id}] not quite: {value:.6g} - {_off_by(value, want)}"


def _judge_tensor(ex: Exercise, answer, want) -> tuple[bool, str]:
    value, want = _as_tensor(answer, "numbers"), want.to(torch.float64)
    if value.shape != want.shape:
        return False, (f"[{ex.id}] not quite: your answer has shape {tuple(value.shape)}, the question asks for "
                       f"shape {tuple(want.shape)}")
    close = torch.isclose(value, want, rtol=ex.rtol, atol=ex.atol) & torch.isfinite(value)
    if bool(close.all()):
        return True, f"[{ex.id}] right. Why: {ex.why}"
    flat_v, flat_e = value.flatten().tolist(), want.flatten().tolist()
    off = [k for k, ok in enumerate(close.flatten().tolist()) if not ok]
    parts = "; ".join(f"entry {k}: {_off_by(flat_v[k], flat_e[k])}" for k in off[:4])
    more = f" (and {len(off) - 4} more)" if len(off) > 4 else ""
    return False, f"[{ex.id}] not quite: {len(off)} of {len(flat_v)} entries are off - {parts}{more}"


_JUDGES = {"float": _judge_number, "int": _judge_number, "tensor": _judge_tensor, "choice": _judge_words,
           "choices": _judge_words}


def _verdict(ex, answer, part: str = "all") -> tuple[str, str]:
    """``(state, one-line message)``, state "right", "wrong" or "open" (no answer yet, or one that cannot be read
    as an answer of this kind: a word for a number, a list for one word; it costs no try)."""
    if isinstance(ex, CodeExercise):
        return _code_verdict(ex, answer, part)
    if answer is None:
        return "open", f"[{ex.id}] no answer yet: replace None with your answer. Question: {ex.question}"
    try:
        ok, message = _JUDGES[ex.kind](ex, answer, ex.expected())
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
    state, message = _verdict(ex, answer, part)
    return state == "right", message


# wrong tries per exercise in this session: each new wrong try gets the next hint
_TRIES: dict[str, int] = {}


def check(exercise_id: str, answer) -> None:
    """Print whether ``answer`` (a coding exercise: the student's function) is right for ``exercise_id``: why
    when it is; what is wrong, in one line, and the next hint when it is not (never the expected value). Never
    raises: any input gets a printed answer. Returns None; ``solution(exercise_id)`` shows the answer."""
    try:
        ex = _get(exercise_id)
    except (TypeError, ValueError) as err:
        print(f"✘ {_one_line(err)}")
        return
    state, message = _verdict(ex, answer)
    if state != "wrong":
        print(("✔ " if state == "right" else "✘ ") + message)
        return
    tries = _TRIES[exercise_id] = _TRIES.get(exercise_id, 0) + 1
    n = min(tries, len(ex.hints))
    print(f"✘ {message}.\n  Hint {n}: {ex.hints[n - 1]}\n  (Stuck? exercises.solution({exercise_id!r}) shows the "
          "model answer.)")


def solution(exercise_id: str) -> None:
    """Print the model answer of ``exercise_id``: its value, how to compute it, and why (a coding exercise:
    where the kit's own version is, and the teacher's solution when ``teacher/solutions.py`` is there)."""
    ex = _get(exercise_id)
    if isinstance(ex, CodeExercise):
        print(f"[{ex.id}] the kit's own version: {ex.how}\n  Why: {ex.why}")
        if TEACHER_SOLUTIONS.is_file():
            print(f"  The teacher's solution ({TEACHER_SOLUTIONS.name}):\n{solution_source(ex.name)}")
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
    print(f"[{ex.id}] model answer: {shown}\n  How: {ex.how}\n  Why: {ex.why}")


# ---------------------------------------------------------------------------------------------- coding exercises
@dataclass(frozen=True)
class CodeExercise:
    """A function to write, ``signature``, run beside ``reference``, the kit's own version with the same signature
    (so ``yours`` can stand one in for the other), on the cases ``rows``: ``(label, edge, spec)``, the inputs built
    from ``spec`` by ``_case``; ``edge`` (t = 0, t = T-1, the last step, the mask) marks the nbgrader course's
    hidden tests. ``bugs``: ``(reading, wrong_version)`` pairs, checked in order; a wrong version takes the case's
    inputs as attributes of one namespace. ``how`` says where the kit's own version is."""

    id: str
    signature: str
    reference: Callable[..., torch.Tensor]
    task: str
    why: str
    hints: tuple
    how: str
    rows: tuple
    bugs: tuple

    @property
    def name(self) -> str:
        return self.signature.split("(")[0]

    def cases(self) -> list:
        """``(label, kwargs, edge)`` of every row, its random inputs drawn afresh from one seeded generator."""
        names = self.signature[len(self.name) + 1:-1].split(", ")
        g = torch.Generator().manual_seed(27)
        return [(label, _case(names, g, **spec), edge) for label, edge, spec in self.rows]


def _case(names: list, g: torch.Generator, shape=(), dtype=torch.float64, K=None, **given) -> dict:
    """One case's inputs, in the order ``names`` of the signature (the student's function is called positionally,
    so its own parameter names do not matter): the values ``given`` (``t`` as a list: a LongTensor; as a range: a
    random timestep in it per point, drawn first), the linear schedule (``alpha_bar``: its value at ``t``), the toy
    model, ``K``, ``var`` = 0.3, and standard normal tensors of ``shape`` and ``dtype`` drawn from ``g`` (``mean``:
    [D]; ``noise``: [K, *shape] when K is given)."""
    given = copy.deepcopy(given)
    if isinstance(given.get("t"), range):
        given["t"] = torch.randint(given["t"].start, given["t"].stop, shape[:1], generator=g)
    elif isinstance(given.get("t"), list):
        given["t"] = torch.tensor(given["t"])
    given = {"schedule": _LINEAR, "model": _toy_model, "K": K, "var": 0.3, **given}
    if "alpha_bar" in names:
        given["alpha_bar"] = float(_LINEAR.alpha_bar(given["t"]))
    sizes = {"mean": shape[-1:], "noise": shape if K is None else (K, *shape)}
    return {name: given[name] if name in given else torch.randn(sizes.get(name, shape), generator=g, dtype=dtype)
            for name in names}


def _toy_model(x: torch.Tensor, t) -> torch.Tensor:
    """A fixed model of x and t: a wrong x_t, a shifted t or a skipped call changes what it returns."""
    return 0.5 * x + torch.sin(_per_sample(torch.as_tensor(t).to(x.dtype), x) / 50)


# the pieces of the typical mistakes; ``c`` is a case's inputs as one namespace
def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``v`` [B] shaped [B, 1, ...] to multiply ``like`` [B, ...]."""
    return v.reshape(-1, *[1] * (like.ndim - 1))


def _ab(c, t) -> torch.Tensor:
    """alpha_bar(t) (t an int or [B], -1 the data) shaped [B, 1, ...] against the case's data, float64."""
    return _per_sample(c.schedule.alpha_bar(torch.as_tensor(t)), c.x0)


def _sq(v: torch.Tensor) -> torch.Tensor:
    """``||v_b||^2`` per sample [B]."""
    return v.pow(2).flatten(1).sum(1)


def _noised(x0, a, noise, sign=1.0):
    return (a.sqrt() * x0 + sign * (1 - a).sqrt() * noise).to(x0.dtype)


def _ddim(x, eps, a_t, a_s, sign=1.0):
    x0 = (x - sign * (1 - a_t) ** 0.5 * eps) / a_t ** 0.5
    return (a_s ** 0.5 * x0 + (1 - a_s) ** 0.5 * eps).to(x.dtype)


def _ddim_ab(c, t, s, sign=1.0, eps=None):
    """A DDIM step of the case's x (and eps) with alpha_bar at ``t`` and ``s`` (where the mistakes put them)."""
    a_t, a_s = float(c.schedule.alpha_bar(t)), float(c.schedule.alpha_bar(s))
    return _ddim(c.x, c.eps if eps is None else eps, a_t, a_s, sign)


def _loss(c, x_t, target=None):
    """The simple loss of the case's model at ``x_t`` against ``target`` (the noise), mean over the batch."""
    return _sq((c.noise if target is None else target) - c.model(x_t, c.t)).mean()


def _heun(c, t_corr=None):
    a_t, a_s = float(c.schedule.alpha_bar(c.t)), float(c.schedule.alpha_bar(c.s))
    sig_t, sig_s = ((1 - a_t) / a_t) ** 0.5, ((1 - a_s) / a_s) ** 0.5
    b = torch.full((c.x.shape[0],), c.t)
    eps = c.model(c.x, b)
    guess = a_s ** 0.5 * (c.x / a_t ** 0.5 + (sig_s - sig_t) * eps)
    eps_s = c.model(guess, b * 0 + (c.s if t_corr is None else t_corr))
    return a_s ** 0.5 * (c.x / a_t ** 0.5 + (sig_s - sig_t) * 0.5 * (eps + eps_s))


def _path(c, pairs, restart=False):
    xs = [c.x_T]
    for t, s in pairs:
        x = c.x_T if restart else xs[-1]
        xs.append(generalized_step(x, c.model(x, torch.full((x.shape[0],), t)), t, s, c.schedule)[0])
    return torch.stack(xs)


def _sa(c, mask=True, each=False, norm=None, wrap=False):
    """The SA term with switches for its typical mistakes (no mask, squares of each term, no 1/K^2)."""
    total = 0
    for k in range(c.K):
        tk = c.t - k if wrap else (c.t - k).clamp(min=0)
        a = _per_sample(c.schedule.alpha_bars[tk], c.x0) if wrap else _ab(c, tk)
        keep = _per_sample(((c.t >= k) | (not mask)).to(c.x0.dtype), c.x0)
        r = keep * (c.noise[k] - c.model(_noised(c.x0, a, c.noise[k]), tk))
        total = total + (_sq(r) if each else r)
    return ((total if each else _sq(total)) / (c.K ** 2 if norm is None else norm)).mean()


def _gauss_eps(x, alpha_bar, mean, var):
    one = GaussianMixture(torch.ones(1), mean.double()[None], var * torch.eye(mean.numel(), dtype=torch.float64)[None])
    return one.ideal_eps(x.double(), alpha_bar).to(x.dtype)


_OFF = "off by one timestep: use alpha_bar at t itself (alpha_bars[t] holds alpha_bar_t, t counted from 0)"
_STEP_ROWS = (("t = 499 -> s = 399", False, dict(shape=(6, 2), t=499, s=399)),
              ("t = 800 -> s = 650 in float32", False, dict(shape=(4, 2), t=800, s=650, dtype=torch.float32)),
              ("t = T-1 = 999 -> s = 899", True, dict(shape=(3, 2), t=999, s=899)),
              ("the last step, t = 99 -> s = -1 (the data)", True, dict(shape=(3, 2), t=99, s=-1)))
CODE: dict[str, CodeExercise] = {e.id: e for e in [
    CodeExercise(
        "01-alpha-bars", "alpha_bars_from_betas(betas)",
        lambda betas: Schedule(betas.double()).alpha_bars.to(betas.dtype),
        "From the betas [T] of a schedule, return alpha_bar_t = prod_{s <= t} (1 - beta_s) for every t ([T], the "
        "betas' dtype).",
        "Each step keeps a share 1 - beta_s of the signal's variance, so after t + 1 steps the share left is the "
        "product: alpha_bar falls from 1 - beta_0 towards 0.",
        hints=("alpha_bar_t is a running PRODUCT over s = 0..t (torch has one for tensors, along a dimension).",
               "Of what? alpha_s = 1 - beta_s, the share each step keeps."),
        how="seqdiff_kit.Schedule(betas).alpha_bars",
        rows=(("the linear betas (T = 1000)", False, dict(betas=_LINEAR.betas)),
              ("5 random betas in float32", False,
               dict(betas=torch.rand(5, generator=torch.Generator().manual_seed(27)) * 0.3 + 0.01)),
              ("the cosine betas, up to t = T-1 where beta is 0.999", True, dict(betas=Schedule.cosine().betas))),
        bugs=(("a running sum: alpha_bar_t is the PRODUCT of the (1 - beta_s)", lambda c: torch.cumsum(1 - c.betas, 0)),
              ("a product of the betas: multiply alpha_s = 1 - beta_s, the share each step keeps",
               lambda c: torch.cumprod(c.betas, 0)),
              ("off by one timestep: alpha_bar_0 is already 1 - beta_0 (the product runs over s <= t)",
               lambda c: torch.cat([c.betas.new_ones(1), torch.cumprod(1 - c.betas, 0)[:-1]])))),
    CodeExercise(
        "01-add-noise", "add_noise(x0, t, noise, schedule)",
        lambda x0, t, noise, schedule: schedule.add_noise(x0, t, noise),
        "Return x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise for a batch: x0, noise [B, ...] (points or "
        "images), t a LongTensor [B] in [-1, T-1] (t = -1: the clean data), in x0's dtype.",
        "alpha_bar_t is the share of the signal's variance left at t; x0 and the noise are independent, so Var[x_t] = "
        "alpha_bar Var[x0] + 1 - alpha_bar. One coefficient per sample, broadcast over its features.",
        hints=("schedule.alpha_bar(t) gives alpha_bar for a tensor of timesteps (and 1 at t = -1).",
               "It has shape [B]: reshape it to [B, 1, ...] (one 1 per feature dimension of x0) to multiply x0, and "
               "cast it to x0's dtype."),
        how="seqdiff_kit.Schedule.add_noise (seqdiff_kit/schedule.py)",
        rows=(("6 points, t in [1, 998]", False, dict(shape=(6, 2), t=range(1, 999))),
              ("3 digits [3, 1, 8, 8] in float32", False,
               dict(shape=(3, 1, 8, 8), t=[10, 400, 900], dtype=torch.float32)),
              ("t = 0 and t = T-1", True, dict(shape=(2, 2), t=[0, 999])),
              ("t = -1, the clean data", True, dict(shape=(3, 2), t=[-1, 5, -1]))),
        bugs=(("wrong sign: x_t ADDS the noise, + sqrt(1 - alpha_bar_t) noise",
               lambda c: _noised(c.x0, _ab(c, c.t), c.noise, -1.0)),
              ("no square roots: alpha_bar is a share of the VARIANCE, so x0 is scaled by sqrt(alpha_bar)",
               lambda c: _ab(c, c.t) * c.x0 + (1 - _ab(c, c.t)) * c.noise),
              ("signal and noise swapped: x0 gets sqrt(alpha_bar_t), the noise sqrt(1 - alpha_bar_t)",
               lambda c: _noised(c.noise, _ab(c, c.t), c.x0)),
              ("at t = -1 (the clean data) alpha_bar is 1, but schedule.alpha_bars[-1] is the LAST timestep's: use "
               "schedule.alpha_bar(t)",
               lambda c: _noised(c.x0, _per_sample(c.schedule.alpha_bars[c.t], c.x0), c.noise)),
              (_OFF, lambda c: _noised(c.x0, _ab(c, c.t - 1), c.noise)),
              (_OFF, lambda c: _noised(c.x0, _ab(c, (c.t + 1).clamp(max=c.schedule.T - 1)), c.noise)),
              ("wrong broadcast: alpha_bar(t) [B] must line up with the batch dimension of x0, reshape it to [B, 1, "
               "...]", lambda c: _noised(c.x0, c.schedule.alpha_bar(c.t), c.noise)))),
    CodeExercise(
        "02-gauss-eps", "gauss_eps(x, alpha_bar, mean, var)", _gauss_eps,
        "Data N(mean, var I): return the ideal noise prediction eps*(x) = E[eps | x_t = x] at a noise level alpha_bar "
        "(a float), for x [B, D], mean [D], var a float; in x's dtype.",
        "x_t ~ N(sqrt(a) mu, (a var + 1 - a) I), so its score is -(x - sqrt(a) mu) / (a var + 1 - a) and eps* = "
        "-sqrt(1 - a) score: it points from the noised mean towards x, all noise at a = 0, none at a = 1.",
        hints=("First the noised data: x_t = sqrt(a) x0 + sqrt(1 - a) eps is Gaussian too: what are its mean and "
               "variance?",
               "eps* = -sqrt(1 - a) * grad log p_t(x); for a Gaussian, grad log p = -(x - its mean) / its variance."),
        how="seqdiff_kit.GaussianMixture.ideal_eps with one component (seqdiff_kit/data.py)",
        rows=(("5 points in 2-D at t = 500", False, dict(shape=(5, 2), t=500)),
              ("4 points in 3-D at t = 200, float32", False, dict(shape=(4, 3), t=200, dtype=torch.float32)),
              ("t = 0 (alpha_bar near 1)", True, dict(shape=(3, 2), t=0)),
              ("t = T-1 (alpha_bar near 0)", True, dict(shape=(3, 2), t=999))),
        bugs=(("wrong sign: eps* points from the noised mean TOWARDS x (it is MINUS sqrt(1 - alpha_bar) times the "
               "score)", lambda c: -_gauss_eps(c.x, c.alpha_bar, c.mean, c.var)),
              ("the noised data's mean is sqrt(alpha_bar) mean, not mean",
               lambda c: (1 - c.alpha_bar) ** 0.5 * (c.x - c.mean) / (c.alpha_bar * c.var + 1 - c.alpha_bar)),
              ("the noised data's variance is alpha_bar var + 1 - alpha_bar",
               lambda c: (1 - c.alpha_bar) ** 0.5 * (c.x - c.alpha_bar ** 0.5 * c.mean) / (c.var + 1 - c.alpha_bar)),
              ("that is minus the score; eps* is sqrt(1 - alpha_bar) times it",
               lambda c: (c.x - c.alpha_bar ** 0.5 * c.mean) / (c.alpha_bar * c.var + 1 - c.alpha_bar)))),
    CodeExercise(
        "03-simple-loss", "my_simple_loss(model, x0, t, noise, schedule)",
        lambda model, x0, t, noise, schedule: simple_loss(model, x0, schedule, t=t, noise=noise).simple,
        "Return the simple loss (1/B) sum_b ||noise_b - model(x_t, t)_b||^2 (a scalar tensor) with x_t = "
        "sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise; t [B] in [0, T-1], x0 and noise [B, ...].",
        "The network sees only x_t and t and is scored on the noise that was actually added: the squared error summed "
        "over a sample's features, averaged over the batch (so 2-D points and 64-pixel digits differ in scale by "
        "their dimension).",
        hints=("Build x_t as in notebook 1 (alpha_bar reshaped to [B, 1, ...]), call model(x_t, t), compare with "
               "noise.",
               "Square the error, sum it over every dimension but the batch (.flatten(1).sum(1)), then .mean()."),
        how="seqdiff_kit.losses.simple_loss(model, x0, schedule, t=t, noise=noise).simple",
        rows=(("8 points, t in [0, 998]", False, dict(shape=(8, 2), t=range(0, 999))),
              ("4 digits [4, 1, 8, 8] in float32", False,
               dict(shape=(4, 1, 8, 8), t=[3, 50, 500, 990], dtype=torch.float32)),
              ("t = 0 for every point", True, dict(shape=(3, 2), t=[0, 0, 0])),
              ("t = T-1 for every point", True, dict(shape=(3, 2), t=[999] * 3))),
        bugs=(("averaged over the features too: SUM the squares over a sample's features, average over the batch",
               lambda c: (c.noise - c.model(_noised(c.x0, _ab(c, c.t), c.noise), c.t)).pow(2).mean()),
              ("summed over the batch too: average the per-sample squared norms over the batch",
               lambda c: _sq(c.noise - c.model(_noised(c.x0, _ab(c, c.t), c.noise), c.t)).sum()),
              ("the target is the noise, not x0", lambda c: _loss(c, _noised(c.x0, _ab(c, c.t), c.noise), c.x0)),
              ("the model must see the noised x_t, not x0", lambda c: _loss(c, c.x0)),
              ("wrong sign in x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) noise",
               lambda c: _loss(c, _noised(c.x0, _ab(c, c.t), c.noise, -1.0))),
              (_OFF, lambda c: _loss(c, _noised(c.x0, _ab(c, c.t - 1), c.noise))))),
    CodeExercise(
        "04-ddim-step", "ddim_step(x, eps, t, s, schedule)",
        lambda x, eps, t, s, schedule: generalized_step(x, eps, t, s, schedule)[0],
        "One DDIM step from x_t to x_s (ints t > s, s = -1 at the last step, where alpha_bar = 1): x0_pred = (x - "
        "sqrt(1 - a_t) eps) / sqrt(a_t), then x_s = sqrt(a_s) x0_pred + sqrt(1 - a_s) eps; x's dtype.",
        "DDIM keeps the predicted noise and moves the predicted clean point to the noise level of s: at s = -1 it "
        "returns x0_pred itself.",
        hints=("a_t = float(schedule.alpha_bar(t)) and a_s = float(schedule.alpha_bar(s)): alpha_bar(-1) is 1.",
               "First invert the forward process for x0_pred, then noise it again to level s with the SAME eps."),
        how="seqdiff_kit.samplers.generalized_step(x, eps, t, s, schedule)[0]",
        rows=_STEP_ROWS,
        bugs=(("at s = -1 (the data) alpha_bar is 1, but schedule.alpha_bars[-1] is the LAST timestep's: use "
               "schedule.alpha_bar(s)",
               lambda c: _ddim(c.x, c.eps, float(c.schedule.alpha_bars[c.t]), float(c.schedule.alpha_bars[c.s]))),
              ("wrong sign: x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)",
               lambda c: _ddim_ab(c, c.t, c.s, -1.0)),
              ("that is x0_pred: the step goes on to x_s = sqrt(alpha_bar_s) x0_pred + sqrt(1 - alpha_bar_s) eps",
               lambda c: _ddim_ab(c, c.t, -1)),
              ("t and s swapped: x0_pred uses alpha_bar_t, the new point alpha_bar_s", lambda c: _ddim_ab(c, c.s, c.t)),
              (_OFF, lambda c: _ddim_ab(c, c.t - 1, max(c.s - 1, -1))))),
    CodeExercise(
        "04-sampler", "ddim_sampler(model, x_T, schedule, timesteps)",
        lambda model, x_T, schedule, timesteps: sample(model, x_T, schedule, timesteps=timesteps).x,
        "Run DDIM from x_T over the descending timesteps (a list of ints; after the last one the step goes to s = -1, "
        "the data) and return the whole path, a tensor [len(timesteps) + 1, *x_T.shape]: x_T first, the sample last.",
        "A sampler is a loop of steps, each from the previous step's output: the path records every state, from the "
        "noise to the sample, which is what the path dashboard draws.",
        hints=("Pair each t with the next timestep s (and -1 after the last): zip(timesteps, timesteps[1:] + [-1]).",
               "Keep a list, xs = [x_T]; each step calls the model at (xs[-1], t) as a tensor of timesteps "
               "torch.full((B,), t), appends the step's output; return torch.stack(xs)."),
        how="seqdiff_kit.solvers.sample(model, x_T, schedule, timesteps=timesteps).x",
        rows=(("5 trailing steps, 4 points", False, dict(shape=(4, 2), timesteps=_LINEAR.timesteps(5).tolist())),
              ("3 steps in float32", False, dict(shape=(3, 2), timesteps=[900, 500, 100], dtype=torch.float32)),
              ("1 step, from T-1 straight to the data", True, dict(shape=(3, 2), timesteps=[999])),
              ("steps down to t = 0", True, dict(shape=(2, 2), timesteps=[40, 20, 0]))),
        bugs=(("the path must start with x_T: record the starting point before the first step",
               lambda c: sample(c.model, c.x_T, c.schedule, timesteps=c.timesteps).x[1:]),
              ("the last step, to the data (s = -1), is missing",
               lambda c: sample(c.model, c.x_T, c.schedule, timesteps=c.timesteps).x[:-1]),
              ("each step must start from the previous step's output, not from x_T",
               lambda c: _path(c, zip(c.timesteps, c.timesteps[1:] + [-1]), restart=True)),
              ("step from each t to the NEXT timestep of the list (and to -1 after the last), not to t - 1",
               lambda c: _path(c, [(t, t - 1) for t in c.timesteps])))),
    CodeExercise(
        "05-sa-loss", "sa_term(model, x0, t, noise, schedule, K)",
        lambda model, x0, t, noise, schedule, K: sequence_aware_loss(model, x0, schedule, K, 1.0, t=t, noise=noise).sa,
        "Return L_sa = (1/B) sum_b (1/K^2) ||sum_{k<K} 1[t_b >= k] (noise_k - model(x_{t-k}, t - k))_b||^2 (a "
        "scalar), x_{t-k} = sqrt(alpha_bar_{t-k}) x0 + sqrt(1 - alpha_bar_{t-k}) noise_k; noise [K, B, ...].",
        "The SA term squares the SUM of K neighbouring errors, so errors that point the same way along a sampler's "
        "path cost more than ones that cancel; a term with t - k < 0 does not exist and is masked out.",
        hints=("Loop over k: x_{t-k} from noise[k], the residual noise[k] - model(x_{t-k}, t - k); add them up, "
               "square the sum's norm per sample, divide by K^2, average.",
               "Where t - k < 0 that term must not count: multiply its residual by (t >= k) reshaped to [B, 1, ...] "
               "(and call the model at (t - k).clamp(min=0), a valid timestep)."),
        how="seqdiff_kit.losses.sequence_aware_loss(model, x0, schedule, K, 1.0, t=t, noise=noise).sa",
        rows=(("8 points, t in [3, 998]", False, dict(shape=(8, 2), t=range(3, 999), K=2)),
              ("4 digits [4, 1, 8, 8] in float32", False,
               dict(shape=(4, 1, 8, 8), t=[3, 50, 500, 990], dtype=torch.float32, K=3)),
              ("t = 0, 1 and 2 (the mask decides)", True, dict(shape=(3, 2), t=[0, 1, 2], K=3)),
              ("t = T-1 for every point", True, dict(shape=(3, 2), t=[999] * 3, K=2))),
        bugs=(("missing mask: a term with t - k < 0 does not exist, multiply each residual by 1[t >= k]",
               lambda c: _sa(c, mask=False)),
              ("missing mask: a term with t - k < 0 does not exist (and alpha_bars[t - k] wraps around there)",
               lambda c: _sa(c, mask=False, wrap=True)),
              ("square the SUM over k of the residuals, not each residual", lambda c: _sa(c, each=True)),
              ("missing the 1/K^2", lambda c: _sa(c, norm=1)))),
    CodeExercise(
        "07-heun-step", "heun_step(model, x, t, s, schedule)",
        lambda model, x, t, s, schedule: next(iter(heun(model, x, schedule, [t, s] if s >= 0 else [t]))).x_s,
        "One Heun step of the probability-flow ODE from t to s in x~ = x / sqrt(a), sigma~ = sqrt((1 - a) / a): an "
        "Euler guess x' with eps(x, t), then the average of eps(x, t) and eps(x', s); s = -1 (the last step) is the "
        "plain Euler step. model(x, t) takes t as a tensor [B].",
        "Heun averages the slope at both ends of the step, which cancels the first-order error of Euler's method "
        "(DDIM): two model calls per step, and second-order accuracy.",
        hints=("Euler guess: x' = sqrt(a_s) (x / sqrt(a_t) + (sig_s - sig_t) eps_t), sig = sqrt((1 - a) / a); then "
               "eps_s = model(x', s).",
               "x_s = sqrt(a_s) (x / sqrt(a_t) + (sig_s - sig_t) (eps_t + eps_s) / 2); at s = -1 return the Euler "
               "step (eps_s does not exist there)."),
        how="seqdiff_kit.solvers.heun (one step of it)",
        rows=_STEP_ROWS,
        bugs=(("that is the Euler (DDIM) step: correct it with the slope at the guess, eps(x', s), and average",
               lambda c: _ddim_ab(c, c.t, c.s, eps=c.model(c.x, torch.full((c.x.shape[0],), c.t)))),
              ("the corrector calls the model at s, where the Euler guess lives, not at t",
               lambda c: _heun(c, t_corr=c.t)),
              ("the last step, to s = -1 (the data), is the plain Euler step: there is no timestep -1 to call the "
               "model at", lambda c: _heun(c)))),
]}


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a.double(), b.double(), rtol=1e-4, atol=1e-6)


def _mistake(ex: CodeExercise, got: torch.Tensor, kwargs: dict, want: torch.Tensor) -> str | None:
    """The reading of the first typical mistake whose result ``got`` reproduces (and the right answer does not)."""
    for reading, wrong in () if got.is_complex() else ex.bugs:
        try:
            with torch.no_grad():
                b = wrong(SimpleNamespace(**copy.deepcopy(kwargs))).detach()
        except Exception:  # noqa: BLE001 - a mistake that cannot even run on this case does not match
            continue
        if _close(got, b) and not _close(b, want):
            return reading
    return None


def _run_case(ex: CodeExercise, fn: Callable, label: str, kwargs: dict) -> tuple[str, str] | None:
    """None when ``fn`` agrees with the kit on this case, else ``(state, one-line message)``."""
    want = ex.reference(**copy.deepcopy(kwargs)).detach()
    try:
        got = fn(*copy.deepcopy(kwargs).values())
    except NotImplementedError:
        return "open", f"[{ex.id}] not yet written: fill in {ex.name} and run its cell again"
    except Exception as err:  # noqa: BLE001 - the student's code: any error is answered in one line
        text, why = _one_line(err), ""
        if "size of tensor" in text or "broadcast" in text:
            why = " - a wrong broadcast? a coefficient per sample [B] must be reshaped to [B, 1, ...] to multiply x"
        elif isinstance(err, IndexError) or "out of bounds" in text:
            why = " - a timestep outside [0, T-1]? alpha_bar at t = -1 (the data) is 1: schedule.alpha_bar(t)"
        return "wrong", f"[{ex.id}] {ex.name} raised {type(err).__name__} on {label}: {text}{why}"
    if isinstance(got, (list, tuple)) and got and all(isinstance(g, torch.Tensor) for g in got):
        if len({g.shape for g in got}) > 1:
            return "wrong", f"[{ex.id}] returned tensors of different shapes on {label}: every state has x's shape"
        got = torch.stack(list(got))
    if not isinstance(got, torch.Tensor):
        return "wrong", f"[{ex.id}] returned a {type(got).__name__} on {label}: return a tensor"
    got = got.detach()
    reading = _mistake(ex, got, kwargs, want)
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


def _code_verdict(ex: CodeExercise, fn, part: str) -> tuple[str, str]:
    """``(state, one-line message)`` of the student's function on the cases of ``part`` (all, basic, edge)."""
    if fn is None:
        return "open", f"[{ex.id}] no function yet: write {ex.signature} and pass it: check({ex.id!r}, {ex.name})"
    if not callable(fn):
        return "open", f"[{ex.id}] pass your function itself, check({ex.id!r}, {ex.name}), not a {type(fn).__name__}"
    cases = [(label, kw) for label, kw, edge in ex.cases() if part == "all" or edge == (part == "edge")]
    for label, kwargs in cases:
        try:
            problem = _run_case(ex, fn, label, kwargs)
        except Exception as err:  # noqa: BLE001 - a result too odd to compare (complex, sparse...): one line too
            problem = "wrong", f"[{ex.id}] {ex.name} returned something that cannot be compared on {label}: " \
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
    return fn if _code_verdict(ex, fn, "all")[0] == "right" else ex.reference


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
