"""The experiment runner: the grid (equal steps / equal compute), paired comparisons,
the fast grid end to end (CSV, HTML, interval arithmetic against scipy), and resumption without recomputing."""
import csv
import json
import math
from pathlib import Path

import pytest
import torch
from scipy import stats
from torch import nn

from seqdiff_kit import IdealDenoiser, Schedule, ring8
from seqdiff_kit import cli
from seqdiff_kit import experiments as ex
from seqdiff_kit import stats as st
from seqdiff_kit.analysis import gaussian_sa_optimum, linear_sampler_std_ratio
from seqdiff_kit.checkpoint import checkpoint_paths, load_checkpoint
from seqdiff_kit.data import dataset
from seqdiff_kit.losses import Loss
from seqdiff_kit.recipes import Recipe


def _recipe(dataset="ring8", steps=3, **args):
    return Recipe("test", dataset, "MLPDenoiser", args, {"steps": steps})


def test_bad_arguments():
    with pytest.raises(ValueError, match="dataset must be one of .* got 'mnist'"):
        ex.DatasetSpec(_recipe("mnist"), [{"name": "simple"}], (5,))
    with pytest.raises(ValueError, match="losses must start with the simple loss"):
        ex.DatasetSpec(_recipe(), [{"name": "sa", "K": 2, "lam": 1.0}], (5,))
    spec = ex.DatasetSpec(_recipe(), [{"name": "simple"}], (5,))
    with pytest.raises(ValueError, match=r"seeds must hold at least 2 distinct seeds .* got \[0\]"):
        ex.ExperimentConfig([spec], seeds=(0,))
    with pytest.raises(ValueError, match="preset must be one of .* got 'huge'"):
        ex.grid_config("huge")
    with pytest.raises(ValueError, match=r"workers must be in \[1, inf\], got 0"):
        ex.run_experiment("fast", "/tmp/never-written", workers=0)


# ---------------------------------------------------------------------- the grid and comparisons
def test_equal_compute_gives_the_simple_loss_K_times_the_updates():
    spec = ex.DatasetSpec(_recipe(steps=100),
                          [{"name": "simple"}, {"name": "sa", "K": 2, "lam": 1.0}, {"name": "sa", "K": 3, "lam": 0.5},
                           {"name": "sa", "K": 2, "lam": 0.5}], (5,))
    cells = ex.train_cells(ex.ExperimentConfig([spec], seeds=(0, 1, 2)))
    simple = sorted({c.train_steps for c in cells if c.loss_config["name"] == "simple"})
    assert simple == [100, 200, 300]
    assert len(cells) == 3 * (3 + 3)      # 3 SA models + simple at 100, 200, 300; K=2 twice gives one 200
    assert {ex.evals_per_sample(c.loss_config) * c.train_steps for c in cells if c.train_steps == 100} == {100, 200, 300}
    spec.equal_compute = False
    assert {c.train_steps for c in ex.train_cells(ex.ExperimentConfig([spec]))} == {100}


def test_an_input_perturbation_cell_is_labelled_IP_with_its_gamma_and_never_shares_a_key():
    ip = Loss("ip", gamma=0.1).config
    assert ex.loss_label(ip) == "IP(gamma=0.1)"
    assert ex.loss_label(Loss("ip", gamma=0.25).config) == "IP(gamma=0.25)"
    assert ex.loss_label(Loss("sa", K=1, lam=0.0).config) == "SA(K=1,lam=0)"
    cell = {loss: ex.TrainCell("ring8", json.dumps(cfg), 0, 100, "r")
            for loss, cfg in {"ip": ip, "sa": Loss("sa", K=1, lam=0.0).config, "simple": Loss().config}.items()}
    assert len({c.key for c in cell.values()}) == 3
    assert len({c.stem(Path("/o")) for c in cell.values()}) == 3
    assert cell["ip"].stem(Path("/o")).name.startswith("IP_gamma0.1_n100_s0")


