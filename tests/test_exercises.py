"""The exercises module: every expected answer grades right and a wrong one wrong; a wrong answer gets a graded
hint and never the expected value or the explanation; ``check`` and ``solution`` print and return None; each
expected answer is recomputed independently (brute force, Monte Carlo, finite differences, other seeds)."""
import math
import re

import pytest
import torch

from seqdiff_kit import IdealDenoiser, Schedule, exercises, ring8

SLOW = {"03-less-training"}  # trains a network for 150 updates: tested in a slow test below


def wrong_answer(ex):
    want = ex.expected()
    if ex.kind == "int":
        return want + 1
    if ex.kind == "float":
        return want * 1.2 + 0.1
    if ex.kind == "tensor":
        return want + 0.05
    if ex.kind == "choice":
        return next(c for c in ex.choices if c != want)
    return [next(c for c in ex.choices if c != want[0])] + list(want[1:])


def right_answer(ex):
    want = ex.expected()
    return list(want) if ex.kind == "choices" else want


def leaked_numbers(ex, message: str, answer) -> list[str]:
    """Numbers in a wrong answer's message that equal (to 3 digits) an entry of the expected value, leaving out
    the exercise id, the echo of the student's own answer and the counts/indices of a tensor's entries."""
    want = ex.expected()
    if isinstance(want, (str, tuple)):
        return []  # words: checked separately
    vals = want.flatten().tolist() if isinstance(want, torch.Tensor) else [float(want)]
    text = message.replace(f"[{ex.id}]", "")
    text = re.sub(r"\d+ of \d+ entries|entry \d+|more than a factor of 2|\(and \d+ more\)", "", text)
    if not isinstance(answer, (list, torch.Tensor)):
        text = text.replace(f"{float(answer):.6g}", "").replace(str(answer), "")
    tokens = re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text)
    return [tok for tok in tokens if any(abs(v) > 1e-6 and math.isclose(float(tok), v, rel_tol=1e-3)
                                         for v in vals)]


@pytest.mark.parametrize("ex_id", sorted(set(exercises.EXERCISES) - SLOW))
def test_right_is_right_and_wrong_gets_a_hint_not_the_answer(ex_id, capsys):
    ex = exercises.EXERCISES[ex_id]
    exercises._TRIES.pop(ex_id, None)
    assert exercises.grade(ex_id, right_answer(ex))[0] is True
    assert exercises.check(ex_id, right_answer(ex)) is None  # no stray True/False under the cell
    out = capsys.readouterr().out
    assert out.startswith("✔") and "Why:" in out
    for tries in (1, 2, 3):
        ok, message = exercises.grade(ex_id, wrong_answer(ex))
        assert ok is False
        assert exercises.check(ex_id, wrong_answer(ex)) is None
        out = capsys.readouterr().out
        assert out.startswith("✘") and ex.why not in out and "Why:" not in out
        assert f"Hint {min(tries, len(ex.hints))}: {ex.hints[min(tries, len(ex.hints)) - 1]}" in out
        assert f"exercises.solution({ex_id!r})" in out
        leaked = leaked_numbers(ex, message, wrong_answer(ex))
        assert not leaked, f"{ex_id}: the message gives the answer away ({leaked}): {message}"
        assert message in out
        if ex.kind == "choice":
            assert f"'{ex.expected()}'" not in out and f" {ex.expected()}." not in out
    assert len(ex.hints) >= 2 and ex.how, f"{ex_id} needs graded hints and a model answer"
    assert exercises.check(ex_id, None) is None and "no answer yet" in capsys.readouterr().out


@pytest.mark.parametrize("ex_id", sorted(set(exercises.EXERCISES) - SLOW))
def test_solution_prints_the_model_answer(ex_id, capsys):
    ex = exercises.EXERCISES[ex_id]
    assert exercises.solution(ex_id) is None
    out = capsys.readouterr().out
    assert out.startswith(f"[{ex_id}] model answer: ") and f"How: {ex.how}" in out and f"Why: {ex.why}" in out
    want = ex.expected()
    if isinstance(want, tuple):
        assert ", ".join(want) in out
    elif isinstance(want, float):
        assert f"{want:.6g}" in out


def test_graded_hints_say_which_way_a_number_is_off(capsys):
    assert exercises.grade("01-alpha-bar-half", 258) == (False, "[01-alpha-bar-half] not quite: 258 is too small")
    ok, msg = exercises.grade("01-snr-cosine-500", 2 * exercises.EXERCISES["01-snr-cosine-500"].expected() + 1)
    assert not ok and "far too large" in msg
    ok, msg = exercises.grade("03-zero-model-loss", 2.1)
    assert not ok and "close but a little too large" in msg
    ok, msg = exercises.grade("02-eps-axis", [0.0, -1.0])
    assert not ok and "1 of 2 entries are off - entry 1: its sign is wrong" in msg
    ok, msg = exercises.grade("02-eps-axis", torch.zeros(3))
    assert not ok and "shape (2,)" in msg
    ok, msg = exercises.grade("05-k4", ["above"])
    assert not ok and "2 word(s)" in msg


