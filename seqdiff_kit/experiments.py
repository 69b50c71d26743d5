"""The paper's comparison at toy scale: simple loss versus sequence-aware (SA) loss over datasets, seeds, training
budgets, sampling steps and eta, with 95% t-intervals (``stats``) and the 1-D closed form.

For every dataset, loss, seed and training budget one model is trained (a *train cell*, ``recipes.train``), then
scored by ``evaluate`` at every (sampling steps, eta) pair (an *eval cell*) from an ``x_T`` and noise that depend
only on (dataset, seed, steps, eta), so the losses of one seed are paired. SA(K) evaluates the network K times
per sample, so besides *equal steps* the simple loss also gets ``K n`` updates: *equal compute*. Finished cells
(checkpoints under ``out/models``, lines of ``out/rows.jsonl``) are read back, never recomputed. Plotly is
imported only when the report is written.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import math
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import zlib
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from ._format import format_number
from ._io import atomic_write, locked_folder
from ._runtime import __version__
from ._validate import check_choice, check_float, check_int, check_type
from .checkpoint import checkpoint_exists, checkpoint_paths, load_checkpoint
from .evaluate import evaluate
from .losses import Loss
from .metrics import target_distance
from .recipes import RING8, Recipe, train
from .schedule import Schedule
from .stats import LEVEL, distance_difference, mean_ci

# seconds to reach a Dask scheduler, and again to see its first worker; at most an hour (a longer wait is a
# typo, and asyncio refuses the largest floats)
CONNECT_TIMEOUT = 10.0
MAX_CONNECT_TIMEOUT = 3600.0

# The quantities a comparison judges, each by its distance to its target (``metrics.target_distance``: two-sided).
# "std_dev" = |std_ratio - 1|. The raw log-likelihood is not judged (a too-tight sampler beats the data's value).
JUDGED = ("mmd", "sw", "loglik_gap", "fd", "std_dev")
# every metric a row may hold, in the tables' order
ROW_METRICS = ("mmd", "sw", "loglik", "loglik_gap", "fd", "std_ratio", "std_ratio_closed_form")


# ====================================================================== configuration
@dataclass
class DatasetSpec:
    """One dataset of the grid: the ``Recipe`` of its models (the loss, the seed and the number of updates are set
    per cell), the losses (``Loss.config`` dicts, the simple loss first) and the evaluation settings.
    ``equal_compute``: also train the simple loss for ``K * steps`` for each SA(K)."""

    recipe: Recipe
    losses: list
    sampling_steps: tuple
    etas: tuple = (0.0,)
    n_eval: int = 1000
    equal_compute: bool = True

    def __post_init__(self):
        check_type("recipe", self.recipe, Recipe)
        check_int("recipe.fit['steps']", self.recipe.steps, 1)
        self.losses = [Loss.from_config(d).config for d in self.losses]
        if not self.losses or self.losses[0]["name"] != "simple":
            raise ValueError(f"losses must start with the simple loss (the baseline), got {self.losses!r}")
        self.sampling_steps = tuple(check_int("sampling_steps[i]", s, 1) for s in self.sampling_steps)
        self.etas = tuple(check_float("etas[i]", e, 0.0, 1.0) for e in self.etas)
        if not self.sampling_steps or not self.etas:
            raise ValueError(f"sampling_steps and etas must be non-empty, got {self.sampling_steps} and {self.etas}")
        check_int("n_eval", self.n_eval, 2)

    @property
    def name(self) -> str:
        return self.recipe.dataset

    @property
    def metrics(self) -> tuple:
        """The metrics of an eval cell besides the std ratio: the 1-D Gaussian is judged by its spread alone."""
        return {"digits": ("fd",), "gauss1d": ()}.get(self.name, ("mmd", "sw", "loglik", "loglik_gap"))

    def to_dict(self) -> dict:
        return {**vars(self), "recipe": self.recipe.config()}  # JSON turns the tuples into lists


@dataclass
class ExperimentConfig:
    """The whole grid: datasets (each with its own recipe) and seeds (at least 2)."""

    datasets: list
    seeds: tuple = (0, 1, 2)
    name: str = "custom"

    def __post_init__(self):
        for i, d in enumerate(self.datasets):
            check_type(f"datasets[{i}]", d, DatasetSpec)
        if not self.datasets:
            raise ValueError("datasets must hold at least one DatasetSpec, got an empty list")
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"datasets must have distinct names, got {names}")
        self.seeds = tuple(check_int("seeds[i]", s, 0) for s in self.seeds)
        if len(set(self.seeds)) < 2:
            raise ValueError(f"seeds must hold at least 2 distinct seeds for an interval, got {list(self.seeds)}")

    def to_dict(self) -> dict:
        return {"name": self.name, "seeds": list(self.seeds), "datasets": [d.to_dict() for d in self.datasets]}


def _fit(**kw) -> dict:
    return {**dict(batch_size=256, lr=2e-3, warmup=0, cosine_decay=False, ema_decay=0.995, grad_clip=1.0), **kw}


SIMPLE_SA = [{"name": "simple"}, {"name": "sa", "K": 2, "lam": 1.0}]


def grid_config(name: str) -> ExperimentConfig:
    """The named grids. ``fast``: tiny networks and a few dozen updates (a smoke test of the machinery, far
    too small to show an effect). ``paper-toy``: ring8 (the ring8 network with fewer updates), 8x8 digits (a
    16-channel TinyUNet) and the 1-D Gaussian study, 3 seeds; docs/sa_results.md reports a run."""
    check_choice("preset", name, tuple(GRIDS))
    return GRIDS[name]()


def _fast() -> ExperimentConfig:
    return ExperimentConfig(name="fast", seeds=(0, 1, 2), datasets=[
        DatasetSpec(Recipe("fast", "ring8", "MLPDenoiser", dict(dim=2, width=32, depth=2, time_dim=16),
                           _fit(steps=60, batch_size=128, lr=3e-3)), SIMPLE_SA, sampling_steps=(5, 20), n_eval=256),
        DatasetSpec(Recipe("fast", "digits", "TinyUNet", dict(channels=8, time_dim=16),
                           _fit(steps=8, batch_size=32)), SIMPLE_SA, sampling_steps=(5, 20), n_eval=64),
        DatasetSpec(Recipe("fast", "gauss1d", "MLPDenoiser", dict(dim=1, width=16, depth=2, time_dim=16),
                           _fit(steps=60, lr=3e-3)), SIMPLE_SA, sampling_steps=(5, 20), n_eval=1000,
                    equal_compute=False),
    ])


def _paper_toy() -> ExperimentConfig:
    lr_schedule = dict(warmup=100, cosine_decay=True, ema_decay=0.995)
    return ExperimentConfig(name="paper-toy", seeds=(0, 1, 2), datasets=[
        # the ring8 network with 3000 updates instead of RING8's 8000, so that 3 seeds x 3 budgets fit on 2 cores
        DatasetSpec(RING8.replace(name="paper-toy", fit=_fit(steps=3000, **lr_schedule)), SIMPLE_SA,
                    sampling_steps=(5, 10, 20, 50, 100, 200), etas=(0.0, 1.0), n_eval=2000),
        DatasetSpec(Recipe("paper-toy", "digits", "TinyUNet", dict(channels=16, time_dim=32),
                           _fit(steps=1200, batch_size=128, **lr_schedule)), SIMPLE_SA,
                    sampling_steps=(5, 10, 20, 50, 100), etas=(0.0, 1.0), n_eval=500),
        DatasetSpec(Recipe("paper-toy", "gauss1d", "MLPDenoiser", dict(dim=1, width=64, depth=2, time_dim=32),
                           _fit(steps=2000, batch_size=512, **lr_schedule)),
                    [{"name": "simple"}, {"name": "sa", "K": 2, "lam": 0.5}, {"name": "sa", "K": 2, "lam": 1.0},
                     {"name": "sa", "K": 3, "lam": 1.0}],
                    sampling_steps=(5, 10, 20, 50, 100, 200, 1000), etas=(0.0, 1.0), n_eval=10000,
                    equal_compute=False),
    ])


GRIDS = {"fast": _fast, "paper-toy": _paper_toy}


# ====================================================================== cells
def loss_label(cfg: dict) -> str:
    """``"simple"``, ``"SA(K=2,lam=1)"`` or ``"IP(gamma=0.1)"`` (Input Perturbation)."""
    if cfg["name"] == "simple":
        return "simple"
    if cfg["name"] == "ip":
        return f"IP(gamma={cfg['gamma']:g})"
    return f"SA(K={cfg['K']},lam={cfg['lam']:g})"


def evals_per_sample(cfg: dict) -> int:
    """Network evaluations per training sample: 1 for the simple loss, K for SA(K)."""
    return 1 if cfg["name"] == "simple" else int(cfg["K"])


@dataclass(frozen=True)
class TrainCell:
    """One trained model: (dataset, loss, seed, number of updates). ``recipe`` hashes everything else that
    shapes the weights, so a changed recipe never reuses a stale checkpoint."""

    dataset: str
    loss: str          # JSON of the Loss config (hashable)
    seed: int
    train_steps: int
    recipe: str

    @property
    def loss_config(self) -> dict:
        return json.loads(self.loss)

    @property
    def key(self) -> str:
        return f"{self.dataset}|{loss_label(self.loss_config)}|n{self.train_steps}|s{self.seed}|{self.recipe}"

    def stem(self, out: Path) -> Path:
        label = loss_label(self.loss_config).replace("(", "_").replace(")", "").replace(",", "_").replace("=", "")
        return out / "models" / self.dataset / f"{label}_n{self.train_steps}_s{self.seed}_{self.recipe}"


def train_cells(config: ExperimentConfig) -> list[TrainCell]:
    """Every model the grid needs: each loss at ``steps`` updates and, with ``equal_compute``, the simple loss
    at ``K * steps`` for every SA(K) (duplicates removed), for every seed."""
    cells = []
    for ds in config.datasets:
        n, cfg = ds.recipe.steps, ds.recipe.config()
        shaping = {"dataset": cfg["dataset"], "model": cfg["model"], "schedule": cfg["schedule"],
                   "train": {k: v for k, v in cfg["fit"].items() if k != "steps"}}
        recipe = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:10]
        budgets = [(loss, n) for loss in ds.losses]
        if ds.equal_compute:
            budgets += [(ds.losses[0], n * evals_per_sample(loss)) for loss in ds.losses if loss["name"] == "sa"]
        for loss, steps in budgets:
            for seed in config.seeds:
                cell = TrainCell(ds.name, json.dumps(loss, sort_keys=True), seed, steps, recipe)
                if cell not in cells:
                    cells.append(cell)
    return cells


def eval_key(cell: TrainCell, steps: int, eta: float, n_eval: int) -> str:
    return f"{cell.key}|steps{steps}|eta{eta:g}|N{n_eval}"


# ====================================================================== worker side
@functools.lru_cache(maxsize=None)
def _closed_form_a(var: float, K: int, lam: float, schedule_json: str) -> torch.Tensor:
    from .analysis import gaussian_sa_optimum

    return gaussian_sa_optimum(var, K, lam, Schedule.from_config(json.loads(schedule_json)))


def evaluate_model(model, ds: DatasetSpec, data, schedule: Schedule, seed: int, steps: int, eta: float,
                   loss_cfg: dict | None = None) -> dict:
    """One eval cell: ``evaluate`` the model alone (``ds.n_eval`` samples; ``x_T`` and noise seeded by (dataset,
    seed, steps, eta) through crc32, not ``hash()``, which Python salts per process) and keep ``ds.metrics``
    with the data's own level (``data_<metric>``); plus ``std_ratio`` against the data's exact law, its value
    ``path_std_ratio`` at every sampler step (timesteps ``path_t``) and, on gauss1d, ``std_ratio_closed_form``:
    the exact ratio of the SA population optimum's linear sampler."""
    from .analysis import linear_sampler_std_ratio

    try:
        ev = evaluate({"model": model}, data, schedule, (steps,), n_points=ds.n_eval, ideal=False, eta=eta,
                      seed=zlib.crc32(f"{ds.name}|{seed}|{steps}|{eta:g}|".encode()), drift_steps=(steps,),
                      metrics=ds.metrics, dataset=ds.name)
    except ValueError as err:  # a diverged sampler (non-finite eps) is a result, not a crash of the grid
        return {"error": str(err)[:300]}
    row, ratio = ev.rows[1], ev.std_ratio["model"][steps]
    out = {k: row[k] for k in ds.metrics}
    out.update({f"data_{k}": v for k, v in ev.data_row().items() if k in ds.metrics})
    out["std_ratio"] = float(ratio[-1])
    out["path_t"] = ev.trajectories["model"][steps].t.tolist()
    out["path_std_ratio"] = [round(float(v), 6) for v in ratio]
    if ds.name == "gauss1d":
        var = float(data.covariance()[0, 0])
        cfg = loss_cfg or {"name": "simple", "K": 1, "lam": 0.0}
        a = _closed_form_a(var, int(cfg["K"]), float(cfg["lam"]), json.dumps(schedule.config(), sort_keys=True))
        out["std_ratio_closed_form"] = linear_sampler_std_ratio(a, var, schedule, steps, eta=eta)
    return out


