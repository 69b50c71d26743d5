"""The demo and the comparison jobs (``seqdiff demo`` and ``seqdiff compare``): load or train the models,
``evaluate`` them, print the table, write ``report.html`` and ``metrics.json``.

``run_demo`` samples the two shipped ring8 MLPs (simple loss; SA loss with K = 2, lam = 1) and the ideal denoiser
with DDIM at ``DEMO_STEPS`` from one shared ``x_T``; ``compare_checkpoints`` does the same for any checkpoints of
one dataset.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from ._runtime import set_threads
from ._validate import check_int
from .checkpoint import save_checkpoint
from .data import CHECKPOINT_DIR, GaussianMixture, dataset, preset
from .evaluate import (COLUMN_TITLES, DEFAULT_STEPS, IDEAL, Evaluation, display_rows, evaluate, format_table,
                       write_metrics_json)
from .recipes import SHIPPED, load_for_sampling, load_shipped, resolve_checkpoint, train

DEMO_DATASET = "ring8"
DEMO_STEPS = DEFAULT_STEPS
DEMO_POINTS = 1000
# name shown in tables -> shipped checkpoint (recipes.SHIPPED)
DEMO_MODELS = {"simple": "ring8_simple", "SA (K=2, lam=1)": "ring8_sa"}
# the evaluation uses one torch thread unless told otherwise (docs/performance.md)
EVAL_THREADS = 1


# ---------------------------------------------------------------------- the report
def _sample_sections(ev: Evaluation, Section) -> list:
    """The report's samples: on the data density and along the paths (2-D), or as image grids."""
    # figure specs (plain dicts): the report writes them without plotly's validated objects
    from .viz import density_spec, image_grid_figure, trajectory_slider_spec

    few, many, k = ev.steps[0], ev.steps[-1], ev.slider_steps
    if not isinstance(ev.data, GaussianMixture):
        figs = [image_grid_figure(ev.samples(n, s)[:32], nrow=8, title=f"{n}, {s} steps")
                for s in sorted({few, many}) for n in ev.names]
        return [Section("Samples", f"The first 32 samples of each model from the same x_T, at {few} and {many} "
                                   f"steps.", figure=figs)]
    if ev.data.dim != 2:  # a 1-D mixture's samples show in the curves
        return []
    figs = [density_spec(ev.data, {n: ev.samples(n, s) for n in ev.names}, max_points=1000,
                         title=f"{s} DDIM steps: samples on the exact data density", marker_size=3.5)
            for s in sorted({few, many})]
    slider = trajectory_slider_spec({n: ev.trajectories[n][k] for n in ev.names}, max_points=300, mixture=ev.data,
                                    schedule=ev.schedule, title=f"Sampling paths, {k} DDIM steps")
    return [Section("Data and samples", f"The grey background is the exact log-density of {ev.dataset}. Each cloud "
                    f"is {ev.x_T.shape[0]} samples from the same x_T, with the fewest ({few}) and the most ({many}) "
                    f"sampling steps.", figure=figs),
            Section("Sampling paths", f"The learned and the ideal paths at {k} steps from the same x_T. Drag the "
                    f"slider over the sampling step (or press play): the background is the exact noised marginal p_t "
                    f"at that step, which the cloud should match.", figure=slider)]


def _drift_figures(ev: Evaluation, curves_spec) -> list:
    figs = []
    for s in ev.drift_steps:
        curves = {n: by[s].mean("drift") for n, by in ev.drift.items()}
        quantiles = {n: ev.drift[n][s].quantile("drift") for n in curves}
        bands = {n: (q[:, 0], q[:, -1]) for n, q in quantiles.items()}
        fig = curves_spec(list(range(1, s + 1)), curves, title=f"Distance from the ideal path, {s} steps",
                          xlabel="sampling step", ylabel="mean ||x_learned - x_ideal||", bands=bands)
        # plotly gives short traces markers by default: keep the quantile bands as plain shaded areas
        for trace in fig["data"]:
            if trace.get("fill") == "toself":
                trace["mode"] = "lines"
        figs.append(fig)
    return figs


