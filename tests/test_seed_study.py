"""The multi-seed study behind the lessons: t-intervals against scipy, paired comparisons judged two-sided,
the measurement of one seed (the ideal denoiser against itself has zero drift), the generated tables and the
stored file's shape."""
import json
import math
import statistics

import pytest
import scipy.stats
import torch

from seqdiff_kit import IdealDenoiser, Schedule, recipes, ring8
from seqdiff_kit import seed_study as ss
from seqdiff_kit.data import CHECKPOINT_DIR


def fake_study(values: dict, seeds=(0, 1, 2), steps=(5,), models=("simple", "SA")):
    """A study dict whose metrics are all 0 except ``values[(model, metric)] = [one per seed]``."""
    def cell(model, i):
        path = () if model == ss.DATA else ss.IDEAL_PATH_METRICS if model == ss.IDEAL else ss.PATH_METRICS
        base = {m: 0.0 for m in ss.SAMPLE_METRICS + path}
        base.update({m: v[i] for (mod, m), v in values.items() if mod == model})
        return base
    results = {}
    for i, seed in enumerate(seeds):
        r = {ss.DATA: cell(ss.DATA, i)}
        for model in (*models, ss.IDEAL):
            r[model] = {"steps": {str(s): cell(model, i) for s in steps},
                        "gap_from_100": values.get((model, "gap_from_100"), [0.0] * len(seeds))[i]}
        results[str(seed)] = r
    return ss.SeedStudy({"seeds": list(seeds), "steps": list(steps), "models": {m: {} for m in models},
                         "results": results})


def test_paired_judges_quantities_with_a_target_by_their_distance_to_it():
    study = fake_study({("SA", "std_ratio"): [1.05, 1.06, 1.04], ("simple", "std_ratio"): [0.90, 0.88, 0.91],
                        ("SA", "drift_final"): [0.15, 0.17, 0.16], ("simple", "drift_final"): [0.09, 0.08, 0.1],
                        ("SA", "loglik_gap"): [0.5, 0.6, 0.55], ("simple", "loglik_gap"): [-0.1, -0.2, -0.15]})
    p = study.paired("std_ratio", 5)
    # SA is above 1 by about 0.05, simple below by about 0.1: SA is closer, although "higher" is not the point
    assert p["verdict"] == "better"
    assert p["distance"]["mean"] == pytest.approx(0.05 - (0.10 + 0.12 + 0.09) / 3, abs=1e-12)
    assert p["diff"]["mean"] == pytest.approx(1.05 - (0.90 + 0.88 + 0.91) / 3, abs=1e-12)
    assert study.paired("loglik_gap", 5)["verdict"] == "worse"     # a higher log-likelihood, farther from data
    assert study.paired("drift_final", 5)["verdict"] == "larger"
    assert study.paired("drift_final", 5, a="simple", b="SA")["verdict"] == "smaller"
    assert study.paired("mmd", 5)["verdict"] == "no clear difference"  # identical zeros: the interval is [0, 0]


def test_values_refuse_unknown_cells():
    study = fake_study({})
    with pytest.raises(ValueError, match="model must be one of"):
        study.values("nope", "mmd", 5)
    with pytest.raises(ValueError, match="steps must be one of"):
        study.values("SA", "mmd", 7)
    with pytest.raises(ValueError, match="metric must be one of"):
        study.values(ss.IDEAL, "drift_final", 5)   # the ideal denoiser's distance from its own path
    assert study.values(ss.IDEAL, "total_final", 5) == [0.0, 0.0, 0.0]  # its discretisation error
    assert study.values(ss.DATA, "mmd") == [0.0, 0.0, 0.0]
    for r in study.data["results"].values():   # a study measured before the exact-flow reference joined it
        del r["SA"]["steps"]["5"]["total_final"]
    with pytest.raises(ValueError, match="'total_final' is not in this stored study"):
        study.values("SA", "total_final", 5)