def _row(loss, K, n, seed, steps, mmd, std_ratio):
    return {"key": f"{loss}{n}{seed}{steps}", "dataset": "ring8", "loss": loss, "loss_name": "simple" if K == 1 else "sa",
            "K": K, "lam": 0.0 if K == 1 else 1.0, "seed": seed, "train_steps": n, "compute": n * K, "steps": steps,
            "eta": 0.0, "n_eval": 10, "mmd": mmd, "std_ratio": std_ratio}


def test_compare_pairs_by_seed_with_both_budgets():
    sa = "SA(K=2,lam=1)"
    rows = []
    for s, (base, noise) in enumerate([(0.10, 0.001), (0.30, -0.002), (0.20, 0.0005)]):
        rows.append(_row("simple", 1, 10, s, 5, base, 0.8))
        rows.append(_row("simple", 1, 20, s, 5, base - 0.02 + noise, 1.0 + 0.01 * s))
        rows.append(_row(sa, 2, 10, s, 5, base - 0.05 + noise, 0.9 + 0.01 * s))
    comp = {(r["budget"], r["metric"]): r for r in ex.compare(rows)}
    eq = comp[("equal_steps", "mmd")]
    diffs = [-0.05 + n for n in (0.001, -0.002, 0.0005)]
    ci = st.mean_ci(diffs)
    # seeds differ a lot (0.1 .. 0.3) but the pairing removes that: a clear, tight improvement
    assert (eq["diff_mean"], eq["diff_low"], eq["diff_high"]) == (pytest.approx(ci["mean"]), pytest.approx(ci["low"]),
                                                                  pytest.approx(ci["high"]))
    assert eq["verdict"] == "SA better" and eq["simple_train_steps"] == 10
    ec = comp[("equal_compute", "mmd")]
    assert ec["simple_train_steps"] == 20 and ec["diff_mean"] == pytest.approx(-0.03)
    # std_dev = |std_ratio - 1|: SA 0.9.. is closer to 1 than 0.8 (better), farther than 1.0.. (worse)
    assert comp[("equal_steps", "std_dev")]["verdict"] == "SA better"
    assert comp[("equal_compute", "std_dev")]["verdict"] == "SA worse"
    # the data's own level beside the scores: the mean distance of the data rows (none recorded here)
    assert math.isnan(eq["data_mean"])
    for r in rows:
        r["data_mmd"] = -0.001 * (1 + r["seed"])  # a second data draw's MMD^2 per seed: its distance |.| to 0
    eq = {(r["budget"], r["metric"]): r for r in ex.compare(rows)}[("equal_steps", "mmd")]
    assert eq["data_mean"] == pytest.approx(0.002)
    table = ex.comparison_markdown(ex.compare(rows))
    assert "| data's own |" in table and "| 0.002 |" in table
    # unpaired noise of either sign: no verdict
    rows2 = [_row("simple", 1, 10, s, 5, 0.1, 1.0) for s in range(3)]
    rows2 += [_row(sa, 2, 10, s, 5, 0.1 + d, 1.0) for s, d in enumerate((0.01, -0.012, 0.004))]
    assert {r["verdict"] for r in ex.compare(rows2) if r["metric"] == "mmd"} == {"no clear difference"}


def test_compare_judges_the_loglik_gap_two_sided_and_never_the_raw_loglik():
    """A too-tight SA (gap +0.3, a higher raw log-likelihood) against a too-diffuse simple (gap -0.6): SA is
    closer to the data's value, so better; against a simple model at gap -0.1 it is worse, although its raw
    log-likelihood is the higher one. The raw log-likelihood gets no verdict at all."""
    sa = "SA(K=2,lam=1)"
    rows = []
    for s, noise in enumerate((0.01, -0.02, 0.005)):
        for loss, K, n, gap in (("simple", 1, 10, -0.6), ("simple", 1, 20, -0.1), (sa, 2, 10, 0.3)):
            row = _row(loss, K, n, s, 5, 0.1, 1.0)
            row.update(loglik_gap=gap + noise, loglik=-0.3 + gap + noise)
            rows.append(row)
    comp = {(r["budget"], r["metric"]): r for r in ex.compare(rows)}
    assert comp[("equal_steps", "loglik_gap")]["verdict"] == "SA better"
    assert comp[("equal_compute", "loglik_gap")]["verdict"] == "SA worse"
    assert "loglik" not in {r["metric"] for r in comp.values()}