def _curve_sections(ev: Evaluation, Section) -> list:
    """The report's curves: drift from the ideal path and spread per step, each metric against the steps."""
    from .viz import curves_spec

    sections = []
    if ev.drift:
        sections.append(Section(
            "Drift from the ideal path",
            "After every step: the distance between a learned path and the ideal path started from the same x_T "
            "(mean over points; the band spans the 10% to 90% quantiles). The last step's value is the distance "
            "between the final samples.", figure=_drift_figures(ev, curves_spec)))
    sections += _reference_sections(ev, Section, curves_spec)
    if ev.std_ratio:
        figs = [curves_spec(list(range(0, s + 1)), {n: ev.std_ratio[n][s] for n in ev.names
                                                     if s in ev.std_ratio.get(n, {})},
                            title=f"Spread relative to q(x_t), {s} steps", xlabel="sampling step (0 = x_T)",
                            ylabel="std ratio", reference=1.0) for s in ev.drift_steps]
        sections.append(Section(
            "Spread: variance ratio per step",
            "sqrt(tr Cov(x_t) / tr Cov(q(x_t))) after every step: 1 is right, below 1 the sampler shrinks the "
            "distribution, above 1 it over-disperses it.", figure=figs))
    gap = ("loglik_gap", "log-likelihood gap to the data (0 is right; above 0: too tight, below: too diffuse)", False)
    specs = [("mmd", "MMD^2 to the data (lower is better)", True),
             ("sw", "sliced Wasserstein to the data (lower is better)", True),
             gap if isinstance(ev.data, GaussianMixture) else ("fd", "digit Frechet distance (lower is better)", True)]
    own, figs = ev.data_row(), []
    for key, label, log_y in specs:
        curves = {n: ev.column(n, key) for n in ev.names}
        # an unbiased MMD can be slightly negative: then a log axis would lie, so fall back to a linear one
        log_y = log_y and all(v > 0 for c in curves.values() for v in c)
        ref = own[key] if (not log_y or own[key] > 0) else None
        if ref is None:  # a log axis cannot draw the data's own score: the title gives it
            label += f" (the data's own: {own[key]:.2g}, not drawable on a log axis)"
        figs.append(curves_spec(list(ev.steps), curves, title=label, xlabel="DDIM steps", ylabel=COLUMN_TITLES[key],
                                log_x=True, log_y=log_y, reference=ref))
    sections.append(Section("Metrics versus the number of steps",
                            "Each metric against the number of sampling steps; the dashed line is the data's own "
                            "score (a second draw of the data, scored the same way). Where that score is 0 or "
                            "below, a log axis cannot draw it: the chart's title gives it instead.", figure=figs))
    return sections


def _reference_sections(ev: Evaluation, Section, curves_spec) -> list:
    """The two references (issue 23): each learned run's distance from the exact probability-flow path (the total
    error) after every step, beside the ideal run's own (its discretisation error), and the final distances."""
    if not ev.references:
        return []
    figs = []
    for s in ev.drift_steps:
        curves = {n: by[s].mean("total") for n, by in ev.references.items()}
        curves[f"{IDEAL} (its discretisation error)"] = next(iter(ev.references.values()))[s].mean("discretisation")
        figs.append(curves_spec(list(range(0, s + 1)), curves, title=f"Distance from the exact flow, {s} steps",
                                xlabel="sampling step (0 = x_T)", ylabel="mean ||x - x_flow||",
                                markers=s <= 20))  # a marker per step hides the curves of long runs
    table = [{"model": r["model"], "steps": r["steps"], "to the ideal run (estimation)": r["estimation"],
              "to the exact flow (total)": r["total"], "ideal run to the flow (discretisation)": r["discretisation"],
              "cross term": r["cross"]} for r in ev.reference_rows()]
    return [Section(
        "Two references: the ideal path and the exact flow",
        "The drift above is measured against the ideal denoiser's run with the same steps: what the network gets "
        "wrong (the estimation error). What the samples should reach is the end of the exact probability-flow path "
        "from the same x_T: the distance to it is the total error. The ideal run misses it too, by the sampler's "
        "own discretisation error. Per point total^2 = estimation^2 + discretisation^2 + 2 cross: a negative cross "
        "term means the network's error points against the sampler's and cancels part of it, so a model can be "
        "farther from the ideal path and yet closer to the flow. Below: the mean distances of the final samples.",
        figure=figs, table=table)]


