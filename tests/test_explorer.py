"""The explorer page's widget (``make app``; the page itself: tests/test_app.py and
tests/browser/test_explorer_app.py): the controls show before torch loads, shipped models load in the background,
the controls switch paths, drift curves and the two-sided score table, each setting is computed once, a missing
setting trains from a ``Recipe`` after a measured estimate and stays for the server's later pages, SA with
lam = 0 says it is the simple loss, and bad arguments are refused."""
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from seqdiff_kit import explorer, explorer_engine, recipes, ring8
from seqdiff_kit._format import format_number
from seqdiff_kit.evaluate import Scorer, mmd_bandwidths
from seqdiff_kit.metrics import reading, target_distance

ROOT = Path(__file__).resolve().parent.parent


def test_the_page_module_and_its_controls_do_not_import_torch():
    # the page shows its controls before the work: building them loads no torch (seconds on a busy machine)
    code = ("import sys; from seqdiff_kit.explorer import Explorer; e = Explorer(recipe='RING8'); "
            "print('torch' in sys.modules, e.dataset.disabled, 'Loading' in e.status.value, e.engine)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "True", "None"]


def test_recipe_names_and_bad_arguments():
    assert all(isinstance(getattr(recipes, name), recipes.Recipe) for name in explorer.RECIPES)
    with pytest.raises(ValueError, match="recipe must be a recipes.Recipe or one of"):
        explorer.Explorer(recipe="RING9")
    with pytest.raises(TypeError, match="recipe must be a recipes.Recipe"):
        explorer.Explorer(recipe=8)
    with pytest.raises(ValueError, match="n_points must be >= 2, got 1"):
        explorer.Explorer(n_points=1)
    with pytest.raises(TypeError, match="quick_steps must be an integer"):
        explorer.Explorer(quick_steps=2.5)


def test_the_page_points_to_the_glossary_where_the_toolkit_has_it():
    note = explorer.glossary_note()
    assert ("docs/glossary.md" in note) == (ROOT / "docs" / "glossary.md").is_file()


def test_score_table_is_two_sided_with_the_data_level():
    scores = {"learned": {"mmd": 0.01, "sw": 0.05, "std_ratio": 0.90, "loglik_gap": 0.30},
              "ideal denoiser": {"mmd": 0.001, "sw": 0.02, "std_ratio": 1.001, "loglik_gap": -0.4},
              "data (a second draw)": {"mmd": -0.0005, "sw": 0.01, "std_ratio": 0.99, "loglik_gap": 0.02}}
    table = explorer_engine.score_table(scores)
    cells = [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row) for row in re.findall(r"<tr>(.*?)</tr>", table)]
    assert cells[0] == ["", "MMD^2", "sliced W1", "std ratio", "log-lik gap"]
    assert cells[1] == ["target", "0", "0", "1", "0"]
    # each sided quantity read against its target with the data's own distance from it as the tolerance
    assert cells[2][3] == "0.9 (too tight)" == f"0.9 ({reading('std_ratio', 0.9, 0.01)})"
    assert cells[2][4] == "0.3 (too tight)"
    assert cells[3][3] == "1.001 (on target)" and cells[3][4] == "-0.4 (too diffuse)"
    assert cells[4] == ["data (a second draw)", *(format_number(v) for v in scores["data (a second draw)"].values())]
    assert target_distance("std_ratio", 0.99) == pytest.approx(0.01)


