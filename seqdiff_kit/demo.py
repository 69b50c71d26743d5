"""The demo and the model comparison as library functions (the ``seqdiff`` command and the tests call them).

``run_demo`` loads the two shipped ring8 MLPs (simple loss; SA loss with K = 2, lam = 1), samples them and the
ideal denoiser ``eps*(x, t) = -sqrt(1 - alpha_bar_t) grad log p_t(x)`` with DDIM (eta = 0) at 5, 10, 20, 50 and
100 steps from one shared ``x_T``, scores the samples against fresh data draws, measures how far each learned
path drifts from the ideal one, and writes a standalone HTML report. ``evaluate`` + ``build_report`` do the same
for any set of models (``compare_checkpoints``).

The metrics of a row (``steps`` DDIM steps of one model, ``N`` samples from the shared ``x_T``):

- ``mmd``: unbiased squared MMD to ``N`` fresh data draws with RBF kernels of fixed bandwidths
  ``h = (0.25, 0.5, 1, 2, 4) x median pairwise distance of the data`` (fixed, so rows are comparable);
- ``sw``: sliced 1-Wasserstein distance to the same draws (256 directions from the seed);
- ``loglik``: ``(1/N) sum_i log p(x_i)`` under the true mixture (2-D data);
- ``fd``: Frechet distance of digit-classifier features (digits);
- ``std_ratio``: ``sqrt(tr Cov(samples) / tr Cov(data))`` (< 1 shrinks, > 1 over-disperses).

The ``data`` row scores a second independent data draw the same way: the floor that sampling noise allows.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from ._runtime import set_threads
from ._io import atomic_write
from ._validate import check_float, check_int, check_type
from .checkpoint import checkpoint_exists, checkpoint_paths, load_checkpoint, save_checkpoint
from .data import DATA_DIR, GaussianMixture, PRESETS, digits, preset
from .denoisers import IdealDenoiser, MLPDenoiser, seeded_model
from .drift import PairedTrajectories, StepDrift, paths_drift, trajectory_drift, variance_ratio
from .losses import Loss
from .metrics import MEDIAN_MULTIPLIERS, median_bandwidth, mmd, mean_log_likelihood, sliced_wasserstein
from .samplers import Trajectory, make_noise, sample
from .schedule import Schedule
from .train import DEFAULT_2D, fit

CHECKPOINT_DIR = DATA_DIR / "checkpoints"
DEMO_DATASET = "ring8"
DEMO_STEPS = (5, 10, 20, 50, 100)
DEMO_POINTS = 1000
# name shown in tables -> (shipped checkpoint stem, loss)
DEMO_MODELS = {"simple": ("ring8_simple", Loss("simple")),
               "SA (K=2, lam=1)": ("ring8_sa", Loss("sa", K=2, lam=1.0))}
DATASETS = tuple(sorted(PRESETS)) + ("digits",)
IDEAL = "ideal"
DATA_ROW = "data (own)"
# The evaluation's tensors are small (1000 x 128 activations, 1000 x 1000 kernels): a second thread gains little,
# and on a busy 2-core machine two threads made the demo 10x slower (177 s against 16 s, measured). So the
# evaluation uses one thread whatever SEQDIFF_THREADS says, unless a thread count is passed explicitly.
EVAL_THREADS = 1


# ---------------------------------------------------------------------- models
def _model_args() -> dict:
    return {"dim": 2, "width": DEFAULT_2D["width"], "depth": DEFAULT_2D["depth"]}


def _train_kwargs(recipe: dict) -> dict:
    """The keyword arguments of ``train.fit`` in a recipe (the rest are model arguments)."""
    keys = ("steps", "batch_size", "lr", "warmup", "cosine_decay", "ema_decay", "grad_clip")
    return {k: recipe[k] for k in keys if k in recipe}


def train_demo_model(loss: Loss, *, seed: int = 0, steps: int | None = None, progress: bool = True,
                     threads: int | None = None, dataset: str = DEMO_DATASET) -> tuple[nn.Module, dict]:
    """Train one 2-D MLP with the ``DEFAULT_2D`` recipe on a preset and return ``(EMA model, config)``.

    ``config`` is the checkpoint JSON (dataset, schedule, loss, seed, step, recipe, final loss)."""
    if not isinstance(loss, Loss):
        raise TypeError(f"loss must be a seqdiff_kit.losses.Loss, got {type(loss).__name__}")
    recipe = dict(DEFAULT_2D)
    if steps is not None:
        recipe["steps"] = check_int("steps", steps, 1)
    mixture, schedule = preset(dataset), Schedule.linear()
    model = seeded_model(MLPDenoiser, seed, **_model_args())
    res = fit(model, mixture, schedule, loss, seed=seed, progress=progress, threads=threads, **_train_kwargs(recipe))
    last = res.history[-1]
    config = {"dataset": dataset, "schedule": schedule.config(), "loss": loss.config, "seed": seed,
              "step": recipe["steps"], "weights": "ema", "train": {"recipe": "DEFAULT_2D", **recipe},
              "last": {k: last[k] for k in ("loss", "simple", "sa")}}  # no wall time: the files stay reproducible
    return res.ema.eval(), config


def load_demo_models(checkpoint_dir=CHECKPOINT_DIR, device="cpu") -> dict[str, nn.Module]:
    """The shipped demo models by display name (``DEMO_MODELS``), in eval mode."""
    out = {}
    for name, (stem, _) in DEMO_MODELS.items():
        path = Path(checkpoint_dir) / stem
        if not checkpoint_exists(path):
            st, js = checkpoint_paths(path)
            raise FileNotFoundError(f"shipped checkpoint not found: {str(js)!r} and {str(st)!r} "
                                    f"(run scripts/make_checkpoints.py, or `seqdiff demo --retrain`)")
        out[name], _ = load_checkpoint(path, device=device)
    return out


def resolve_checkpoint(path) -> Path:
    """A checkpoint stem from a stem, a ``.json``/``.safetensors`` file or a folder holding ``model.json``."""
    p = Path(path)
    if p.is_dir():
        p = p / "model"
    st, js = checkpoint_paths(p)
    if not js.is_file() or not st.is_file():
        missing = [str(f) for f in (js, st) if not f.is_file()]
        raise FileNotFoundError(f"checkpoint not found: {str(path)!r} (missing {', '.join(missing)})")
    return st.with_suffix("")


def load_for_sampling(path, device="cpu") -> tuple[nn.Module, dict, Schedule]:
    """``(model, config, schedule)`` of a checkpoint (EMA weights when present)."""
    stem = resolve_checkpoint(path)
    model, meta = load_checkpoint(stem, device=device)
    if not isinstance(meta.get("schedule"), dict):
        raise ValueError(f"checkpoint {str(path)!r} has no schedule in its config; cannot sample it")
    return model, meta, Schedule.from_config(meta["schedule"])


def dataset_for(name: str):
    """The data of a dataset name: a ``GaussianMixture`` preset, or the digits tensor [1797, 1, 8, 8]."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {list(DATASETS)}, got {name!r}")
    return digits()[0] if name == "digits" else preset(name)


