"""The ``seqdiff`` command: ``demo``, ``train``, ``sample``, ``compare`` and ``experiment``.

    seqdiff demo [--out runs/demo] [--retrain] [--points N] [--seed S]
    seqdiff train --dataset ring8 --model mlp --loss sa --K 2 --lam 1 --steps 3000 --seed 0 --out runs/x
    seqdiff sample --checkpoint runs/x --steps 50 --eta 0 --n 1000 --out samples.npz
    seqdiff compare CKPT CKPT [...] --steps 5 10 20 50 100 --out runs/compare
    seqdiff experiment --preset paper-toy [--out runs/paper-toy] [--workers 2]

Bad input (an unknown dataset, a missing or corrupt checkpoint, K < 1, a negative step count, lam < 0) ends with
one line ``seqdiff: error: ...`` on stderr and exit status 2 (usage) or 1 (anything the library refused).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

from ._io import atomic_write

PROG = "seqdiff"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``seqdiff: error: <message>`` (no usage block), exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        sub = self.prog[len(PROG):].strip()
        hint = f" (see `{PROG}{' ' + sub if sub else ''} --help`)"
        sys.stderr.write(f"{PROG}: error: {_one_line(message)}{hint}\n")
        raise SystemExit(2)


def _one_line(message) -> str:
    return " ".join(str(message).split())


def _pos_int(name: str):
    """An argparse type: an integer >= 1, with a one-line message naming the option."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= 1, got {value}")
        return value
    return parse


