"""Recipes: what makes a trained model (dataset, network, schedule, loss, fit settings, seed), training one, and
the shipped models (``SHIPPED``: the recipe of every checkpoint in ``CHECKPOINT_DIR``, ``load_shipped``).

    trained = train(SHIPPED["ring8_sa"].replace(steps=500))  # trained.model (EMA), .config (JSON), .history
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ._validate import check_choice, check_int, check_type
from .checkpoint import ALLOWED_MODELS, build_model, checkpoint_exists, checkpoint_paths, load_checkpoint
from .data import CHECKPOINT_DIR, DATASET_ALIASES, DATASETS, dataset, sample_shape
from .denoisers import seeded_model
from .losses import Loss
from .schedule import Schedule
from . import train as training

FIT_KEYS = ("steps", "batch_size", "lr", "warmup", "cosine_decay", "ema_decay", "grad_clip")


@dataclass(frozen=True)
class Recipe:
    """Everything that shapes a trained model. ``name`` is recorded in the checkpoint (``train.recipe``);
    ``dataset`` is a ``data.DATASETS`` name; ``model`` a class of ``denoisers`` (``checkpoint.ALLOWED_MODELS``)
    built with ``model_args``; ``fit`` the keyword arguments of ``train.fit`` (``FIT_KEYS``, ``steps`` required);
    ``schedule`` a ``Schedule.config()`` dict; ``seed`` the initial weights and every draw of the training."""

    name: str
    dataset: str
    model: str
    model_args: dict
    fit: dict
    loss: Loss = field(default_factory=Loss)
    schedule: dict = field(default_factory=Schedule.linear(1000).config)
    seed: int = 0

    def __post_init__(self):
        check_choice("dataset", DATASET_ALIASES.get(self.dataset, self.dataset), DATASETS)
        check_choice("model", self.model, ALLOWED_MODELS)
        check_type("model_args", self.model_args, dict)
        check_type("fit", self.fit, dict)
        unknown = sorted(set(self.fit) - set(FIT_KEYS))
        if unknown or "steps" not in self.fit:
            raise ValueError(f"fit must hold 'steps' and only keys of {list(FIT_KEYS)}, got {sorted(self.fit)}")
        check_int("fit['steps']", self.fit["steps"], 0)
        check_type("loss", self.loss, Loss)
        Schedule.from_config(self.schedule)
        check_int("seed", self.seed)

    def replace(self, **changes) -> "Recipe":
        """A copy with some parts changed; ``FIT_KEYS`` (``steps=500``, ``lr=1e-3``) change ``fit``."""
        fit_changes = {k: changes.pop(k) for k in list(changes) if k in FIT_KEYS}
        if fit_changes:
            changes["fit"] = {**changes.get("fit", self.fit), **fit_changes}
        return dataclasses.replace(self, **changes)

    @property
    def steps(self) -> int:
        return int(self.fit["steps"])

    def model_spec(self) -> dict:
        return {"class": self.model, "args": dict(self.model_args)}

    def build_model(self) -> nn.Module:
        """The network with its initial weights drawn from ``seed`` (the global random state is left alone)."""
        return seeded_model(build_model, self.seed, spec=self.model_spec())

    def data(self):
        """The training data: a ``GaussianMixture`` or a tensor of clean samples [N, ...]."""
        return dataset(self.dataset)

    def make_schedule(self) -> Schedule:
        return Schedule.from_config(self.schedule)

    def config(self) -> dict:
        """The recipe as JSON (``Recipe.from_config`` reads it back)."""
        return {"name": self.name, "dataset": self.dataset, "model": self.model_spec(), "fit": dict(self.fit),
                "loss": self.loss.config, "schedule": dict(self.schedule), "seed": self.seed}

    @classmethod
    def from_config(cls, d: dict) -> "Recipe":
        check_type("config", d, dict)
        return cls(name=d["name"], dataset=d["dataset"], model=d["model"]["class"],
                   model_args=dict(d["model"].get("args", {})), fit=dict(d["fit"]),
                   loss=Loss.from_config(d["loss"]), schedule=dict(d["schedule"]), seed=d["seed"])


@dataclass
class Trained:
    """A trained network: ``model`` (the EMA weights, in eval mode), its checkpoint JSON ``config``, the
    ``recipe`` that made it and, after ``train``, the per-step ``history`` and the wall time ``seconds``."""

    model: nn.Module
    config: dict
    recipe: Recipe | None = None
    history: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def schedule(self) -> Schedule:
        return Schedule.from_config(self.config["schedule"])


def train(recipe: Recipe, *, progress: bool = True, threads: int | None = None, device="cpu", checkpoint=None,
          checkpoint_every: int | None = None, resume: bool = False, on_step=None) -> Trained:
    """Build ``recipe``'s network and train it with ``train.fit`` on its data, loss and schedule (``checkpoint``,
    ``checkpoint_every``, ``resume`` and ``on_step`` are ``fit``'s). The returned ``config`` is the JSON of a small
    EMA-only checkpoint (``checkpoint.save_checkpoint(path, trained.model, trained.config)``), without wall time so
    that the files stay reproducible. A run in an output folder: ``runs.train_run``."""
    check_type("recipe", recipe, Recipe)
    res = training.fit(recipe.build_model(), recipe.data(), recipe.make_schedule(), recipe.loss, seed=recipe.seed,
              progress=progress, threads=threads, device=device, checkpoint=checkpoint,
              checkpoint_every=checkpoint_every, resume=resume, dataset_name=recipe.dataset, on_step=on_step,
              **recipe.fit)
    last = res.history[-1] if res.history else {}
    config = {"dataset": recipe.dataset, "schedule": dict(recipe.schedule), "loss": recipe.loss.config,
              "seed": recipe.seed, "step": recipe.steps, "weights": "ema",
              "train": {"recipe": recipe.name, **recipe.fit},
              "last": {k: last[k] for k in ("loss", "simple", "sa") if k in last}}
    return Trained(model=res.ema.eval(), config=config, recipe=recipe, history=res.history, seconds=res.seconds)


def estimate_seconds(recipe: Recipe, *, probe_steps: int = 20, threads: int | None = None, device="cpu") -> float:
    """About how many seconds ``train(recipe)`` takes on this machine at its present load, from ``probe_steps``
    timed updates (``train.estimate_seconds``)."""
    check_type("recipe", recipe, Recipe)
    return training.estimate_seconds(recipe.build_model(), recipe.data(), recipe.make_schedule(), recipe.loss,
                        seed=recipe.seed, probe_steps=probe_steps, threads=threads, device=device, **recipe.fit)


# ---------------------------------------------------------------------- the shipped recipes
SA = Loss("sa", K=2, lam=1.0)
# Input Perturbation (Ning et al., ICML 2023) with the paper's gamma: the second train-side fix beside SA
IP = Loss("ip", gamma=0.1)
# ring8: an MLP 128 x 3, Adam with warm-up and cosine decay; docs/performance.md tells why 8000 updates
RING8 = Recipe("ring8", "ring8", "MLPDenoiser", {"dim": 2, "width": 128, "depth": 3},
               {"steps": 8000, "batch_size": 256, "lr": 2e-3, "warmup": 100, "cosine_decay": True,
                "ema_decay": 0.999, "grad_clip": 1.0})
# new 2-D trainings (`seqdiff train`, notebook 3, the explorer): large batches are cheap on a CPU and their low
# gradient noise beats more, smaller updates (docs/performance.md); the shipped ring8 models keep RING8
RING8_FAST = Recipe("ring8_fast", "ring8", "MLPDenoiser", {"dim": 2, "width": 64, "depth": 3},
                    {"steps": 3000, "batch_size": 2048, "lr": 1e-2, "warmup": 200, "cosine_decay": True,
                     "ema_decay": 0.999, "grad_clip": 1.0})
# the digits: a TinyUNet with a constant lr after warm-up, so that the EMA after N updates is the N-update run
# (scripts/train_digits.py sweeps and exports it)
DIGITS = Recipe("digits", "digits", "TinyUNet", {"channels": 32, "time_dim": 64, "T": 1000},
                {"steps": 6000, "batch_size": 128, "lr": 2e-3, "warmup": 200, "ema_decay": 0.999, "grad_clip": 1.0})
# checkpoint name (in CHECKPOINT_DIR) -> the recipe that made it
SHIPPED = {"ring8_simple": RING8.replace(name="ring8_simple"), "ring8_sa": RING8.replace(name="ring8_sa", loss=SA),
           "ring8_ip": RING8.replace(name="ring8_ip", loss=IP),
           "digits_simple": DIGITS.replace(name="digits_simple"),
           "digits_sa": DIGITS.replace(name="digits_sa", loss=SA)}


def recipe_for(dataset_name: str) -> Recipe:
    """The default recipe of a new training on a dataset: ``DIGITS`` for the digits, ``RING8_FAST``'s MLP and
    settings (its input dimension set to the data's) for every mixture."""
    data = dataset(dataset_name)  # refuses an unknown name
    name = DATASET_ALIASES.get(dataset_name, dataset_name)
    if name == "digits":
        return DIGITS
    return RING8_FAST.replace(name=name, dataset=name,
                              model_args={**RING8_FAST.model_args, "dim": sample_shape(data)[0]})


def load_shipped(name: str, checkpoint_dir=CHECKPOINT_DIR, device="cpu") -> Trained:
    """A shipped network by its checkpoint name (``SHIPPED``), in eval mode (the EMA weights)."""
    check_choice("name", name, SHIPPED)
    path = Path(checkpoint_dir) / name
    if not checkpoint_exists(path):
        st, js = checkpoint_paths(path)
        raise FileNotFoundError(f"shipped checkpoint not found: {str(js)!r} and {str(st)!r} "
                                f"(run scripts/make_checkpoints.py, or `seqdiff demo --retrain`)")
    model, config = load_checkpoint(path, device=device)
    return Trained(model=model, config=config, recipe=SHIPPED[name])


# ---------------------------------------------------------------------- any checkpoint by path
def resolve_checkpoint(path) -> Path:
    """A checkpoint stem from a stem, a ``.json``/``.safetensors`` file or a folder holding ``model.json``."""
    p = Path(path)
    if p.is_dir():
        p = p / "model"
    st, js = checkpoint_paths(p)
    missing = [str(f) for f in (js, st) if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoint not found: {str(path)!r} (missing {', '.join(missing)})")
    return st.with_suffix("")


def load_for_sampling(path, device="cpu") -> Trained:
    """The network of any checkpoint (EMA weights when present) with its config; ``.schedule`` to sample it."""
    stem = resolve_checkpoint(path)
    model, meta = load_checkpoint(stem, device=device)
    if not isinstance(meta.get("schedule"), dict):
        raise ValueError(f"checkpoint {str(path)!r} has no schedule in its config; cannot sample it")
    Schedule.from_config(meta["schedule"])
    return Trained(model=model, config=meta)