def _checkpoint_done(stem: Path, steps: int) -> bool:
    """Whether the JSON at ``stem`` says its training reached ``steps`` (whether it loads is learnt on loading)."""
    if not checkpoint_exists(stem):
        return False
    try:
        meta = json.loads(checkpoint_paths(stem)[1].read_text())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(meta, dict) and type(meta.get("step")) is int and meta["step"] == steps


def _load_or_train(recipe: Recipe, stem: Path, steps: int) -> tuple:
    """``(model, trained, seconds, note)``: the finished checkpoint at ``stem``, else a training that resumes a
    partial one. A checkpoint that cannot be loaded or resumed is trained again from scratch and ``note`` says
    so in one line: left as it was, it would fail every rerun of the grid."""
    kwargs = dict(checkpoint=stem, checkpoint_every=max(1, steps // 4), progress=False, threads=1)
    damage = None
    try:
        if _checkpoint_done(stem, steps):
            return load_checkpoint(stem, use_ema=True)[0], False, 0.0, None
        if checkpoint_exists(stem):
            res = train(recipe, resume=True, **kwargs)
            return res.model, True, res.seconds, None
    except ValueError as err:
        damage = err
    res = train(recipe, resume=False, **kwargs)
    note = None if damage is None else (f"its checkpoint {stem.name} could not be used "
                                        f"({' '.join(str(damage).split())[:200]}); trained it again from scratch")
    return res.model, True, res.seconds, note


def _run_job(job: dict) -> dict:
    """Worker: load the finished model or train it, then run the missing eval cells. Returns ``{"key",
    "trained", "train_seconds", "rows", "eval_seconds", "note"}``."""
    torch.set_num_threads(int(job.get("threads", 1)))
    ds, cell = job["dataset"], job["cell"]
    loss_cfg = json.loads(cell["loss"])
    recipe = ds.recipe.replace(loss=Loss.from_config(loss_cfg), seed=cell["seed"], steps=cell["train_steps"])
    data, schedule = recipe.data(), recipe.make_schedule()
    model, trained, t_train, note = _load_or_train(recipe, Path(job["stem"]), cell["train_steps"])
    model.eval()
    rows = []
    t0 = time.perf_counter()
    for steps, eta, key in job["evals"]:
        metrics = evaluate_model(model, ds, data, schedule, cell["seed"], steps, eta, loss_cfg)
        rows.append({"key": key, "dataset": ds.name, "loss": loss_label(loss_cfg), "loss_name": loss_cfg["name"],
                     "K": int(loss_cfg.get("K", 1)), "lam": float(loss_cfg.get("lam", 0.0)), "seed": cell["seed"],
                     "train_steps": cell["train_steps"],
                     "compute": cell["train_steps"] * evals_per_sample(loss_cfg),
                     "steps": steps, "eta": eta, "n_eval": ds.n_eval, **metrics})
    return {"key": cell["key"], "trained": trained, "train_seconds": t_train, "rows": rows,
            "eval_seconds": time.perf_counter() - t0, "note": note}


# ====================================================================== results
class JobsFailedError(RuntimeError):
    """Some jobs of a run failed; the others' rows and checkpoints are saved, and a rerun retries only the
    missing cells."""


@dataclass
class ExperimentResult:
    """``rows`` (one per eval cell), ``summary`` (``summarize``), ``comparison`` (``compare``), ``stats`` (what
    this run did) and ``paths`` (the files written)."""

    rows: list
    summary: list
    comparison: list
    stats: dict
    paths: dict


def _read_rows(path: Path) -> dict:
    """Rows of ``rows.jsonl`` by key; a torn last line (a crash mid-write) is skipped."""
    rows = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "key" in row:
            rows[row["key"]] = row
    return rows


def _append_rows(path: Path, rows: list) -> None:
    """Append ``rows`` as JSON lines in one write, then fsync: a crash leaves at most one torn last line."""
    if not rows:
        return
    # a torn last line must not swallow the next row: start on a fresh line
    torn = path.is_file() and path.stat().st_size > 0 and path.read_bytes()[-1:] != b"\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(("\n" if torn else "") + "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))
        f.flush()
        os.fsync(f.fileno())