def test_exercise_answers_recomputed_independently():
    lin, cos = Schedule.linear(), Schedule.cosine()
    # 01: brute-force product of (1 - beta) over t
    prod, t_half = 1.0, None
    for t, b in enumerate(lin.betas.tolist()):
        prod *= 1 - b
        if prod < 0.5:
            t_half = t
            break
    assert exercises.EXERCISES["01-alpha-bar-half"].expected() == t_half
    a = float(cos.alpha_bars[500])
    assert exercises.EXERCISES["01-snr-cosine-500"].expected() == pytest.approx(a / (1 - a), rel=1e-12)
    # 01: Monte Carlo spread of x_t's first coordinate
    g = torch.Generator().manual_seed(0)
    x0 = ring8().sample(200000, generator=g, dtype=torch.float64)
    xt = lin.add_noise(x0, torch.tensor(300), torch.randn(x0.shape, generator=g, dtype=torch.float64))
    assert exercises.EXERCISES["01-std-xt"].expected() == pytest.approx(float(xt[:, 0].std()), rel=0.01)
    # 02: eps* on the axis x1 = 0 from a finite-difference gradient of log p_t: eps* = -sqrt(1 - a) grad log p_t
    p = exercises.problem("02-eps-axis")
    a = float(lin.alpha_bars[p["t"]])
    h, x = 1e-5, p["x"][0]
    grad = torch.stack([(ring8().log_prob((x + h * e)[None], alpha_bar=a) - ring8().log_prob((x - h * e)[None],
                                                                                           alpha_bar=a))[0] / (2 * h)
                        for e in torch.eye(2, dtype=torch.float64)])
    got = exercises.EXERCISES["02-eps-axis"].expected()
    torch.testing.assert_close(got, -math.sqrt(1 - a) * grad, atol=1e-6, rtol=1e-6)
    assert abs(float(got[0])) < 1e-9 and float(got[1]) > 0  # the symmetry and the outward noise of the answer
    # 02: the one-step DDIM sample is the posterior mean E[x0 | x_T]
    x_T = exercises.problem("02-ddim-one-step")["x_T"]
    post = IdealDenoiser(ring8(), lin).x0(x_T, torch.tensor([999]))[0]
    torch.testing.assert_close(exercises.EXERCISES["02-ddim-one-step"].expected(), post, atol=1e-6, rtol=0)
    # 03: x0_pred by hand; the zero model's loss by Monte Carlo
    p = exercises.problem("03-x0-pred")
    ab = float(p["schedule"].alpha_bars[p["t"]])
    by_hand = (p["x_t"] - math.sqrt(1 - ab) * p["eps"]) / math.sqrt(ab)
    torch.testing.assert_close(exercises.EXERCISES["03-x0-pred"].expected(), by_hand)
    from seqdiff_kit.losses import simple_loss
    mc = float(simple_loss(lambda x, t: torch.zeros_like(x), x0[:50000], lin, generator=g).simple)
    assert exercises.EXERCISES["03-zero-model-loss"].expected() == pytest.approx(mc, rel=0.02)
    # 04: gamma from alphas; the biased step's closed form (sqrt(1-a_s) - sqrt(a_s) sqrt(1-a_t)/sqrt(a_t)) b
    a_t, a_prev = float(lin.alpha_bars[500]), float(lin.alpha_bars[499])
    gamma = math.sqrt(float(lin.alphas[500])) * (1 - a_prev) / (1 - a_t)
    assert exercises.EXERCISES["04-gamma-500"].expected() == pytest.approx(gamma, rel=1e-12)
    q = exercises.problem("04-bias-step")
    a_t, a_s = float(lin.alpha_bars[q["t"]]), float(lin.alpha_bars[q["s"]])
    coef = math.sqrt(1 - a_s) - math.sqrt(a_s) * math.sqrt(1 - a_t) / math.sqrt(a_t)
    torch.testing.assert_close(exercises.EXERCISES["04-bias-step"].expected(), coef * q["b"], atol=1e-10, rtol=0)
    # 05: K = 1 gives (1 + lam) L_simple
    assert exercises.EXERCISES["05-k1-ratio"].expected() == pytest.approx(1 + exercises.problem("05-k1-ratio")["lam"])
    # 07: Heun's calls counted; the last-step variance is the posterior variance of x0 (the mixture's own formula);
    # DDIM's error ratio from the step written out by hand
    from seqdiff_kit import GaussianMixture, solvers
    calls = []
    solvers.sample(lambda x, t: calls.append(1) or torch.zeros_like(x), torch.zeros(2, 2), lin, 10, solver="heun")
    assert exercises.EXERCISES["07-heun-calls"].expected() == len(calls)
    p = exercises.problem("07-last-step-variance")
    a99 = float(lin.alpha_bar(p["t_stop"]))
    post = GaussianMixture([1.0], [[0.0]], [[p["var"]]]).posterior_covariance(torch.zeros(1, 1), a99)
    assert exercises.EXERCISES["07-last-step-variance"].expected() == pytest.approx(float(post), rel=1e-9)
    v, errs = p["var"], []
    abar = lambda t: float(lin.alpha_bar(t))  # noqa: E731
    for n in (50, 100):
        ts = list(range(999, p["t_stop"] - 1, -1000 // n))
        x = 1.0
        for t, s in zip(ts, ts[1:]):
            eps = math.sqrt(1 - abar(t)) * x / (abar(t) * v + 1 - abar(t))
            x0 = (x - math.sqrt(1 - abar(t)) * eps) / math.sqrt(abar(t))
            x = math.sqrt(abar(s)) * x0 + math.sqrt(1 - abar(s)) * eps
        q = lambda t: abar(t) * v + 1 - abar(t)  # noqa: E731
        errs.append(abs(x - math.sqrt(q(p["t_stop"]) / q(999))))
    assert exercises.EXERCISES["07-ddim-order"].expected() == pytest.approx(errs[0] / errs[1], rel=1e-9)


def test_the_sampler_verdicts_hold_for_other_seeds():
    """02's and 04's answers are computed from one seed; the verdict must not be an accident of it."""
    from seqdiff_kit import sample
    from seqdiff_kit.checkpoint import load_checkpoint
    from seqdiff_kit.data import DATA_DIR
    from seqdiff_kit.drift import step_drift
    from seqdiff_kit.metrics import loglik_gap

    sch, mix = Schedule.linear(), ring8()
    ideal = IdealDenoiser(mix, sch)
    assert exercises.EXERCISES["02-ddpm-or-ddim"].expected() == "DDIM"
    for seed in (1, 2, 3):
        g = torch.Generator().manual_seed(seed)
        x_T, data = torch.randn(1000, 2, generator=g), mix.sample(1000, generator=g)
        ddim = loglik_gap(sample(ideal, x_T, sch, 10).final, data, mix).gap
        ddpm = loglik_gap(sample(ideal, x_T, sch, 10, eta=1.0, generator=g).final, data, mix).gap
        assert ddpm < ddim < 0, (seed, ddpm, ddim)
    assert exercises.EXERCISES["04-ddpm-drift"].expected() == "smaller"
    model, _ = load_checkpoint(DATA_DIR / "checkpoints" / "ring8_simple")
    final = {}
    for eta in (0.0, 1.0):
        g = torch.Generator().manual_seed(7)
        x_T = torch.randn(200, 2, generator=g)
        with torch.no_grad():
            final[eta] = float(step_drift(model, ideal, x_T, sch, 50, eta=eta, generator=g).mean("drift")[-1])
    assert final[1.0] < final[0.0]
    assert exercises.EXERCISES["05-k4"].expected() == ("above", "above")


@pytest.mark.slow
def test_less_training_leaves_samples_off_the_clusters(capsys):
    ex = exercises.EXERCISES["03-less-training"]
    assert ex.expected() == "no"
    assert exercises.check("03-less-training", "no") is None and capsys.readouterr().out.startswith("✔")
    assert exercises.grade("03-less-training", "yes")[0] is False


def test_bad_arguments_are_answered_in_one_line(capsys):
    """``check`` never raises to the student (issue 24): a mistyped id or an answer of the wrong kind gets one
    printed line; ``grade`` says the same, and only the programmer's API raises for an unknown exercise."""
    with pytest.raises(ValueError, match="exercise_id must be one of"):
        exercises.grade("99-nope", 1)
    with pytest.raises(ValueError, match="exercise_id must be one of"):
        exercises.solution("nope")
    with pytest.raises(TypeError, match="exercise_id must be a str"):
        exercises.problem(1)
    for ex_id, answer, words in [("01-alpha-bar-half", "259", "that is the text '259'"),
                                 ("01-snr-cosine-500", torch.ones(3), "a single number"),
                                 ("01-snr-cosine-500", "maybe", "without quotes"),
                                 ("02-eps-axis", object(), "answer must be a number"),
                                 ("02-ddpm-or-ddim", 1, "one word in quotes"),
                                 ("02-ddpm-or-ddim", ["DDIM"], "one word in quotes"),
                                 ("02-ddpm-or-ddim", "Euler", "answer with the words"),
                                 ("05-k4", "above", "a list of words")]:
        ok, message = exercises.grade(ex_id, answer)
        assert not ok and words in message and "\n" not in message, message
        assert exercises.check(ex_id, answer) is None
        out = capsys.readouterr().out
        assert out == f"✘ {message}\n"  # one line, no hint: a wrong kind of answer costs no try
    for bad in ("99-nope", 1):
        exercises.check(bad, 1)
        assert capsys.readouterr().out.startswith("✘ exercise_id must be")
