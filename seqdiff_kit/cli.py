"""The ``seqdiff`` command: ``demo``, ``train``, ``sample``, ``compare`` and ``experiment``.

    seqdiff demo [--out runs/demo] [--retrain] [--points N] [--seed S]
    seqdiff train --dataset ring8 --model mlp --loss sa --K 2 --lam 1 --steps 3000 --seed 0 --out runs/x
    seqdiff sample --checkpoint runs/x --steps 50 --eta 0 --n 1000 --out samples.npz
    seqdiff sample --checkpoint runs/x --steps 10 --solver heun --out samples.npz
    seqdiff compare CKPT CKPT [...] --steps 5 10 20 50 100 [--solver dpmpp_2m] --out runs/compare
    seqdiff experiment --preset paper-toy [--out runs/paper-toy] [--workers 2 | --scheduler tcp://HOST:8786]
    seqdiff experiment --preset solvers [--out runs/solvers]

Bad input (an unknown dataset, a missing or corrupt checkpoint, K < 1, a negative step count, lam < 0, an output
path that cannot be written, a size that cannot fit in memory) ends with one line ``seqdiff: error: ...`` on
stderr and exit status 2 (usage) or 1 (anything the library refused), before any work starts.

``train`` turns its arguments into a ``recipes.Recipe`` and makes one call, ``runs.train_run``, which owns the
output folder, its lock, the ``--overwrite``/``--resume`` rules, ``history.json`` and the ``--nproc`` launch.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
import threading
from contextlib import suppress
from pathlib import Path

from ._io import FolderLockedError, atomic_write, one_line, os_error_line, shorten
from ._limits import check_memory

PROG = "seqdiff"
MAX_THREADS = 1024
MAX_NPROC = 256
REPORT_FILES = ("report.html", "metrics.json")
# Rough memory per unit of each size option, in bytes (see _limits: the point is to refuse the hopeless, not to
# predict the peak): a history row is a dict of six floats in the list, a row of the stored tensor and of the
# JSON; an evaluation holds a few [points, points] kernel matrices.
HISTORY_ROW_BYTES = 600
KERNEL_BYTES = 40
SOLVER_HELP = ("ddim (the generalized step, with --eta), ddpm, dpmpp_2m (DPM-Solver++(2M)), heun (2 steps - 1 "
               "model calls), analytic_dpm (Analytic-DPM's variance, Gamma from 2000 draws of the checkpoint's "
               "dataset), exact_cov (the exact posterior covariance; Gaussian-mixture datasets only) "
               "(default: ddim)")
THREADS_HELP = "torch threads (default: SEQDIFF_THREADS or 1)"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``seqdiff: error: <message>`` (no usage block), exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        sub = self.prog[len(PROG):].strip()
        hint = f" (see `{PROG}{' ' + sub if sub else ''} --help`)"
        sys.stderr.write(f"{PROG}: error: {one_line(message)}{hint}\n")
        raise SystemExit(2)


def _int_in(name: str, low: int, high: int | None = None):
    """An argparse type: an integer in ``[low, high]``, with a one-line message naming the option."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {shorten(text, 40)}") from None
        if value < low or (high is not None and value > high):
            allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
            digits = str(value)
            shown = digits if len(digits) <= 24 else f"{digits[:12]}... ({len(digits)} digits)"
            raise argparse.ArgumentTypeError(f"{name} must be an integer {allowed}, got {shown}")
        return value
    return parse