def plan_jobs(config: ExperimentConfig, out: Path, done_keys) -> list[dict]:
    """The jobs still to run: one per train cell that lacks a finished checkpoint or any of its eval rows."""
    specs = {d.name: d for d in config.datasets}
    jobs = []
    for cell in train_cells(config):
        ds = specs[cell.dataset]
        evals = [(s, e, eval_key(cell, s, e, ds.n_eval)) for s in ds.sampling_steps for e in ds.etas]
        missing = [ev for ev in evals if ev[2] not in done_keys]
        stem = cell.stem(out)
        trained = _checkpoint_done(stem, cell.train_steps)
        if not missing and trained:
            continue
        cost = 0 if trained else cell.train_steps * evals_per_sample(cell.loss_config)
        # an absolute stem: a Dask worker runs in its own working folder
        jobs.append({"dataset": ds, "cell": {**asdict(cell), "key": cell.key}, "stem": str(stem.absolute()),
                     "evals": missing, "cost": cost * (20 if ds.name == "digits" else 1)})
    # longest first: a long job started last would leave the other worker idle at the end
    jobs.sort(key=lambda j: -j["cost"])
    return jobs


# ====================================================================== Dask
def _unreachable(address: str, why: str) -> ValueError:
    return ValueError(f"scheduler {address!r} is not a reachable Dask scheduler ({why}); start one with "
                      f"`dask scheduler` and give its tcp://HOST:PORT")


