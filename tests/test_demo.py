"""The demo and its evaluation: shipped checkpoints and their recipes, shared x_T, metrics recomputed by hand,
the report's content."""
import json
import math

import plotly.offline
import pytest
import torch

import seqdiff_kit as sk
from seqdiff_kit import demo
from seqdiff_kit._format import format_number
from seqdiff_kit.checkpoint import checkpoint_paths, load_checkpoint, read_checkpoint
from seqdiff_kit.data import CHECKPOINT_DIR, dataset
from seqdiff_kit.denoisers import seeded_model
from seqdiff_kit.drift import total_std
from seqdiff_kit.evaluate import DATA_ROW, evaluate, format_table
from seqdiff_kit.metrics import mean_log_likelihood, mmd, sliced_wasserstein
from seqdiff_kit.recipes import SHIPPED, load_shipped
from seqdiff_kit.samplers import sample

SCHED = sk.Schedule.linear()


@pytest.fixture(scope="module")
def shipped():
    return {name: load_shipped(stem).model for name, stem in demo.DEMO_MODELS.items()}


@pytest.fixture(scope="module")
def small_eval(shipped):
    return evaluate(shipped, sk.ring8(), SCHED, (2, 5, 20), n_points=96, seed=3, drift_steps=(2, 5),
                    slider_steps=5)


# ---------------------------------------------------------------------- shipped checkpoints
def test_shipped_checkpoints_are_small_ema_only_and_describe_their_training():
    for name, stem in demo.DEMO_MODELS.items():
        recipe = SHIPPED[stem]
        st, js = checkpoint_paths(CHECKPOINT_DIR / stem)
        assert st.stat().st_size < 400_000, f"{st} should hold the EMA weights only"
        tensors, meta = read_checkpoint(CHECKPOINT_DIR / stem)
        assert all(k.startswith("model.") for k in tensors), "no raw weights, optimizer or RNG state shipped"
        assert meta["dataset"] == "ring8" == recipe.dataset and meta["weights"] == "ema"
        assert meta["loss"] == recipe.loss.config
        assert meta["schedule"] == SCHED.config() == recipe.schedule
        assert meta["step"] == recipe.steps and meta["seed"] == 0 == recipe.seed
        # shipped models follow the current recipe (their JSON predates Recipe: the MLP's size sits in "train")
        assert {k: meta["train"][k] for k in recipe.fit} == recipe.fit, "shipped models follow the current recipe"
        assert meta["model"] == {"class": "MLPDenoiser", "args": {"dim": 2, "width": 128, "depth": 3,
                                                                  "time_dim": 64, "T": 1000}}
        assert recipe.build_model().config == meta["model"]["args"]
    assert SHIPPED[demo.DEMO_MODELS["SA (K=2, lam=1)"]].loss.config == {"name": "sa", "K": 2, "lam": 1.0}


def test_shipped_models_learned_the_ring(shipped):
    """100 DDIM steps: most samples lie near a ring mode (std 0.1); an untrained network puts none there."""
    mixture = sk.ring8()
    x_T = torch.randn(400, 2, generator=torch.Generator().manual_seed(1))
    untrained = seeded_model(sk.MLPDenoiser, 0)
    for name, model in {**shipped, "untrained": untrained}.items():
        x = sample(model, x_T, SCHED, 100).final
        d = torch.cdist(x.double(), mixture.means).min(dim=1).values
        near3, near5 = float((d < 0.3).double().mean()), float((d < 0.5).double().mean())
        if name == "untrained":
            assert near5 < 0.1
        else:
            assert near3 > 0.7 and near5 > 0.9, (name, near3, near5)
            assert mean_log_likelihood(x, mixture) > -5.0, name


def test_sa_model_counters_few_step_shrinkage(shipped):
    """The documented effect: at 5 DDIM steps the SA model's samples spread wider than the simple model's
    (both below the data's spread), and at 100 steps the SA model is the wider of the two, above 1."""
    x_T = torch.randn(1000, 2, generator=torch.Generator().manual_seed(2))
    ref = sk.ring8().sample(4000, generator=torch.Generator().manual_seed(3))
    ratio = {(n, s): total_std(sample(m, x_T, SCHED, s).final) / total_std(ref)
             for n, m in shipped.items() for s in (5, 100)}
    simple, sa = "simple", "SA (K=2, lam=1)"
    assert ratio[(simple, 5)] < ratio[(sa, 5)] < 0.95
    assert ratio[(sa, 100)] > ratio[(simple, 100)]
    assert ratio[(sa, 100)] > 1.0


