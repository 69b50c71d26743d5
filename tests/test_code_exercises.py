"""The coding exercises (``exercises.CODE``): the kit's own function and the teacher's solution pass; mistakes a
student makes, written here as a student would write them, each get their own one-line reading; any input is
answered in one line and never raises; a right function drives the same figure as the kit's."""
import importlib.util
import math
from pathlib import Path

import pytest
import torch

from seqdiff_kit import Schedule, exercises, ring8, solvers
from seqdiff_kit.denoisers import MLPDenoiser

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("teacher_solutions", ROOT / "teacher" / "solutions.py")
solutions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(solutions)


def fn_name(ex_id):
    return exercises.CODE[ex_id].signature.split("(")[0]


@pytest.mark.parametrize("ex_id", sorted(exercises.CODE))
def test_the_kit_and_the_teacher_solution_pass_every_case(ex_id):
    ex = exercises.CODE[ex_id]
    for fn in (ex.reference, getattr(solutions, fn_name(ex_id))):
        for part in ("all", "basic", "edge"):
            ok, message = exercises.grade(ex_id, fn, part=part)
            assert ok, message
    labels = [label for label, _, _ in ex.cases()]
    edges = [label for label, _, edge in ex.cases() if edge]
    assert len(labels) >= 4 or ex_id == "01-alpha-bars"
    assert edges and len(edges) < len(labels), "visible and hidden (edge) cases both"
    assert len(ex.hints) >= 2 and len(ex.bugs) >= 3


def _abar(schedule, t, x):
    return schedule.alpha_bar(t).reshape(-1, *[1] * (x.ndim - 1)).to(x.dtype)


# mistakes as a student writes them, and the words the one-line reading must contain
def sign_flip(x0, t, noise, schedule):
    a = _abar(schedule, t, x0)
    return a.sqrt() * x0 - (1 - a).sqrt() * noise