def test_measure_seed_of_the_ideal_denoiser_against_itself():
    mixture, schedule = ring8(), Schedule.linear()
    ideal = IdealDenoiser(mixture, schedule)
    out = ss.measure_seed({"copy": ideal}, mixture, schedule, seed=3, steps=(5, 10), n_points=200)
    for s in ("5", "10"):
        assert out["copy"]["steps"][s]["drift_final"] == 0.0 and out["copy"]["steps"][s]["local_sum"] == 0.0
        same = {k: v for k, v in out["copy"]["steps"][s].items() if k not in ("drift_final", "local_sum")}
        assert same == out[ss.IDEAL]["steps"][s]
    # the total error against the exact flow's end: the ideal sampler's discretisation error, which shrinks
    # with more steps
    assert 0 < out[ss.IDEAL]["steps"]["10"]["total_final"] < out[ss.IDEAL]["steps"]["5"]["total_final"]
    assert out["copy"]["gap_from_100"] == out[ss.IDEAL]["gap_from_100"]
    assert set(out[ss.DATA]) == set(ss.SAMPLE_METRICS)


def test_tables_have_a_row_per_cell():
    study = fake_study({("SA", "mmd"): [0.01, 0.02, 0.015]}, steps=(5, 10))
    summary = ss.summary_markdown(study).splitlines()
    assert len(summary) == 2 + 1 + 2 * 3 and summary[2].startswith("| data")
    assert "| SA | 5 | 0.015 [" in ss.summary_markdown(study)
    paired = ss.paired_markdown(study).splitlines()
    assert len(paired) == 2 + 2 and "worse" in paired[2]   # MMD^2 0.015 against simple's 0: farther from 0
    assert paired[0].startswith("| steps | MMD^2 (data's own: 0 [0, 0]) |")  # the data's level beside the MMD
    gaps = fake_study({("SA", "gap_from_100"): [0.4, 0.5, 0.45], ("simple", "gap_from_100"): [0.3, 0.35, 0.32],
                       ("IP", "gap_from_100"): [0.2, 0.25, 0.22]}, models=("simple", "SA", "IP"))
    gap = ss.gap_markdown(gaps).splitlines()
    assert gap[0] == "| | simple | SA | IP | ideal | SA - simple (paired) | IP - simple (paired) |"
    assert len(gap) == 3 and gap[2].endswith(" larger | -0.1 [-0.1, -0.1] smaller |") and "| 0.45 [" in gap[2]
    assert "distance from exact flow end" in ss.paired_markdown(gaps, a="IP")


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.pop("seeds"), r"key 'seeds' must be a non-empty list of integers, got None"),
    (lambda d: d.update(steps=["5"]), r"key 'steps' must be a non-empty list of integers"),
    (lambda d: d["results"].pop("3"), r"key 'results.3' must be an object with the 'data' scores"),
    (lambda d: d["results"]["0"]["SA"]["steps"].pop("50"), r"key 'results.0.SA.steps' must be an object with the "
                                                           r"scores at steps \[5, 10, 20, 50, 100\]"),
    (lambda d: d["results"]["1"].pop(ss.IDEAL), r"key 'results.1.ideal.steps'"),
    (lambda d: d.update(models=[]), r"key 'models' must be the studied models' names"),
])
def test_a_damaged_study_file_is_a_value_error_naming_the_key(tmp_path, edit, match):
    """A study without 'seeds' once loaded and failed later with a KeyError."""
    data = json.loads(ss.STUDY_PATH.read_text())
    edit(data)
    (tmp_path / "s.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"^seed study '.*s.json': {match}"):
        ss.SeedStudy.load(tmp_path / "s.json")
    (tmp_path / "s.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"key 'study' must be a JSON object"):
        ss.SeedStudy.load(tmp_path / "s.json")
    (tmp_path / "s.json").write_bytes(b"\xff{")
    with pytest.raises(ValueError, match=r"is not valid UTF-8 JSON"):
        ss.SeedStudy.load(tmp_path / "s.json")


def test_seed_0_of_the_study_is_the_shipped_ring8_recipe():
    """The study's networks are the shipped ones' siblings: the same recipe (all its updates), only the seed
    differs; seed 0 with a shipped loss is that checkpoint's recipe, and the checkpoint's JSON records it."""
    assert ss.STUDY_MODELS["SA"] is recipes.SA and ss.STUDY_MODELS["IP"] is recipes.IP  # one constant each
    assert recipes.IP.config == {"name": "ip", "K": 1, "lam": 0.0, "gamma": 0.1}  # Ning et al.'s gamma
    studied = {json.dumps(loss.config, sort_keys=True): name for name, loss in ss.STUDY_MODELS.items()}
    matched = set()
    for key, shipped in recipes.SHIPPED.items():
        if shipped.dataset != "ring8":
            continue
        matched.add(studied[json.dumps(shipped.loss.config, sort_keys=True)])  # every shipped ring8 loss
        assert ss.study_recipe(shipped.loss, 0).replace(name=shipped.name).config() == shipped.config(), key
        meta = json.loads((CHECKPOINT_DIR / f"{key}.json").read_text())
        assert meta["loss"] == shipped.loss.config and meta["seed"] == 0 and meta["step"] == shipped.steps
        assert {k: meta["train"][k] for k in shipped.fit} == shipped.fit, key
    assert {"simple", "SA"} <= matched
    other = ss.study_recipe(recipes.IP, 3)
    assert other.seed == 3 and other.fit == recipes.RING8.fit and other.model_spec() == recipes.RING8.model_spec()
    assert ss.study_recipe(recipes.IP, 3, train_steps=20).steps == 20


def test_the_stored_study_is_complete():
    study = ss.SeedStudy.load()
    assert len(set(study.seeds)) >= 5 and study.steps == list(ss.STUDY_STEPS)
    assert study.models == ["simple", "SA", "IP", ss.IDEAL]
    assert study.data["models"] == {name: loss.config for name, loss in ss.STUDY_MODELS.items()}
    # the shipped recipe, all its updates: the networks students load are seed 0 of this study
    assert study.data["recipe"]["fit"] == recipes.RING8.fit and study.data["recipe"]["fit"]["steps"] == 8000
    assert study.data["recipe"]["model"] == recipes.RING8.model_spec()
    # the robust (MAD) spread and the off-mode share beside the std ones; the tables judge the robust ones
    assert {"spread_radial", "spread_radial_mad", "spread_tangential_mad", "off_mode_share"} <= set(
        study.sample_metrics)
    assert study.spread_metrics == ("spread_radial_mad", "spread_tangential_mad")
    assert study.path_metrics == ("drift_final", "total_final", "local_sum")
    assert set(study.data["train_cpu_seconds"]["0"]) == set(ss.STUDY_MODELS)
    for model in study.models:
        for s in study.steps:
            assert all(math.isfinite(v) for v in study.values(model, "mmd", s))
            assert all(0 < v < 5 for v in study.values(model, "total_final", s))
    assert torch.isfinite(torch.tensor(study.values(ss.DATA, "loglik_gap"))).all()


def test_the_tables_judge_spread_by_the_robust_measure_where_the_study_holds_it():
    robust = fake_study({("SA", "spread_radial_mad"): [1.0, 1.01, 0.99], ("simple", "spread_radial_mad"): [0.8, 0.82, 0.79],
                         ("SA", "spread_radial"): [1.5, 1.6, 1.55], ("simple", "spread_radial"): [0.9, 0.91, 0.89]})
    assert robust.spread_metrics == ("spread_radial_mad", "spread_tangential_mad")
    assert robust.paired("spread_radial_mad", 5)["verdict"] == "better"
    assert robust.paired("spread_radial", 5)["verdict"] == "worse"  # the std, widened by points between the modes
    table = ss.paired_markdown(robust)
    assert "radial spread (MAD)" in table and "| radial spread |" not in table and "better" in table
    assert "tangential spread (MAD)" in ss.summary_markdown(robust)
    # a study stored before the MAD spread joined the registry: the std spread, and a clear error for the rest
    old = fake_study({})
    for r in old.data["results"].values():
        for cell in [r[ss.DATA], *(c for m in ("simple", "SA", ss.IDEAL) for c in r[m]["steps"].values())]:
            for m in ("spread_radial_mad", "spread_tangential_mad", "off_mode_share"):
                del cell[m]
    assert old.spread_metrics == ("spread_radial", "spread_tangential")
    assert "| radial spread |" in ss.paired_markdown(old).replace(" | MMD", "| MMD")
    with pytest.raises(ValueError, match="'off_mode_share' is not in this stored study"):
        old.values("SA", "off_mode_share", 5)


# ---------------------------------------------------------------------- the digits over training seeds
def fake_digit_seeds(fd: dict, confident: dict | None = None, seeds=(0, 1, 2), steps=(5, 10)) -> dict:
    """A stored digits comparison: ``fd[loss]`` and ``confident[loss]`` hold one list (per step) per seed."""
    confident = confident or {loss: [[0.9] * len(steps)] * len(seeds) for loss in ss.DIGITS_LOSSES}
    data = {"seeds": list(seeds), "steps": list(steps), "floor": 6.1,
            "networks": {loss: {str(s): {"fd": fd[loss][i], "confident": confident[loss][i]}
                                for i, s in enumerate(seeds)} for loss in ss.DIGITS_LOSSES}}
    return json.loads(json.dumps(data))  # no list shared between cells


def test_digit_seeds_pair_sa_with_simple_by_training_seed():
    data = fake_digit_seeds({"simple": [[50.0, 20.0], [60.0, 18.0], [55.0, 19.0]],
                             "sa": [[30.0, 20.5], [41.0, 17.0], [36.0, 19.4]]},
                            {"simple": [[0.78, 0.86], [0.79, 0.86], [0.78, 0.87]],
                             "sa": [[0.80, 0.83], [0.805, 0.84], [0.801, 0.845]]})
    study = ss.DigitSeeds(data)
    p = study.paired("fd", 5)
    diffs = [-20.0, -19.0, -19.0]
    sd = float(torch.tensor(diffs, dtype=torch.float64).std())
    assert p["keys"] == [0, 1, 2] and p["n"] == 3
    assert p["mean"] == pytest.approx(-58 / 3, abs=1e-12)
    assert p["t"] == pytest.approx(scipy.stats.t.ppf(0.975, 2), rel=1e-12) and p["t"] == pytest.approx(4.3027, abs=1e-4)
    assert p["half_width"] == pytest.approx(p["t"] * sd / math.sqrt(3), rel=1e-12)
    assert p["verdict"] == "better"                           # FD: lower is closer to its target 0
    assert study.paired("fd", 10)["verdict"] == "no clear difference"
    assert study.paired("confident", 10)["verdict"] == "smaller"
    assert study.paired("confident", 5)["verdict"] == "larger"
    assert study.values("sa", "fd", 10) == {0: 20.5, 1: 17.0, 2: 19.4}
    assert study.paired_table()["fd"]["5"] == p
    table = ss.digit_seeds_markdown(study)
    assert "| 5 | 55 [" in table and "-19.3 [" in table and "2 degrees of freedom" in table
    assert "| SA, seed 2 | 36.00 | 19.40 |" in ss.digit_seeds_per_seed_markdown(study)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.pop("floor"), r"key 'floor' must be a number"),
    (lambda d: d["networks"].pop("sa"), r"key 'networks' must be an object with the losses \['sa', 'simple'\]"),
    (lambda d: d["networks"]["sa"].pop("2"), r"key 'networks.sa.2.fd' must be a list of 2 numbers"),
    (lambda d: d["networks"]["simple"]["1"]["confident"].pop(), r"key 'networks.simple.1.confident'"),
])
def test_a_damaged_digit_seeds_file_is_a_value_error_naming_the_key(tmp_path, edit, match):
    data = fake_digit_seeds({loss: [[1.0, 2.0]] * 3 for loss in ss.DIGITS_LOSSES})
    edit(data)
    (tmp_path / "d.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"^seed study '.*d.json': {match}"):
        ss.DigitSeeds.load(tmp_path / "d.json")
    with pytest.raises(FileNotFoundError, match="run scripts/train_digits.py seeds"):
        ss.DigitSeeds.load(tmp_path / "none.json")


def test_digit_seeds_refuse_unknown_cells():
    study = ss.DigitSeeds(fake_digit_seeds({loss: [[1.0, 2.0]] * 3 for loss in ss.DIGITS_LOSSES}))
    with pytest.raises(ValueError, match="loss must be one of"):
        study.values("SA", "fd", 5)
    with pytest.raises(ValueError, match="metric must be one of"):
        study.values("sa", "mmd", 5)
    with pytest.raises(ValueError, match="steps must be one of"):
        study.values("sa", "fd", 20)


def test_measure_digit_seeds_scores_through_the_one_digits_evaluation():
    from seqdiff_kit import TinyUNet
    from seqdiff_kit.denoisers import seeded_model
    from seqdiff_kit.evaluate import steps_table

    schedule = Schedule.linear()
    nets = {loss: {s: seeded_model(TinyUNet, 10 * k + s, channels=8, time_dim=16, T=schedule.T) for s in (0, 1)}
            for k, loss in enumerate(ss.DIGITS_LOSSES)}
    record = ss.measure_digit_seeds(nets, schedule, steps=(2, 3), n_points=40, seed=5)
    direct = steps_table({"a": nets["sa"][1], "b": nets["simple"][0]}, schedule, (2, 3), n=40, seed=5)
    assert record["networks"]["sa"]["1"]["fd"] == direct.fd["a"]            # the same x_T and scorer
    assert record["networks"]["simple"]["0"]["confident"] == direct.confident["b"]
    assert record["floor"] == direct.floor and record["seeds"] == [0, 1] and record["steps"] == [2, 3]
    assert record["paired"] == ss.DigitSeeds(record).paired_table()
    with pytest.raises(ValueError, match="the same training seeds"):
        ss.measure_digit_seeds({"simple": nets["simple"], "sa": {0: nets["sa"][0]}}, schedule, steps=(2,))
    with pytest.raises(ValueError, match=r"networks must be a dict with the keys \['sa', 'simple'\]"):
        ss.measure_digit_seeds({"simple": nets["simple"]}, schedule, steps=(2,))


def test_the_stored_study_backs_the_sentences_of_the_readme_and_the_lessons():
    """Each direction the README ('What this says') and notebooks 02 and 05 state from the stored study, against
    the reference it names (five training seeds, 95% intervals)."""
    study = ss.SeedStudy.load()

    def verdicts(metric, a, b="simple"):
        return [study.paired(metric, s, a, b)["verdict"] for s in study.steps]

    def ci(model, metric, s):
        return study.interval(model, metric, s)

    # every sampler shrinks the ring at 5 and 10 steps; at 5 the cores are wide along the ring and tight across
    assert all(ci(m, "std_ratio", s)["high"] < 1 for m in study.models for s in (5, 10))
    for m in study.models:
        assert ci(m, "spread_tangential_mad", 5)["low"] > 1.5 and ci(m, "spread_radial_mad", 5)["high"] < 1, m
        assert ci(m, "spread_radial", 5)["low"] > 1, m  # the std, inflated by the samples between the modes
    assert all(0.4 < ci(m, "off_mode_share", 5)["low"] < 0.6 for m in ("ideal", "simple"))
    # both training fixes: closer to the data than simple at 5-20 steps, SA by more
    for a in ("SA", "IP"):
        for metric in ("mmd", "std_ratio"):
            assert verdicts(metric, a)[:3] == ["better"] * 3, (a, metric)
    assert all(study.paired(m, s, "SA", "IP")["verdict"] == "better" for m in ("mmd", "std_ratio")
               for s in (5, 10, 20))
    assert ci("SA", "mmd", 5)["high"] < ci("ideal", "mmd", 5)["low"]
    # two references: SA farther from the ideal path, closer to the exact flow's end (but at 100 steps)
    assert verdicts("drift_final", "SA") == ["larger", "larger", "no clear difference", "larger", "larger"]
    assert verdicts("local_sum", "SA") == ["larger"] * 5 and verdicts("local_sum", "IP") == ["larger"] * 5
    assert study.paired("gap_from_100", None, "SA")["verdict"] == "larger"
    assert verdicts("total_final", "SA") == ["smaller"] * 4 + ["larger"]
    assert verdicts("total_final", "SA", "ideal")[:2] == ["smaller"] * 2
    # IP: no farther from the ideal path, closer to the flow's end at every step count
    assert verdicts("drift_final", "IP") == ["no clear difference"] * 5
    assert study.paired("gap_from_100", None, "IP")["verdict"] == "no clear difference"
    assert verdicts("total_final", "IP") == ["smaller"] * 5
    # many steps: SA too diffuse in total, its cores nearer the right width than simple's (which are too tight)
    assert ci("SA", "std_ratio", 100)["low"] > 1 and verdicts("std_ratio", "SA")[-1] == "worse"
    assert verdicts("mmd", "SA")[-1] == "worse" and verdicts("loglik_gap", "SA")[-2:] == ["worse", "worse"]
    assert verdicts("spread_radial", "SA")[-1] == "worse"  # by the std
    for metric in ("spread_radial_mad", "spread_tangential_mad"):
        assert verdicts(metric, "SA")[2:] == ["better"] * 3, metric
        assert all(ci(m, metric, s)["high"] < 1 for m in ("simple", "ideal") for s in (20, 50, 100)), metric
    # the ideal sampler: log-likelihood above the data's at 50 and 100 steps
    assert all(ci("ideal", "loglik_gap", s)["low"] > 0 for s in (50, 100))


@pytest.mark.slow
def test_run_study_gives_the_same_results_in_parallel_and_records_its_costs():
    """Every seed draws from its own generators, so measuring seeds in spawned processes changes nothing."""
    kwargs = dict(train_steps=2, n_points=40, steps=(2,))
    one, two = ss.run_study((0, 1, 2), **kwargs), ss.run_study((0, 1, 2), jobs=2, **kwargs)
    same = json.dumps(one["results"], sort_keys=True) == json.dumps(two["results"], sort_keys=True)  # NaN == NaN
    assert same and one["jobs"] == 1 and two["jobs"] == 2
    assert one["recipe"]["fit"]["steps"] == 2 and set(one["train_cpu_seconds"]) == {"0", "1", "2"}
    assert set(one["train_cpu_seconds"]["1"]) == set(ss.STUDY_MODELS) and one["cpu_seconds"] > 0
    ss.SeedStudy(json.loads(json.dumps(one)))  # the stored form reads back
    with pytest.raises(ValueError, match="seeds must hold at least 3 distinct seeds"):
        ss.run_study((0, 0, 1), **kwargs)
    with pytest.raises(ValueError, match="jobs"):
        ss.run_study((0, 1, 2), jobs=0, **kwargs)


def test_the_stored_digit_seeds_intervals_are_the_paired_t_intervals_of_the_stored_values():
    study = ss.DigitSeeds.load()
    assert len(study.seeds) >= 3 and study.steps == list(ss.STUDY_STEPS)
    assert study.data["evaluation"]["function"] == "seqdiff_kit.evaluate.steps_table"
    assert study.data["evaluation"]["n"] == 1000 and study.data["recipe"]["steps"] == 6000
    for metric in ss.DIGIT_METRICS:
        for s in study.steps:
            sa, simple = study.values("sa", metric, s), study.values("simple", metric, s)
            d = [sa[k] - simple[k] for k in study.seeds]          # paired by training seed
            n, mean = len(d), sum(d) / len(d)
            half = scipy.stats.t.ppf(0.975, n - 1) * statistics.stdev(d) / math.sqrt(n)
            stored = study.data["paired"][metric][str(s)]
            assert stored["n"] == n and stored["keys"] == study.seeds
            assert stored["mean"] == pytest.approx(mean, rel=1e-12, abs=1e-15)
            assert stored["low"] == pytest.approx(mean - half, rel=1e-9, abs=1e-12)
            assert stored["high"] == pytest.approx(mean + half, rel=1e-9, abs=1e-12)
            assert stored == study.paired(metric, s)               # and the verdict the tables print
    for loss in ss.DIGITS_LOSSES:
        for seed in study.seeds:
            row = study.data["networks"][loss][str(seed)]
            assert row["train_steps"] == 6000 and row["shipped"] == (seed == 0)
            assert row["trained_by"]["device"] == ("cuda" if seed == 0 else "cpu")


@pytest.mark.parametrize("loss", list(ss.DIGITS_LOSSES))
def test_the_stored_seed_0_rows_match_the_shipped_checkpoints_own_evaluation(loss):
    """Seed 0 is the shipped network, scored here by the same function, settings, x_T and reference as its
    checkpoint's recorded table, but on the CPU where that table was measured on the GPU: the float kernels
    differ (cuDNN may run the GPU's convolutions in TF32), and up to 100 sampler steps carry the difference into
    the samples. Measured: FD within 0.25% (0.14 at 5 steps), the confident share within 2 of 1000 samples, the floor
    (real digits only through the classifier) within 1e-5."""
    from seqdiff_kit.recipes import load_shipped

    study = ss.DigitSeeds.load()
    cfg = load_shipped(f"digits_{loss}").config
    row, ev = study.data["networks"][loss]["0"], cfg["evaluation"]
    assert row["weights_sha256"] == cfg["weights_sha256"] and row["checkpoint"] == f"data/checkpoints/digits_{loss}"
    assert ev["steps"] == study.steps and ev["n"] == study.data["evaluation"]["n"]
    assert ev["seed"] == study.data["evaluation"]["seed"] and ev["eta"] == 0.0
    assert study.floor == pytest.approx(ev["floor"], rel=1e-5)
    assert row["fd"] == pytest.approx(next(iter(ev["fd"].values())), rel=5e-3)
    assert row["confident"] == pytest.approx(next(iter(ev["confident"].values())), abs=0.0025)


def test_total_final_is_the_distance_from_the_exact_flow_of_two_references():
    """The study's ``total_final`` (the final distance from the exact flow's end, solved once to t = -1) is
    ``drift.two_references``' total error at the last step for the networks and its discretisation error for the
    ideal denoiser (a flow recorded at every sampler timestep). The two flows take other RK4 sub-steps and
    keep float32 states, so they agree to about 1e-9 here; 1e-6 leaves room for float32 rounding."""
    from seqdiff_kit.checkpoint import load_checkpoint
    from seqdiff_kit.drift import two_references
    from seqdiff_kit.losses import Loss

    recipe = ss.study_recipe(Loss(), 0)
    mixture, schedule = recipe.data(), recipe.make_schedule()
    model, _ = load_checkpoint(CHECKPOINT_DIR / "ring8_simple")
    out = ss.measure_seed({"simple": model}, mixture, schedule, 3, steps=(5, 20), n_points=300)
    x_T = torch.randn(300, 2, generator=torch.Generator().manual_seed(3))  # measure_seed's first draw
    for steps in (5, 20):
        refs = two_references(model, mixture, schedule, x_T, steps)
        assert out["simple"]["steps"][str(steps)]["total_final"] == pytest.approx(float(refs.total[-1].mean()),
                                                                                   abs=1e-6)
        assert out[ss.IDEAL]["steps"][str(steps)]["total_final"] == pytest.approx(
            float(refs.discretisation[-1].mean()), abs=1e-6)