def test_seeded_model_is_reproducible_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = seeded_model(sk.MLPDenoiser, 7, width=16, depth=1)
    after = torch.rand(3)
    b = seeded_model(sk.MLPDenoiser, 7, width=16, depth=1)
    c = seeded_model(sk.MLPDenoiser, 8, width=16, depth=1)
    assert torch.equal(before, after)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.inp.weight, c.inp.weight)


# ---------------------------------------------------------------------- evaluate
def test_every_model_starts_from_the_same_x_T_and_rows_recompute(small_eval, shipped):
    ev = small_eval
    assert ev.names == ["simple", "SA (K=2, lam=1)", "ideal"]
    assert len(ev.rows) == 1 + 3 * 3
    for name in ev.names:
        for s in ev.steps:
            tr = ev.trajectories[name][s]
            assert torch.equal(tr.x[0], ev.x_T) and tr.steps == s
    # brute force: sample again from x_T and score by hand
    again = sample(shipped["simple"], ev.x_T, SCHED, 5).final
    assert torch.allclose(again, ev.samples("simple", 5))
    row = next(r for r in ev.rows if r["model"] == "simple" and r["steps"] == 5)
    assert row["mmd"] == pytest.approx(mmd(again, ev.reference, ev.bandwidths), rel=1e-6, abs=1e-9)
    assert row["sw"] == pytest.approx(sliced_wasserstein(again, ev.reference,
                                                         generator=torch.Generator().manual_seed(3)), rel=1e-6)
    assert row["loglik"] == pytest.approx(mean_log_likelihood(again, sk.ring8()), rel=1e-6)
    assert row["std_ratio"] == pytest.approx(total_std(again) / total_std(ev.reference), rel=1e-9)
    # the data row scores a second, independent draw of the data against the reference
    own = ev.data_row()
    assert own["mmd"] == pytest.approx(mmd(ev.own, ev.reference, ev.bandwidths), rel=1e-6, abs=1e-9)
    assert not torch.equal(ev.own, ev.reference)
    assert ev.column("ideal", "steps") == [2, 5, 20]


def test_bandwidths_come_from_the_data_and_mmd_orders_sensibly(small_eval):
    ev = small_eval
    h0 = ev.bandwidths[2]  # the median multiplier 1
    assert [b / h0 for b in ev.bandwidths] == pytest.approx([0.25, 0.5, 1.0, 2.0, 4.0])
    # 2 DDIM steps from pure noise are far from the data; 20 ideal steps are close to it
    worst = max(ev.column(n, "mmd")[0] for n in ev.names)
    assert ev.column("ideal", "mmd")[-1] < 0.2 * worst
    assert abs(ev.data_row()["mmd"]) < ev.column("ideal", "mmd")[0]


def test_drift_and_spread_are_against_the_ideal_path(small_eval):
    ev = small_eval
    assert set(ev.drift) == {"simple", "SA (K=2, lam=1)"} and set(ev.std_ratio) == set(ev.names)
    for name in ev.drift:
        d = ev.drift[name][5]
        final = torch.linalg.vector_norm(ev.samples(name, 5) - ev.samples("ideal", 5), dim=1)
        assert torch.allclose(d.drift[-1].double(), final.double(), atol=1e-5)
        r = ev.std_ratio[name][5]
        assert r.shape == (6,)
        assert float(r[-1]) == pytest.approx(total_std(ev.samples(name, 5)) / total_std(sk.ring8().sample(
            200000, generator=torch.Generator().manual_seed(0))), rel=0.02)


def test_evaluate_rejects_bad_arguments(shipped):
    with pytest.raises(ValueError, match="steps must be in"):
        evaluate(shipped, sk.ring8(), SCHED, (0, 5), n_points=8)
    with pytest.raises(ValueError, match="drift_steps and slider_steps must be among steps"):
        evaluate(shipped, sk.ring8(), SCHED, (5,), n_points=8, drift_steps=(10,))
    with pytest.raises(ValueError, match="n_points must be in"):
        evaluate(shipped, sk.ring8(), SCHED, (5,), n_points=1)
    with pytest.raises(TypeError, match="data must be"):
        evaluate(shipped, "ring8", SCHED, (5,), n_points=8)
    with pytest.raises(ValueError, match="dataset must be one of"):
        dataset("moons")


