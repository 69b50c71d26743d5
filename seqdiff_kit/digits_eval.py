"""Evaluating diffusion models on the 8x8 digits: samples at a step count, classifier confidence, Frechet tables.

- ``load_digit_model``: the shipped TinyUNet checkpoints ``data/checkpoints/digits_{simple,sa}``.
- ``sample_digits``: ``n`` DDIM/DDPM samples from seeded ``x_T ~ N(0, I)`` at a given number of steps.
- ``confidence_share``: the fraction of images the digit classifier labels with ``max softmax >= threshold``.
- ``real_halves`` / ``frechet_floor``: two disjoint halves of the real digits and their Frechet distance,
  the best score any model can expect at this sample size.
- ``steps_table``: digit Frechet distance and confidence share against the number of sampling steps.
- ``sample_grids`` / ``image_drift``: precomputed grids and per-step distribution drift for the notebook.

Every sampler run starts from ``x_T = randn(n, 1, 8, 8, generator=Generator().manual_seed(seed))``, so two
models evaluated with the same seed start from the same noise (a paired comparison).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ._validate import check_choice, check_float, check_int, check_tensor
from .data import DATA_DIR, digits
from .denoisers import TinyUNet, seeded_model
from .drift import DistributionDrift, distribution_drift
from .samplers import make_noise, sample
from .schedule import Schedule

CHECKPOINT_DIR = DATA_DIR / "checkpoints"
DIGIT_MODELS = ("simple", "sa")
TABLE_STEPS = (5, 10, 20, 50, 100)
IMAGE_SHAPE = (1, 8, 8)
# The shipped recipe (scripts/train_digits.py): constant lr after warm-up, so the N-step EMA is the N-step run.
DIGITS_RECIPE = dict(channels=32, time_dim=64, T=1000, schedule="linear", steps=6000, batch_size=128, lr=2e-3,
                     warmup=200, grad_clip=1.0, ema_decay=0.999, seed=0)


# ---------------------------------------------------------------------- models
def checkpoint_path(name: str) -> Path:
    """The stem of a shipped digits checkpoint: ``data/checkpoints/digits_<name>``."""
    check_choice("name", name, DIGIT_MODELS)
    return CHECKPOINT_DIR / f"digits_{name}"


def load_digit_model(name: str = "simple", device="cpu") -> tuple[nn.Module, Schedule, dict]:
    """``(model in eval mode, schedule, config)`` of a shipped digits checkpoint (EMA weights)."""
    from .checkpoint import load_checkpoint  # lazy: only image users need it

    model, cfg = load_checkpoint(checkpoint_path(name), device=device)
    return model, Schedule.from_config(cfg["schedule"]), cfg


def train_digit_model(loss, *, steps: int = DIGITS_RECIPE["steps"], seed: int = DIGITS_RECIPE["seed"],
                      progress: bool = True, threads: int | None = None, device="cpu"):
    """Train a TinyUNet on all 1797 digits with the shipped recipe (``DIGITS_RECIPE``) and ``loss`` (a
    ``losses.Loss``); returns ``(EMA model in eval mode, schedule, FitResult)``. Minimises
    ``E || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) ||^2`` (+ lam L_sa) with Adam + EMA."""
    from .train import fit  # lazy: train pulls in tqdm and the checkpoint module

    r = DIGITS_RECIPE
    schedule = Schedule.from_name(r["schedule"], r["T"])
    model = seeded_model(TinyUNet, seed, channels=r["channels"], time_dim=r["time_dim"], T=r["T"])
    x, _ = digits()
    res = fit(model, x, schedule, loss, steps=check_int("steps", steps, 1), batch_size=r["batch_size"], lr=r["lr"],
              seed=seed, ema_decay=r["ema_decay"], grad_clip=r["grad_clip"], warmup=r["warmup"],
              progress=progress, threads=threads, device=device, dataset_name="digits8x8")
    return res.ema.eval(), schedule, res


# ---------------------------------------------------------------------- sampling
def digit_noise(n: int, seed: int = 0, device="cpu") -> torch.Tensor:
    """``x_T`` [n, 1, 8, 8]: standard normal draws from ``torch.Generator().manual_seed(seed)`` (on the CPU, so
    every device sees the same numbers)."""
    n = check_int("n", n, 1)
    g = torch.Generator().manual_seed(check_int("seed", seed))
    return torch.randn((n, *IMAGE_SHAPE), generator=g).to(device)


def sample_digits(model, schedule: Schedule, n: int = 1000, steps: int = 50, *, seed: int = 0, eta: float = 0.0,
                  spacing: str = "trailing", clamp: bool = True, batch_size: int = 1000,
                  device="cpu") -> torch.Tensor:
    """``n`` samples [n, 1, 8, 8] after ``steps`` generalized-sampler steps (``eta = 0``: DDIM) from
    ``x_T = digit_noise(n, seed)``; stochastic steps draw ``z`` from ``Generator().manual_seed(seed + 1)``.

    No clipping of ``x0_pred`` inside the sampler; ``clamp`` maps the final images to the pixel range,
    ``clamp(x, -1, 1)``, as any conversion to pixels does. Runs in chunks of ``batch_size`` (memory)."""
    n = check_int("n", n, 1)
    steps = check_int("steps", steps, 1, schedule.T)
    batch_size = check_int("batch_size", batch_size, 1)
    eta = check_float("eta", eta, 0.0, 1.0)
    x_T = digit_noise(n, seed, device)
    noise = None
    if eta > 0:
        noise = make_noise(steps, x_T.shape, torch.Generator().manual_seed(seed + 1), device=device)
    out = []
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        z = noise[:, sl] if noise is not None else None
        traj = sample(model, x_T[sl], schedule, steps, eta=eta, spacing=spacing, noise=z, record_every=steps)
        out.append(traj.final)
    x = torch.cat(out)
    return x.clamp(-1.0, 1.0) if clamp else x


# ---------------------------------------------------------------------- classifier-based scores
@torch.no_grad()
def class_probabilities(images: torch.Tensor, classifier=None, batch_size: int = 1024) -> torch.Tensor:
    """``softmax(classifier(x))`` [N, 10] for images [N, 1, 8, 8] in [-1, 1] (shipped classifier by default)."""
    from .classifier import get_classifier

    check_tensor("images", images, ndim=4, nonempty=True, finite=True)
    if tuple(images.shape[1:]) != IMAGE_SHAPE:
        raise ValueError(f"images must have shape [N, 1, 8, 8], got {tuple(images.shape)}")
    clf = get_classifier(classifier)
    dev = next(clf.parameters()).device
    clf.eval()
    probs = [torch.softmax(clf(chunk.to(dev, torch.float32)), dim=-1) for chunk in images.split(batch_size)]
    return torch.cat(probs).cpu()


def confidence_share(images: torch.Tensor, classifier=None, threshold: float = 0.9) -> float:
    """``(1/N) sum_i 1[max_k softmax(logits(x_i))_k >= threshold]``: the share of images the classifier
    assigns a class with confidence at least ``threshold`` (recognisable digits)."""
    threshold = check_float("threshold", threshold, 0.0, 1.0)
    p = class_probabilities(images, classifier)
    return float((p.max(dim=-1).values >= threshold).double().mean())


def class_counts(images: torch.Tensor, classifier=None) -> torch.Tensor:
    """How many images the classifier assigns to each digit: ``bincount(argmax softmax)`` [10]."""
    p = class_probabilities(images, classifier)
    return torch.bincount(p.argmax(dim=-1), minlength=p.shape[1])


# ---------------------------------------------------------------------- Frechet distance and its floor
def real_halves(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint halves (898 + 899 images) of the 1797 real digits, by a permutation from
    ``Generator().manual_seed(seed)``. The first is the reference of every Frechet distance here."""
    x, _ = digits()
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(check_int("seed", seed)))
    half = x.shape[0] // 2
    return x[perm[:half]], x[perm[half:]]


