"""The one evaluation: shared x_T, metrics recomputed by hand, fixed bandwidths, drift against the ideal path,
the digits reference, pivots and the plain-text table."""
import json
import math

import pytest
import torch

import seqdiff_kit as sk
from seqdiff_kit import demo, few_step, seed_study
from seqdiff_kit.data import dataset, digits
from seqdiff_kit.denoisers import seeded_model
from seqdiff_kit.drift import total_std
from seqdiff_kit.evaluate import (BANDWIDTH_POINTS, DATA_ROW, METRICS, Metric, Scorer, applicable, evaluate,
                                  format_table, real_halves)
from seqdiff_kit.metrics import mean_log_likelihood, mmd, robust_mode_spread, sliced_wasserstein
from seqdiff_kit.recipes import load_shipped
from seqdiff_kit.solvers import sample

SCHED = sk.Schedule.linear()


@pytest.fixture(scope="module")
def shipped():
    return {"simple": load_shipped("ring8_simple").model, "SA (K=2, lam=1)": load_shipped("ring8_sa").model}


@pytest.fixture(scope="module")
def small_eval(shipped):
    return evaluate(shipped, sk.ring8(), SCHED, (2, 5, 20), n_points=96, seed=3, drift_steps=(2, 5),
                    slider_steps=5)


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


def test_bandwidths_come_from_the_data_and_mmd_orders_sensibly(small_eval, shipped):
    ev = small_eval
    # the median pairwise distance of the fixed data draw, halved down to the draw's 1% quantile of distances
    z = sk.ring8().sample(BANDWIDTH_POINTS, torch.Generator().manual_seed(0), dtype=torch.float64)
    d = torch.pdist(z)
    assert ev.bandwidths[0] == pytest.approx(float(d.median()), rel=1e-12)
    assert [b / ev.bandwidths[0] for b in ev.bandwidths] == [0.5 ** k for k in range(len(ev.bandwidths))]
    q = float(torch.quantile(d, 0.01))
    assert ev.bandwidths[-1] >= 0.99 * q and ev.bandwidths[-1] / 2 < 1.01 * q
    assert ev.bandwidths[-1] < 0.1 < ev.bandwidths[-2]  # down to ring8's mode width (standard deviation 0.1)
    # the same kernel whatever the seed and the sample size
    assert evaluate({"simple": shipped["simple"]}, sk.ring8(), SCHED, (2,), n_points=40, seed=11,
                    ideal=False, drift_steps=()).bandwidths == ev.bandwidths
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


def test_evaluate_measures_every_learned_run_against_both_references(small_eval, tmp_path):
    """Issue 23: the table's runs against the ideal path and the exact flow, as drift.two_references measures them
    (which samples again and solves the flow at that run's timesteps only: the RK4 sub-steps differ)."""
    from seqdiff_kit.drift import two_references
    from seqdiff_kit.evaluate import write_metrics_json

    ev = small_eval
    assert set(ev.references) == {"simple", "SA (K=2, lam=1)"} and ev.flow is not None
    for name in ev.references:
        for s in ev.drift_steps:
            got = ev.references[name][s]
            again = two_references(_shipped_model(name), sk.ring8(), SCHED, ev.x_T, s)
            for table in ("estimation", "total", "discretisation", "cross"):
                assert torch.allclose(got.final(table), again.final(table), atol=1e-5), (name, s, table)
            # the estimation error is the final drift from the ideal path, the other view of the same runs
            assert torch.allclose(got.final("estimation"), ev.drift[name][s].drift[-1].double(), atol=1e-5)
    rows = ev.reference_rows()
    assert {(r["model"], r["steps"]) for r in rows} == {(n, s) for n in ev.references for s in ev.drift_steps}
    assert json.loads(write_metrics_json(tmp_path / "m.json", ev).read_text())["references"] == rows


def test_a_stochastic_sampler_has_no_flow_reference(shipped):
    ev = evaluate(shipped, sk.ring8(), SCHED, (3,), n_points=32, seed=0, eta=1.0, drift_steps=(3,))
    assert ev.references == {} and ev.flow is None and ev.reference_rows() == []