def connect_scheduler(address: str, timeout: float = CONNECT_TIMEOUT):
    """A ``distributed.Client`` of the Dask scheduler at ``address`` (``"tcp://HOST:PORT"``) once at least one
    worker has joined it. A ValueError naming the address when dask.distributed is not installed (the ``dist``
    extra), the address is malformed, nothing answers within ``timeout`` seconds (at most
    ``MAX_CONNECT_TIMEOUT``), what answers is not a Dask scheduler, or no worker joins in as long."""
    check_type("scheduler", address, str)
    timeout = check_float("timeout", timeout, 0.0, MAX_CONNECT_TIMEOUT, low_open=True)
    try:
        from distributed import Client
    except ImportError:
        raise ValueError(f"scheduler {address!r} needs dask.distributed, an optional dependency: "
                         f"pip install 'seqdiff_kit[dist]'") from None
    # asked first, within the timeout: Client() itself waits forever on a port that accepts and never answers,
    # and a Client that failed to start prints a traceback from its __del__ and takes seconds to go
    identity = _scheduler_identity(address, timeout)
    if identity.get("type") != "Scheduler":
        raise ValueError(f"{address!r} answers but is not a Dask scheduler (a {identity.get('type')!r:.40}); give "
                         f"the tcp://HOST:PORT of `dask scheduler`")
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, ValueError, TypeError) as err:  # TimeoutError is an OSError
        raise _unreachable(address, " ".join(str(err).split())) from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError) as err:
        client.close()
        raise ValueError(f"scheduler {address!r} has no workers after {timeout:g} s ({type(err).__name__}); start "
                         f"some with `dask worker {address} --nthreads 1`") from None
    return client