def _float(name: str, low: float | None = None):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"{name} must be finite, got {text!r}")
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"{name} must be >= {low}, got {value}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    from .data import DATASETS
    from .demo import DEMO_POINTS, DEMO_STEPS

    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog=PROG, formatter_class=fmt,
                     description="seqdiff_kit: diffusion sampling, the ideal path, drift and the sequence-aware loss.",
                     epilog="Run `seqdiff COMMAND --help` for the options of a command.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("demo", formatter_class=fmt, help="simple vs SA loss on ring8: a table and an HTML report",
                       description="Load the shipped ring8 MLPs (simple loss; SA loss K=2, lam=1), sample them and "
                                   "the ideal denoiser with 5, 10, 20, 50 and 100 DDIM steps from one x_T, print MMD, "
                                   "sliced Wasserstein and log-likelihood, and write OUT/report.html.")
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.add_argument("--retrain", action="store_true", help="train both models from scratch (a few minutes on a CPU)")
    p.add_argument("--points", type=_pos_int("--points"), default=DEMO_POINTS,
                   help=f"samples per model and step count (default: {DEMO_POINTS})")
    p.add_argument("--seed", type=int, default=0, help="seed of x_T, the data draws (and the training with --retrain)")
    p.add_argument("--train-steps", type=_pos_int("--train-steps"), default=None,
                   help="training steps with --retrain (default: the shipped recipe's)")
    p.add_argument("--threads", type=_pos_int("--threads"), default=None,
                   help="torch threads (default: 1 to evaluate; SEQDIFF_THREADS or 1 to retrain)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")

    p = sub.add_parser("train", formatter_class=fmt, help="train a denoiser and write a checkpoint",
                       description="Train an MLP (2-D presets) or a TinyUNet (digits) and write OUT/model.safetensors "
                                   "+ OUT/model.json (weights, EMA, optimizer state) and OUT/history.json.",
                       epilog="example: seqdiff train --dataset ring8 --model mlp --loss sa --K 2 --lam 1 "
                              "--steps 3000 --seed 0 --out runs/x")
    p.add_argument("--dataset", default="ring8", metavar="NAME", help=f"one of {', '.join(DATASETS)} (default: ring8)")
    p.add_argument("--model", default=None, choices=("mlp", "unet"),
                   help="mlp for the 2-D presets, unet (TinyUNet) for digits (default: by dataset)")
    p.add_argument("--loss", default="simple", choices=("simple", "sa"), help="training loss (default: simple)")
    p.add_argument("--K", type=int, default=None, help="SA loss: consecutive steps, >= 1 (default: 2)")
    p.add_argument("--lam", type=_float("--lam"), default=None, help="SA loss: weight, >= 0 (default: 1.0)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    p.add_argument("--batch-size", type=_pos_int("--batch-size"), default=None)
    p.add_argument("--lr", type=_float("--lr"), default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/train", help="output folder (default: runs/train)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/model if it exists")
    p.add_argument("--checkpoint-every", type=_pos_int("--checkpoint-every"), default=None)
    p.add_argument("--threads", type=_pos_int("--threads"), default=None,
                   help="torch threads (default: SEQDIFF_THREADS or 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("sample", formatter_class=fmt, help="sample a checkpoint into an .npz file",
                       description="Sample a checkpoint with the generalized DDIM/DDPM sampler and write an .npz "
                                   "(no pickle) holding `samples` [n, ...], `x_T`, `timesteps` and `config` (JSON).")
    p.add_argument("--checkpoint", required=True, help="a checkpoint stem, .json, .safetensors, or a train folder")
    p.add_argument("--steps", type=int, default=50, help="sampling steps, >= 1 (default: 50)")
    p.add_argument("--eta", type=_float("--eta", 0.0), default=0.0, help="0 = DDIM, 1 = DDPM (default: 0)")
    p.add_argument("--n", type=_pos_int("--n"), default=1000, help="number of samples (default: 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spacing", default="trailing", choices=("trailing", "leading", "linspace", "quad"))
    p.add_argument("--out", default="samples.npz", help="output .npz file (default: samples.npz)")
    p.add_argument("--threads", type=_pos_int("--threads"), default=None,
                   help="torch threads (default: SEQDIFF_THREADS or 1)")

    p = sub.add_parser("compare", formatter_class=fmt, help="compare checkpoints: a table and a report",
                       description="Sample two or more checkpoints of one dataset from the same x_T at each step "
                                   "count (plus the ideal denoiser on 2-D data), print a table and write "
                                   "OUT/report.html and OUT/metrics.json.")
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="checkpoints (stems, .json files or train folders)")
    p.add_argument("--steps", type=int, nargs="+", default=list(DEMO_STEPS),
                   help="step counts (default: 5 10 20 50 100)")
    p.add_argument("--points", type=_pos_int("--points"), default=1000, help="samples per run (default: 1000)")
    p.add_argument("--eta", type=_float("--eta", 0.0), default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/compare", help="output folder (default: runs/compare)")
    p.add_argument("--threads", type=_pos_int("--threads"), default=1, help="torch threads (default: 1)")

    add_experiment_parser(sub)
    return parser


def add_experiment_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``experiment`` on an argparse ``subparsers`` object (``seqdiff experiment ...``)."""
    from .experiments import GRIDS

    p = subparsers.add_parser("experiment", help="run the simple-vs-SA grid (seeds, steps, eta, budgets)",
                              description="Run (or resume) the simple-vs-SA comparison and write CSV + HTML.")
    p.add_argument("--preset", default="paper-toy", choices=sorted(GRIDS))
    p.add_argument("--out", default=None, help="output folder (default runs/<preset>)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (one torch thread each)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


# ---------------------------------------------------------------------- commands
def _check_steps_arg(name: str, value: int, low: int = 1) -> int:
    if value < low:
        what = "a positive" if low >= 1 else "a non-negative"
        raise ValueError(f"{name} must be {what} step count (>= {low}), got {value}")
    return value


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, retrain=args.retrain, points=args.points, seed=args.seed, progress=not args.quiet,
             train_steps=args.train_steps, threads=args.threads)
    return 0


def cmd_train(args) -> int:
    from .losses import Loss
    from .recipes import recipe_for
    from . import train as train_mod

    recipe = recipe_for(args.dataset)  # refuses an unknown dataset first
    data = recipe.data()
    model_kind = args.model or ("unet" if args.dataset == "digits" else "mlp")
    if (args.dataset == "digits") != (model_kind == "unet"):
        raise ValueError(f"model must be 'unet' for digits and 'mlp' for the 2-D datasets, got --model {model_kind} "
                         f"with --dataset {args.dataset}")
    if args.loss == "simple":
        if (args.K not in (None, 1)) or (args.lam not in (None, 0.0)):
            raise ValueError(f"the simple loss takes no K or lam (got K={args.K}, lam={args.lam}); use --loss sa")
        loss = Loss("simple")
    else:
        loss = Loss("sa", K=2 if args.K is None else args.K, lam=1.0 if args.lam is None else args.lam)
    changes = {"steps": _check_steps_arg("steps", args.steps, 0)} if args.steps is not None else {}
    changes.update({key: getattr(args, key) for key in ("batch_size", "lr") if getattr(args, key) is not None})
    recipe = recipe.replace(loss=loss, seed=args.seed, **changes)
    model = recipe.build_model()
    schedule = recipe.make_schedule()
    out = Path(args.out)
    stem = out / "model"
    t0 = time.perf_counter()
    history = []
    for state in train_mod.train_iter(model, data, schedule, loss, seed=args.seed, checkpoint=stem,
                                      checkpoint_every=args.checkpoint_every, resume=args.resume,
                                      progress=not args.quiet, threads=args.threads,
                                      dataset_name=args.dataset, **recipe.fit):
        history.append(state.as_dict())
    if not history and not (args.resume and stem.with_suffix(".json").exists()):
        raise ValueError("steps must be >= 1 for a new run (0 steps writes no checkpoint)")
    atomic_write(out / "history.json",
                 json.dumps({"loss": loss.config, "dataset": args.dataset, "history": history}, indent=1) + "\n")
    last = f", final loss {history[-1]['loss']:.4f}" if history else ""
    print(f"wrote {stem}.safetensors and {stem}.json ({len(history)} steps in "
          f"{time.perf_counter() - t0:.1f} s{last})")
    return 0


def cmd_sample(args) -> int:
    import numpy as np
    import torch

    from .recipes import load_for_sampling
    from .samplers import sample

    steps = _check_steps_arg("steps", args.steps)
    out = Path(args.out)
    if out.suffix.lower() != ".npz":
        raise ValueError(f"out must be a .npz file, got {str(out)!r}")
    from ._runtime import set_threads

    set_threads(args.threads)
    loaded = load_for_sampling(args.checkpoint)
    model, meta, schedule = loaded.model, loaded.config, loaded.schedule
    if steps > schedule.T:
        raise ValueError(f"steps must be in [1, {schedule.T}] for this schedule, got {steps}")
    spec = meta.get("model", {}).get("args", {})
    shape = (spec["dim"],) if "dim" in spec else (1, 8, 8)
    gen = torch.Generator().manual_seed(args.seed)
    x_T = torch.randn((args.n, *shape), generator=gen)
    traj = sample(model, x_T, schedule, steps, eta=args.eta, spacing=args.spacing, generator=gen,
                  record_every=steps)  # keep only the last step: the samples are what is written
    config = {"checkpoint": str(args.checkpoint), "steps": steps, "eta": args.eta, "n": args.n, "seed": args.seed,
              "spacing": args.spacing, "dataset": meta.get("dataset"), "loss": meta.get("loss"),
              "schedule": meta.get("schedule")}
    buf = io.BytesIO()
    np.savez(buf, samples=traj.final.numpy().astype(np.float32), x_T=x_T.numpy().astype(np.float32),
             timesteps=traj.timesteps.numpy().astype(np.int64), config=np.array(json.dumps(config)))
    atomic_write(out, buf.getvalue())
    print(f"wrote {out}: samples {tuple(traj.final.shape)} after {steps} steps (eta={args.eta})")
    return 0


def cmd_compare(args) -> int:
    from .demo import compare_checkpoints

    steps = [_check_steps_arg("steps", s) for s in args.steps]
    compare_checkpoints(args.checkpoints, steps, args.out, points=args.points, seed=args.seed, eta=args.eta,
                        threads=args.threads)
    return 0


def cmd_experiment(args) -> int:
    import os

    from .experiments import run_experiment

    out = args.out or os.path.join("runs", args.preset)
    res = run_experiment(args.preset, out, workers=args.workers, progress=not args.quiet)
    print(f"{len(res.rows)} rows; trained {res.stats['trained']} models, evaluated {res.stats['evaluated']} cells "
          f"in {res.stats['seconds']:.0f} s")
    for name, p in res.paths.items():
        print(f"{name}: {p}")
    return 0


COMMANDS = {"demo": cmd_demo, "train": cmd_train, "sample": cmd_sample, "compare": cmd_compare,
            "experiment": cmd_experiment}


def main(argv=None) -> int:
    """Entry point of the ``seqdiff`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
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
        sys.stderr.write(f"{PROG}: error: {_one_line(err)}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
