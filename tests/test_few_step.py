"""The few-step fixes grid: two-sided scores against exact references, shared randomness, intervals, the data's
own level, and the exact probability-flow path it measures drift from."""
import math

import pytest
import torch

from seqdiff_kit import GaussianMixture, IdealDenoiser, Schedule, grid25, ring8
from seqdiff_kit import few_step, solvers
from seqdiff_kit.drift import reference_distance
from seqdiff_kit.evaluate import Scorer
from seqdiff_kit.stats import mean_band, mean_ci
from seqdiff_kit.metrics import loglik_gap, target_distance

SCHED = Schedule.linear()


@pytest.fixture(scope="module")
def scorer():
    """The grid's template scorer (``run_grid`` scores each seed ``against`` its own reference draw)."""
    return Scorer(ring8(), ring8().sample(10, torch.Generator().manual_seed(0)))


@pytest.fixture(scope="module")
def grid(scorer):
    """The ideal denoiser and an exact copy of it under the name "copy": every cell of a seed must then agree."""
    mix = ring8()
    copy = IdealDenoiser(mix, SCHED)
    return few_step.run_grid({"copy": copy}, mix, SCHED, steps=(3, 6), fixes=("ddim", "heun", "analytic_dpm",
                             "exact_cov"), spacings=("trailing", "karras"), seeds=(0, 1, 2), n_points=200,
                             n_gamma=200, data_draws=20, scorer=scorer, keep_trajectories=True)


def test_scores_of_the_data_itself():
    """Fresh draws: a log-lik gap within 4 of its standard errors, std ratio of a set against itself 1, spreads
    and coverage near their targets, tail share near 1%; shifted, piled-up or blown-up sets scored off target."""
    mix = ring8()
    x, y = mix.sample(1000, torch.Generator().manual_seed(1)), mix.sample(1000, torch.Generator().manual_seed(2))
    reference = Scorer(mix, y)
    s = reference.score(x)
    assert set(few_step.REPORTED) <= set(s)  # the grid's tables; the rows hold every metric of the registry
    assert abs(s["loglik_gap"]) < 4 * loglik_gap(x, y, mix).se
    assert Scorer(mix, x).score(x)["std_ratio"] == pytest.approx(1.0)
    assert abs(s["spread_radial"] - 1) < 0.1 and abs(s["spread_tangential"] - 1) < 0.1 and s["coverage_tv"] < 0.06
    assert reference.score(x + 0.3)["mmd"] > 10 * abs(s["mmd"])
    tight = reference.score(mix.means[torch.arange(1000) % 8].float())  # every point on a mode centre
    assert tight["loglik_gap"] > 0.5 and tight["std_ratio"] < 1 and tight["spread_radial"] < 1e-6
    assert abs(s["tail_share"] - few_step.TAIL) < 4 * math.sqrt(few_step.TAIL * (1 - few_step.TAIL) / 1000)
    assert tight["tail_share"] == 0.0
    assert reference.score(x * 1.5)["tail_share"] > 0.3  # spread off the modes: far into the tail
    assert "spread_radial" not in Scorer(grid25(), y).score(x)  # a mode at 0


def _same(v):
    return "nan" if isinstance(v, float) and math.isnan(v) else v


def test_grid_rows_pair_models_on_the_same_randomness(grid):
    by = {(r["model"], r["fix"], r["spacing"], r["steps"], r["seed"]): r for r in grid.rows}
    # 2 models x (ddim, heun, analytic_dpm: 3 fixes + exact_cov for the ideal only) x 2 spacings x 2 steps x 3 seeds
    assert len(grid.rows) == (2 * 3 + 1) * 2 * 2 * 3
    for (model, fix, spacing, steps, seed), r in by.items():
        if model == "copy":
            twin = by[("ideal", fix, spacing, steps, seed)]
            # NaN (every sample off the modes leaves no core for the MAD spreads) is the same outcome
            assert {k: _same(r[k]) for k in few_step.REPORTED} == {k: _same(twin[k]) for k in few_step.REPORTED}
    assert ("copy", "exact_cov", "trailing", 3, 0) not in by
    assert by[("ideal", "heun", "trailing", 3, 0)]["model_calls"] == 5
    # seeds differ
    assert by[("ideal", "ddim", "trailing", 3, 0)]["mmd"] != by[("ideal", "ddim", "trailing", 3, 1)]["mmd"]