def _scheduler_identity(address: str, timeout: float) -> dict:
    """The answer of the Dask server at ``address`` to ``identity`` (``{"type": "Scheduler", ...}`` from a
    scheduler), all within ``timeout`` seconds; a ValueError naming the address otherwise."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from distributed.comm import connect

    async def ask():
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity"})
            return await comm.read()
        finally:
            comm.abort()

    try:  # a thread of its own: the caller may be running an event loop (a notebook)
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(asyncio.run, asyncio.wait_for(ask(), timeout)).result()
    except Exception as err:  # noqa: BLE001 - whatever the address or the peer did, it is not a scheduler we can use
        raise _unreachable(address, " ".join(str(err).split()) or f"no Dask answer after {timeout:g} s") from None
    return answer if isinstance(answer, dict) else {"type": type(answer).__name__}


def worker_probe(path: str) -> dict:
    """Run on every Dask worker before any job: the library version it imports and whether it sees ``path``."""
    return {"version": __version__, "sees": os.path.exists(path)}


def check_workers(client, out: Path) -> dict:
    """Refuse a cluster whose workers cannot run the jobs: they must import this version of seqdiff_kit and see
    ``out`` (where they write the checkpoints) at the same path. Returns the probe answers by worker address."""
    probe = out / f".seqdiff-probe-{os.getpid()}-{time.time_ns()}"
    probe.write_bytes(b"")
    try:
        answers = client.run(worker_probe, str(probe))
    except Exception as err:  # noqa: BLE001 - whatever the workers raised (a missing module, most often)
        raise ValueError(f"the Dask workers cannot run seqdiff_kit's jobs ({type(err).__name__}: "
                         f"{' '.join(str(err).split())[:200]}); start them in an environment where seqdiff_kit "
                         f"{__version__} is installed") from None
    finally:
        probe.unlink(missing_ok=True)
    versions = sorted({a["version"] for a in answers.values()} - {__version__})
    if versions:
        raise ValueError(f"the Dask workers import seqdiff_kit {versions}, this client {__version__}; start them "
                         f"in the same environment")
    blind = sorted(w for w, a in answers.items() if not a["sees"])
    if blind:
        raise ValueError(f"out {str(out)!r} is not visible to the Dask worker(s) {blind}: the workers write the "
                         f"checkpoints there, so it must be a folder every worker sees at the same path "
                         f"(a shared file system)")
    return answers


# ====================================================================== the runner
def run_experiment(config: ExperimentConfig | str, out, *, workers: int = 1, scheduler: str | None = None,
                   connect_timeout: float = CONNECT_TIMEOUT, progress: bool = True, report: bool = True,
                   level: float = LEVEL) -> ExperimentResult:
    """Run (or resume) the grid ``config`` (an ``ExperimentConfig`` or a preset name) into folder ``out``: train
    and score the missing cells; write ``rows.csv``, ``summary.csv``, ``comparison.csv``, ``results.md`` and
    (``report=True``) ``report.html``. This process alone appends the rows, each key once, holding ``out``'s lock.

    ``workers > 1``: a spawn-context process pool, one torch thread each; ``workers = 1``: this process.
    ``scheduler``: a Dask scheduler's ``"tcp://HOST:PORT"`` (``connect_scheduler``), whose workers must see
    ``out`` at the same path (``check_workers``); Dask reruns a job whose worker dies, resuming its checkpoint."""
    if isinstance(config, str):
        config = grid_config(config)
    if not isinstance(config, ExperimentConfig):
        raise TypeError(f"config must be an ExperimentConfig or a grid name {sorted(GRIDS)}, "
                        f"got {type(config).__name__}")
    workers = check_int("workers", workers, 1)
    client = connect_scheduler(scheduler, connect_timeout) if scheduler is not None else None
    try:
        with locked_folder(out):
            return _run(config, Path(out), workers, client, progress, report, level)
    finally:
        if client is not None:
            client.close()


def _ignore_sigint() -> None:
    """A local worker's start: Ctrl-C reaches the whole process group and the parent alone answers it (ending
    the workers, ``_end_pool``). tqdm's lock becomes a thread lock: its default, a named semaphore, would be
    left behind by a worker that ``_end_pool`` ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tqdm.set_lock(threading.RLock())


def _end_pool(pool: ProcessPoolExecutor) -> None:
    """End a local pool now (an interrupted run): drop the jobs not started and stop the running ones. What
    finished is in rows.jsonl; a stopped training left its last checkpoint, which a rerun resumes."""
    # concurrent.futures has no public way to stop running workers before Python 3.14 (terminate_workers)
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join(5)
    pool.shutdown(wait=True)  # the pool's own thread sees its workers gone and frees its queues


@contextmanager
def local_pool(workers: int):
    """A pool of ``workers`` spawned processes that ignore Ctrl-C (``_ignore_sigint``). Any exception out of the
    ``with`` block (Ctrl-C, SIGTERM turned into SystemExit by ``cli.main``) ends the workers at once
    (``_end_pool``) instead of waiting for their jobs; otherwise the pool is shut down normally."""
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_ignore_sigint)
    try:
        yield pool
    except BaseException:
        _end_pool(pool)
        raise
    pool.shutdown(wait=True)


@contextmanager
def _dask_pool(client):
    pool = client.get_executor(pure=False)  # pure=False: every submit is a new task, never a cached one
    try:
        yield pool
    finally:
        pool.shutdown(wait=False)  # the cluster cancels what is running