def test_digits_evaluation_has_no_ideal_path_and_scores_frechet_distance(tmp_path):
    images = sk.digits()[0]
    model = seeded_model(sk.TinyUNet, 0, channels=8, time_dim=16)
    ev = evaluate({"untrained": model}, images, SCHED, (2,), n_points=24, seed=0, dataset="digits")
    assert ev.names == ["untrained"] and not ev.drift
    assert {"fd", "mmd", "sw", "std_ratio"} <= set(ev.rows[1]) and "loglik" not in ev.rows[1]
    assert ev.data_row()["fd"] < ev.rows[1]["fd"]  # real digits beat an untrained network's noise
    path = demo.build_report(ev, tmp_path / "digits.html")
    assert "untrained, 2 steps" in path.read_text()


# ---------------------------------------------------------------------- the demo job and its report
def test_run_demo_writes_report_with_plotly_once_slider_and_table(tmp_path):
    res = demo.run_demo(tmp_path / "demo", points=64, seed=0, progress=False, echo=None, threads=1)
    html = res.report.read_text()
    js = plotly.offline.get_plotlyjs()
    assert html.count(js[:2000]) == 1, "plotly.js must be inlined exactly once"
    assert "<script src=" not in html  # nothing loaded from the network
    assert '"sliders"' in html and "sampling step: " in html
    for r in res.evaluation.rows:
        for key in ("mmd", "sw", "loglik", "std_ratio"):
            assert f"<td class=\"num\">{format_number(r[key])}</td>" in html
    for title in ("Data and samples", "Sampling paths", "Drift from the ideal path", "Spread: variance ratio",
                  "Metrics versus the number of steps", "Table", "Settings"):
        assert title in html
    assert res.evaluation.steps == demo.DEMO_STEPS
    saved = json.loads(res.metrics.read_text())
    assert len(saved["rows"]) == 1 + 3 * len(demo.DEMO_STEPS) and saved["settings"]["points"] == 64
    # the printed table holds the same numbers
    assert format_number(res.evaluation.rows[1]["mmd"]) in res.table


def test_run_demo_retrain_trains_and_saves_both(tmp_path):
    res = demo.run_demo(tmp_path / "d", retrain=True, train_steps=3, points=16, progress=False, echo=None,
                        threads=1)
    for stem in demo.DEMO_MODELS.values():
        model, meta = load_checkpoint(tmp_path / "d" / "checkpoints" / stem)
        assert meta["loss"] == SHIPPED[stem].loss.config and meta["step"] == 3
    assert res.report.is_file()


def test_format_table_lines_up():
    rows = [{"model": DATA_ROW, "steps": 0, "mmd": 1e-4, "sw": 0.03, "loglik": -0.3, "std_ratio": 1.0},
            {"model": "simple", "steps": 5, "mmd": 0.123456, "sw": 0.2, "loglik": -10.0, "std_ratio": 0.81}]
    text = format_table(rows).splitlines()
    assert len(text) == 4 and len({len(line) for line in text}) == 1
    assert "0.1235" in text[3] and text[2].split()[2] == "-"
    assert not math.isnan(float(text[3].split()[-1]))


# ---------------------------------------------------------------------- the README
def test_readme_starts_with_the_two_commands_and_its_snippet_runs():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    head = text.split("## ", 1)[0]
    assert "make demo" in head and "make test" in head
    for heading in ("## Results: digits", "## Results: where the SA loss helps and hurts", "## How to cite",
                    "## Binder", "## The notebooks", "## Command-line usage", "## Library tour"):
        assert heading in text.replace("### Binder", "## Binder"), heading
    assert "arXiv:2312.12431" in text and "(docs/report.png)" in text
    code = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    code = code.replace("steps=3000", "steps=2").replace("seed=0)", "seed=0, progress=False, threads=1)")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["path"].x.shape == (11, 1000, 2)
    assert scope["drift"].mean("drift").shape == (10,)
    assert len(scope["result"].history) == 2
