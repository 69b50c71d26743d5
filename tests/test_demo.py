"""The demo: shipped checkpoints and their recipes, what the shipped models learned, the demo job and its report,
the README (test_evaluate.py tests the evaluation itself)."""
import json

import plotly.offline
import pytest
import torch

import seqdiff_kit as sk
from seqdiff_kit import demo
from seqdiff_kit._format import format_number
from seqdiff_kit.checkpoint import checkpoint_paths, load_checkpoint, read_checkpoint
from seqdiff_kit.data import CHECKPOINT_DIR
from seqdiff_kit.denoisers import seeded_model
from seqdiff_kit.drift import total_std
from seqdiff_kit.metrics import mean_log_likelihood
from seqdiff_kit.recipes import SHIPPED, load_shipped
from seqdiff_kit.solvers import sample

SCHED = sk.Schedule.linear()


@pytest.fixture(scope="module")
def shipped():
    return {name: load_shipped(stem).model for name, stem in demo.DEMO_MODELS.items()}


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
    for title in ("Data and samples", "Sampling paths", "Drift from the ideal path",
                  "Two references: the ideal path and the exact flow", "Distance from the exact flow, 5 steps",
                  "Spread: variance ratio", "Metrics versus the number of steps", "Table", "Reading the numbers",
                  "Settings"):
        assert title in html
    # the two references' table: every learned model's final distances, as the evaluation measured them
    for r in res.evaluation.reference_rows():
        for key in ("estimation", "total", "discretisation"):
            assert f"<td class=\"num\">{format_number(r[key])}</td>" in html
    # a report is passed on: no absolute path of this machine in it (the shipped checkpoints are named)
    assert str(CHECKPOINT_DIR) not in html and str(tmp_path) not in html
    assert "shipped checkpoints (data/checkpoints)" in html
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