def _float(name: str, low: float | None = None, high: float | None = None, why: str = ""):
    """An argparse type: a finite number in ``[low, high]``, with a one-line message naming the option."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"{name} must be finite, got {text!r}")
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"{name} must be >= {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{name} must be <= {high}{why}, got {value}")
        return value
    return parse


# the commands, with their one-line help: the top-level parser lists them without importing what they run
COMMAND_HELP = {"demo": "simple vs SA loss on ring8: a table and an HTML report",
                "train": "train a denoiser and write a checkpoint",
                "sample": "sample a checkpoint into an .npz file",
                "compare": "compare checkpoints: a table and a report",
                "experiment": "run the simple-vs-SA grid (seeds, steps, eta, budgets)"}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``seqdiff`` parser. ``only``: fill in the options of that command alone (the others are listed with
    their help but take no options), so that ``seqdiff --help`` or one command's parse imports only what that
    command needs (torch takes seconds to import); ``None`` fills in every command."""
    parser = _Parser(prog=PROG, description="seqdiff_kit: diffusion sampling, the ideal path, drift and the "
                                            "sequence-aware loss.",
                     epilog="Run `seqdiff COMMAND --help` for the options of a command.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, help_ in COMMAND_HELP.items():
        p = sub.add_parser(name, help=help_, formatter_class=argparse.RawDescriptionHelpFormatter)
        if only is None or only == name:
            OPTIONS[name](p)
    return parser


def _seed_and_threads(p, threads_help: str = THREADS_HELP, threads_default=None, seed_help=None) -> None:
    from .train import MAX_SEED

    p.add_argument("--seed", type=_int_in("--seed", 0, MAX_SEED), default=0, help=seed_help)
    p.add_argument("--threads", type=_int_in("--threads", 1, MAX_THREADS), default=threads_default,
                   help=threads_help)


def _demo_options(p) -> None:
    from .demo import DEMO_POINTS

    p.description = ("Load the shipped ring8 MLPs (simple loss; SA loss K=2, lam=1), sample them and the ideal "
                     "denoiser with 5, 10, 20, 50 and 100 DDIM steps from one x_T, print MMD, sliced Wasserstein "
                     "and log-likelihood, and write OUT/report.html.")
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.add_argument("--retrain", action="store_true", help="train both models from scratch (a few minutes on a CPU)")
    p.add_argument("--points", type=_int_in("--points", 1), default=DEMO_POINTS,
                   help=f"samples per model and step count (default: {DEMO_POINTS})")
    p.add_argument("--train-steps", type=_int_in("--train-steps", 1), default=None,
                   help="training steps with --retrain (default: the shipped recipe's)")
    _seed_and_threads(p, "torch threads (default: 1 to evaluate; SEQDIFF_THREADS or 1 to retrain)",
                      seed_help="seed of x_T, the data draws (and the training with --retrain)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")


def _train_options(p) -> None:
    from .data import DATASETS

    p.description = ("Train an MLP (2-D presets) or a TinyUNet (digits) and write OUT/model.safetensors + "
                     "OUT/model.json (weights, EMA, optimizer state) and OUT/history.json.")
    p.epilog = ("example: seqdiff train --dataset ring8 --model mlp --loss sa --K 2 --lam 1 --steps 3000 --seed 0 "
                "--out runs/x\ndata parallel: seqdiff train ... --nproc 2 (or: torchrun --nproc-per-node 2 -m "
                "seqdiff_kit.cli train ...)")
    p.add_argument("--dataset", default="ring8", metavar="NAME", help=f"one of {', '.join(DATASETS)} (default: ring8)")
    p.add_argument("--model", default=None, choices=("mlp", "unet"),
                   help="mlp for the 2-D presets, unet (TinyUNet) for digits (default: by dataset)")
    p.add_argument("--loss", default="simple", choices=("simple", "sa"), help="training loss (default: simple)")
    p.add_argument("--K", type=_int_in("--K", 1), default=None, help="SA loss: consecutive steps, >= 1 (default: 2)")
    p.add_argument("--lam", type=_float("--lam"), default=None, help="SA loss: weight, >= 0 (default: 1.0)")
    p.add_argument("--steps", type=_int_in("--steps", 0), default=None, help="training steps (default: the recipe's)")
    p.add_argument("--batch-size", type=_int_in("--batch-size", 1), default=None)
    p.add_argument("--lr", type=_float("--lr", high=1.0, why=" (Adam moves every weight by about lr per step: "
                                                            "more than 1 overwrites the weights)"), default=None)
    _seed_and_threads(p)
    p.add_argument("--out", default="runs/train", help="output folder (default: runs/train)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT (its history is kept)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in OUT (without --resume or --overwrite, an existing run is refused)")
    p.add_argument("--checkpoint-every", type=_int_in("--checkpoint-every", 1), default=None)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--nproc", type=_int_in("--nproc", 1, MAX_NPROC), default=1,
                   help="data-parallel processes on this machine (DistributedDataParallel: gloo on the CPU, nccl "
                        "with one GPU each on CUDA); the batch is split into N shards (default: 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _solver_options(p) -> None:
    """``--eta`` and ``--solver``, as ``sample`` and ``compare`` take them."""
    from .solvers import SOLVERS

    p.add_argument("--eta", type=_float("--eta", 0.0), default=0.0,
                   help="with --solver ddim: 0 = DDIM, 1 = DDPM (default: 0)")
    p.add_argument("--solver", default="ddim", choices=sorted(SOLVERS), help=SOLVER_HELP)


def _sample_options(p) -> None:
    p.description = ("Sample a checkpoint with the generalized DDIM/DDPM sampler and write an .npz (no pickle) "
                     "holding `samples` [n, ...], `x_T`, `timesteps` and `config` (JSON).")
    p.add_argument("--checkpoint", required=True, help="a checkpoint stem, .json, .safetensors, or a train folder")
    p.add_argument("--steps", type=int, default=50, help="sampling steps, >= 1 (default: 50)")
    _solver_options(p)
    p.add_argument("--n", type=_int_in("--n", 1), default=1000, help="number of samples (default: 1000)")
    p.add_argument("--spacing", default="trailing", choices=("trailing", "leading", "linspace", "quad", "karras"))
    p.add_argument("--eps-scale", type=_float("--eps-scale"), default=None, metavar="C",
                   help="Epsilon Scaling (Ning et al. 2024): sample with C times the network's noise, C > 0 "
                        "(default: none)")
    p.add_argument("--out", default="samples.npz", help="output .npz file (default: samples.npz)")
    _seed_and_threads(p)


def _compare_options(p) -> None:
    from .demo import DEMO_STEPS

    p.description = ("Sample two or more checkpoints of one dataset from the same x_T at each step count (plus the "
                     "ideal denoiser on 2-D data), print a table and write OUT/report.html and OUT/metrics.json.")
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="checkpoints (stems, .json files or train folders)")
    p.add_argument("--steps", type=int, nargs="+", default=list(DEMO_STEPS),
                   help="step counts (default: 5 10 20 50 100)")
    p.add_argument("--points", type=_int_in("--points", 1), default=1000, help="samples per run (default: 1000)")
    _solver_options(p)
    p.add_argument("--out", default="runs/compare", help="output folder (default: runs/compare)")
    _seed_and_threads(p, "torch threads (default: 1)", threads_default=1)