def _run(config: ExperimentConfig, out: Path, workers: int, client, progress: bool, report: bool,
         level: float) -> ExperimentResult:
    out.mkdir(parents=True, exist_ok=True)
    answers = check_workers(client, out) if client is not None else {}
    atomic_write(out / "config.json", json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
    store = out / "rows.jsonl"
    done = _read_rows(store)
    jobs = plan_jobs(config, out, set(done))
    stats = {"jobs": len(jobs), "trained": 0, "loaded": 0, "evaluated": 0, "reused_rows": 0, "errors": [],
             "retrained": [], "train_seconds": 0.0, "executor": "local" if client is None else "dask",
             "workers": min(workers, max(len(jobs), 1)) if client is None else len(answers)}
    t0 = time.perf_counter()
    # the jobs done so far, refreshed every second on a terminal (a job takes minutes); a line per job anyway
    bar = tqdm(total=len(jobs), unit="job", desc="jobs done", file=sys.stderr, leave=False,
               disable=None if progress and jobs else True)
    say = functools.partial(tqdm.write, file=sys.stderr)
    if progress and jobs:
        where = (f"the Dask scheduler {client.scheduler.address} ({len(answers)} workers)" if client is not None
                 else f"{stats['workers']} local worker{'s' * (stats['workers'] > 1)}")
        say(f"{len(jobs)} jobs on {where}; Ctrl-C stops the run and keeps every finished job (rerun to resume)")

    def record(res: dict, i: int) -> None:
        # each key is written once, by this process alone, whatever the executor delivered
        new = [row for row in res["rows"] if row["key"] not in done]
        _append_rows(store, new)
        done.update((row["key"], row) for row in new)
        stats["trained" if res["trained"] else "loaded"] += 1
        stats["evaluated"] += len(new)
        stats["train_seconds"] += res["train_seconds"]
        if res.get("note"):  # said whatever --quiet asks: a file of the grid was damaged
            stats["retrained"].append(f"{res['key']}: {res['note']}")
            say(f"{res['key']}: {res['note']}")
        bar.update(1)
        if progress:
            what = f"trained in {res['train_seconds']:.0f} s" if res["trained"] else "loaded"
            say(f"[{i}/{len(jobs)} jobs done] {res['key']}: {what}, {len(new)} evals in {res['eval_seconds']:.0f} s "
                f"({time.perf_counter() - t0:.0f} s elapsed)")

    try:
        _run_jobs(jobs, workers, client, record, stats["errors"], bar)
    finally:
        bar.close()
    stats["seconds"] = time.perf_counter() - t0
    specs = {d.name: d for d in config.datasets}
    wanted = {eval_key(c, s, e, specs[c.dataset].n_eval) for c in train_cells(config)
              for s in specs[c.dataset].sampling_steps for e in specs[c.dataset].etas}
    rows = [done[k] for k in sorted(wanted) if k in done]
    stats["reused_rows"] = len(rows) - stats["evaluated"]
    summary, comparison = summarize(rows, level), compare(rows, level)
    paths = {"rows": write_csv(out / "rows.csv", rows), "summary": write_csv(out / "summary.csv", summary),
             "comparison": write_csv(out / "comparison.csv", comparison)}
    paths["markdown"] = atomic_write(out / "results.md",
                                     f"# {config.name}: SA vs simple (seeds {', '.join(map(str, config.seeds))})\n\n"
                                     + comparison_markdown(comparison) + "\n" + closed_form_markdown(summary))
    result = ExperimentResult(rows=rows, summary=summary, comparison=comparison, stats=stats, paths=paths)
    if report:
        paths["report"] = write_experiment_report(out / "report.html", result, config)
    atomic_write(out / "stats.json", json.dumps(stats, indent=2) + "\n")
    if stats["errors"]:
        raise JobsFailedError(f"{len(stats['errors'])} job(s) failed (the others are saved in {str(out)!r}; rerun to "
                              f"retry only the missing cells): " + "; ".join(stats["errors"][:3]))
    return result


def _run_jobs(jobs: list, workers: int, client, record, errors: list, bar) -> None:
    """Run ``jobs`` (in this process, a local pool or on Dask), ``record(result, i)`` each as it finishes; a failed
    job goes to ``errors`` and the others go on. Ctrl-C (KeyboardInterrupt) stops at once: the pool's workers
    are ended (a Dask cluster cancels the tasks), what finished stays recorded."""
    if not jobs:
        return
    if workers == 1 and client is None:
        before = torch.get_num_threads()
        try:
            for i, job in enumerate(jobs, 1):
                try:
                    record(_run_job(job), i)
                except Exception as err:  # keep the finished cells; report the failure at the end
                    errors.append(f"{job['cell']['key']}: {type(err).__name__}: {err}")
        finally:
            torch.set_num_threads(before)
        return
    # each job sets its own torch thread count (_run_job)
    with local_pool(min(workers, len(jobs))) if client is None else _dask_pool(client) as pool:
        futures = {}
        try:
            futures = {pool.submit(_run_job, job): job for job in jobs}
            pending, i = set(futures), 0
            while pending:
                finished, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for fut in finished:
                    i += 1
                    try:
                        record(fut.result(), i)
                    except Exception as err:  # a failed job (on Dask also one whose workers kept dying)
                        errors.append(f"{futures[fut]['cell']['key']}: {type(err).__name__}: {err}")
                bar.refresh()  # the elapsed time moves while a long job runs
        finally:  # drop what has not started
            for fut in futures:
                fut.cancel()


# ====================================================================== tables
GROUP = ("dataset", "loss", "K", "lam", "train_steps", "compute", "steps", "eta")


def summarize(rows: Sequence[dict], level: float = LEVEL) -> list[dict]:
    """The tidy table: one row per (dataset, loss, train_steps, steps, eta, metric) with ``n``, ``mean``,
    ``sd``, ``ci_low``, ``ci_high`` (``stats.mean_ci``) and the seeds used."""
    groups: dict = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in GROUP), []).append(row)
    out = []
    for key, members in sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0][:2]) + kv[0][2:]):
        members = sorted(members, key=lambda r: r["seed"])
        for metric in [m for m in ROW_METRICS if any(m in r for r in members)]:
            ci = mean_ci([r.get(metric, math.nan) for r in members], level)
            out.append({**dict(zip(GROUP, key)), "metric": metric, "n": ci["n"], "mean": ci["mean"], "sd": ci["sd"],
                        "ci_low": ci["low"], "ci_high": ci["high"], "level": level,
                        "seeds": " ".join(str(r["seed"]) for r in members if math.isfinite(r.get(metric, math.nan)))})
    return out