def frechet_floor(seed: int = 0, classifier=None) -> float:
    """``FD(half B, half A)``: the digit Frechet distance between two disjoint halves of the real digits.

    No model scores reliably below it at this sample size (the estimate's own noise and bias)."""
    from .metrics import digit_frechet_distance

    a, b = real_halves(seed)
    return digit_frechet_distance(b, a, classifier)


@dataclass
class StepsTable:
    """Digit Frechet distance (against real half A) and confidence share per model and step count.

    ``fd[name][j]`` and ``confident[name][j]`` belong to ``steps[j]``; ``floor = FD(half B, half A)``."""

    steps: tuple
    fd: dict = field(default_factory=dict)
    confident: dict = field(default_factory=dict)
    floor: float = float("nan")
    n: int = 0
    seed: int = 0
    eta: float = 0.0

    def as_dict(self) -> dict:
        return {"steps": list(self.steps), "fd": self.fd, "confident": self.confident, "floor": self.floor,
                "n": self.n, "seed": self.seed, "eta": self.eta}

    @classmethod
    def from_dict(cls, d: dict) -> "StepsTable":
        return cls(steps=tuple(d["steps"]), fd=dict(d["fd"]), confident=dict(d["confident"]),
                   floor=float(d["floor"]), n=int(d["n"]), seed=int(d["seed"]), eta=float(d.get("eta", 0.0)))

    def markdown(self) -> str:
        """A Markdown table: one row per step count, FD and confidence share per model, the floor below."""
        names = list(self.fd)
        head = "| steps | " + " | ".join(f"FD {m} | conf>=0.9 {m}" for m in names) + " |"
        rule = "|---:|" + "---:|---:|" * len(names)
        rows = []
        for j, s in enumerate(self.steps):
            cells = " | ".join(f"{self.fd[m][j]:.2f} | {100 * self.confident[m][j]:.1f}%" for m in names)
            rows.append(f"| {s} | {cells} |")
        foot = (f"\nFloor (two disjoint halves of the real digits): FD = {self.floor:.2f}. "
                f"{self.n} samples per cell, seed {self.seed}, eta = {self.eta}.")
        return "\n".join([head, rule, *rows]) + "\n" + foot