def sample_shape(data) -> tuple[int, ...]:
    return (data.dim,) if isinstance(data, GaussianMixture) else tuple(data.shape[1:])


# ---------------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    """Everything ``evaluate`` measured.

    ``rows``: one dict per (model, steps) plus the ``data`` row (the table). ``trajectories[name][steps]``:
    the sampled paths (``x`` [steps+1, N, ...]). ``reference``: the data draw every row is scored against;
    ``own``: a second data draw (the data row); ``bandwidths``: the MMD kernel widths used throughout.
    ``drift[name][steps]``: ``StepDrift`` against the ideal path (2-D only). ``std_ratio[name][steps]``: the
    per-step ``sqrt(tr Cov(x_t) / tr Cov(q(x_t)))`` [steps+1].
    """

    dataset: str
    data: object
    schedule: Schedule
    steps: tuple
    x_T: torch.Tensor
    reference: torch.Tensor
    own: torch.Tensor
    bandwidths: list
    rows: list
    trajectories: dict
    drift: dict = field(default_factory=dict)
    std_ratio: dict = field(default_factory=dict)
    drift_steps: tuple = ()
    slider_steps: int | None = None
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def names(self) -> list[str]:
        return list(self.trajectories)

    def samples(self, name: str, steps: int) -> torch.Tensor:
        return self.trajectories[name][steps].final

    def column(self, name: str, metric: str) -> list[float]:
        """A metric of one model across ``steps`` (in order)."""
        by = {r["steps"]: r[metric] for r in self.rows if r["model"] == name}
        return [by[s] for s in self.steps]

    def data_row(self) -> dict:
        return next(r for r in self.rows if r["model"] == DATA_ROW)


def _check_steps(steps, T: int) -> tuple[int, ...]:
    if isinstance(steps, (int,)) and not isinstance(steps, bool):
        steps = (steps,)
    out = tuple(check_int("steps", s, 1, T) for s in steps)
    if not out:
        raise ValueError("steps must hold at least one step count, got an empty list")
    return tuple(sorted(set(out)))


def _score(x: torch.Tensor, ref: torch.Tensor, data, bandwidths, seed: int, ref_stats=None) -> dict:
    """The table's metrics of samples ``x`` against reference draws ``ref`` (see the module docstring);
    ``ref_stats``: the digit-feature statistics of ``ref``, computed once per evaluation."""
    row = {"mmd": mmd(x, ref, bandwidths),
           "sw": sliced_wasserstein(x, ref, generator=torch.Generator().manual_seed(seed))}
    if isinstance(data, GaussianMixture):
        row["loglik"] = mean_log_likelihood(x, data)
    else:
        from .metrics import digit_frechet_distance
        row["fd"] = digit_frechet_distance(x, reference_stats=ref_stats)
    row["std_ratio"] = variance_ratio(x, ref)
    return row


def evaluate(models: Mapping[str, Callable], data, schedule: Schedule, steps: Sequence[int] = DEMO_STEPS, *,
             n_points: int = DEMO_POINTS, seed: int = 0, ideal: bool = True, eta: float = 0.0,
             spacing: str = "trailing", drift_steps: Sequence[int] | None = None,
             slider_steps: int | None = None, dataset: str | None = None, log: Callable | None = None,
             device="cpu") -> Evaluation:
    """Sample every model from one shared ``x_T ~ N(0, I)`` [n_points, ...] at each step count and score them.

    ``data``: a 2-D ``GaussianMixture`` (adds the ideal denoiser when ``ideal``; scores MMD, sliced W,
    log-likelihood) or clean images [M, 1, 8, 8] (MMD, sliced W, digit Frechet distance; no ideal path).
    With ``eta > 0`` all models share the per-step noise of each step count. ``drift_steps`` (default: the
    smallest and the largest step count) get the per-step drift against the ideal path and the per-step
    spread ratio. Randomness, in order, from ``seed``: ``x_T``, reference draws, the data row's draws, noise."""
    n_points = check_int("n_points", n_points, 2)
    seed = check_int("seed", seed)
    eta = check_float("eta", eta, 0.0, 1.0)
    check_type("schedule", schedule, Schedule)
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty dict of name -> model")
    steps = _check_steps(steps, schedule.T)
    drift_steps = (steps[0], steps[-1]) if drift_steps is None else _check_steps(drift_steps, schedule.T)
    slider_steps = (20 if 20 in steps else steps[len(steps) // 2]) if slider_steps is None else slider_steps
    missing = sorted(set(drift_steps) - set(steps)) + ([slider_steps] if slider_steps not in steps else [])
    if missing:
        raise ValueError(f"drift_steps and slider_steps must be among steps {list(steps)}, got {missing}")
    is_mixture = isinstance(data, GaussianMixture)
    if not is_mixture and not isinstance(data, torch.Tensor):
        raise TypeError(f"data must be a GaussianMixture or a tensor of clean samples, got {type(data).__name__}")
    say = log or (lambda msg: None)
    t0 = time.perf_counter()

    gen = torch.Generator().manual_seed(seed)
    shape = sample_shape(data)
    x_T = torch.randn((n_points, *shape), generator=gen).to(device)
    if is_mixture:
        ref = data.sample(n_points, generator=gen)
        own = data.sample(n_points, generator=gen)
    else:  # two disjoint halves of the real images: the reference and the data row's own draw
        perm = torch.randperm(data.shape[0], generator=gen)
        half = data.shape[0] // 2
        ref, own = data[perm[:half]], data[perm[half:2 * half]]
    ref, own = ref.to(device), own.to(device)
    # fixed bandwidths from the data alone: every row is scored with the same kernel
    h0 = median_bandwidth(ref, own)
    bandwidths = [m * h0 for m in MEDIAN_MULTIPLIERS]

    all_models = dict(models)
    if ideal and is_mixture:
        all_models[IDEAL] = IdealDenoiser(data, schedule)
    ref_stats = None
    if not is_mixture:  # the reference's classifier features are the same for every row
        from .metrics import digit_feature_stats
        ref_stats = digit_feature_stats(ref)
    rows = [{"model": DATA_ROW, "steps": 0, **_score(own, ref, data, bandwidths, seed, ref_stats)}]
    trajectories: dict[str, dict[int, Trajectory]] = {n: {} for n in all_models}
    noises = {s: (make_noise(s, x_T.shape, gen, device=device) if eta > 0 else None) for s in steps}
    for s in steps:
        for name, model in all_models.items():
            tr = sample(model, x_T, schedule, s, eta=eta, spacing=spacing, noise=noises[s])
            trajectories[name][s] = tr
            rows.append({"model": name, "steps": s, **_score(tr.final, ref, data, bandwidths, seed, ref_stats)})
        say(f"sampled {len(all_models)} models at {s} steps")

    drift: dict[str, dict[int, StepDrift]] = {}
    std_ratio: dict[str, dict[int, torch.Tensor]] = {}
    for s in drift_steps:  # from the paths sampled above (same x_T, same noise): nothing is sampled again
        for name, model in all_models.items():
            if is_mixture and IDEAL in all_models and name != IDEAL:
                paths = PairedTrajectories(trajectories[name][s], trajectories[IDEAL][s], noises[s])
                drift.setdefault(name, {})[s] = paths_drift(model, paths, schedule, eta=eta)
            dd = trajectory_drift(trajectories[name][s], data if is_mixture else data.to(device), schedule,
                                  with_mmd=False)
            std_ratio.setdefault(name, {})[s] = dd.variance_ratio
    settings = {"dataset": dataset or getattr(data, "name", "data"), "models": ", ".join(all_models),
                "sampler": f"DDIM (eta={eta})" if eta == 0 else f"generalized DDIM (eta={eta})",
                "timestep spacing": spacing, "steps": ", ".join(map(str, steps)), "points": n_points,
                "seed": seed, "schedule": f"{schedule.name}, T={schedule.T}",
                "MMD bandwidths": ", ".join(f"{b:.3g}" for b in bandwidths),
                "drift steps": ", ".join(map(str, drift_steps)), "slider steps": slider_steps}
    return Evaluation(dataset=settings["dataset"], data=data, schedule=schedule, steps=steps, x_T=x_T,
                      reference=ref, own=own, bandwidths=bandwidths, rows=rows,
                      trajectories=trajectories, drift=drift, std_ratio=std_ratio, drift_steps=drift_steps,
                      slider_steps=slider_steps, settings=settings, seconds=time.perf_counter() - t0)


# ---------------------------------------------------------------------- tables
COLUMN_TITLES = {"model": "model", "steps": "steps", "mmd": "MMD^2", "sw": "sliced W1", "loglik": "log-lik",
                 "fd": "digit FD", "std_ratio": "std ratio"}


def table_columns(rows: Sequence[dict]) -> list[str]:
    return [c for c in COLUMN_TITLES if any(c in r for r in rows)]


def format_number(v) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return str(v)
    return f"{v:.4g}" if math.isfinite(v) else str(v)


def display_rows(rows: Sequence[dict]) -> list[dict]:
    """Rows keyed by the column titles (numbers kept as numbers; the data row's steps shown as "-").
    The report formats numbers with 4 significant digits, as ``format_table`` does."""
    cols = table_columns(rows)
    out = []
    for r in rows:
        d = {COLUMN_TITLES[c]: r[c] for c in cols}
        if r["model"] == DATA_ROW:
            d["steps"] = "-"
        out.append(d)
    return out


def format_table(rows: Sequence[dict]) -> str:
    """A plain-text table (fixed-width columns, numbers to 4 significant digits) of ``rows``."""
    shown = [{k: format_number(v) for k, v in r.items()} for r in display_rows(rows)]
    heads = list(shown[0]) if shown else []
    widths = [max(len(h), *(len(r[h]) for r in shown)) for h in heads]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    out = [line(heads), line(["-" * w for w in widths])]
    out += [line([r[h] for h in heads]) for r in shown]
    return "\n".join(out)


def write_metrics_json(path, evaluation: Evaluation) -> Path:
    return atomic_write(path, json.dumps({"rows": evaluation.rows, "settings": evaluation.settings}, indent=2,
                                         default=str) + "\n")


# ---------------------------------------------------------------------- the report
def build_report(evaluation: Evaluation, path, *, title: str = "seqdiff_kit comparison",
                 subtitle: str | None = None, intro: str | None = None, extra_settings: Mapping | None = None):
    """Write the HTML report of an ``Evaluation``: samples on the data density, sampling paths with a slider
    over the step, drift and spread per step, metrics versus the number of steps, the table, the settings."""
    from .report import Section, write_report  # plotly lives in the report layer only
    from .viz import curves_figure, density_figure, image_grid_figure, trajectory_slider_figure

    ev = evaluation
    is_mixture = isinstance(ev.data, GaussianMixture)
    names = ev.names
    learned = [n for n in names if n != IDEAL]
    sections = []
    if intro:
        sections.append(Section("What this shows", intro))

    few, many = ev.steps[0], ev.steps[-1]
    if is_mixture and ev.data.dim == 2:
        figs = [density_figure(ev.data, {f"{n}": ev.samples(n, s) for n in names}, max_points=1000,
                               title=f"{s} DDIM steps: samples on the exact data density", marker_size=3.5)
                for s in sorted({few, many})]
        sections.append(Section(
            "Data and samples",
            f"The grey background is the exact log-density of {ev.dataset}. Each cloud is {ev.x_T.shape[0]} samples "
            f"from the same x_T, with the fewest ({few}) and the most ({many}) sampling steps.", figure=figs))
        k = ev.slider_steps
        sections.append(Section(
            "Sampling paths",
            f"The learned and the ideal paths at {k} steps from the same x_T. Drag the slider over the sampling "
            f"step (or press play): the background is the exact noised marginal p_t at that step, which the cloud "
            f"should match.",
            figure=trajectory_slider_figure({n: ev.trajectories[n][k] for n in names}, max_points=300,
                                            mixture=ev.data, schedule=ev.schedule,
                                            title=f"Sampling paths, {k} DDIM steps")))
    else:
        figs = [image_grid_figure(ev.samples(n, s)[:32], nrow=8, title=f"{n}, {s} steps")
                for s in sorted({few, many}) for n in names]
        sections.append(Section("Samples", f"The first 32 samples of each model from the same x_T, "
                                           f"at {few} and {many} steps.", figure=figs))

    if ev.drift:
        figs = []
        for s in ev.drift_steps:
            curves = {n: ev.drift[n][s].mean("drift") for n in learned if n in ev.drift}
            bands = {n: (ev.drift[n][s].quantile("drift")[:, 0], ev.drift[n][s].quantile("drift")[:, -1])
                     for n in curves}
            x = list(range(1, s + 1))
            fig = curves_figure(x, curves, title=f"Distance from the ideal path, {s} steps",
                                xlabel="sampling step", ylabel="mean ||x_learned - x_ideal||", bands=bands)
            # plotly gives short traces markers by default: keep the quantile bands as plain shaded areas
            fig.update_traces(mode="lines", selector=dict(fill="toself"))
            figs.append(fig)
        sections.append(Section(
            "Drift from the ideal path",
            "After every step: the distance between a learned path and the ideal path started from the same x_T "
            "(mean over points; the band spans the 10% to 90% quantiles). The last step's value is the distance "
            "between the final samples.", figure=figs))
    if ev.std_ratio:
        figs = []
        for s in ev.drift_steps:
            curves = {n: ev.std_ratio[n][s] for n in names if s in ev.std_ratio.get(n, {})}
            figs.append(curves_figure(list(range(0, s + 1)), curves, title=f"Spread relative to q(x_t), {s} steps",
                                      xlabel="sampling step (0 = x_T)", ylabel="std ratio", reference=1.0))
        sections.append(Section(
            "Spread: variance ratio per step",
            "sqrt(tr Cov(x_t) / tr Cov(q(x_t))) after every step: 1 is right, below 1 the sampler shrinks the "
            "distribution, above 1 it over-disperses it.", figure=figs))

    metric_specs = [("mmd", "MMD^2 to the data (lower is better)", True),
                    ("sw", "sliced Wasserstein to the data (lower is better)", True)]
    metric_specs.append(("loglik", "mean log-likelihood (higher is better)", False) if is_mixture
                        else ("fd", "digit Frechet distance (lower is better)", True))
    data_row = ev.data_row()
    figs = []
    for key, label, log_y in metric_specs:
        curves = {n: ev.column(n, key) for n in names}
        # an unbiased MMD can be slightly negative: then a log axis would lie, so fall back to a linear one
        log_y = log_y and all(v > 0 for c in curves.values() for v in c)
        ref = data_row[key] if (not log_y or data_row[key] > 0) else None
        figs.append(curves_figure(list(ev.steps), curves, title=label, xlabel="DDIM steps", ylabel=key,
                                  log_x=True, log_y=log_y, reference=ref))
    sections.append(Section("Metrics versus the number of steps",
                            "Each metric against the number of sampling steps; the dashed line is the data's own "
                            "score (a second draw of the data, scored the same way).", figure=figs))
    sections.append(Section("Table", "Every row scores N samples against N fresh data draws; `data (own)` is a "
                                     "second data draw (the floor of each metric).", table=display_rows(ev.rows)))
    settings = dict(ev.settings)
    settings.update(extra_settings or {})
    settings["evaluation seconds"] = round(ev.seconds, 1)
    return write_report(path, sections, title=title, subtitle=subtitle, settings=settings)


DEMO_INTRO = (
    "Two small MLPs learned the eight-mode ring: one with the simple loss, one with the paper's sequence-aware "
    "(SA) loss (K = 2, lam = 1). Both, and the ideal denoiser of the true mixture (which no network can beat), "
    "sample from the same starting noise with 5 to 100 deterministic DDIM steps.\n\n"
    "What to look for: with few steps every sampler, the ideal one included, shrinks the distribution towards "
    "the centre (a std ratio below 1); the SA model counters part of that shrinkage and scores better there. With "
    "many deterministic steps the SA model over-disperses (a std ratio above 1) and falls behind the simple one; "
    "the table shows where the two cross for these two models and this seed. The drift curves show how the "
    "distance from the ideal path builds up step by step.")


@dataclass
class DemoResult:
    evaluation: Evaluation
    report: Path
    metrics: Path
    table: str
    seconds: float


def _publish(ev: Evaluation, out: Path, say: Callable[[str], None], t0: float | None, **report_args) -> DemoResult:
    """Print the table, write ``out/report.html`` (``build_report(ev, ..., **report_args)``) and
    ``out/metrics.json``. ``t0``: the job's start (``perf_counter``) to time it; ``None`` reports the evaluation's
    seconds and prints no time."""
    table = format_table(ev.rows)
    say(table)
    report = build_report(ev, out / "report.html", **report_args)
    metrics = write_metrics_json(out / "metrics.json", ev)
    seconds = ev.seconds if t0 is None else time.perf_counter() - t0
    say(f"wrote {report} and {metrics}" + ("" if t0 is None else f" in {seconds:.1f} s"))
    return DemoResult(evaluation=ev, report=report, metrics=metrics, table=table, seconds=seconds)


def run_demo(out="runs/demo", *, retrain: bool = False, points: int = DEMO_POINTS, seed: int = 0,
             progress: bool = True, train_steps: int | None = None, checkpoint_dir=CHECKPOINT_DIR,
             threads: int | None = None, echo: Callable[[str], None] | None = print) -> DemoResult:
    """The ``seqdiff demo`` job: models (shipped, or retrained with ``retrain``; then saved to ``out/checkpoints``),
    ``evaluate`` on ring8 at ``DEMO_STEPS``, a printed table, ``out/report.html`` and ``out/metrics.json``.
    ``threads``: torch's thread count (``None``: ``EVAL_THREADS`` to evaluate, ``SEQDIFF_THREADS`` or 1 to train)."""
    t0 = time.perf_counter()
    points = check_int("points", points, 2)
    seed = check_int("seed", seed)
    say = echo or (lambda msg: None)
    out = Path(out)
    if retrain:
        models = {}
        for name, (stem, loss) in DEMO_MODELS.items():
            say(f"training {name} ({loss!r}) from scratch")
            model, config = train_demo_model(loss, seed=seed, steps=train_steps, progress=progress, threads=threads)
            save_checkpoint(out / "checkpoints" / stem, model, config)  # the EMA weights only: small files
            models[name] = model
        source = f"retrained (seed {seed}), saved in {out / 'checkpoints'}"
    else:
        models = load_demo_models(checkpoint_dir)
        source = f"shipped checkpoints in {checkpoint_dir}"
    set_threads(threads or EVAL_THREADS)  # deliberate: oversubscribing a busy 2-core machine slows everything badly
    mixture, schedule = preset(DEMO_DATASET), Schedule.linear()
    ev = evaluate(models, mixture, schedule, DEMO_STEPS, n_points=points, seed=seed, dataset=DEMO_DATASET,
                  log=say if progress else None)
    return _publish(ev, out, say, t0, title="seqdiff demo: simple versus sequence-aware loss on ring8",
                    subtitle="Nguyen et al., On Inference Stability for Diffusion Models (AAAI 2024)",
                    intro=DEMO_INTRO, extra_settings={"models from": source,
                                                      "torch threads": torch.get_num_threads()})


def compare_checkpoints(paths: Sequence, steps: Sequence[int] = DEMO_STEPS, out="runs/compare", *,
                        points: int = 1000, seed: int = 0, eta: float = 0.0, threads: int | None = EVAL_THREADS,
                        echo: Callable | None = print):
    """Compare checkpoints of one dataset: ``evaluate`` them (plus the ideal path on 2-D data), print the table,
    write ``out/report.html`` and ``out/metrics.json``. Names are the checkpoint stems (made unique)."""
    if isinstance(paths, (str, Path)) or len(paths) < 1:
        raise ValueError(f"paths must be a list of at least one checkpoint, got {paths!r}")
    say = echo or (lambda msg: None)
    set_threads(threads)
    models, datasets, schedules = {}, set(), []
    for p in paths:
        model, meta, schedule = load_for_sampling(p)
        loss = meta.get("loss", {})
        label = resolve_checkpoint(p).name
        if isinstance(loss, dict) and loss.get("name") == "sa":
            label += f" [SA K={loss.get('K')}, lam={loss.get('lam')}]"
        elif isinstance(loss, dict) and loss.get("name") == "simple":
            label += " [simple]"
        base, k = label, 2
        while label in models:
            label, k = f"{base} #{k}", k + 1
        models[label] = model
        datasets.add(meta.get("dataset"))
        schedules.append(schedule)
    if len(datasets) != 1:
        raise ValueError(f"checkpoints must all be trained on one dataset to be compared, "
                         f"got {sorted(map(str, datasets))}")
    dataset = datasets.pop()
    if any(s.config() != schedules[0].config() for s in schedules[1:]):
        raise ValueError("checkpoints must share one noise schedule to be compared from the same x_T")
    data = dataset_for(dataset)
    ev = evaluate(models, data, schedules[0], steps, n_points=points, seed=seed, eta=eta, dataset=dataset)
    return _publish(ev, Path(out), say, None, title=f"seqdiff compare: {dataset}",
                    extra_settings={"checkpoints": ", ".join(map(str, paths))})