def compare(rows: Sequence[dict], level: float = LEVEL) -> list[dict]:
    """SA against simple, paired by seed: for each SA loss, budget (``equal_steps``: the simple model with as
    many updates; ``equal_compute``: K times as many), steps, eta and metric of ``JUDGED``, the differences
    ``d_i = m_SA,i - m_simple,i`` of the distances to the target with their t-interval and verdict
    (``stats.distance_difference``)."""
    by = {(r["dataset"], r["loss"], r["train_steps"], r["steps"], r["eta"], r["seed"]): r for r in rows}
    out = []
    sa_groups = sorted({(r["dataset"], r["loss"], r["K"], r["train_steps"], r["steps"], r["eta"])
                        for r in rows if r["loss_name"] == "sa"}, key=str)
    for dataset, loss, K, n, steps, eta in sa_groups:
        sa = {r["seed"]: r for r in rows if (r["dataset"], r["loss"], r["train_steps"], r["steps"], r["eta"])
              == (dataset, loss, n, steps, eta)}
        for budget, n_simple in (("equal_steps", n), ("equal_compute", K * n)):
            simple = {s: by[key] for s in sa if (key := (dataset, "simple", n_simple, steps, eta, s)) in by}
            if not simple:
                continue
            for metric in [m for m in JUDGED if m in sa[min(simple)] or m == "std_dev"]:
                name = "std_ratio" if metric == "std_dev" else metric
                ci = distance_difference(name, {s: r.get(name, math.nan) for s, r in sa.items()},
                                         {s: r.get(name, math.nan) for s, r in simple.items()}, level)
                means = [mean_ci([target_distance(name, rs[s].get(name, math.nan)) for s in ci["keys"]],
                                 level)["mean"] for rs in (simple, sa)]
                own = mean_ci([target_distance(name, sa[s][f"data_{name}"]) for s in ci["keys"]
                               if f"data_{name}" in sa[s]], level)["mean"]
                out.append({"dataset": dataset, "sa_loss": loss, "budget": budget, "sa_train_steps": n,
                            "simple_train_steps": n_simple, "steps": steps, "eta": eta, "metric": metric,
                            "simple_mean": means[0], "sa_mean": means[1], "data_mean": own,
                            "diff_mean": ci["mean"], "diff_low": ci["low"], "diff_high": ci["high"], "n": ci["n"],
                            "seeds": " ".join(map(str, ci["keys"])),
                            "verdict": {"better": "SA better", "worse": "SA worse"}.get(ci["verdict"], ci["verdict"])})
    return out


# the CSV's columns: these first, in this order (the same rows give the same file), then the rest sorted
_COLUMN_ORDER = ("dataset", "loss", "sa_loss", "loss_name", "K", "lam", "budget", "seed", "train_steps", "compute",
                 "sa_train_steps", "simple_train_steps", "steps", "eta", "n_eval", "metric", "n", "mean", "sd",
                 "ci_low", "ci_high", "level", "simple_mean", "sa_mean", "data_mean", "diff_mean", "diff_low",
                 "diff_high", "verdict", "seeds", *ROW_METRICS, "error", "key")


def write_csv(path, rows: Sequence[dict]) -> Path:
    """``rows`` as CSV, written atomically; list values (the per-step path) are left to ``rows.jsonl``."""
    keys = {k for r in rows for k, v in r.items() if not isinstance(v, (list, dict))}
    cols = [k for k in _COLUMN_ORDER if k in keys] + sorted(keys - set(_COLUMN_ORDER))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    w.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    return atomic_write(path, buf.getvalue())


_fmt = functools.partial(format_number, float_format="{:.3g}", nonfinite="n/a")  # the tables' precision


def _interval(r: dict) -> str:
    return f"{_fmt(r['diff_mean'])} [{_fmt(r['diff_low'])}, {_fmt(r['diff_high'])}]"


