"""Train TinyUNet on the 8x8 digits with the simple or the sequence-aware (SA) loss; sweep lam; ship checkpoints.

The recipe (the defaults): linear schedule T = 1000, TinyUNet(channels=32), Adam lr 2e-3 with 200 warm-up
steps then constant, batch 128, gradient clipping at 1, EMA 0.999, seed 0, all 1797 digits in [-1, 1].
The learning rate is constant after warm-up so that an EMA snapshot at step N *is* the N-step run: one long
run answers "how many steps are enough".

Modes:
  train   one run; writes EMA snapshots (seqdiff checkpoints holding the EMA weights only) and, with --eval,
          a JSON of digit Frechet distance / confidence share per snapshot and step count.
            python scripts/train_digits.py train --loss sa --lam 0.5 --steps 6000 --snapshots 3000,6000 \
                --out runs/digits/sa0.5 --eval [--device cuda] [--threads 2]
  time    per-step wall time of the recipe (simple and SA) on the CPU at --threads threads.
  sweep   simple + SA for each lam in --lams (and extra seeds), as parallel `train` processes; gathers a
          results JSON and one tar of snapshots per seed-0 run into --out-dir.
  seeds   the digits comparison over training seeds: trains (`train`, one thread, --jobs at a time) every
          (loss, seed) of --seeds whose snapshot is missing in --work-dir, takes seed 0 from the shipped
          checkpoints, scores all with seed_study.measure_digit_seeds (evaluate.steps_table) on this machine and
          writes data/checkpoints/digits_seeds.json (per-seed FD / confident share, SA - simple paired intervals).
            nice python scripts/train_digits.py seeds --seeds 1,2 --jobs 2
  export  copy a snapshot into data/checkpoints/digits_<name> with the recipe, what trained it and the
          measured tables recorded in its JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import seqdiff_kit  # noqa: E402
from seqdiff_kit import Schedule, TinyUNet, digits  # noqa: E402
from seqdiff_kit.checkpoint import checkpoint_exists, load_checkpoint, save_checkpoint  # noqa: E402
from seqdiff_kit.data import CHECKPOINT_DIR  # noqa: E402
from seqdiff_kit.denoisers import seeded_model  # noqa: E402
from seqdiff_kit.losses import Loss  # noqa: E402
from seqdiff_kit.train import train_iter  # noqa: E402

from seqdiff_kit.recipes import DIGITS  # noqa: E402
from seqdiff_kit.seed_study import (DIGITS_LOSSES, DIGITS_SEEDS_PATH, DigitSeeds, digit_seeds_markdown,  # noqa: E402
                                    measure_digit_seeds, save_study)

# the shipped recipe (seqdiff_kit.recipes.DIGITS) as this script's defaults
RECIPE = dict(DIGITS.model_args, schedule=DIGITS.schedule["name"], **DIGITS.fit, seed=DIGITS.seed, K=2)


def _loss(name: str, K: int, lam: float) -> Loss:
    return Loss("simple") if name == "simple" else Loss("sa", K=K, lam=lam)


def _device_info(device: str) -> dict:
    info = {"device": device, "torch": torch.__version__, "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# ---------------------------------------------------------------------- train
def cmd_train(a) -> dict:
    seqdiff_kit.set_threads(a.threads)
    x, _ = digits()
    schedule = Schedule.from_name(a.schedule, a.T)
    loss = _loss(a.loss, a.K, a.lam)
    model = seeded_model(TinyUNet, a.seed, channels=a.channels, time_dim=a.time_dim, T=a.T)
    snapshots = sorted({int(s) for s in a.snapshots.split(",") if s} | {a.steps})
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    recipe = {"steps": a.steps, "batch_size": a.batch_size, "lr": a.lr, "warmup": a.warmup, "cosine_decay": False,
              "grad_clip": a.grad_clip, "ema_decay": a.ema_decay, "seed": a.seed, "optimizer": "Adam"}
    base_cfg = {"dataset": "digits8x8", "schedule": schedule.config(), "loss": loss.config, "seed": a.seed,
                "train": recipe, "weights": "ema", "trained_by": _device_info(a.device),
                "script": "scripts/train_digits.py"}
    t0 = time.perf_counter()
    history = []
    for state in train_iter(model, x, schedule, loss, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                            seed=a.seed, ema_decay=a.ema_decay, grad_clip=a.grad_clip, warmup=a.warmup,
                            progress=False, threads=a.threads, device=a.device, dataset_name="digits8x8"):
        if state.step % 100 == 0:
            history.append({"step": state.step, "loss": state.loss, "simple": state.simple, "sa": state.sa})
        if state.step in snapshots:
            seconds = time.perf_counter() - t0
            cfg = dict(base_cfg, step=state.step, train_seconds=round(seconds, 2))
            # the EMA weights only (saved as the model): a small file without optimizer state
            save_checkpoint(out / f"step{state.step}", state.ema, cfg)
            print(f"[{out.name}] step {state.step}  loss {state.loss:.4f}  {seconds:.1f}s", flush=True)
    result = {"run": out.name, "loss": loss.config, "seed": a.seed, "steps": a.steps, "snapshots": snapshots,
              "train_seconds": time.perf_counter() - t0, "history": history, "trained_by": _device_info(a.device)}
    if a.eval:
        from seqdiff_kit.evaluate import steps_table

        result["tables"] = {}
        for s in snapshots:
            ema, _ = load_checkpoint(out / f"step{s}", device=a.device)
            table = steps_table({out.name: ema}, schedule, n=a.eval_n, seed=a.eval_seed, device=a.device)
            result["tables"][str(s)] = table.as_dict()
            print(f"[{out.name}] step {s}  FD {['%.2f' % v for v in table.fd[out.name]]}  "
                  f"conf {['%.3f' % v for v in table.confident[out.name]]}", flush=True)
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


# ---------------------------------------------------------------------- time
def cmd_time(a) -> dict:
    seqdiff_kit.set_threads(a.threads)
    x, _ = digits()
    schedule = Schedule.from_name(a.schedule, a.T)
    out = {"threads": torch.get_num_threads(), "batch_size": a.batch_size, **_device_info("cpu")}
    for name, loss in (("simple", Loss("simple")), ("sa", Loss("sa", K=a.K, lam=0.5))):
        model = seeded_model(TinyUNet, 0, channels=a.channels, time_dim=a.time_dim, T=a.T)
        stamps = []
        for _ in train_iter(model, x, schedule, loss, steps=a.warm + a.steps, batch_size=a.batch_size,
                            progress=False, threads=a.threads):
            stamps.append(time.perf_counter())
        out[f"{name}_seconds_per_step"] = (stamps[-1] - stamps[a.warm - 1]) / a.steps
    print(json.dumps(out), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    return out


# ---------------------------------------------------------------------- sweep
def cmd_sweep(a) -> None:
    out_dir = Path(a.out_dir)
    work = Path(a.work_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    runs = [("simple", 0.0, 0)] + [("sa", float(lam), 0) for lam in a.lams.split(",")]
    for seed in (int(s) for s in a.extra_seeds.split(",") if s):
        runs += [("simple", 0.0, seed), ("sa", float(a.extra_seed_lam), seed)]
    common = ["--steps", str(a.steps), "--snapshots", a.snapshots, "--device", a.device, "--threads", "1",
              "--eval", "--eval-n", str(a.eval_n)]
    procs = []
    t0 = time.perf_counter()
    for name, lam, seed in runs:
        tag = f"{name}{'' if name == 'simple' else lam}_s{seed}"
        cmd = [sys.executable, __file__, "train", "--loss", name, "--lam", str(lam), "--seed", str(seed),
               "--out", str(work / tag), *common]
        procs.append((tag, seed, subprocess.Popen(cmd, stdout=open(work / f"{tag}.log", "w"), stderr=subprocess.STDOUT)))
    timer = None
    if a.time_cpu:
        timer = subprocess.Popen([sys.executable, __file__, "time", "--threads", "2", "--json",
                                  str(work / "cpu_time.json")], stdout=open(work / "cpu_time.log", "w"),
                                 stderr=subprocess.STDOUT)
    results = {"runs": {}, "sweep_seconds": None}
    for tag, seed, p in procs:
        rc = p.wait()
        log = (work / f"{tag}.log").read_text()
        print(f"== {tag} rc={rc}\n{log[-3000:]}", flush=True)
        if rc == 0:
            results["runs"][tag] = json.loads((work / tag / "result.json").read_text())
            if seed == 0:  # ship the seed-0 snapshots back (EMA weights only, ~0.8 MB each)
                with tarfile.open(out_dir / f"{tag}.tar", "w") as tar:
                    tar.add(work / tag, arcname=tag)
    if timer is not None:
        timer.wait()
        print((work / "cpu_time.log").read_text()[-2000:], flush=True)
        if (work / "cpu_time.json").exists():
            results["cpu_time"] = json.loads((work / "cpu_time.json").read_text())
    results["sweep_seconds"] = time.perf_counter() - t0
    (out_dir / "sweep_results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"sweep done in {results['sweep_seconds']:.1f}s", flush=True)


# ---------------------------------------------------------------------- seeds
SHIPPED_DIGITS = {"simple": "digits_simple", "sa": "digits_sa"}  # the seed-0 networks


def _seed_dir(work: Path, loss: str, seed: int) -> Path:
    lam = DIGITS_LOSSES[loss].lam
    return work / f"{'simple' if loss == 'simple' else f'sa{lam}'}_s{seed}"


def _train_missing(a, seeds: list[int]) -> None:
    """`train` every (loss, seed) whose snapshot at --steps is missing, --jobs processes at a time (SA first: the
    longer runs), one torch thread each."""
    work = Path(a.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    todo = [(loss, seed) for loss in ("sa", "simple") for seed in seeds
            if not checkpoint_exists(_seed_dir(work, loss, seed) / f"step{a.steps}")]
    running = []
    while todo or running:
        while todo and len(running) < a.jobs:
            loss, seed = todo.pop(0)
            out = _seed_dir(work, loss, seed)
            cfg = DIGITS_LOSSES[loss]
            cmd = [sys.executable, __file__, "train", "--loss", loss, "--lam", str(cfg.lam), "--K", str(cfg.K),
                   "--seed", str(seed), "--steps", str(a.steps), "--snapshots", str(a.steps), "--threads", "1",
                   "--out", str(out)]
            log = open(work / f"{out.name}.log", "w")
            running.append((out, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)))
            print(f"training {out.name}", flush=True)
        time.sleep(2)
        for out, proc in list(running):
            if proc.poll() is not None:
                running.remove((out, proc))
                if proc.returncode != 0:
                    raise SystemExit(f"training {out.name} failed (rc {proc.returncode}): see {work / out.name}.log")
                print(f"trained {out.name}", flush=True)


def _seed_network(a, loss: str, seed: int):
    """The network of (loss, seed) and what the stored file says about it: seed 0 is the shipped checkpoint."""
    if seed == 0:
        stem = CHECKPOINT_DIR / SHIPPED_DIGITS[loss]
    else:
        stem = _seed_dir(Path(a.work_dir), loss, seed) / f"step{a.steps}"
    model, cfg = load_checkpoint(stem)
    if cfg["loss"] != DIGITS_LOSSES[loss].config or cfg["step"] != a.steps or cfg["seed"] != seed:
        raise SystemExit(f"{stem}: loss {cfg['loss']}, step {cfg['step']}, seed {cfg['seed']}; expected "
                         f"{DIGITS_LOSSES[loss].config}, step {a.steps}, seed {seed}")
    about = {"checkpoint": str(stem.relative_to(ROOT)) if stem.is_relative_to(ROOT) else str(stem),
             "shipped": seed == 0, "weights_sha256": cfg["weights_sha256"], "train_steps": cfg["step"],
             "trained_by": cfg["trained_by"], "train_seconds": cfg.get("train_seconds")}
    return model, about


def cmd_seeds(a) -> dict:
    seeds = sorted({int(s) for s in a.seeds.split(",") if s} | {0})
    _train_missing(a, [s for s in seeds if s != 0])
    seqdiff_kit.set_threads(a.threads)
    networks, about = {loss: {} for loss in DIGITS_LOSSES}, {loss: {} for loss in DIGITS_LOSSES}
    for loss in DIGITS_LOSSES:
        for seed in seeds:
            networks[loss][seed], about[loss][str(seed)] = _seed_network(a, loss, seed)
    schedule = Schedule.from_name(RECIPE["schedule"], RECIPE["T"])
    steps = [int(v) for v in a.eval_steps.split(",") if v]
    record = measure_digit_seeds(networks, schedule, steps, n_points=a.eval_n, seed=a.eval_seed)
    for loss in DIGITS_LOSSES:
        for seed, info in about[loss].items():
            record["networks"][loss][seed].update(info)
    record["recipe"] = {k: v for k, v in RECIPE.items() if k != "seed"}
    record["evaluation"]["measured_on"] = {**_device_info("cpu"), "threads": torch.get_num_threads(),
                                           "load_average": [round(v, 2) for v in os.getloadavg()]}
    record["command"] = a.command
    save_study(record, a.out)
    print(digit_seeds_markdown(DigitSeeds(record)), flush=True)
    return record


# ---------------------------------------------------------------------- export
def cmd_export(a) -> None:
    model, cfg = load_checkpoint(a.snapshot)
    extra = json.loads(Path(a.info).read_text()) if a.info else {}
    cfg = {k: v for k, v in cfg.items() if k not in ("model", "format", "format_version", "has_ema", "library",
                                                     "library_version", "torch_version", "weights_file",
                                                     "weights_sha256")}
    cfg.update(extra)
    save_checkpoint(a.to, model, cfg)
    print(f"wrote {a.to}.safetensors/.json from {a.snapshot}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="mode", required=True)

    def recipe_args(q):
        q.add_argument("--channels", type=int, default=RECIPE["channels"])
        q.add_argument("--time-dim", type=int, default=RECIPE["time_dim"])
        q.add_argument("--T", type=int, default=RECIPE["T"])
        q.add_argument("--schedule", default=RECIPE["schedule"])
        q.add_argument("--batch-size", type=int, default=RECIPE["batch_size"])
        q.add_argument("--K", type=int, default=RECIPE["K"])

    t = sub.add_parser("train")
    recipe_args(t)
    t.add_argument("--loss", choices=("simple", "sa"), default="simple")
    t.add_argument("--lam", type=float, default=0.5)
    t.add_argument("--steps", type=int, default=RECIPE["steps"])
    t.add_argument("--snapshots", default="")
    t.add_argument("--lr", type=float, default=RECIPE["lr"])
    t.add_argument("--warmup", type=int, default=RECIPE["warmup"])
    t.add_argument("--grad-clip", type=float, default=RECIPE["grad_clip"])
    t.add_argument("--ema-decay", type=float, default=RECIPE["ema_decay"])
    t.add_argument("--seed", type=int, default=RECIPE["seed"])
    t.add_argument("--device", default="cpu")
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--out", required=True)
    t.add_argument("--eval", action="store_true")
    t.add_argument("--eval-n", type=int, default=1000)
    t.add_argument("--eval-seed", type=int, default=0)

    m = sub.add_parser("time")
    recipe_args(m)
    m.add_argument("--threads", type=int, default=2)
    m.add_argument("--warm", type=int, default=5)
    m.add_argument("--steps", type=int, default=30)
    m.add_argument("--json", default=None)

    s = sub.add_parser("sweep")
    s.add_argument("--lams", default="0.25,0.5,1.0")
    s.add_argument("--extra-seeds", default="1")
    s.add_argument("--extra-seed-lam", type=float, default=0.5)
    s.add_argument("--steps", type=int, default=8000)
    s.add_argument("--snapshots", default="2000,3000,4000,6000,8000")
    s.add_argument("--device", default="cpu")
    s.add_argument("--eval-n", type=int, default=1000)
    s.add_argument("--time-cpu", action="store_true")
    s.add_argument("--out-dir", required=True)
    s.add_argument("--work-dir", default="/tmp/digits_sweep")

    d = sub.add_parser("seeds")
    d.add_argument("--seeds", default="1,2", help="training seeds besides 0 (the shipped networks)")
    d.add_argument("--steps", type=int, default=RECIPE["steps"])
    d.add_argument("--jobs", type=int, default=2, help="training processes at a time (one thread each)")
    d.add_argument("--work-dir", default=str(ROOT / "runs" / "digits_seeds"))
    d.add_argument("--threads", type=int, default=1, help="torch threads of the evaluation")
    d.add_argument("--eval-n", type=int, default=1000)
    d.add_argument("--eval-seed", type=int, default=0)
    d.add_argument("--eval-steps", default="5,10,20,50,100", help="DDIM step counts of the evaluation")
    d.add_argument("--out", default=str(DIGITS_SEEDS_PATH))

    e = sub.add_parser("export")
    e.add_argument("--snapshot", required=True)
    e.add_argument("--to", required=True)
    e.add_argument("--info", default=None, help="a JSON file whose keys are added to the config")

    a = p.parse_args(argv)
    a.command = shlex.join(["python", "scripts/train_digits.py", *(sys.argv[1:] if argv is None else argv)])
    {"train": cmd_train, "time": cmd_time, "sweep": cmd_sweep, "seeds": cmd_seeds,
     "export": cmd_export}[a.mode](a)


if __name__ == "__main__":
    main()