def test_grid_is_reproducible(grid, scorer):
    again = few_step.run_grid({}, ring8(), SCHED, steps=(3,), fixes=("ddim", "exact_cov"), seeds=(1,), n_points=200,
                              n_gamma=200, data_draws=20, scorer=scorer)
    for r in again.rows:
        same = [g for g in grid.rows if (g["model"], g["fix"], g["spacing"], g["steps"], g["seed"]) ==
                (r["model"], r["fix"], r["spacing"], r["steps"], r["seed"])]
        assert same and same[0]["mmd"] == r["mmd"] and same[0]["loglik_gap"] == r["loglik_gap"]


def test_summary_intervals_and_the_data_band(grid):
    for row in grid.summary():
        vals = grid.values(row["metric"], row["model"], row["fix"], row["spacing"], row["steps"])
        ci = mean_ci(list(vals.values()))
        defined = [v for v in vals.values() if not math.isnan(v)]  # mean_ci leaves NaN out
        assert row["n"] == len(defined) and (row["n"] == 3 or row["metric"].endswith("_mad"))
        assert row["mean"] == pytest.approx(ci["mean"], nan_ok=True) and row["low"] == pytest.approx(ci["low"], nan_ok=True)
        band = grid.level(row["metric"], max(row["n"], 1))  # the band of a mean of as many data draws as seeds
        assert row["within"] == (row["n"] > 0 and band["low"] <= row["mean"] <= band["high"])
    one = grid.cell("ideal", "heun", "karras", 6)
    assert set(one) == set(few_step.REPORTED) and one["mmd"]["model_calls"] == 11
    with pytest.raises(ValueError, match="no cell"):
        grid.cell("copy", "exact_cov", "trailing", 3)
    draws = sorted(d["loglik_gap"] for d in grid.data)
    band = grid.level("loglik_gap", grid.n_seeds)
    assert grid.n_seeds == 3 and draws[0] <= band["low"] < band["high"] <= draws[-1]
    want = mean_band(draws, 3)
    assert (band["low"], band["high"]) == (pytest.approx(want["low"]), pytest.approx(want["high"]))
    assert grid.level("mmd")["low"] == -math.inf


def test_closest_and_paired_differences(grid):
    assert grid.judged == list(few_step.JUDGED)
    for metric in few_step.JUDGED:
        best = grid.closest(6, metric)
        rows = [r for r in grid.summary() if r["steps"] == 6 and r["metric"] == metric]
        assert target_distance(metric, best["mean"]) == min(target_distance(metric, r["mean"]) for r in rows)
        cell = (best["model"], best["fix"], best["spacing"])
        d = grid.paired(metric, cell, ("ideal", "ddim", "trailing"), 6)
        va = grid.values(metric, *cell, 6)
        vb = grid.values(metric, "ideal", "ddim", "trailing", 6)
        want = sum(target_distance(metric, va[s]) - target_distance(metric, vb[s]) for s in va) / 3
        assert d["mean"] == pytest.approx(want)
    with pytest.raises(ValueError, match="no cell"):
        grid.closest(7, "mmd")
    with pytest.raises(ValueError, match="metric must be one of"):
        grid.closest(6, "tail_share")  # reported, not judged: no target


def test_the_grid_judges_spread_by_the_robust_measure(ring_with_outliers):
    """Samples with 5% between the modes (cores right) against samples with every core 0.85 wide: the std spread
    calls the second closer to 1, the judged MAD spread the first."""
    rows = []
    for seed in range(3):
        mix, ref, outliers, shrunk = ring_with_outliers(seed)
        scorer = Scorer(mix, ref, seed=seed)
        for model, x in (("outliers", outliers), ("shrunk", shrunk)):
            rows.append({"model": model, "fix": "ddim", "spacing": "trailing", "steps": 5, "seed": seed,
                         **scorer.score(x)})
    grid = few_step.FixGrid.from_rows(rows, [dict(r, draw=k) for k, r in enumerate(rows)])
    assert "spread_tangential" in grid.metrics and "spread_tangential" not in grid.judged
    assert {"spread_radial_mad", "spread_tangential_mad"} <= set(grid.judged)
    with pytest.raises(ValueError, match="metric must be one of"):
        grid.closest(5, "spread_tangential")  # reported beside it, not judged
    for axis in ("radial", "tangential"):
        d_std = [target_distance(f"spread_{axis}", grid.values(f"spread_{axis}", m, "ddim", "trailing", 5)[0])
                 for m in ("outliers", "shrunk")]
        assert d_std[0] > d_std[1]                                  # by std the shrunk cores look closer
        assert grid.closest(5, f"spread_{axis}_mad")["model"] == "outliers"
        d = grid.paired(f"spread_{axis}_mad", ("outliers", "ddim", "trailing"), ("shrunk", "ddim", "trailing"), 5)
        assert d["high"] < 0 and d["verdict"] == "better"