def _experiment_options(p) -> None:
    from .experiments import GRIDS, MAX_CONNECT_TIMEOUT
    from .few_step import PRESET as STUDY

    p.description = ("Run (or resume) the simple-vs-SA comparison and write CSV + HTML. The jobs run in local "
                     "worker processes (--workers) or on the workers of an existing Dask cluster (--scheduler; pip "
                     "install 'seqdiff_kit[dist]').")
    p.epilog = ("example: dask scheduler --host 127.0.0.1 --port 8786 &\n"
                "         dask worker tcp://127.0.0.1:8786 --nthreads 1 --nworkers 2 &\n"
                "         seqdiff experiment --preset fast --scheduler tcp://127.0.0.1:8786")
    p.add_argument("--preset", default="paper-toy", choices=sorted(GRIDS) + [STUDY],
                   help=f"a simple-vs-SA grid, or {STUDY!r}: the few-step fixes on ring8 (solvers x spacings x "
                        f"steps x 3 seeds with the shipped networks and the ideal denoiser; one local process, "
                        f"--workers and --scheduler unused; docs/solvers.md)")
    p.add_argument("--out", default=None, help="output folder (default runs/<preset>); with --scheduler every "
                                               "worker must see it at the same path")
    where = p.add_mutually_exclusive_group()
    # default None, not 2: argparse lets an explicit value equal to the default pass its exclusivity check
    where.add_argument("--workers", type=int, default=None, help="local worker processes (one torch thread each; "
                                                                 "default: 2)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run the jobs on the Dask cluster whose scheduler is at ADDRESS (tcp://HOST:PORT)")
    p.add_argument("--connect-timeout", type=_float("--connect-timeout", 0.1, MAX_CONNECT_TIMEOUT, " (an hour)"),
                   default=None, metavar="SECONDS",
                   help=f"with --scheduler: seconds to reach it and to see a worker, in [0.1, {MAX_CONNECT_TIMEOUT:g}] "
                        f"(default: 10)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


OPTIONS = {"demo": _demo_options, "train": _train_options, "sample": _sample_options, "compare": _compare_options,
           "experiment": _experiment_options}


# ---------------------------------------------------------------------- sizes
def _per_sample_floats(spec: dict, train: bool = False) -> int:
    """Rough float32 count one sample keeps alive through the network (``train``: the activations kept for the
    backward pass too)."""
    args = spec.get("args", {}) if isinstance(spec, dict) else {}
    layers = 6 if train else 2
    if isinstance(spec, dict) and spec.get("class") == "TinyUNet":
        return 64 * (4 + 4 * layers * args.get("channels", 32))  # 8x8 feature maps of C and 2C channels
    return 10 * args.get("dim", 2) + layers * args.get("width", 128) * (args.get("depth", 3) + 2)


def _check_evaluation_memory(points: int, steps, n_models: int, dim: int) -> None:
    paths = 4 * points * dim * (sum(steps) + len(steps)) * (n_models + 1)  # every sampled path is kept
    check_memory("--points", points, KERNEL_BYTES * points**2 + paths,
                  "the MMD kernel matrices and the sampled paths")


def _check_steps(steps) -> None:
    for value in steps:
        if value < 1:
            raise ValueError(f"steps must be a positive step count (>= 1), got {value}")


# ---------------------------------------------------------------------- commands
def cmd_demo(args) -> int:
    from .demo import DEMO_MODELS, DEMO_STEPS, run_demo
    from .runs import check_out_path, writing

    if args.train_steps is not None and not args.retrain:
        raise ValueError(f"--train-steps {args.train_steps} applies to --retrain only (the shipped models are not "
                         f"trained again without it); give both or neither")
    _check_evaluation_memory(args.points, DEMO_STEPS, len(DEMO_MODELS) + 1, 2)
    if args.retrain and args.train_steps is not None:
        check_memory("--train-steps", args.train_steps, HISTORY_ROW_BYTES * args.train_steps, "its history")
    out = check_out_path("--out", args.out, folder=True, files=REPORT_FILES)
    if args.retrain:
        check_out_path("--out", out / "checkpoints", folder=True,
                       files=[f"{stem}{suffix}" for stem in DEMO_MODELS.values()
                              for suffix in (".json", ".safetensors")])
    with writing("--out", out):
        run_demo(out, retrain=args.retrain, points=args.points, seed=args.seed, progress=not args.quiet,
                 train_steps=args.train_steps, threads=args.threads)
    return 0


def _train_recipe(args):
    """``train``'s arguments as a Recipe: the dataset's default recipe (``recipes.recipe_for``) with the loss, the
    seed and the fit settings given."""
    from .losses import Loss
    from .recipes import recipe_for

    recipe = recipe_for(args.dataset)  # refuses an unknown dataset first
    if args.model is not None and (args.dataset == "digits") != (args.model == "unet"):
        raise ValueError(f"model must be 'unet' for digits and 'mlp' for the 2-D datasets, got --model {args.model} "
                         f"with --dataset {args.dataset}")
    if args.loss == "simple":
        if (args.K not in (None, 1)) or (args.lam not in (None, 0.0)):
            raise ValueError(f"the simple loss takes no K or lam (got K={args.K}, lam={args.lam}); use --loss sa")
        loss = Loss("simple")
    else:
        T = recipe.make_schedule().T
        if args.K is not None and args.K > T:
            raise ValueError(f"--K must be in [1, {T}] (at most the schedule's T), got {args.K}")
        loss = Loss("sa", K=2 if args.K is None else args.K, lam=1.0 if args.lam is None else args.lam)
    changes = {key: getattr(args, key) for key in ("steps", "batch_size", "lr") if getattr(args, key) is not None}
    return recipe.replace(loss=loss, seed=args.seed, **changes)


def cmd_train(args) -> int:
    """``seqdiff train``: the arguments as a Recipe, trained into --out by ``runs.train_run`` (in one process; in
    N data-parallel processes with ``--nproc N``; as one rank under torchrun, where rank 0 alone reports)."""
    from .runs import Names, RankFailed, train_run

    recipe = _train_recipe(args)
    steps, batch_size, loss = recipe.steps, recipe.fit.get("batch_size", 256), recipe.loss
    check_memory("--steps", steps, HISTORY_ROW_BYTES * steps, "its per-step history")
    check_memory("--batch-size", batch_size,
                  4 * (loss.K + 1) * batch_size * _per_sample_floats(recipe.model_spec(), train=True),
                  "the activations of a batch" + (f" for K={loss.K}" if loss.K > 1 else ""))
    names = Names(out="--out", resume="--resume", overwrite="--overwrite", nproc="--nproc",
                  batch_size="--batch-size", device="--device")
    try:
        run = train_run(recipe, args.out, resume=args.resume, overwrite=args.overwrite,
                        checkpoint_every=args.checkpoint_every, progress=not args.quiet, threads=args.threads,
                        device=args.device, nproc=args.nproc, names=names,
                        note=lambda text: sys.stderr.write(f"{PROG}: {text}\n"))
    except RankFailed:  # another rank of a torchrun launch: rank 0 reports the run's error
        return 1
    if run.main:
        stem = run.checkpoint
        tail = f", final loss {run.last_loss:.4f}" if run.last_loss is not None else ""
        ranks = f" on {run.processes} processes" if run.processes > 1 else ""
        print(f"wrote {stem}.safetensors and {stem}.json ({run.new_steps} steps{ranks} in {run.seconds:.1f} s"
              f"{tail})")
    return 0


def cmd_sample(args) -> int:
    import numpy as np
    import torch

    from ._runtime import set_threads
    from .data import dataset
    from .recipes import load_for_sampling
    from .runs import check_out_path, make_folder
    from .solvers import options_from_data, sample, scaled_model

    steps = args.steps
    _check_steps([steps])
    _check_solver_args(args)
    if args.eps_scale is not None and args.eps_scale <= 0:
        raise ValueError(f"--eps-scale must be > 0 (the factor on the predicted noise), got {args.eps_scale}")
    out = check_out_path("--out", args.out, folder=False)
    if out.suffix.lower() != ".npz":
        raise ValueError(f"--out must be a .npz file, got {shorten(out)}")
    make_folder("--out", out.parent)
    set_threads(args.threads)
    loaded = load_for_sampling(args.checkpoint)
    model, meta, schedule = loaded.model, loaded.config, loaded.schedule
    if steps > schedule.T:
        raise ValueError(f"steps must be in [1, {schedule.T}] for this schedule, got {steps}")
    spec = meta.get("model", {}).get("args", {})
    shape = (spec["dim"],) if "dim" in spec else (1, 8, 8)
    check_memory("--n", args.n, 4 * args.n * _per_sample_floats(meta.get("model", {})), "the samples and the "
                  "network's activations")
    gen = torch.Generator().manual_seed(args.seed)
    x_T = torch.randn((args.n, *shape), generator=gen)
    opts = {"eta": args.eta} if args.solver == "ddim" else {}
    if args.solver in ("analytic_dpm", "exact_cov"):  # what only the checkpoint's data can give
        opts = options_from_data(args.solver, scaled_model(model, args.eps_scale), dataset(meta.get("dataset")),
                                 schedule, schedule.timesteps(steps, args.spacing),
                                 generator=torch.Generator().manual_seed(args.seed))
    traj = sample(model, x_T, schedule, steps, solver=args.solver, spacing=args.spacing, generator=gen,
                  record_every=steps, eps_scale=args.eps_scale, **opts)  # only the samples are written
    config = {"checkpoint": str(args.checkpoint), "steps": steps, "eta": args.eta, "solver": args.solver,
              "n": args.n, "seed": args.seed, "spacing": args.spacing, "dataset": meta.get("dataset"),
              "loss": meta.get("loss"), "schedule": meta.get("schedule"), "eps_scale": args.eps_scale}
    buf = io.BytesIO()
    np.savez(buf, samples=traj.final.numpy().astype(np.float32), x_T=x_T.numpy().astype(np.float32),
             timesteps=traj.timesteps.numpy().astype(np.int64), config=np.array(json.dumps(config)))
    atomic_write(out, buf.getvalue())
    how = f"eta={args.eta}" if args.solver == "ddim" else f"solver {args.solver}"
    print(f"wrote {out}: samples {tuple(traj.final.shape)} after {steps} steps ({how})")
    return 0


def _check_solver_args(args) -> None:
    if args.solver != "ddim" and args.eta != 0.0:
        raise ValueError(f"--eta belongs to --solver ddim (the generalized step), got --eta {args.eta} with "
                         f"--solver {args.solver}")


def cmd_compare(args) -> int:
    from .demo import compare_checkpoints
    from .runs import check_out_path, writing

    steps = args.steps
    _check_steps(steps)
    twice = sorted({s for s in steps if steps.count(s) > 1})
    if twice:
        raise ValueError(f"--steps lists {', '.join(map(str, twice))} more than once; give each step count once")
    _check_solver_args(args)
    _check_evaluation_memory(args.points, steps, len(args.checkpoints) + 1, 64)
    out = check_out_path("--out", args.out, folder=True, files=REPORT_FILES)
    with writing("--out", out):
        compare_checkpoints(args.checkpoints, steps, out, points=args.points, seed=args.seed, eta=args.eta,
                            solver=args.solver, threads=args.threads)
    return 0


def cmd_experiment(args) -> int:
    from .experiments import JobsFailedError, run_experiment
    from .few_step import PRESET, run_study
    from .runs import check_out_path, writing

    out = os.path.join("runs", args.preset) if args.out is None else args.out
    check_out_path("--out", out, folder=True)
    if args.preset == PRESET:
        unused = [f"--{k.replace('_', '-')}" for k in ("workers", "scheduler", "connect_timeout")
                  if getattr(args, k) is not None]
        if unused:
            raise ValueError(f"{' and '.join(unused)} do(es) not apply to --preset {PRESET}, which runs in this one "
                             f"process; leave {'them' if len(unused) > 1 else 'it'} out")
        with writing("--out", Path(out)):
            # progress on stderr, as the other presets: stdout keeps the result's paths
            _, paths = run_study(out, log=None if args.quiet else lambda msg: print(msg, file=sys.stderr, flush=True))
        for name, p in paths.items():
            print(f"{name}: {p}")
        return 0
    if args.connect_timeout is not None and args.scheduler is None:
        raise ValueError(f"--connect-timeout {args.connect_timeout:g} applies to --scheduler only; give both")
    timeout = {} if args.connect_timeout is None else {"connect_timeout": args.connect_timeout}
    try:
        res = run_experiment(args.preset, out, workers=2 if args.workers is None else args.workers,
                             scheduler=args.scheduler, progress=not args.quiet, **timeout)
    except JobsFailedError as err:  # a result, not a crash: one line like every other error
        raise ValueError(str(err)) from None
    except FolderLockedError as err:
        raise ValueError(f"--out {err}") from None
    print(f"{len(res.rows)} rows; trained {res.stats['trained']} models, evaluated {res.stats['evaluated']} cells "
          f"in {res.stats['seconds']:.0f} s")
    for name, p in res.paths.items():
        print(f"{name}: {p}")
    return 0


COMMANDS = {"demo": cmd_demo, "train": cmd_train, "sample": cmd_sample, "compare": cmd_compare,
            "experiment": cmd_experiment}


SIGPIPE_STATUS = 141  # 128 + SIGPIPE: the status a shell shows for a writer whose reader has gone


def _terminated(signum, frame):
    """SIGTERM (`kill`, a batch system's stop) ends a command the way Ctrl-C does: an exception that unwinds it,
    so an experiment's pool ends its workers and what finished stays written."""
    sys.stderr.write(f"{PROG}: terminated\n")
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    """Entry point of the ``seqdiff`` console script; returns the exit status."""
    on_main_thread = threading.current_thread() is threading.main_thread()  # where signal handlers can be set
    previous = signal.signal(signal.SIGTERM, _terminated) if on_main_thread else None
    try:
        return _main(argv)
    except BrokenPipeError:
        # the reader went away (`seqdiff demo | head -1`): stop quietly, as a program ended by SIGPIPE does, and
        # point stdout at /dev/null so that the interpreter's last flush does not fail again
        with suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return SIGPIPE_STATUS
    finally:
        # None: not the main thread (nothing was set), or an earlier handler from outside Python, which cannot be
        # put back (ours stays)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # the command is the first word that is not an option (the top level has only --help and --version)
    command = next((a for a in argv if not a.startswith("-")), "")
    parser = build_parser(only=command)
    args = parser.parse_args(argv)
    args.argv = argv  # what `train --nproc N` hands to its processes
    if args.version:
        from ._runtime import __version__
        print(f"seqdiff_kit {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    # errors the library raises for bad input become one line, never a traceback
    from .train import NonFiniteLossError

    try:
        return COMMANDS[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, NonFiniteLossError) as err:
        sys.stderr.write(f"{PROG}: error: {one_line(err)}\n")
        return 1
    except BrokenPipeError:
        raise  # not an error of the job: main ends quietly
    except OSError as err:  # the disk filled up, permissions changed under us: the OS's words, one line
        sys.stderr.write(f"{PROG}: error: {os_error_line(err)}\n")
        return 1
    except MemoryError:
        sys.stderr.write(f"{PROG}: error: out of memory; try smaller sizes (--n, --points, --batch-size)\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130


if __name__ == "__main__":
    status = main()
    if os.environ.get("WORLD_SIZE", "1") != "1":  # a rank of a data-parallel run (how ddp.launch starts them)
        from .ddp import exit_rank

        exit_rank(status)
    raise SystemExit(status)