def index_wraps(x0, t, noise, schedule):
    a = schedule.alpha_bars[t].reshape(-1, *[1] * (x0.ndim - 1)).to(x0.dtype)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def no_reshape(x0, t, noise, schedule):
    a = schedule.alpha_bar(t).to(x0.dtype)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def float64_out(x0, t, noise, schedule):
    a = schedule.alpha_bar(t).reshape(-1, *[1] * (x0.ndim - 1))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def previous_t(x0, t, noise, schedule):
    a = _abar(schedule, t - 1, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def loss_mean_everything(model, x0, t, noise, schedule):
    a = _abar(schedule, t, x0)
    return (noise - model(a.sqrt() * x0 + (1 - a).sqrt() * noise, t)).pow(2).mean()


def loss_returns_per_sample(model, x0, t, noise, schedule):
    a = _abar(schedule, t, x0)
    return (noise - model(a.sqrt() * x0 + (1 - a).sqrt() * noise, t)).pow(2).flatten(1).sum(1)


def sa_no_mask(model, x0, t, noise, schedule, K):
    total = 0
    for k in range(K):
        tk = (t - k).clamp(min=0)
        a = _abar(schedule, tk, x0)
        total = total + noise[k] - model(a.sqrt() * x0 + (1 - a).sqrt() * noise[k], tk)
    return total.pow(2).flatten(1).sum(1).mean() / K**2


def step_index_wraps(x, eps, t, s, schedule):
    a_t, a_s = float(schedule.alpha_bars[t]), float(schedule.alpha_bars[s])
    x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t ** 0.5
    return a_s ** 0.5 * x0 + (1 - a_s) ** 0.5 * eps


def sampler_without_x_T(model, x_T, schedule, timesteps):
    return solutions.ddim_sampler(model, x_T, schedule, timesteps)[1:]


def heun_is_euler(model, x, t, s, schedule):
    return solutions.ddim_step(x, model(x, torch.full((x.shape[0],), t)), t, s, schedule)


def divides_by_zero(x, eps, t, s, schedule):
    return x / 0 if False else 1 / 0


def not_written(x0, t, noise, schedule):
    raise NotImplementedError  # your code here


PLANTED = [
    ("01-add-noise", sign_flip, "wrong sign"),
    ("01-add-noise", index_wraps, "at t = -1 (the clean data) alpha_bar is 1"),
    ("01-add-noise", no_reshape, "wrong broadcast"),
    ("01-add-noise", float64_out, "returned float64 on 3 digits [3, 1, 8, 8] in float32; keep the inputs' dtype"),
    ("01-add-noise", previous_t, "off by one timestep"),
    ("01-add-noise", not_written, "not yet written: fill in add_noise"),
    ("01-alpha-bars", lambda betas: torch.cumsum(1 - betas, 0), "a running sum"),
    ("03-simple-loss", loss_mean_everything, "averaged over the features too"),
    ("03-simple-loss", loss_returns_per_sample, "returned shape (8,)"),
    ("04-ddim-step", step_index_wraps, "at s = -1 (the data) alpha_bar is 1"),
    ("04-ddim-step", divides_by_zero, "ddim_step raised ZeroDivisionError on t = 499 -> s = 399"),
    ("04-sampler", sampler_without_x_T, "the path must start with x_T"),
    ("05-sa-loss", sa_no_mask, "missing mask"),
    ("07-heun-step", heun_is_euler, "that is the Euler (DDIM) step"),
    ("02-gauss-eps", lambda x, alpha_bar, mean, var: -solutions.gauss_eps(x, alpha_bar, mean, var), "wrong sign"),
    ("02-gauss-eps", lambda x, alpha_bar, mean, var: [1.0], "returned a list"),
    ("02-gauss-eps", lambda x, alpha_bar, mean, var: torch.zeros_like(x, dtype=torch.complex64),
     "returned complex64 on 5 points in 2-D at t = 500; keep the inputs' dtype"),
    ("02-gauss-eps", lambda x, alpha_bar, mean, var: solutions.gauss_eps(x, alpha_bar, mean, var).to_sparse(),
     "returned something that cannot be compared on 5 points"),
    ("04-sampler", lambda model, x_T, schedule, timesteps: [x_T, x_T[:1]], "returned tensors of different shapes"),
]


@pytest.mark.parametrize("ex_id,fn,reading", PLANTED, ids=[f"{p[0]}-{p[1].__name__}" for p in PLANTED])
def test_a_planted_bug_gets_its_one_line_reading(ex_id, fn, reading, capsys):
    exercises._TRIES.pop(ex_id, None)
    ok, message = exercises.grade(ex_id, fn)
    assert not ok and reading in message and "\n" not in message, message
    exercises.check(ex_id, fn)
    out = capsys.readouterr().out
    assert reading in out and "Traceback" not in out
    if "not yet written" in reading:
        assert out.count("\n") == 1 and "Hint" not in out  # not answered yet: no try counted, no hint
    else:
        assert f"Hint 1: {exercises.CODE[ex_id].hints[0]}" in out
    body = exercises.solution_source(fn_name(ex_id)).splitlines()[1:]
    assert not [line for line in body if len(line.strip()) > 12 and line.strip() in out]  # never the solution


def test_the_student_s_own_parameter_names_do_not_matter():
    def add_noise(x, step, eps, sch):  # called positionally, in the stub's order
        return solutions.add_noise(x, step, eps, sch)

    def sa(net, data, ts, noises, sched, k):
        return solutions.sa_term(net, data, ts, noises, sched, k)
    assert exercises.grade("01-add-noise", add_noise)[0] and exercises.grade("05-sa-loss", sa)[0]
    for ex in exercises.CODE.values():  # every case lists its inputs in the signature's order
        names = [a.strip() for a in ex.signature[ex.signature.index("(") + 1:-1].split(",")]
        assert all(list(kw) == names for _, kw, _ in ex.cases()), ex.id


def test_the_mask_is_caught_only_by_the_hidden_edge_cases():
    assert exercises.grade("05-sa-loss", sa_no_mask, part="basic")[0] is True
    ok, message = exercises.grade("05-sa-loss", sa_no_mask, part="edge")
    assert not ok and "missing mask" in message and "t = 0, 1 and 2" in message


ANY_INPUT = ["maybe", "259", ["DDIM"], ("above",), object(), float("nan"), math.inf, torch.ones(3), True, {}, -1,
             [["a"]], torch.tensor(float("nan")), b"x", None, len]


@pytest.mark.parametrize("ex_id", ["01-alpha-bar-half", "01-snr-cosine-500", "02-eps-axis", "02-ddpm-or-ddim",
                                   "05-k4", "06-trailing-5", "01-add-noise", "04-sampler"])
def test_any_answer_gets_one_line_and_never_raises(ex_id, capsys):
    for answer in ANY_INPUT:
        ok, message = exercises.grade(ex_id, answer)
        assert ok is False and "\n" not in message and message.startswith(f"[{ex_id}]"), (answer, message)
        exercises.check(ex_id, answer)
        out = capsys.readouterr().out
        assert "Traceback" not in out and out.startswith("✘"), (answer, out)
    assert exercises.grade("01-alpha-bar-half", "259")[1] == (
        "[01-alpha-bar-half] cannot read that as an answer: that is the text '259': answer with a number, "
        "without quotes")
    assert "one word in quotes" in exercises.grade("02-ddpm-or-ddim", ["DDIM"])[1]


def test_check_answers_a_wrong_exercise_id_in_one_line(capsys):
    for bad in ("99-nope", 1, None):
        exercises.check(bad, 1)
        out = capsys.readouterr().out
        assert out.startswith("✘ exercise_id must be") and out.count("\n") == 1


def test_two_wrong_parts_are_named_in_plain_words():
    assert exercises.grade("05-k4", ["below", "below"])[1].endswith("(parts 1 and 2 are not)")
    assert exercises.grade("05-k4", ["above", "below"])[1].endswith("(part 2 is not)")


def test_yours_falls_back_to_the_kit_until_the_function_passes():
    assert exercises.yours("01-add-noise", not_written) is exercises.CODE["01-add-noise"].reference
    assert exercises.yours("01-add-noise", sign_flip) is exercises.CODE["01-add-noise"].reference
    assert exercises.yours("01-add-noise", solutions.add_noise) is solutions.add_noise
    with pytest.raises(ValueError, match="exercise_id must be a coding exercise"):
        exercises.yours("01-alpha-bar-half", solutions.add_noise)


def test_a_right_add_noise_draws_the_same_noising_figure():
    from seqdiff_kit.widgets import NoisingDashboard
    sch = Schedule.linear()
    points = ring8().sample(50, generator=torch.Generator().manual_seed(0))
    images = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    kit = NoisingDashboard(points, sch, images, generator=torch.Generator().manual_seed(2))
    mine = NoisingDashboard(points, sch, images, generator=torch.Generator().manual_seed(2),
                            add_noise=exercises.yours("01-add-noise", solutions.add_noise))
    assert mine.ts[0] == -1  # the clean frame goes through the student's function too
    torch.testing.assert_close(torch.as_tensor(mine.xy), torch.as_tensor(kit.xy), rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.as_tensor(mine.images), torch.as_tensor(kit.images), rtol=0, atol=1e-12)
    wrong = NoisingDashboard(points, sch, images, generator=torch.Generator().manual_seed(2), add_noise=sign_flip)
    assert float(abs(torch.as_tensor(wrong.xy) - torch.as_tensor(kit.xy)).max()) > 0.1  # the figure would show it


def test_a_right_sampler_drives_the_same_path_dashboard():
    from seqdiff_kit.widgets import PathDashboard
    sch, model = Schedule.linear(), MLPDenoiser(dim=2, width=32, depth=2)
    x_T = torch.randn(40, 2, generator=torch.Generator().manual_seed(3))
    ts = sch.timesteps(8).tolist()
    with torch.no_grad():
        mine = exercises.trajectory(solutions.ddim_sampler(model, x_T, sch, ts), ts)
        kit = solvers.sample(model, x_T, sch, 8)
    torch.testing.assert_close(mine.x, kit.x, rtol=1e-5, atol=1e-6)
    assert torch.equal(mine.t, kit.t)
    board = PathDashboard({"yours": mine, "kit": kit})
    assert board.n_frames == 9 and float(board.mean_distance.max()) < 1e-5


def test_a_right_loss_trains_the_network_as_the_kits_does():
    sch, runs = Schedule.linear(), []
    for loss in (solutions.my_simple_loss, exercises.CODE["03-simple-loss"].reference):
        torch.manual_seed(0)
        model = MLPDenoiser(dim=2, width=32, depth=2)
        runs.append(exercises.train_with(loss, model, ring8(), sch, steps=60, batch_size=64, seed=1))
    assert runs[0] == pytest.approx(runs[1], rel=1e-5)
    assert sum(runs[0][-10:]) < sum(runs[0][:10])  # it learns


def test_problem_and_solution_of_a_coding_exercise(capsys):
    p = exercises.problem("04-ddim-step")
    assert p["signature"] == "ddim_step(x, eps, t, s, schedule)" and "s = -1" in p["question"]
    exercises.solution("04-ddim-step")
    out = capsys.readouterr().out
    assert "generalized_step" in out and "def ddim_step(x, eps, t, s, schedule):" in out
