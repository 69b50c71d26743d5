"""Notebook 07's fast-path grid, computed once and stored beside the shipped checkpoints
(scripts/make_lesson_grid.py, few_step.lesson_grid): the stored numbers are a fresh computation's, the notebook's
fast path asks for exactly the stored grid, and any other call computes afresh."""
import json
import os

import pytest
import torch

from seqdiff_kit import Schedule, ring8
from seqdiff_kit.few_step import (IDEAL, LESSON_GRID, LESSON_KWARGS, SHIPPED_MODELS, grid_call, lesson_grid,
                                  load_grid, run_grid, save_grid)
from seqdiff_kit.recipes import load_shipped

from test_notebooks_meta import NB_DIR, load, src

SMALL = {"steps": (5, 10), "fixes": ("ddim", "ddim+es", "heun"), "spacings": ("trailing",), "seeds": (0,),
         "n_points": 500, "n_gamma": 500, "data_draws": 2, "keep_trajectories": True}


@pytest.fixture(scope="module")
def setting():
    models = {name: load_shipped(stem).model for name, stem in SHIPPED_MODELS.items()}
    return models, ring8(), Schedule.linear(1000)


def _close(a: float, b: float) -> bool:
    # the stored grid was computed on this CPU's kernels; on the plain ones (ATEN_CPU_CAPABILITY=default) x_T's
    # draws differ by up to ~1e-6, and a median-based metric (the MAD spreads) moves a few times that
    return abs(a - b) <= 2e-5 * max(1.0, abs(a), abs(b))


def test_stored_grid_matches_a_fresh_computation_on_a_small_case(setting):
    # the deterministic solvers at trailing spacing draw nothing but x_T and the reference, which come first,
    # so a grid of only these cells reproduces the stored grid's cells (and the first data draws)
    models, mixture, schedule = setting
    fresh, stored = run_grid(models, mixture, schedule, **SMALL), load_grid(LESSON_GRID)
    # randn's float32 draws follow the CPU kernel to a few ulps (ATEN_CPU_CAPABILITY): equal here, close there
    torch.testing.assert_close(fresh.x_T, stored.x_T, rtol=1e-5, atol=1e-5)
    index = {(r["model"], r["fix"], r["spacing"], r["steps"], r["seed"]): r for r in stored.rows}
    assert len(fresh.rows) == 4 * 3 * 2  # simple, SA, IP, ideal x 3 fixes x 2 step counts
    # Epsilon Scaling's factors are fitted on the same held-apart points: the stored ones
    assert fresh.settings["eps_scales"] == {k: v for k, v in stored.settings["eps_scales"].items()
                                            if k in fresh.settings["eps_scales"]}
    assert len(fresh.settings["eps_scales"]) == 4 * 2
    for row in fresh.rows:
        kept = index[(row["model"], row["fix"], row["spacing"], row["steps"], row["seed"])]
        assert row.keys() == kept.keys()
        bad = {k: (row[k], kept[k]) for k in row if isinstance(row[k], float) and not _close(row[k], kept[k])}
        assert not bad, (row["model"], row["fix"], row["steps"], bad)
    for fresh_draw, kept_draw in zip(fresh.data, stored.data[:2]):
        assert all(_close(fresh_draw[k], kept_draw[k]) for k in fresh_draw)
    for key in fresh.trajectories:
        torch.testing.assert_close(stored.final(*key), fresh.final(*key), rtol=1e-5, atol=1e-5)  # as x_T
    flow = fresh.flow_distance(mixture, ("ddim", "heun"))
    assert set(flow) == {(m, f, n) for m in (*models, IDEAL) for f in ("ddim", "heun") for n in (5, 10)}
    kept_flow = stored.flow_distance(mixture, ("ddim", "heun"))
    for key, d in flow.items():
        # the exact flow here is recorded at fewer timesteps, so its sub-steps differ: ODE error only
        torch.testing.assert_close(kept_flow[key], d, rtol=1e-4, atol=1e-5)


def test_notebook_07_fast_path_asks_for_the_stored_grid(setting, monkeypatch):
    models, mixture, schedule = setting
    monkeypatch.setenv("SEQDIFF_FAST", "1")
    cells = load(NB_DIR / "07_fixing_few_step_sampling.ipynb")["cells"]
    params = {}
    exec(src(cells[1]), params)  # the parameters cell
    asked = {"steps": params["STEP_COUNTS"], "spacings": params["SPACINGS"], "seeds": params["SEEDS"],
             "n_points": params["N_POINTS"], "n_gamma": params["N_GAMMA"], "data_draws": params["DATA_DRAWS"],
             "keep_trajectories": True}
    assert asked == LESSON_KWARGS
    assert any("lesson_grid(" in src(c) for c in cells if c["cell_type"] == "code")
    stored = json.loads(LESSON_GRID.with_suffix(".json").read_text())
    assert stored["call"] == grid_call(models, mixture, schedule, **LESSON_KWARGS)
    grid = lesson_grid(models, mixture, schedule, **LESSON_KWARGS)
    assert grid.scorer is None and grid.finals and grid.flow_end is not None  # loaded, not run


def test_save_load_round_trip_and_any_other_call_runs_afresh(setting, tmp_path):
    models, mixture, schedule = setting
    small = {**SMALL, "n_points": 40, "steps": (5,)}
    grid = run_grid(models, mixture, schedule, **small)
    stem = tmp_path / "grid"
    save_grid(grid, stem, grid_call(models, mixture, schedule, **small), mixture)
    back = lesson_grid(models, mixture, schedule, stem=stem, **small)
    assert back.scorer is None and back.rows == grid.rows and back.data == grid.data
    assert all(torch.equal(back.final(*k), grid.final(*k)) for k in grid.trajectories)
    assert torch.equal(back.flow_end, grid.flow_end)
    # another argument, or one changed weight, and the grid is computed
    assert lesson_grid(models, mixture, schedule, stem=stem, **{**small, "data_draws": 3}).scorer is not None
    changed = {**models, "SA": load_shipped(SHIPPED_MODELS["SA"]).model}
    with torch.no_grad():
        next(changed["SA"].parameters()).view(-1)[0] += 1e-3
    assert lesson_grid(changed, mixture, schedule, stem=stem, **small).scorer is not None
    with pytest.raises(ValueError, match="keep_trajectories"):
        save_grid(run_grid(models, mixture, schedule, **{**small, "keep_trajectories": False}), stem,
                  {}, mixture)
    assert os.path.exists(f"{stem}.safetensors")