def test_tables_name_every_cell(grid):
    text = few_step.grid_markdown(grid, 3)
    assert text.count("\n") == 2 + len(grid.cells(3)) + 1
    assert "| ideal | exact_cov | karras | 3 |" in text and text.rstrip().splitlines()[-1].startswith("| data")
    best = few_step.closest_markdown(grid, ("ideal", "ddim", "trailing"))
    assert best.count("\n") == 2 + 2 * len(few_step.JUDGED)


def test_kept_trajectories_and_the_exact_flow(grid):
    tr = grid.trajectories[("ideal", "heun", "karras", 6)]
    assert tr.x.shape == (7, 200, 2) and torch.equal(tr.x[0], grid.x_T)
    short = Schedule.linear(100)  # the exact flow visits every timestep: a short schedule keeps this quick
    flow = few_step.exact_flow(ring8(), short, grid.x_T[:50].double())
    assert flow.steps == 100 and flow.t.tolist() == list(range(99, -2, -1))
    t, d = reference_distance(solvers.sample(IdealDenoiser(ring8(), short), grid.x_T[:50].double(), short, 6,
                                             solver="heun"), flow)
    assert t.tolist() == short.timesteps(6, "trailing").tolist() + [-1]
    assert float(d[0]) == 0.0 and bool((d[1:] > 0).all())