def build_report(evaluation: Evaluation, path, *, title: str = "seqdiff_kit comparison",
                 subtitle: str | None = None, intro: str | None = None, extra_settings: Mapping | None = None):
    """Write the HTML report of an ``Evaluation``: samples on the data density, sampling paths with a slider
    over the step, drift and spread per step, metrics versus the number of steps, the table, the settings."""
    from .report import Section, write_report  # plotly lives in the report layer only

    ev = evaluation
    sections = [Section("What this shows", intro)] if intro else []
    sections += _sample_sections(ev, Section) + _curve_sections(ev, Section)
    sections.append(Section("Table", "Every row scores N samples against N fresh data draws; `data (own)` is a "
                                     "second data draw (the floor of each metric).", table=display_rows(ev.rows)))
    sections.append(Section(
        "Reading the numbers", "Each metric of this report, its target and how to read it (every metric of the "
        "project: docs/glossary.md, beside the lessons).",
        table=[{"metric": COLUMN_TITLES[c], "target": target, "reading": reading}
               for c, (target, reading) in READINGS.items() if any(c in r for r in ev.rows)]))
    settings = {**ev.settings, **(extra_settings or {}), "evaluation seconds": round(ev.seconds, 1)}
    return write_report(path, sections, title=title, subtitle=subtitle, settings=settings)


# the report's own short glossary (docs/glossary.md has every metric of the project): target, reading
READINGS = {
    "mmd": ("0 (the data's own level)", "unbiased squared MMD to fresh data: lower is closer; about 0 and possibly "
            "slightly negative for data against data"),
    "sw": ("the data's own level", "sliced 1-Wasserstein distance to fresh data: lower is closer"),
    "loglik": ("the data's own value", "mean log-density under the true mixture: not higher-is-better, samples "
               "too tight on the modes score above the data"),
    "loglik_gap": ("0", "log-lik minus the data's: above 0 too tight, below 0 too diffuse"),
    "fd": ("the data's own level (two halves of the real digits)", "Frechet distance of classifier features: "
           "lower is closer"),
    "confident": ("that of real digits", "share of samples the classifier labels with probability >= 0.9"),
    "std_ratio": ("1", "spread of the samples over that of the data: below 1 shrinks, above 1 over-disperses"),
}


DEMO_INTRO = (
    "Two small MLPs learned the eight-mode ring: one with the simple loss, one with the paper's sequence-aware "
    "(SA) loss (K = 2, lam = 1). Both, and the ideal denoiser of the true mixture (which no network can beat), "
    "sample from the same starting noise with 5 to 100 deterministic DDIM steps.\n\n"
    "What to look for: with few steps every sampler, the ideal one included, shrinks the distribution towards "
    "the centre (a std ratio below 1); the SA model counters part of that shrinkage and scores better there. With "
    "many deterministic steps the SA model over-disperses (a std ratio above 1). Every quantity has a target (MMD "
    "0, std ratio 1, log-likelihood gap 0) and is judged by its distance to it. This is one pair of models and "
    "one seed: a difference between two rows smaller than the data row's distance from the target is noise (the "
    "README compares the losses over five seeds). The drift curves show how far each learned path moves away "
    "from the ideal one, step by step.")


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


def _quiet(msg: str) -> None:
    """``echo=None``: print nothing."""