def test_explorer_shipped_models_controls_and_quick_training(monkeypatch, tmp_path):
    from seqdiff_kit import solvers

    original, calls = solvers.sample, []

    def counting_sample(*args, solver="ddim", **kw):
        calls.append(solver)
        return original(*args, solver=solver, **kw)

    monkeypatch.setattr(solvers, "sample", counting_sample)
    e = explorer.Explorer(recipe=recipes.RING8, n_points=40, n_reference=60, quick_steps=12, max_points=40,
                          cache_dir=tmp_path, precompute=False)
    assert e.dataset.disabled and e.engine is None and "Loading" in e.status.value
    e.wait(300)
    assert not e.dataset.disabled
    # the deterministic solvers that need nothing from the data join the generalized step
    assert [label.split(" ")[0] for label, _ in e.solver.options] == ["DDIM", "DDPM", "dpmpp_2m", "heun"]
    assert "shipped (ring8_simple" in e.status.value and "10 sampling steps" in e.status.value
    assert e.paths.names == ["learned (simple)", "ideal"] and e.paths.n_frames == 11
    assert e.metrics.value.count("<tr>") == 5  # header, target, learned, ideal, a second data draw
    # the page scores through evaluate's one scorer: the same numbers as a Scorer of the tables, built apart
    scorer = Scorer.draw(ring8(), 60, seed=2, metrics=explorer_engine.TABLE)
    learned, ideal, _, _ = e.engine.paths(ring8(), e.engine.models[e.setting()], 10, {"eta": 0.0})
    assert e.scores == {"learned (simple)": scorer.score(learned.final), "ideal denoiser": scorer.score(ideal.final),
                        "data (a second draw)": scorer.data_level}
    assert e.engine.scorer("ring8").bandwidths == mmd_bandwidths(ring8())
    assert format_number(e.scores["ideal denoiser"]["mmd"]) in e.metrics.value
    assert e.K.disabled and e.lam.disabled and e.drift_note.value == ""

    z, bounds = np.array(e.paths.fig.data[0].z, dtype=float), e.paths.bounds
    e.steps.value = 5
    # over the same density the axes only grow (one scale across settings), the background stays
    assert all(np.array(e.paths.bounds)[[0, 2]] <= np.array(bounds)[[0, 2]])
    assert all(np.array(e.paths.bounds)[[1, 3]] >= np.array(bounds)[[1, 3]])
    if e.paths.bounds == bounds:
        np.testing.assert_array_equal(np.array(e.paths.fig.data[0].z, dtype=float), z)
    assert e.paths.n_frames == 6 and [label for label, _ in e.paths.slider.options][-1] == "end"
    assert [tr.name for tr in e.drift_fig.data] == ["accumulated drift", "local error of the step",
                                                 "propagated from earlier steps", "distance from the exact flow"]
    assert list(e.drift_fig.data[0].x) == [799, 599, 399, 199, -1] and "exact flow" in e.drift_fig.layout.title.text
    assert e.drift_fig.layout.xaxis.autorange == "reversed"
    ddim = e.paths.paths["learned (simple)"].copy()
    e.solver.value = 1  # DDPM: the same x_T, other paths
    ddpm = e.paths.paths["learned (simple)"]
    np.testing.assert_array_equal(ddpm[0], ddim[0])
    assert not np.allclose(ddpm[-1], ddim[-1])
    # back to a setting seen before: its kept results, nothing sampled again
    n_views = len(e.engine._views)
    e.solver.value = 0
    assert len(e.engine._views) == n_views and np.array_equal(e.paths.paths["learned (simple)"], ddim)
    e.loss.value = "sa"
    assert not e.K.disabled and "shipped (ring8_sa" in e.status.value and "lam = 0" not in e.status.value
    assert e.paths.names[0] == "learned (SA, K=2, lam=1)"
    e.lam.value = 0.0  # lam = 0 is the simple loss: its model, and the page says so
    assert e.setting() == ("ring8", "simple", 1, 0.0) and "ring8_simple" in e.status.value
    assert "SA with lam = 0 is the simple loss" in e.status.value and e.K.disabled and not e.lam.disabled
    assert e.paths.names[0] == "learned (simple)"

    e.solver.value = 3  # a solver of solvers.SOLVERS goes to solvers.sample, and only the distance is drawn
    assert calls[-2:] == ["heun", "heun"] and [tr.name for tr in e.drift_fig.data] == ["accumulated drift",
                                                                                 "distance from the exact flow"]
    assert "heun shows the accumulated drift without its split" in e.drift_note.value and "generalized" in e.drift_note.value


def test_quick_training_is_kept_for_the_servers_later_pages(tmp_path):
    e = explorer.Explorer(recipe=recipes.RING8, n_points=40, n_reference=60, quick_steps=12, max_points=40,
                          cache_dir=tmp_path, precompute=False).wait(300)
    e.dataset.value = "two_moons"
    assert e.train_button.layout.display is None and "No model for two_moons" in e.status.value
    assert "ring8" in e.status.value  # says what the figures still show
    assert re.search(r"about \d+ s at this machine's present load, timed on 20 updates just now", e.status.value)
    e.train()
    assert ("two_moons", "simple", 1, 0.0) in e.engine.models and e.train_button.layout.display == "none"
    assert "trained here (12 updates" in e.status.value and e.progress.value == 12
    assert e.paths.mixture is e.engine.mixtures["two_moons"]  # its own density behind its paths
    # trained through runs.train_run into the server's session folder, with its checkpoint and history
    run = explorer_engine.session_folder(tmp_path) / "two_moons_simple_1_0.0"
    assert json.loads((run / "history.json").read_text())["history"][-1]["step"] == 12
    assert json.loads((run / "model.json").read_text())["dataset"] == "two_moons"

    # a reload (a new page of the same server: a new Explorer in this process) finds it
    again = explorer.Explorer(recipe="RING8", n_points=20, n_reference=30, quick_steps=12, cache_dir=tmp_path,
                              precompute=False).wait(300)
    assert ("two_moons", "simple", 1, 0.0) in again.engine.models
    again.dataset.value = "two_moons"
    assert "trained earlier in this session (two_moons_simple_1_0.0, 12 updates)" in again.status.value
    # another quick_steps is another setting: not this run
    other = explorer.Explorer(recipe="RING8", n_points=20, n_reference=30, quick_steps=13, cache_dir=tmp_path,
                              precompute=False).wait(300)
    assert ("two_moons", "simple", 1, 0.0) not in other.engine.models

    shipped_only = explorer.Explorer(n_points=20, n_reference=30, cache_dir=None, precompute=False).wait(300)
    shipped_only.dataset.value = "grid25"
    assert "is shipped" in shipped_only.status.value and shipped_only.train_button.layout.display == "none"