@pytest.mark.slow
def test_the_exact_flow_is_exact_to_a_small_error():
    """Two second-order solvers over all 1000 timesteps agree on ring8 far below the few-step errors measured
    with it, and on the 1-D Gaussian both are within 1e-3 of the closed form."""
    x_T = torch.randn(100, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    heun = few_step.exact_flow(ring8(), SCHED, x_T)
    dpm = few_step.exact_flow(ring8(), SCHED, x_T, solver="dpmpp_2m")
    gap = float((heun.x - dpm.x).norm(dim=-1).max())
    few = float(reference_distance(solvers.sample(IdealDenoiser(ring8(), SCHED), x_T, SCHED, 50,
                                                  solver="dpmpp_2m"), heun)[1][-1])
    assert gap < few / 10, (gap, few)
    v = 0.25
    gauss = GaussianMixture([1.0], [[0.0]], [[v]])
    x1 = torch.tensor([[1.0]], dtype=torch.float64)
    a_T = float(SCHED.alpha_bar(999))
    exact = math.sqrt(v / (a_T * v + 1 - a_T))
    for solver in ("heun", "dpmpp_2m"):
        assert abs(float(few_step.exact_flow(gauss, SCHED, x1, solver=solver).final) - exact) < 1e-3


def test_reference_distance_refuses_a_reference_without_the_timesteps():
    den = IdealDenoiser(ring8(), SCHED)
    x_T = torch.randn(4, 2)
    coarse, fine = solvers.sample(den, x_T, SCHED, 5), solvers.sample(den, x_T, SCHED, 10)
    assert reference_distance(coarse, fine)[0].tolist() == [999, 799, 599, 399, 199, -1]
    with pytest.raises(ValueError, match="lacks"):
        reference_distance(fine, coarse)


def test_bad_grid_arguments():
    with pytest.raises(ValueError, match="fixes must be one of"):
        few_step.run_grid({}, ring8(), SCHED, fixes=("rk45",))
    with pytest.raises(ValueError, match="spacings must be one of"):
        few_step.run_grid({}, ring8(), SCHED, spacings=("random",))
    with pytest.raises(ValueError, match="at least one model"):
        few_step.run_grid({}, ring8(), SCHED, ideal=False)
    with pytest.raises(TypeError, match="models must be a dict"):
        few_step.run_grid([IdealDenoiser(ring8(), SCHED)], ring8(), SCHED)


def test_run_study_writes_rows_and_results(tmp_path):
    import json

    grid, paths = few_step.run_study(tmp_path / "s", steps=(2,), fixes=("ddim", "exact_cov"), spacings=("trailing",),
                                     seeds=(0, 1), n_points=40, n_gamma=40, data_draws=5)
    saved = json.loads(paths["rows"].read_text())
    # simple, SA, IP, ideal; exact_cov: ideal only
    assert json.dumps(saved["rows"]) == json.dumps(grid.rows) and len(grid.rows) == (4 + 1) * 2
    again = few_step.FixGrid.from_rows(saved["rows"], saved["data"], saved["settings"])
    assert few_step.grid_markdown(again, 2) == few_step.grid_markdown(grid, 2)
    text = paths["results"].read_text()
    assert "## 2 steps" in text and "| SA | ddim | trailing | 2 |" in text and "Closest to the data" in text
    assert "| IP | ddim | trailing | 2 |" in text
    # every closest cell re-run on fresh seeds, which the table quotes
    fresh = saved["fresh"]
    assert {r["seed"] for r in fresh["rows"]} == {2, 3} and "not re-run" not in text
    learned = ["simple", "SA", "IP"]
    assert {tuple(c) for c in fresh["settings"]["rerun"]} == set(few_step.closest_cells(grid)) | set(
        few_step.closest_cells(grid, models=learned))


# ---------------------------------------------------------------------- Epsilon Scaling as a fix
def test_epsilon_scaling_is_fitted_on_held_apart_points_and_is_ddim_at_factor_one(scorer):
    mix = ring8()
    kw = dict(steps=(5,), seeds=(0,), n_points=200, data_draws=2, scorer=scorer, keep_trajectories=True)
    grid = few_step.run_grid({}, mix, SCHED, fixes=("ddim", "ddim+es"), **kw)
    c = grid.settings["eps_scales"][few_step.es_key("ideal", "ddim+es", "trailing", 5)]
    assert c in few_step.ES_CANDIDATES and c < 1  # 5 DDIM steps shrink: the fit shrinks the predicted noise
    # the fit: the candidate whose run from the held-apart points ends closest to their exact flow's end
    x_fit = torch.randn(200, 2, generator=torch.Generator().manual_seed(few_step.ES_FIT_SEED))
    end = few_step.exact_flow(mix, SCHED, x_fit, timesteps=[999]).final
    ideal = IdealDenoiser(mix, SCHED)
    err = {k: float((solvers.sample(ideal, x_fit, SCHED, 5, eps_scale=k).final - end).norm(dim=1).mean())
           for k in few_step.ES_CANDIDATES}
    assert err[c] == min(err.values())
    # on the evaluation seed's own points it ends closer to the exact flow than plain DDIM
    d = grid.flow_distance(mix, ("ddim", "ddim+es"))
    assert float(d[("ideal", "ddim+es", 5)][-1]) < float(d[("ideal", "ddim", 5)][-1])
    assert grid.cell("ideal", "ddim+es", "trailing", 5)["mmd"]["model_calls"] == 5
    # a given factor is used, not refitted: at 1 the cell is plain DDIM bit for bit
    one = few_step.run_grid({}, mix, SCHED, fixes=("ddim", "ddim+es"), eps_scales={"ideal|ddim+es|trailing|5": 1.0},
                            **kw)
    assert torch.equal(one.final("ideal", "ddim+es", "trailing", 5), one.final("ideal", "ddim", "trailing", 5))
    plain, scaled = (r for r in one.rows)
    assert {k: _same(v) for k, v in plain.items() if k != "fix"} == {k: _same(v) for k, v in scaled.items() if k != "fix"}
    with pytest.raises(ValueError, match="ES_FIT_SEED"):
        few_step.run_grid({}, mix, SCHED, fixes=("ddim+es",), seeds=(few_step.ES_FIT_SEED,), n_points=20)
    with pytest.raises(ValueError, match="fixes must be one of"):
        few_step.run_grid({}, mix, SCHED, fixes=("ddpm+es",))  # a stochastic run has no flow end to fit to


# ---------------------------------------------------------------------- within the data's level, fairly
def _synthetic(cells: dict, draws) -> few_step.FixGrid:
    """A grid of rows: ``cells[(model, fix)] = [value per seed]`` of every judged metric, and data draws."""
    rows = [{"model": m, "fix": f, "spacing": "trailing", "steps": 5, "seed": k, **dict.fromkeys(few_step.JUDGED, v)}
            for (m, f), vals in cells.items() for k, v in enumerate(vals)]
    return few_step.FixGrid.from_rows(rows, [{"draw": k, **dict.fromkeys(few_step.JUDGED, v)}
                                             for k, v in enumerate(draws)])


NORMAL_DRAWS = [float(v) for v in torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.005, 0.995, 100))]