def comparison_markdown(comparison: Sequence[dict], metrics=("mmd", "fd", "std_dev")) -> str:
    """The paired comparisons as Markdown, both budgets side by side: per dataset, eta, steps and metric, the
    simple and SA means, the data's own level (``-`` where the metric has none), ``SA - simple`` with its
    t-interval and the verdict."""
    by = {}
    for r in comparison:
        if r["metric"] in metrics:
            by.setdefault((r["dataset"], r["sa_loss"], r["eta"], r["metric"], r["steps"]), {})[r["budget"]] = r
    head = ("| dataset | SA loss | eta | steps | metric | simple, n updates | SA | data's own | SA - simple [95% CI] "
            "| verdict | simple, K n updates | SA - simple [95% CI] | verdict |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for (ds, loss, eta, metric, steps), b in sorted(by.items()):
        e, c = b.get("equal_steps"), b.get("equal_compute")
        own = (e or c).get("data_mean", math.nan)
        cells = [ds, loss, f"{eta:g}", str(steps), metric]
        cells += [_fmt(e["simple_mean"]), _fmt(e["sa_mean"]), _fmt(own) if math.isfinite(own) else "-",
                  _interval(e), e["verdict"]] if e else ["", "", "", "", ""]
        cells += [_fmt(c["simple_mean"]), _interval(c), c["verdict"]] if c else ["-", "-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def closed_form_markdown(summary: Sequence[dict]) -> str:
    """The 1-D study as Markdown: measured std ratio (mean [95% CI] over seeds) against the closed form."""
    gauss = {(r["loss"], r["eta"], r["steps"], r["metric"]): r for r in summary if r["dataset"] == "gauss1d"}
    lines = ["| loss | eta | steps | measured std ratio [95% CI] | closed form |", "|---|---|---|---|---|"]
    for key in sorted({k[:3] for k in gauss if k[3] == "std_ratio"}, key=lambda k: (k[0] != "simple", *k)):
        m, exact = gauss[(*key, "std_ratio")], gauss.get((*key, "std_ratio_closed_form"), {"mean": math.nan})
        lines.append(f"| {key[0]} | {key[1]:g} | {key[2]} | {_fmt(m['mean'])} [{_fmt(m['ci_low'])}, "
                     f"{_fmt(m['ci_high'])}] | {_fmt(exact['mean'])} |")
    return "\n".join(lines) + "\n"


# ====================================================================== the HTML report (plotly, lazily)
def write_experiment_report(path, result: ExperimentResult, config: ExperimentConfig) -> Path:
    """The HTML report: per dataset, each metric against sampling steps (mean over seeds with the 95%
    t-interval as a band) for every eta, the std ratio along the path, the 1-D closed form overlaid on the
    measured std ratios, and the comparison table."""
    from .report import Section, write_report
    from .viz import closed_form_figure, seeds_path_figure, seeds_summary_figure

    summary, rows = result.summary, result.rows
    secs = [Section("The experiment", f"Simple loss against the sequence-aware (SA) loss, {len(config.seeds)} seeds "
                    f"({', '.join(map(str, config.seeds))}). Bands are 95% Student-t intervals over seeds. Each SA "
                    "model is compared with a simple model of as many updates (equal steps) and with one of K times "
                    "as many updates (equal compute: SA evaluates the network K times per sample).")]
    for ds in config.datasets:
        if ds.name == "gauss1d":
            figs = [closed_form_figure(summary, eta) for eta in ds.etas]
            var = float(ds.recipe.data().covariance()[0, 0])
            prose = (f"x0 ~ N(0, {var:g}). The networks are trained through the real losses; the dashed lines "
                     "are the exact std ratio of the linear sampler at the population optimum of "
                     "L_simple + lam L_sa (`analysis.gaussian_sa_optimum`). Below 1 the sampler shrinks the "
                     "distribution, above 1 it over-disperses.")
        else:
            mine = [r for r in rows if r["dataset"] == ds.name]
            figs = [seeds_summary_figure(summary, ds.name, metric, eta,
                                         f"{ds.name}: {metric} vs sampling steps (eta={eta:g})")
                    for metric in ROW_METRICS[:-1] if any(metric in r for r in mine) for eta in ds.etas]
            paths = [seeds_path_figure(rows, ds.name, eta, steps) for eta in ds.etas
                     for steps in (min(ds.sampling_steps), max(ds.sampling_steps))]
            figs += [fig for fig in paths if fig is not None]
            r = ds.recipe
            prose = (f"{ds.name}: {r.model} {r.model_args}, {r.steps} updates (batch {r.fit.get('batch_size')}), "
                     f"{ds.n_eval} samples per evaluation.")
        table = [r for r in result.comparison if r["dataset"] == ds.name]
        secs.append(Section(ds.name, prose, figure=figs, table=table or None))
    return write_report(path, secs, title=f"SA vs simple loss: {config.name}",
                        subtitle="seqdiff_kit experiment runner",
                        settings={"preset": config.name, "seeds": list(config.seeds),
                                  "schedules": ", ".join(sorted({json.dumps(d.recipe.schedule)
                                                                 for d in config.datasets})),
                                  "jobs run": result.stats.get("jobs"),
                                  "models trained this run": result.stats.get("trained")})