def run_demo(out="runs/demo", *, retrain: bool = False, points: int = DEMO_POINTS, seed: int = 0,
             progress: bool = True, train_steps: int | None = None, checkpoint_dir=CHECKPOINT_DIR,
             threads: int | None = None, echo: Callable[[str], None] | None = print) -> DemoResult:
    """The ``seqdiff demo`` job: models (shipped, or retrained with ``retrain``; then saved to ``out/checkpoints``),
    ``evaluate`` on ring8 at ``DEMO_STEPS``, a printed table, ``out/report.html`` and ``out/metrics.json``.
    ``threads``: torch's thread count (``None``: ``EVAL_THREADS`` to evaluate, ``SEQDIFF_THREADS`` or 1 to train)."""
    t0 = time.perf_counter()
    points, seed, say, out = check_int("points", points, 2), check_int("seed", seed), echo or _quiet, Path(out)
    changes = {} if train_steps is None else {"steps": check_int("train_steps", train_steps, 1)}
    models = {}
    for name, stem in DEMO_MODELS.items():
        if retrain:
            recipe = SHIPPED[stem].replace(seed=seed, **changes)
            say(f"training {name} ({recipe.loss!r}) from scratch")
            trained = train(recipe, progress=progress, threads=threads)
            save_checkpoint(out / "checkpoints" / stem, trained.model, trained.config)  # EMA only: small files
        else:
            trained = load_shipped(stem, checkpoint_dir)
        models[name] = trained.model
    # no absolute path in a report a student may pass on: the package's own checkpoints are named as such
    shipped = ("the package's shipped checkpoints (data/checkpoints)" if Path(checkpoint_dir) == CHECKPOINT_DIR
               else f"checkpoints in {checkpoint_dir}")
    source = f"retrained (seed {seed}), saved in {out / 'checkpoints'}" if retrain else shipped
    set_threads(threads or EVAL_THREADS)
    ev = evaluate(models, preset(DEMO_DATASET), trained.schedule, DEMO_STEPS, n_points=points, seed=seed,
                  dataset=DEMO_DATASET, log=say if progress else None)
    return _publish(ev, out, say, t0, title="seqdiff demo: simple versus sequence-aware loss on ring8",
                    subtitle="Nguyen et al., On Inference Stability for Diffusion Models (AAAI 2024)",
                    intro=DEMO_INTRO, extra_settings={"models from": source,
                                                      "torch threads": torch.get_num_threads()})


def _checkpoint_name(path) -> str:
    """The run folder's name the user gave (a run keeps its checkpoint as FOLDER/model), else the stem."""
    stem = resolve_checkpoint(path)
    return stem.parent.name if stem.name == "model" and stem.parent.name else stem.name


def compare_checkpoints(paths: Sequence, steps: Sequence[int] = DEMO_STEPS, out="runs/compare", *,
                        points: int = 1000, seed: int = 0, eta: float = 0.0, solver: str = "ddim",
                        threads: int | None = EVAL_THREADS, echo: Callable | None = print):
    """Compare checkpoints of one dataset: ``evaluate`` them with ``solver`` (plus the ideal path on 2-D data),
    print the table, write ``out/report.html`` and ``out/metrics.json``. Names: the run folders' names (the path
    as given where two share one) and the loss."""
    if isinstance(paths, (str, Path)) or len(paths) < 1:
        raise ValueError(f"paths must be a list of at least one checkpoint, got {paths!r}")
    set_threads(threads)
    models, loaded = {}, [load_for_sampling(p) for p in paths]
    names = [_checkpoint_name(p) for p in paths]
    for p, name, run in zip(paths, names, loaded):
        loss = run.config.get("loss", {})
        label = str(p) if names.count(name) > 1 else name
        if isinstance(loss, dict) and loss.get("name") in ("sa", "simple"):
            label += f" [SA K={loss.get('K')}, lam={loss.get('lam')}]" if loss["name"] == "sa" else " [simple]"
        base, k = label, 2
        while label in models:
            label, k = f"{base} #{k}", k + 1
        models[label] = run.model
    datasets = {run.config.get("dataset") for run in loaded}
    if len(datasets) != 1:
        raise ValueError(f"checkpoints must all be trained on one dataset to be compared, "
                         f"got {sorted(map(str, datasets))}")
    name = datasets.pop()
    if any(run.schedule.config() != loaded[0].schedule.config() for run in loaded[1:]):
        raise ValueError("checkpoints must share one noise schedule to be compared from the same x_T")
    ev = evaluate(models, dataset(name), loaded[0].schedule, steps, n_points=points, seed=seed, eta=eta,
                  solver=solver, dataset=name)
    return _publish(ev, Path(out), echo or _quiet, None, title=f"seqdiff compare: {name}",
                    extra_settings={"checkpoints": ", ".join(map(str, paths))})
