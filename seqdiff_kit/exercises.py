"""Self-checking exercises for the notebooks: ``check(exercise_id, answer)`` says right or wrong, and why.

Every expected answer is computed here by the library (a schedule, the ideal denoiser, a loss, the closed
forms of ``analysis``), never typed in as a number, so the checks stay right if a default changes.
``problem(exercise_id)`` returns the question and any inputs it needs; ``EXERCISES`` lists the ids.
This module never imports plotly or ipywidgets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Real
from typing import Callable

import torch

from ._validate import check_choice, check_type
from .data import digits, ring8
from .denoisers import IdealDenoiser
from .schedule import Schedule


@dataclass(frozen=True)
class Exercise:
    """One exercise: ``expected()`` computes the answer; answers within ``rtol``/``atol`` are right."""

    id: str
    question: str
    expected: Callable[[], object]
    why: str
    rtol: float = 1e-3
    atol: float = 1e-6
    kind: str = "float"            # "float", "int" or "tensor"
    inputs: Callable[[], dict] = field(default=lambda: {})


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
    from .samplers import sample
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


def _gauss_std_ratio() -> float:
    from .analysis import gaussian_sa_optimum, linear_sampler_std_ratio
    p = _inputs_05_gauss()
    a = gaussian_sa_optimum(p["var"], p["K"], p["lam"], p["schedule"])
    return linear_sampler_std_ratio(a, p["var"], p["schedule"], p["steps"])


EXERCISES: dict[str, Exercise] = {e.id: e for e in [
    Exercise("01-alpha-bar-half",
             "Linear schedule, T = 1000: what is the first timestep t with alpha_bar_t < 0.5?",
             lambda: _first_t_below(Schedule.linear(), 0.5),
             "alpha_bar_t = prod_{s<=t} (1 - beta_s); the linear betas are tiny at first, so half the signal "
             "survives until t is about a quarter of the way in.", kind="int", rtol=0, atol=0),
    Exercise("01-snr-cosine-500",
             "Cosine schedule, T = 1000: what is the signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t) at t = 500?",
             lambda: _snr(Schedule.cosine(), 500),
             "For the cosine schedule alpha_bar(t) ~ cos^2(pi t / 2T), so the SNR at the midpoint is close to 1.",
             rtol=0.01),
    Exercise("01-std-xt",
             "ring8 data, linear schedule: what is the standard deviation of the first coordinate of x_t at t = 300?",
             lambda: _std_xt_first_coordinate(300),
             "Var[x_t] = alpha_bar_t Var[x0] + (1 - alpha_bar_t) because x0 and eps are independent; "
             "Var[x0_1] of ring8 is radius^2 / 2 + std^2.", rtol=0.01),
    Exercise("02-eps-origin",
             "ring8, linear schedule: what is the ideal noise prediction eps*(x, t) at the origin x = (0, 0), "
             "t = 500? (a tensor of 2 numbers)",
             lambda: _ideal_eps_at([0.0, 0.0], 500),
             "The ring is symmetric about the origin: every direction is equally likely, so the score there is "
             "zero and so is eps* = -sqrt(1 - alpha_bar) grad log p_t.", kind="tensor", atol=1e-6),
    Exercise("02-ddim-one-step",
             "With the ideal denoiser, run DDIM with ONE step from x_T = (2.0, 0.5) at t = T-1 (inputs: "
             "problem('02-ddim-one-step')['x_T']). Where does the sample land? (a tensor of 2 numbers)",
             _ddim_one_step,
             "One step to the end returns x0_pred = E[x0 | x_T]: an average over all eight modes weighted by "
             "how likely each is given x_T. At t = T-1 x_T says almost nothing, so the average sits near the "
             "centre of the ring - one step, even with a perfect denoiser, cannot produce a sample on the ring.",
             kind="tensor", atol=1e-3, inputs=_inputs_02_one_step),
    Exercise("03-x0-pred",
             "Given x_t, t and eps in problem('03-x0-pred'), compute x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps) "
             "/ sqrt(alpha_bar_t) (a [4, 2] tensor).",
             _x0_pred,
             "Invert the forward process x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps for x0.",
             kind="tensor", atol=1e-5, inputs=_inputs_03_x0_pred),
    Exercise("03-zero-model-loss",
             "A network that always predicts eps = 0 (2-D data): what simple loss E||eps - eps_theta||^2 "
             "does it get, on average?",
             _zero_model_loss,
             "E||eps||^2 = sum over the D = 2 coordinates of E[eps_i^2] = 1 each: the loss at initialisation "
             "starts near 2, and everything training achieves is measured against it.", rtol=0.01),
    Exercise("04-gamma-500",
             "Linear schedule: compute gamma_t = sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) at t = 500, "
             "the factor by which the estimation gap is carried from one step to the next.",
             _gamma_500,
             "gamma_t is the posterior mean's coefficient on x_t. One factor just below 1 forgets little, but "
             "the gap is carried through every later step: the product of gamma from t = 999 down to 100 is "
             "below 1e-3 and gamma_1 is about 0.45, so early errors are almost entirely forgotten and the last "
             "steps make the final gap (drift.gap_survival).", rtol=1e-4),
    Exercise("04-bias-step",
             "A DDIM step from t = 499 to s = 399 uses eps_ideal + b with b = (0.1, 0) (inputs: "
             "problem('04-bias-step')). By how much does it move the sample compared with the ideal step? "
             "(a tensor of 2 numbers: biased minus ideal)",
             _bias_step,
             "x_s = sqrt(a_s) x0_pred + sqrt(1 - a_s) eps is linear in eps, so a bias b moves x_s by "
             "(sqrt(1 - a_s) - sqrt(a_s) sqrt(1 - a_t) / sqrt(a_t)) b - here a negative multiple of b.",
             kind="tensor", atol=1e-5, inputs=_inputs_04_bias),
    Exercise("05-k1-ratio",
             "With K = 1 and lam = 0.5, what is the sequence-aware total loss divided by the simple loss "
             "(same x0, t and noise)?",
             _k1_ratio,
             "With K = 1 the sum over the window has one term, so L_sa = L_simple and the total is (1 + lam) "
             "L_simple: K = 1 only rescales the loss (and the learning rate).", rtol=1e-6, inputs=_inputs_05_k1),
    Exercise("05-gauss-std-ratio",
             "1-D Gaussian data (var = 0.25), linear schedule: with the population optimum of the SA loss "
             "(K = 2, lam = 1; analysis.gaussian_sa_optimum), what is std(final sample) / std(data) for 10 "
             "DDIM steps (analysis.linear_sampler_std_ratio)?",
             _gauss_std_ratio,
             "The simple loss's optimum is the exact eps*, yet 10 DDIM steps shrink the samples (ratio < 1). "
             "With independent noises the SA optimum predicts a smaller noise than eps* (a_t / a*_t < 1), so "
             "x0_pred lies farther out and the samples widen: this pushes the ratio towards 1 at few steps and "
             "past it at many.", rtol=1e-3, inputs=_inputs_05_gauss),
    Exercise("06-zero-model-loss-digits",
             "A network that always predicts eps = 0 on the 8x8 digits: what simple loss E||eps - eps_theta||^2 "
             "does it get, on average?",
             lambda: float(digits()[0][0].numel()),
             "E||eps||^2 sums E[eps_i^2] = 1 over the 64 pixels: the loss starts near 64 and the shipped "
             "networks end near 5, so they predict most of the noise.", rtol=0.01),
    Exercise("06-confidence-share",
             "problem('06-confidence-share')['probs'] holds class probabilities [8, 10] of eight images. What "
             "share of the images does the classifier label with confidence >= 0.9 (max probability)?",
             lambda: float((_probs_06()["probs"].max(dim=-1).values >= 0.9).double().mean()),
             "An image counts as recognisable when its largest class probability reaches 0.9; the share is "
             "the fraction of rows whose maximum passes that bar.", rtol=1e-9, inputs=_probs_06),
    Exercise("06-trailing-5",
             "Linear schedule, T = 1000: which 5 timesteps does a 5-step sampler with 'trailing' spacing visit? "
             "(a tensor of 5 integers, descending)",
             lambda: Schedule.linear().timesteps(5, "trailing").double(),
             "Trailing spacing starts at T-1 = 999 and takes jumps of T/5 = 200: each DDIM step there bridges "
             "200 training timesteps, which is where errors per step are largest.", kind="tensor", rtol=0, atol=0),
]}


def problem(exercise_id: str) -> dict:
    """The question text and the inputs it needs: ``{"question": str, **inputs}``."""
    ex = _get(exercise_id)
    return {"question": ex.question, **ex.inputs()}


def _get(exercise_id) -> Exercise:
    check_type("exercise_id", exercise_id, str)  # first, so a non-str gets a TypeError, not a lookup error
    return EXERCISES[check_choice("exercise_id", exercise_id, EXERCISES)]


def _as_tensor(answer) -> torch.Tensor:
    if isinstance(answer, torch.Tensor):
        return answer.detach().to(torch.float64).cpu()
    try:
        return torch.as_tensor(answer, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"answer must be a number, a list of numbers or a tensor, got {type(answer).__name__}") \
            from err


def grade(exercise_id: str, answer) -> tuple[bool, str]:
    """``(right, message)`` without printing. ``answer=None`` means not answered yet (``False``)."""
    ex = _get(exercise_id)
    if answer is None:
        return False, f"[{ex.id}] no answer yet: replace None with your answer. Question: {ex.question}"
    expected = ex.expected()
    if ex.kind == "int":
        if isinstance(answer, bool) or not isinstance(answer, (int, Real, torch.Tensor)):
            raise TypeError(f"answer to {ex.id!r} must be an integer, got {type(answer).__name__}")
        value = float(answer)
        ok = value == float(expected)
        shown = f"{int(value) if value.is_integer() else value}"
        if ok:
            return True, f"[{ex.id}] right: {shown}. Why: {ex.why}"
        hint = "too early" if value < expected else "too late"
        return False, f"[{ex.id}] not quite: {shown} is {hint} (expected {expected}). Why: {ex.why}"
    if ex.kind == "float":
        if isinstance(answer, bool):
            raise TypeError(f"answer to {ex.id!r} must be a number, got a bool")
        if isinstance(answer, torch.Tensor) and answer.numel() != 1:
            raise TypeError(f"answer to {ex.id!r} must be a single number, got a tensor of shape "
                            f"{tuple(answer.shape)}")
        value = float(answer) if isinstance(answer, (Real, torch.Tensor)) else float(_as_tensor(answer))
        ok = math.isfinite(value) and math.isclose(value, expected, rel_tol=ex.rtol, abs_tol=ex.atol)
        if ok:
            return True, f"[{ex.id}] right: {value:.6g} (exact {expected:.6g}). Why: {ex.why}"
        return False, (f"[{ex.id}] not quite: {value:.6g}, expected {expected:.6g} (relative tolerance "
                       f"{ex.rtol:g}). Why: {ex.why}")
    value, expected = _as_tensor(answer), expected.to(torch.float64)
    if value.shape != expected.shape:
        return False, (f"[{ex.id}] not quite: your answer has shape {tuple(value.shape)}, the answer has shape "
                       f"{tuple(expected.shape)}. Why: {ex.why}")
    err = float((value - expected).abs().max())
    ok = bool(torch.isfinite(value).all()) and bool(torch.allclose(value, expected, rtol=ex.rtol, atol=ex.atol))
    if ok:
        return True, f"[{ex.id}] right (largest difference {err:.2g}). Why: {ex.why}"
    return False, (f"[{ex.id}] not quite: largest difference {err:.3g} from {expected.numpy().round(4).tolist()}. "
                   f"Why: {ex.why}")


def check(exercise_id: str, answer) -> bool:
    """Print whether ``answer`` is right for ``exercise_id``, and why; return ``True`` when it is."""
    ok, message = grade(exercise_id, answer)
    print(("✔ " if ok else "✘ ") + message)
    return ok
