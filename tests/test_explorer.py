"""The explorer page's widget (``make app``; the page itself: tests/test_app.py and
tests/browser/test_explorer_app.py): shipped models load at once, the controls switch paths, drift curves and
the metrics table, a missing setting trains from a ``Recipe``, and a recipe of another type is refused."""
import json
from pathlib import Path

import numpy as np
import pytest

from seqdiff_kit import explorer, ring8
from seqdiff_kit._format import format_number
from seqdiff_kit.evaluate import Scorer, mmd_bandwidths


def test_explorer_shipped_models_controls_and_quick_training(monkeypatch):
    from seqdiff_kit import solvers

    original = solvers.sample
    calls = []

    def counting_sample(*args, solver="ddim", **kw):
        calls.append(solver)
        return original(*args, solver=solver, **kw)

    monkeypatch.setattr(solvers, "sample", counting_sample)
    from seqdiff_kit.recipes import RING8

    e = explorer.Explorer(recipe=RING8, n_points=40, n_reference=60, quick_steps=12, max_points=40)
    # the deterministic solvers that need nothing from the data join the generalized step
    assert [label.split(" ")[0] for label, _ in e.solver.options] == ["DDIM", "DDPM", "dpmpp_2m", "heun"]
    assert "shipped (ring8_simple" in e.status.value and "10 sampling steps" in e.status.value
    assert e.paths.names == ["learned (simple)", "ideal"] and e.paths.n_frames == 11
    assert e.metrics.value.count("<tr>") == 4  # header, learned, ideal, a second data draw
    # the page scores through evaluate's one scorer: the same numbers as a Scorer of the tables, built apart
    scorer = Scorer.draw(ring8(), 60, seed=2, metrics=explorer.TABLE)
    learned, ideal, _, _ = e._paths(ring8(), e.models[e.setting()], 10, {"eta": 0.0})
    assert e.scores == {"learned (simple)": scorer.score(learned.final), "ideal denoiser": scorer.score(ideal.final),
                        "data (a second draw)": scorer.data_level}
    assert e.scorer("ring8").bandwidths == mmd_bandwidths(ring8())
    assert format_number(e.scores["ideal denoiser"]["mmd"]) in e.metrics.value
    assert e.K.disabled and e.lam.disabled

    e.steps.value = 5
    assert e.paths.n_frames == 6 and [label for label, _ in e.paths.slider.options][-1] == "end"
    assert len(e.drift_fig.data) == 3 and list(e.drift_fig.data[0].x) == [799, 599, 399, 199, -1]
    assert e.drift_fig.layout.xaxis.autorange == "reversed"
    ddim = e.paths.paths["learned (simple)"].copy()
    e.solver.value = 1  # DDPM: the same x_T, other paths
    ddpm = e.paths.paths["learned (simple)"]
    np.testing.assert_array_equal(ddpm[0], ddim[0])
    assert not np.allclose(ddpm[-1], ddim[-1])
    e.loss.value = "sa"
    assert not e.K.disabled and "shipped (ring8_sa" in e.status.value
    assert e.paths.names[0] == "learned (SA, K=2, lam=1)"
    e.lam.value = 0.0  # lam = 0 is the simple loss: its model
    assert e.setting() == ("ring8", "simple", 1, 0.0) and "ring8_simple" in e.status.value

    e.solver.value = 3  # a solver of solvers.SOLVERS goes to solvers.sample, and only the distance is drawn
    assert calls[-2:] == ["heun", "heun"] and len(e.drift_fig.data) == 1

    e.solver.value, e.dataset.value = 0, "two_moons"
    assert e.train_button.layout.display is None and "No model for two_moons" in e.status.value
    assert "ring8" in e.status.value  # says what the figures still show
    e.train()
    assert ("two_moons", "simple", 1, 0.0) in e.models and e.train_button.layout.display == "none"
    assert "trained here (12 updates" in e.status.value and e.progress.value == 12
    # trained through runs.train_run: a run folder of the session with its checkpoint and history
    run = Path(e._folder.name) / "two_moons_simple_1_0.0"
    assert json.loads((run / "history.json").read_text())["history"][-1]["step"] == 12
    assert json.loads((run / "model.json").read_text())["dataset"] == "two_moons"
    shipped_only = explorer.Explorer(n_points=20, n_reference=30)
    shipped_only.dataset.value = "grid25"
    assert "is shipped" in shipped_only.status.value and shipped_only.train_button.layout.display == "none"
    with pytest.raises(TypeError, match="recipe must be"):
        explorer.Explorer(recipe="RING8")