def test_a_mean_over_seeds_is_judged_by_the_band_of_a_mean():
    """100 data draws of spread 1. Four seeds at 1.5 each: inside the central 95% of single draws (the old rule
    called it within) but outside where a mean of four draws falls (about +-1); one seed at 1.5 stays within."""
    grid = _synthetic({("four", "ddim"): [1.4, 1.5, 1.6, 1.5], ("one", "ddim"): [1.5]}, NORMAL_DRAWS)
    sd = mean_ci(NORMAL_DRAWS)["sd"]
    old_band = sorted(NORMAL_DRAWS)[2], sorted(NORMAL_DRAWS)[97]
    four, one = grid.cell("four", "ddim", "trailing", 5), grid.cell("one", "ddim", "trailing", 5)
    assert old_band[0] < four["loglik_gap"]["mean"] < old_band[1]            # the old rule: within
    assert not four["loglik_gap"]["within"] and one["loglik_gap"]["within"]  # the new: a mean of 4 is not
    assert grid.level("loglik_gap", 4)["high"] == pytest.approx(1.984 * sd * math.sqrt(1 / 4 + 1 / 100), rel=1e-3)
    assert not four["mmd"]["within"] and one["mmd"]["within"]                # one-sided: below the upper end only
    assert grid.cell("four", "ddim", "trailing", 5)["mmd"]["n"] == 4
    assert "data (mean of 4 own draws)" in few_step.grid_markdown(grid, 5)


def test_the_closest_cell_is_called_within_only_on_fresh_seeds():
    """The cell picked as closest is within on the seeds that picked it and not on fresh ones: the table says so
    in its fresh-seed column; a cell not re-run says that."""
    picked = _synthetic({("lucky", "ddim"): [0.1, 0.2, 0.0], ("simple", "ddim"): [2.0, 2.1, 1.9]}, NORMAL_DRAWS)
    fresh = _synthetic({("lucky", "ddim"): [1.6, 1.8, 1.7]}, NORMAL_DRAWS)
    assert picked.closest(5, "loglik_gap")["model"] == "lucky" and picked.cell("lucky", "ddim", "trailing",
                                                                              5)["loglik_gap"]["within"]
    again = few_step.confirmed(picked, fresh, 5, "loglik_gap")
    assert again["n"] == 3 and again["mean"] == pytest.approx(1.7) and not again["within"]
    line = next(x for x in few_step.closest_markdown(picked, ("simple", "ddim", "trailing"), fresh=fresh).splitlines()
                if "| log-lik gap |" in x)
    assert "| yes | 1.7 [" in line and "], no |" in line
    assert few_step.confirmed(picked, None, 5, "loglik_gap") is None
    assert "not re-run" in few_step.closest_markdown(picked, ("simple", "ddim", "trailing"))


def test_rerun_samples_the_picked_cells_on_fresh_seeds(grid):
    cells = few_step.closest_cells(grid, metrics=("mmd", "loglik_gap"))
    assert cells and all(len(c) == 4 for c in cells)
    fresh = few_step.rerun(grid, {"copy": IdealDenoiser(ring8(), SCHED)}, ring8(), SCHED, cells[:2])
    assert {r["seed"] for r in fresh.rows} == {3, 4, 5} == set(few_step.fresh_seeds(grid))
    assert fresh.data == grid.data and {(r["model"], r["fix"], r["spacing"], r["steps"]) for r in fresh.rows} \
        == set(cells[:2])
    for model, fix, spacing, steps in cells[:2]:
        row = fresh.cell(model, fix, spacing, steps)["mmd"]
        assert row["n"] == 3 and row["within"] == (row["mean"] <= grid.level("mmd", 3)["high"])
    with pytest.raises(ValueError, match="seeds must be fresh"):
        few_step.rerun(grid, {}, ring8(), SCHED, cells[:1], seeds=(2, 7))
    with pytest.raises(ValueError, match="models must hold the network 'copy'"):
        few_step.rerun(grid, {}, ring8(), SCHED, [("copy", "ddim", "trailing", 3)])

