"""Recipes: validation, replace and the JSON round trip, the default recipe of every dataset, training a recipe
is the training loop on its parts (bit for bit), and the shipped names."""
import math

import pytest
import torch

from seqdiff_kit import Loss, MLPDenoiser, Schedule
from seqdiff_kit.data import DATASETS
from seqdiff_kit.denoisers import seeded_model
from seqdiff_kit.recipes import (DIGITS, FIT_KEYS, RING8, RING8_FAST, SHIPPED, Recipe, load_shipped,
                                 recipe_for, train)
from seqdiff_kit.train import fit


def test_replace_routes_fit_settings_and_round_trips_through_json():
    r = RING8.replace(steps=5, lr=1e-3, seed=3, loss=Loss("sa", K=3, lam=0.5))
    assert r.fit == {**RING8.fit, "steps": 5, "lr": 1e-3} and r.seed == 3 and r.loss.config["K"] == 3
    assert RING8.steps == 8000 and RING8.seed == 0  # the original is untouched
    again = Recipe.from_config(r.config())
    assert again == r and again.config() == r.config()


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"dataset": "mnist"}, ValueError, r"dataset must be one of .*got 'mnist'"),
    ({"model": "ResNet"}, ValueError, r"model must be one of .*got 'ResNet'"),
    ({"fit": {"steps": 3, "momentum": 0.9}}, ValueError, r"fit must hold 'steps' and only keys of"),
    ({"fit": {"lr": 1e-3}}, ValueError, r"fit must hold 'steps'"),
    ({"loss": "sa"}, TypeError, r"loss must be a Loss, got str"),
    ({"schedule": {"name": "wavy", "T": 10}}, ValueError, r"wavy"),
])
def test_bad_recipes_name_the_part(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        RING8.replace(**kwargs)


def test_every_dataset_has_a_default_recipe():
    for name in DATASETS:
        r = recipe_for(name)
        data = r.data()
        model = r.build_model()
        x = data.sample(4) if hasattr(data, "sample") else data[:4]
        assert model(x, torch.zeros(4, dtype=torch.long)).shape == x.shape, name
        assert set(r.fit) <= set(FIT_KEYS)
    assert recipe_for("digits") == DIGITS and recipe_for("digits8x8") == DIGITS  # the name older checkpoints use
    assert recipe_for("gauss1d").model_args["dim"] == 1 and recipe_for("two_moons").fit == RING8_FAST.fit
    with pytest.raises(ValueError, match="dataset must be one of"):
        recipe_for("moons")


def test_train_is_fit_on_the_recipe_parts(tmp_path):
    """``train(recipe)`` = the seeded network, the recipe's data, schedule, loss and fit settings through
    ``train.fit`` (the same computation, so the same bits); its config is an EMA-only checkpoint's JSON."""
    recipe = SHIPPED["ring8_sa"].replace(steps=4, seed=2, model_args={"dim": 2, "width": 16, "depth": 1})
    threads = torch.get_num_threads()
    try:
        got = train(recipe, progress=False, threads=1)
        net = seeded_model(MLPDenoiser, 2, dim=2, width=16, depth=1)
        ref = fit(net, recipe.data(), Schedule.linear(1000), Loss("sa", K=2, lam=1.0), seed=2, progress=False,
                  threads=1, **recipe.fit)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(p, q) for p, q in zip(got.model.parameters(), ref.ema.parameters()))
    assert got.history == ref.history and not got.model.training
    assert got.config["train"] == {"recipe": "ring8_sa", **recipe.fit} and got.config["step"] == 4
    assert got.config["loss"] == recipe.loss.config and got.config["seed"] == 2 and got.config["weights"] == "ema"
    assert got.schedule.config() == recipe.schedule


def test_shipped_names_are_the_checkpoints():
    assert set(SHIPPED) == {"ring8_simple", "ring8_sa", "ring8_ip", "digits_simple", "digits_sa"}
    for name, recipe in SHIPPED.items():
        assert recipe.name == name and load_shipped(name).config["loss"] == recipe.loss.config
    with pytest.raises(ValueError, match="name must be one of"):
        load_shipped("ring8_large")
    with pytest.raises(FileNotFoundError, match="shipped checkpoint not found"):
        load_shipped("ring8_sa", checkpoint_dir="/nonexistent")


def test_the_shipped_input_perturbation_network():
    """ring8_ip: the RING8 recipe with Input Perturbation (the paper's gamma = 0.1), its JSON saying so; it loads
    and has learned the ring (100 DDIM steps end near a mode)."""
    from seqdiff_kit import Schedule, ring8, solvers

    ip = load_shipped("ring8_ip")
    assert ip.config["loss"] == {"name": "ip", "K": 1, "lam": 0.0, "gamma": 0.1} == SHIPPED["ring8_ip"].loss.config
    assert ip.config["train"] == {**ip.config["train"], "recipe": "ring8_ip", **RING8.fit}
    assert ip.config["step"] == RING8.steps and ip.config["seed"] == 0 and not ip.model.training
    mix = ring8()
    x = solvers.sample(ip.model, torch.randn(500, 2, generator=torch.Generator().manual_seed(0)),
                       Schedule.linear(), 100).final
    near = torch.cdist(x.double(), mix.means).min(dim=1).values < 0.3  # modes of std 0.1
    assert float(near.float().mean()) > 0.9


def test_estimate_seconds_probes_the_recipe():
    from seqdiff_kit.recipes import estimate_seconds

    short = RING8_FAST.replace(steps=1000)
    est = estimate_seconds(short, probe_steps=2, threads=1)
    assert math.isfinite(est) and est > 0
    with pytest.raises(TypeError, match="recipe"):
        estimate_seconds(RING8_FAST.fit)