def test_the_estimate_is_measured_not_a_constant(monkeypatch, tmp_path):
    e = explorer.Explorer(recipe="RING8", n_points=20, n_reference=30, quick_steps=40, cache_dir=tmp_path,
                          precompute=False).wait(300)
    seen = []

    def fake(recipe, **kw):
        seen.append(recipe)
        return 123.4

    monkeypatch.setattr(explorer_engine, "estimate_seconds", fake)
    e.dataset.value = "grid25"
    assert "about 123 s at this machine's present load" in e.status.value
    assert seen[-1].dataset == "grid25" and seen[-1].fit["steps"] == 40 and seen[-1].loss.name == "simple"


def test_precompute_fills_the_other_step_counts_and_solvers(tmp_path):
    e = explorer.Explorer(recipe="RING8", n_points=20, n_reference=30, cache_dir=tmp_path).wait(300)
    key = e.setting()
    deadline = time.monotonic() + 300
    while not all(e.engine.has_view(key, k, 10) for k in range(4)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(e.engine.has_view(key, 0, s) for s in explorer.Explorer.STEP_CHOICES)
    assert all(e.engine.has_view(key, k, 10) for k in range(4))


def _folder(tmp_path, kind):
    import shutil

    from seqdiff_kit.data import CHECKPOINT_DIR

    d = tmp_path / kind
    if kind == "missing":
        return d
    d.mkdir()
    if kind in ("json-list", "junk-weights", "digits-only"):
        stem = "digits_simple" if kind == "digits-only" else "ring8_simple"
        for suffix in (".json", ".safetensors"):
            shutil.copy(CHECKPOINT_DIR / (stem + suffix), d)
        if kind == "json-list":
            (d / "ring8_simple.json").write_text("[1, 2]")
        elif kind == "junk-weights":
            (d / "ring8_simple.safetensors").write_bytes(b"junk")
    return d


@pytest.mark.parametrize("kind, match", [
    ("json-list", r"checkpoint_dir '.*json-list': ring8_simple.json is not a usable checkpoint \(it holds a JSON list"),
    ("junk-weights", r"ring8_simple.json is not a usable checkpoint \(corrupt checkpoint"),
    ("empty", r"checkpoint_dir '.*empty' holds no finished checkpoint of \['grid25', 'ring8', 'two_moons'\] and "
              r"recipe is None"),
    ("digits-only", r"holds no finished checkpoint"),
    ("missing", r"checkpoint_dir '.*missing' is not a folder"),
])
def test_a_folder_without_a_usable_checkpoint_is_one_line_on_the_page_and_from_wait(tmp_path, kind, match):
    """A JSON list among the checkpoints once escaped as an AttributeError, and a folder with nothing to show
    made a page with nothing on it."""
    e = explorer.Explorer(checkpoint_dir=_folder(tmp_path, kind), n_points=20, n_reference=30, cache_dir=None,
                          precompute=False)
    with pytest.raises(ValueError, match=match):
        e.wait(300)
    assert e.status.value.startswith("<b>The explorer could not load:</b> ValueError(")
    assert "\n" not in e.status.value and "Traceback" not in e.status.value


def test_a_deterministic_run_shows_its_distance_from_the_exact_flow():
    """Issue 23: the second reference beside the drift from the ideal path, for DDIM (eta 0) and the deterministic
    solvers; DDPM has no flow to follow. The curve is drift.two_references' total error from the page's x_T."""
    import torch

    from seqdiff_kit.drift import two_references
    from seqdiff_kit.explorer_engine import Engine

    engine = Engine(recipe=None, n_points=64, n_reference=200, quick_steps=10, seed=0, checkpoint_dir=None,
                    cache_dir=None)
    key = next(k for k in engine.models if k[0] == "ring8")
    mixture, model = engine.mixtures["ring8"], engine.models[key]
    for kwargs in ({"eta": 0.0}, {"solver": "heun"}):
        learned, reference, curves, after = engine.paths(mixture, model, 5, kwargs)
        x_T = learned.x[0]
        direct = two_references(model, mixture, engine.schedule, x_T, 5, **({"solver": "heun"} if "solver" in kwargs
                                                                            else {}))
        assert torch.allclose(curves["distance from the exact flow"], direct.mean("total")[1:].to(torch.float64),
                              atol=1e-5)
        assert len(curves["distance from the exact flow"]) == len(after) == 5
    _, _, curves, _ = engine.paths(mixture, model, 5, {"eta": 1.0})
    assert "distance from the exact flow" not in curves