def _shipped_model(name):
    return load_shipped("ring8_simple" if name == "simple" else "ring8_sa").model


def test_evaluate_with_a_solver_samples_that_solver(shipped):
    """Every model through the named solver from the shared x_T and noise; Analytic-DPM's Gamma from the data
    drawn with the evaluation's seed; no paired drift (its local error is the generalized step's)."""
    from seqdiff_kit import solvers

    for solver in ("heun", "analytic_dpm"):
        ev = evaluate({"SA": shipped["SA (K=2, lam=1)"]}, sk.ring8(), SCHED, (3,), n_points=40, seed=4, solver=solver)
        assert ev.drift == {} and ev.settings["sampler"] == solver and set(ev.std_ratio) == {"SA", "ideal"}
        noise = sk.make_noise(3, ev.x_T.shape, _noise_generator(ev, 40)) if solver in solvers.STOCHASTIC else None
        opts = solvers.options_from_data(solver, shipped["SA (K=2, lam=1)"], sk.ring8(), SCHED,
                                         SCHED.timesteps(3), generator=torch.Generator().manual_seed(4))
        again = solvers.sample(shipped["SA (K=2, lam=1)"], ev.x_T, SCHED, 3, solver=solver, noise=noise, **opts)
        assert torch.equal(again.final, ev.samples("SA", 3))
    with pytest.raises(ValueError, match="eta belongs to the generalized step"):
        evaluate(shipped, sk.ring8(), SCHED, (5,), n_points=8, solver="heun", eta=1.0)
    with pytest.raises(ValueError, match="solver must be one of"):
        evaluate(shipped, sk.ring8(), SCHED, (5,), n_points=8, solver="rk4")


def _noise_generator(ev, n_points):
    """The evaluation's generator after x_T and the two data draws (its documented order of randomness)."""
    g = torch.Generator().manual_seed(ev.seed)
    torch.randn((n_points, 2), generator=g)
    sk.ring8().sample(n_points, generator=g)
    sk.ring8().sample(n_points, generator=g)
    return g


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


def test_format_table_lines_up():
    rows = [{"model": DATA_ROW, "steps": 0, "mmd": 1e-4, "sw": 0.03, "loglik": -0.3, "std_ratio": 1.0},
            {"model": "simple", "steps": 5, "mmd": 0.123456, "sw": 0.2, "loglik": -10.0, "std_ratio": 0.81}]
    text = format_table(rows).splitlines()
    assert len(text) == 4 and len({len(line) for line in text}) == 1
    assert "0.1235" in text[3] and text[2].split()[2] == "-"
    assert not math.isnan(float(text[3].split()[-1]))


def test_table_pivots_a_metric_by_model_and_steps(small_eval):
    ev = small_eval
    table = ev.table("mmd")
    assert list(table) == ev.names and all(list(by) == [2, 5, 20] for by in table.values())
    for r in ev.rows:
        if r["model"] != DATA_ROW:
            assert table[r["model"]][r["steps"]] == r["mmd"]


def test_digits_reference_is_the_shipped_tables_reference():
    """Images are scored against half A of the fixed split of the real digits, whatever the seed; the data row
    scores half B, which is the floor the shipped digits checkpoints recorded (measured on a GPU: the CPU's
    classifier features agree to ~1e-5)."""
    images = digits()[0]
    model = seeded_model(sk.TinyUNet, 0, channels=8, time_dim=16)
    a, b = real_halves(0)
    for seed in (0, 5):
        ev = evaluate({"untrained": model}, images, SCHED, (1,), n_points=4, seed=seed, drift_steps=(),
                      metrics=("fd", "confident"))
        assert torch.equal(ev.reference, a) and torch.equal(ev.own, b)
        assert ev.data_row()["fd"] == pytest.approx(load_shipped("digits_simple").config["evaluation"]["floor"],
                                                    rel=1e-4)
        assert set(ev.rows[1]) == {"model", "steps", "fd", "confident"} and not ev.std_ratio
        # samples are clamped to the pixel range before they are scored
        assert float(ev.samples("untrained", 1).abs().max()) <= 1.0