def shipped_table(names=DIGIT_MODELS) -> StepsTable:
    """The table measured when the shipped checkpoints were made (1000 samples per cell), read from their JSON
    (``config["evaluation"]``); columns are named after the checkpoints (``simple``, ``sa``)."""
    from .checkpoint import read_checkpoint

    table = None
    for name in names:
        _, cfg = read_checkpoint(checkpoint_path(name))
        ev = StepsTable.from_dict(cfg["evaluation"])
        if table is None:
            table = StepsTable(steps=ev.steps, floor=ev.floor, n=ev.n, seed=ev.seed, eta=ev.eta)
        if ev.steps != table.steps:
            raise ValueError(f"checkpoint {name!r} was evaluated at steps {ev.steps}, others at {table.steps}")
        table.fd[name] = next(iter(ev.fd.values()))
        table.confident[name] = next(iter(ev.confident.values()))
    return table


def _check_models(models) -> None:
    if not isinstance(models, dict) or not models:
        raise TypeError(f"models must be a non-empty dict of name -> model, got {type(models).__name__}")


def steps_table(models: dict, schedule: Schedule, steps=TABLE_STEPS, *, n: int = 1000, seed: int = 0,
                eta: float = 0.0, classifier=None, split_seed: int = 0, device="cpu") -> StepsTable:
    """For each model and step count S: ``x = sample_digits(model, n, S, seed)``, then
    ``FD(x, real half A)`` (``metrics.digit_frechet_distance``) and ``confidence_share(x)``; plus the floor
    ``FD(real half B, real half A)``. All models start from the same ``x_T`` (paired)."""
    from .classifier import get_classifier
    from .metrics import digit_feature_stats, digit_frechet_distance

    _check_models(models)
    steps = tuple(check_int("steps", s, 1, schedule.T) for s in steps)
    clf = get_classifier(classifier, device)
    ref, other = real_halves(split_seed)
    ref_stats = digit_feature_stats(ref, clf)  # the reference of every cell: its features once
    table = StepsTable(steps=steps, n=n, seed=seed, eta=float(eta),
                       floor=digit_frechet_distance(other, classifier=clf, reference_stats=ref_stats))
    for name, model in models.items():
        table.fd[name], table.confident[name] = [], []
        for s in steps:
            x = sample_digits(model, schedule, n, s, seed=seed, eta=eta, device=device)
            table.fd[name].append(digit_frechet_distance(x, classifier=clf, reference_stats=ref_stats))
            table.confident[name].append(confidence_share(x, clf))
    return table


# ---------------------------------------------------------------------- notebook helpers
def sample_grids(models: dict, schedule: Schedule, steps=TABLE_STEPS, *, n: int = 36, seed: int = 0,
                 eta: float = 0.0, device="cpu") -> dict[str, torch.Tensor]:
    """``{name: images [len(steps), n, 1, 8, 8]}``: the same ``x_T`` sampled by every model at every step
    count (a slider over steps then only indexes this array)."""
    _check_models(models)
    return {name: torch.stack([sample_digits(m, schedule, n, s, seed=seed, eta=eta, device=device).cpu()
                               for s in steps]) for name, m in models.items()}


def image_drift(models: dict, schedule: Schedule, steps: int = 20, *, n: int = 256, seed: int = 0,
                eta: float = 0.0, with_mmd: bool = True, n_reference: int | None = None,
                device="cpu") -> dict[str, DistributionDrift]:
    """Per-step distribution drift of each model's ``x_t`` against ``q(x_t)`` of the real digits
    (``drift.distribution_drift``: MMD and ``variance_ratio = sqrt(tr Cov(x_t^model) / tr Cov(q(x_t)))``),
    every model from the same ``x_T = digit_noise(n, seed)`` and the same reference draws (``n_reference``
    real digits per step, default all 1797)."""
    _check_models(models)
    data, _ = digits()
    x_T = digit_noise(n, seed, device)
    return {name: distribution_drift(m, data.to(device), schedule, steps, x_T=x_T, eta=eta, with_mmd=with_mmd,
                                     n_reference=n_reference,
                                     generator=torch.Generator().manual_seed(seed + 2), device=device)
            for name, m in models.items()}