# ---------------------------------------------------------------------- evaluation
class _Linear(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.register_buffer("a", torch.as_tensor(a, dtype=torch.float32))

    def forward(self, x, t):
        return self.a[t][:, None] * x


@pytest.mark.parametrize("steps, eta", [(5, 0.0), (50, 0.0), (10, 1.0)])
def test_gauss1d_measured_std_ratio_of_the_optimum_matches_its_closed_form(steps, eta):
    """The SA population optimum, run through the real sampler by ``evaluate_model``: its Monte-Carlo std ratio
    agrees with the exact one that the same call reports (within 3 sd of a std estimated from 20000 draws)."""
    sched = Schedule.linear(1000)
    ds = ex.DatasetSpec(_recipe("gauss1d", dim=1), [{"name": "simple"}], (steps,), n_eval=20000)
    a = gaussian_sa_optimum(0.25, 2, 1.0, sched)
    out = ex.evaluate_model(_Linear(a), ds, dataset("gauss1d"), sched, 0, steps, eta,
                            {"name": "sa", "K": 2, "lam": 1.0})
    exact = linear_sampler_std_ratio(a, 0.25, sched, steps, eta=eta)
    assert out["std_ratio_closed_form"] == pytest.approx(exact, rel=1e-12)
    assert abs(out["std_ratio"] / exact - 1) < 3 / math.sqrt(2 * 20000)
    assert len(out["path_std_ratio"]) == steps + 1 and out["path_std_ratio"][0] == pytest.approx(1.0, abs=0.03)


def test_ring8_ideal_denoiser_scores_near_perfect_and_is_reproducible():
    sched = Schedule.linear(1000)
    ds = ex.DatasetSpec(_recipe(), [{"name": "simple"}], (100,), n_eval=800)
    ideal = IdealDenoiser(ring8(), sched)
    out = ex.evaluate_model(ideal, ds, ring8(), sched, 0, 100, 0.0)
    assert abs(out["std_ratio"] - 1) < 0.05 and out["mmd"] < 0.01
    # deterministic steps concentrate each mode a little: the samples score at least as well as data, which
    # the signed gap reports as a positive (too tight) value rather than as a better score
    assert out["loglik"] > float(ring8().log_prob(ring8().sample(20000)).mean()) - 0.05
    assert out["loglik_gap"] > -0.05
    assert ex.evaluate_model(ideal, ds, ring8(), sched, 0, 100, 0.0) == out
    few = ex.evaluate_model(ideal, ds, ring8(), sched, 0, 2, 0.0)   # 2 DDIM steps: shrinks and scores worse
    assert few["std_ratio"] < out["std_ratio"] and few["mmd"] > out["mmd"]


# ---------------------------------------------------------------------- the fast preset end to end
def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fast")
    assert cli.main(["experiment", "--preset", "fast", "--out", str(out), "--workers", "2", "--quiet"]) == 0
    return out


@pytest.mark.slow  # the fast preset: ~15 s alone, longer on a busy machine
def test_fast_preset_writes_csv_and_html(fast_run):
    cfg = ex.grid_config("fast")
    rows = _read_csv(fast_run / "rows.csv")
    n_cells = len(ex.train_cells(cfg))
    assert n_cells == 3 * 3 + 3 * 3 + 2 * 3        # ring8 and digits: simple, SA, simple x2; gauss1d: simple, SA
    assert len(rows) == sum(len(ex.train_cells(ex.ExperimentConfig([d], cfg.seeds))) * len(d.sampling_steps)
                            * len(d.etas) for d in cfg.datasets)
    assert {r["seed"] for r in rows} == {"0", "1", "2"} and {r["steps"] for r in rows} == {"5", "20"}
    assert {r["train_steps"] for r in rows if r["dataset"] == "ring8" and r["loss"] == "simple"} == {"60", "120"}
    stats_ = json.loads((fast_run / "stats.json").read_text())
    assert stats_["trained"] == n_cells and stats_["errors"] == []
    html = (fast_run / "report.html").read_text()
    for text in ("ring8: mmd vs sampling steps", "digits: fd vs sampling steps", "1-D Gaussian: measured std ratio",
                 "closed form", "equal_compute", "Plotly"):
        assert text in html
    assert html.count('class="figure"') >= 10
    md = (fast_run / "results.md").read_text()
    assert md.count("| ring8 | SA(K=2,lam=1) | 0 |") == 2 * 2 and "| simple | 0 | 5 |" in md   # 2 steps x 2 metrics
    comp = _read_csv(fast_run / "comparison.csv")
    assert {r["budget"] for r in comp if r["dataset"] == "ring8"} == {"equal_steps", "equal_compute"}
    assert {r["budget"] for r in comp if r["dataset"] == "gauss1d"} == {"equal_steps"}


@pytest.mark.slow  # the fast preset: ~15 s alone, longer on a busy machine
def test_fast_preset_intervals_recomputed_with_scipy(fast_run):
    rows = _read_csv(fast_run / "rows.csv")
    summary = _read_csv(fast_run / "summary.csv")
    assert len(summary) > 20
    for s in summary:
        vals = [float(r[s["metric"]]) for r in rows
                if all(r[k] == s[k] for k in ("dataset", "loss", "train_steps", "steps", "eta"))]
        vals = [v for v in vals if math.isfinite(v)]
        assert int(s["n"]) == len(vals) == 3
        mean = sum(vals) / 3
        if stats.sem(vals) == 0:  # the closed form is the same for every seed
            continue
        low, high = stats.t.interval(0.95, 2, loc=mean, scale=stats.sem(vals))
        # the CSV keeps 6 significant digits: each value is off by up to 5e-6 of its size, which moves the mean
        # by as much and the interval's ends by at most (1 + 2 t_{0.975, 2}) < 10 times that; an interval that
        # straddles 0 has ends far smaller than the values, so the bound is absolute, from the values' size
        rounding = 10 * 5e-6 * max(abs(v) for v in vals) + 1e-12
        assert float(s["mean"]) == pytest.approx(mean, rel=1e-5, abs=rounding)
        assert float(s["ci_low"]) == pytest.approx(low, rel=1e-5, abs=rounding)
        assert float(s["ci_high"]) == pytest.approx(high, rel=1e-5, abs=rounding)


@pytest.mark.slow  # the fast preset: ~15 s alone, longer on a busy machine
def test_second_run_trains_and_evaluates_nothing(fast_run, monkeypatch):
    calls = {"fit": 0, "eval": 0}
    real_fit, real_eval = ex.train, ex.evaluate_model

    def counting_fit(*a, **k):
        calls["fit"] += 1
        return real_fit(*a, **k)

    def counting_eval(*a, **k):
        calls["eval"] += 1
        return real_eval(*a, **k)

    monkeypatch.setattr(ex, "train", counting_fit)
    monkeypatch.setattr(ex, "evaluate_model", counting_eval)
    before = (fast_run / "rows.csv").read_text()
    res = ex.run_experiment("fast", fast_run, workers=1, progress=False, report=False)
    assert calls == {"fit": 0, "eval": 0} and res.stats["jobs"] == 0
    assert (fast_run / "rows.csv").read_text() == before

    # drop one metric row: exactly that eval cell is recomputed, from the stored model, to the same numbers
    lines = (fast_run / "rows.jsonl").read_text().splitlines()
    dropped = json.loads(lines[5])
    (fast_run / "rows.jsonl").write_text("\n".join(lines[:5] + lines[6:]) + "\n{\"torn")
    res = ex.run_experiment("fast", fast_run, workers=1, progress=False, report=False)
    assert calls == {"fit": 0, "eval": 1} and res.stats["loaded"] == 1
    again = next(r for r in res.rows if r["key"] == dropped["key"])
    assert {k: again[k] for k in dropped} == dropped

    # drop one checkpoint: exactly that model is retrained (its metric rows are kept)
    cell = next(c for c in ex.train_cells(ex.grid_config("fast")) if c.dataset == "ring8")
    for p in checkpoint_paths(cell.stem(fast_run)):
        p.unlink()
    ex.run_experiment("fast", fast_run, workers=1, progress=False, report=False)
    assert calls == {"fit": 1, "eval": 1}


# ---------------------------------------------------------------------- one folder, one client; damaged files
def _tiny_grid():
    recipe = Recipe("tiny", "ring8", "MLPDenoiser", dict(dim=2, width=8, depth=1, time_dim=4),
                    {"steps": 4, "batch_size": 16})
    return ex.ExperimentConfig([ex.DatasetSpec(recipe, [{"name": "simple"}], sampling_steps=(2,), n_eval=32)],
                               seeds=(0, 1))


def test_a_second_client_on_the_folder_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """Two clients on one folder once both trained every model and wrote every row twice."""
    from seqdiff_kit._io import FolderLockedError, locked_folder

    monkeypatch.setattr(ex, "GRIDS", {**ex.GRIDS, "tiny": _tiny_grid})
    with locked_folder(tmp_path / "out"):  # the first client, running
        with pytest.raises(FolderLockedError, match="being written by another seqdiff process"):
            ex.run_experiment(_tiny_grid(), tmp_path / "out", progress=False, report=False)
        rc = cli.main(["experiment", "--preset", "tiny", "--out", str(tmp_path / "out"), "--workers", "1", "--quiet"])
        err = capsys.readouterr().err
        assert rc == 1 and len(err.strip().splitlines()) == 1 and err.startswith("seqdiff: error: --out "), err
        assert "being written by another seqdiff process" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []  # nothing trained or written, lock removed
    res = ex.run_experiment(_tiny_grid(), tmp_path / "out", progress=False, report=False)  # once it is free
    assert res.stats["trained"] == 2 and len(res.rows) == 2

    def files():  # stats.json is this run's statistics, rewritten by each run
        return {p.relative_to(tmp_path): p.name == "stats.json" or p.read_bytes()
                for p in (tmp_path / "out").rglob("*") if p.is_file()}

    before = files()
    again = ex.run_experiment(_tiny_grid(), tmp_path / "out", progress=False, report=False)  # repeated: no loss
    assert again.stats["trained"] == 0 and again.rows == res.rows and files() == before
    assert not (tmp_path / "out" / ".seqdiff.lock").exists()


@pytest.mark.parametrize("damage", ["weights-junk", "json-list", "json-step-string"])
def test_a_damaged_finished_checkpoint_is_trained_again_saying_so(tmp_path, capsys, damage):
    """Once, a finished checkpoint that no longer loaded made every rerun of the grid fail (or show a raw
    'invalid literal for int()'); now that cell is trained again, in one line on stderr, and the rerun ends."""
    out, cfg = tmp_path / "grid", _tiny_grid()
    first = ex.run_experiment(cfg, out, progress=False, report=False)
    cell = ex.train_cells(cfg)[0]
    st, js = checkpoint_paths(cell.stem(out))
    if damage == "weights-junk":
        st.write_bytes(b"junk")
    elif damage == "json-list":
        js.write_text("[1, 2]")
    else:
        js.write_text(json.dumps({**json.loads(js.read_text()), "step": "x"}))
    (out / "rows.jsonl").unlink()  # its rows must be computed again, so the model is needed
    capsys.readouterr()
    again = ex.run_experiment(cfg, out, progress=False, report=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(cell.key) and "trained it again from scratch" in err[0], err
    assert f"its checkpoint {cell.stem(out).name} could not be used" in err[0]
    assert again.stats["trained"] == 1 and again.stats["loaded"] == 1 and len(again.stats["retrained"]) == 1
    assert again.rows == first.rows  # the same seed and recipe: the same model, the same numbers
    assert load_checkpoint(cell.stem(out))[1]["step"] == cell.train_steps  # the damaged pair was replaced
    third = ex.run_experiment(cfg, out, progress=False, report=False)
    assert third.stats["jobs"] == 0 and third.stats["retrained"] == []