# ---------------------------------------------------------------------- one scorer behind every table
def _one_sample_set_through_every_path(steps=5, n=96, seed=3):
    """The ideal denoiser's DDIM samples at ``steps`` from seed ``seed``: every table path draws ``x_T`` and the
    reference from ``Generator(seed)`` in that order, so they all score the very same samples."""
    mix = sk.ring8()
    ev = evaluate({"copy": sk.IdealDenoiser(mix, SCHED)}, mix, SCHED, (steps,), n_points=n, seed=seed,
                  drift_steps=())
    grid = few_step.run_grid({}, mix, SCHED, steps=(steps,), fixes=("ddim",), seeds=(seed,), n_points=n,
                             data_draws=2)
    study = seed_study.measure_seed({}, mix, SCHED, seed, steps=(steps,), n_points=n)
    return {"evaluate (demo, compare, experiment grid)": next(r for r in ev.rows if r["model"] == "ideal"),
            "few-step grid": grid.rows[0],
            "seed study": study[seed_study.IDEAL]["steps"][str(steps)],
            "Scorer (explorer, notebooks)": Scorer(mix, ev.reference, seed=seed).score(ev.samples("ideal", steps)),
            }, ev, study


def test_one_set_of_samples_scores_the_same_through_every_table_path():
    rows, ev, study = _one_sample_set_through_every_path()
    want = rows["Scorer (explorer, notebooks)"]
    assert set(want) == set(applicable(sk.ring8())) and "mmd" in want and "sw" in want
    for path, row in rows.items():
        assert {m: row[m] for m in want} == want, path
    # the data's own level: the same second draw scored the same way
    assert {k: ev.data_row()[k] for k in want} == study[seed_study.DATA]


def test_a_metric_added_to_the_one_registry_reaches_every_table_path(monkeypatch):
    monkeypatch.setitem(METRICS, "points", Metric("points", "all", lambda scorer, x: float(x.shape[0])))
    rows, ev, study = _one_sample_set_through_every_path(steps=2, n=40)
    for path, row in rows.items():
        assert row["points"] == 40.0, path
    assert ev.data_row()["points"] == 40.0 and study[seed_study.DATA]["points"] == 40.0


def test_the_robust_spread_and_the_off_mode_share_are_in_the_one_registry(ring_with_outliers):
    mix, ref, outliers, _ = ring_with_outliers(0)
    s = Scorer(mix, ref).score(outliers)
    robust = robust_mode_spread(outliers, mix, axes="radial")
    assert s["spread_radial_mad"] == float(robust.pooled[0]) and s["spread_tangential_mad"] == float(robust.pooled[1])
    assert s["off_mode_share"] == robust.off_share and 0.02 < s["off_mode_share"] < 0.05
    # the std spread, kept beside it, is widened by the 5% between the modes; the MAD spread is not
    assert s["spread_radial"] > 1.4 and abs(s["spread_radial_mad"] - 1) < 0.1
    assert {"spread_radial", "spread_tangential"} <= set(s)
    flat = Scorer(sk.grid25(), sk.grid25().sample(500, torch.Generator().manual_seed(1))).score(
        sk.grid25().sample(500, torch.Generator().manual_seed(2)))
    assert "off_mode_share" in flat and "spread_radial_mad" not in flat  # a mode at the centre: no ring axes


def test_the_explorer_scores_through_the_one_scorer():
    """The explorer's table (``explorer_engine.Engine.scorer``): the one scorer, the tables' bandwidths, its
    columns."""
    from seqdiff_kit import explorer_engine

    engine = explorer_engine.Engine(recipe=None, n_points=20, n_reference=60, quick_steps=10, seed=0)
    x = sk.ring8().sample(50, torch.Generator().manual_seed(5))
    got = engine.scorer("ring8")
    want = Scorer.draw(sk.ring8(), 60, seed=engine.seed + 2, metrics=explorer_engine.TABLE)
    assert got.bandwidths == want.bandwidths == Scorer(sk.ring8(), x).bandwidths
    assert got.score(x) == want.score(x) and got.data_level == want.data_level
    assert set(got.score(x)) == set(explorer_engine.TABLE)
