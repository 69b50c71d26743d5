"""Training: a loop that yields its state every step (notebooks decide what to plot), ``fit`` to run it through.

One step (``i = 0, 1, ...`` counts the updates done before it):

    lr_i       = lr_at(i)                     linear warm-up, then constant or cosine decay
    x0         ~ data                         fresh mixture draws, or the next minibatch of a shuffled tensor
    L          = loss(model, x0, schedule)    t and eps drawn from the same generator
    g          = clip(grad L, grad_clip)      by the global norm
    theta     <- Adam(theta, g, lr_i)
    theta_ema <- d_i theta_ema + (1 - d_i) theta,   d_i = min(ema_decay, (1 + i) / (10 + i))

All randomness (data, timesteps, noise) comes from one ``torch.Generator`` seeded with ``seed``; a checkpoint
stores the model, the EMA, Adam's moments, the generator state and the data-order state, so that on the CPU a
resumed run is bit-for-bit the run that was never interrupted. It also stores the history of every step so
far (``extra.history``, one row of ``HISTORY_KEYS`` per step), so a resumed run's history is whole.

Data parallel (``shards = W > 1``, see ``ddp``): the batch is split into W shards of ``batch_size / W``, shard r
drawing from its own generator seeded with ``ddp.shard_seed(seed, r)`` (shard 0: ``seed``), and

    L = (1/W) sum_r L_r

is the loss. Under torchrun (an initialized process group of W ranks) rank r computes shard r and
``DistributedDataParallel`` averages the gradients; a single process computes every shard (their mean, one
backward), which gives the same weights to float32 rounding. Clipping uses the global norm of the averaged
gradient, so every rank takes the same step and keeps the same EMA; the logged losses are means over the ranks;
rank 0 alone writes the checkpoint, which holds every shard's generator and data-order state, so that a run
resumes bit-for-bit with the same number of shards. ``W = 1`` is the single-process run above, unchanged.
"""
from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Generator, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from ._runtime import set_threads
from ._validate import check_device_arg, check_float, check_int, check_tensor, check_type
from .checkpoint import (EMA_PREFIX, EXTRA_PREFIX, MODEL_PREFIX, check_state, checkpoint_exists, checkpoint_paths,
                         model_spec, read_checkpoint, save_checkpoint, sub_state)
from .data import GaussianMixture
from .ddp import all_mean, gather_objects, shard_seed, world
from .losses import Loss, LossOutput
from .schedule import Schedule

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit seed
HISTORY_KEYS = ("step", "loss", "simple", "sa", "lr", "grad_norm")  # the columns of extra.history


class NonFiniteLossError(RuntimeError):
    """Training met a NaN/inf loss or gradient; the weights and the last checkpoint were left untouched."""


@dataclass
class TrainState:
    """The state after one update. ``step`` counts updates done (1 after the first). ``loss``, ``simple``
    and ``sa`` are the loss parts of this step's batch, ``lr`` the learning rate it used, ``grad_norm`` the
    global gradient norm before clipping. ``model`` and ``ema`` are the live modules (not copies).
    ``history`` is the live list of ``as_dict()`` of every step so far, those before a resume included;
    ``checkpointed`` says whether a checkpoint was written after this step."""

    step: int
    loss: float
    simple: float
    sa: float
    lr: float
    grad_norm: float
    model: nn.Module = field(repr=False)
    ema: nn.Module = field(repr=False)
    history: list = field(default_factory=list, repr=False)
    checkpointed: bool = False

    def as_dict(self) -> dict:
        """The scalars (for a history list or a log)."""
        return {k: getattr(self, k) for k in HISTORY_KEYS}


@dataclass
class FitResult:
    """What ``fit`` returns: the trained model and its EMA, one dict per step, and the wall time."""

    model: nn.Module
    ema: nn.Module
    history: list
    seconds: float


# ---------------------------------------------------------------------- schedules of lr and EMA decay
def lr_at(step: int, *, lr: float, steps: int, warmup: int = 0, cosine_decay: bool = False) -> float:
    """The learning rate of update ``step`` (0-based):

    ``lr (step + 1) / warmup`` while ``step < warmup``; afterwards ``lr`` or, with ``cosine_decay``,
    ``lr (1 + cos(pi (step - warmup) / (steps - warmup))) / 2`` (from ``lr`` down towards 0 at ``steps``)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    if not cosine_decay or steps <= warmup:
        return lr
    progress = (step - warmup) / (steps - warmup)
    return lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def ema_decay_at(step: int, ema_decay: float) -> float:
    """``d_i = min(ema_decay, (1 + i) / (10 + i))`` for update ``i`` (0-based): a short warm-up so that the
    EMA forgets the random initialisation quickly instead of holding ``ema_decay^n`` of it."""
    return min(ema_decay, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def _ema_step(ema_params: list, params: list, decay: float) -> None:
    """``theta_ema <- decay theta_ema + (1 - decay) theta``: one multi-tensor kernel per operation instead of two
    small ones per parameter (the same arithmetic)."""
    torch._foreach_mul_(ema_params, decay)
    torch._foreach_add_(ema_params, params, alpha=1.0 - decay)


def _adam(params: list, lr: float) -> torch.optim.Adam:
    """Adam with torch's fused kernel where it exists (one pass per parameter instead of a dozen small ops: the
    per-step cost of these small models is mostly such overhead; the same update up to float rounding)."""
    try:
        return torch.optim.Adam(params, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS, fused=True)
    except RuntimeError:  # torch < 2.4 has no fused CPU kernel
        return torch.optim.Adam(params, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS)


# ---------------------------------------------------------------------- data
class _Batches:
    """Draws ``x0`` batches: a GaussianMixture gives fresh samples; a tensor [N, ...] is shuffled each epoch
    (a permutation from the generator) and cut into consecutive minibatches (wrapping across epochs)."""

    def __init__(self, data, batch_size: int, generator: torch.Generator, device):
        self.data, self.batch_size, self.generator, self.device = data, batch_size, generator, device
        self.is_mixture = isinstance(data, GaussianMixture)
        self.perm: torch.Tensor | None = None  # current epoch's order (tensor data only)
        self.pos = 0                            # next index into perm

    def next(self) -> torch.Tensor:
        if self.is_mixture:
            return self.data.sample(self.batch_size, generator=self.generator).to(self.device)
        n = self.data.shape[0]
        parts, need = [], self.batch_size
        while need > 0:
            if self.perm is None or self.pos >= n:
                self.perm, self.pos = torch.randperm(n, generator=self.generator), 0
            take = self.perm[self.pos:self.pos + need]
            parts.append(take)
            self.pos += take.numel()
            need -= take.numel()
        return self.data[torch.cat(parts)].to(self.device)

    def state(self) -> tuple[dict, dict]:
        """(JSON part, tensor part) of the data-order state."""
        if self.is_mixture or self.perm is None:
            return {"pos": self.pos, "has_perm": False}, {}
        return {"pos": self.pos, "has_perm": True}, {"data_perm": self.perm.clone()}

    def load(self, meta: dict, tensors: dict) -> None:
        """Restore ``state()``'s output, checked: a position within the data, a permutation of its indices."""
        n = None if self.is_mixture else self.data.shape[0]
        pos, has_perm = meta.get("pos", 0), meta.get("has_perm", False)
        if (not isinstance(pos, int) or isinstance(pos, bool) or not 0 <= pos <= (n or 0)
                or not isinstance(has_perm, bool) or (has_perm and n is None)):
            raise ValueError(f"the data-order state must be {{\"pos\": an integer in [0, {n or 0}], \"has_perm\": "
                             f"{'true or false' if n else 'false'}}}, got {meta!r:.80}")
        perm = tensors["data_perm"].cpu() if has_perm else None
        if perm is not None and (perm.is_floating_point() or perm.dtype == torch.bool or perm.shape != (n,)
                                 or not torch.equal(perm.sort().values, torch.arange(n, dtype=perm.dtype))):
            raise ValueError(f"tensor 'extra.data_perm' must be a permutation of the data's {n} indices, got "
                             f"{perm.dtype} {list(perm.shape)}")
        self.pos, self.perm = pos, None if perm is None else perm.long()


# ---------------------------------------------------------------------- optimizer state <-> flat tensors
def _optim_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Adam's per-parameter state as flat names ``optim.<param index>.<key>``."""
    return {f"optim.{idx}.{key}": torch.as_tensor(val) for idx, st in opt.state_dict()["state"].items()
            for key, val in st.items()}


def _load_optim(opt: torch.optim.Optimizer, extra: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict] = {}
    for name, val in extra.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = val
    sd = opt.state_dict()
    sd["state"] = state
    opt.load_state_dict(sd)


# ---------------------------------------------------------------------- history <-> a tensor
def history_tensor(history: list[dict]) -> torch.Tensor:
    """The history as a float64 tensor [steps, len(HISTORY_KEYS)] (exact for Python floats and step counts)."""
    return torch.tensor([[float(h[k]) for k in HISTORY_KEYS] for h in history],
                        dtype=torch.float64).reshape(len(history), len(HISTORY_KEYS))


def history_from_tensor(table: torch.Tensor, step: int, where: str = "checkpoint") -> list[dict]:
    """The list of dicts of a history tensor, checked: finite, one row per step, consecutive, ending at ``step``."""
    if table.dtype != torch.float64 or table.ndim != 2 or table.shape[1] != len(HISTORY_KEYS):
        raise ValueError(f"{where}: extra.history must be float64 [steps, {len(HISTORY_KEYS)}], got "
                         f"{table.dtype} {list(table.shape)}")
    if not bool(torch.isfinite(table).all()):
        row = int((~torch.isfinite(table)).any(1).nonzero()[0])
        raise ValueError(f"{where}: extra.history holds NaN or inf (row {row}); training stops before a step whose "
                         f"loss or gradient is not finite, so a history of real steps is finite")
    rows = [dict(zip(HISTORY_KEYS, r), step=int(r[0])) for r in table.tolist()]
    steps = [r["step"] for r in rows]
    if rows and steps != list(range(step - len(rows) + 1, step + 1)):
        raise ValueError(f"{where}: extra.history must hold consecutive steps ending at step {step}, got steps "
                         f"{steps[0]}..{steps[-1]} ({len(steps)} rows)")
    return rows


def read_history(checkpoint) -> list[dict]:
    """The per-step history stored in a training checkpoint (empty for checkpoints saved without one)."""
    tensors, meta = read_checkpoint(checkpoint)
    table = tensors.get(EXTRA_PREFIX + "history")
    if table is None:
        return []
    return history_from_tensor(table, _resume_step(checkpoint, meta), repr(str(checkpoint)))


def _resume_step(checkpoint, meta: dict) -> int:
    step = meta.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"cannot resume from {str(checkpoint)!r}: key 'step' must be the number of updates done "
                         f"(an integer >= 0), got {step!r:.40}")
    return step


# ---------------------------------------------------------------------- the loop
def train_iter(model: nn.Module, data, schedule: Schedule, loss: Loss, *, steps: int, batch_size: int = 256,
               lr: float = 2e-3, seed: int = 0, ema_decay: float = 0.999, grad_clip: float | None = 1.0,
               warmup: int = 0, cosine_decay: bool = False, checkpoint=None, checkpoint_every: int | None = None,
               resume: bool = False, progress: bool = True, threads: int | None = None, device="cpu",
               dataset_name: str | None = None, shards: int | None = None) -> Iterator[TrainState]:
    """Train ``model`` (in place) with Adam and yield a ``TrainState`` after every update (see the module
    docstring for the update equations).

    ``data``: a GaussianMixture (fresh draws each step) or a Tensor [N, ...] (shuffled minibatches).
    ``checkpoint``: a path stem; written every ``checkpoint_every`` steps and after the last step.
    ``resume``: continue from ``checkpoint`` when it exists (else start afresh, with a warning); the other
    arguments must match the checkpointed run. ``threads``: torch's intra-op threads (default
    ``seqdiff_kit.set_threads()``). A NaN/inf loss or gradient raises ``NonFiniteLossError`` naming the step,
    before the weights change and without writing a checkpoint. ``device``: where the model trains (a CUDA
    request without CUDA is a ValueError here). ``shards``: the batch's data-parallel shards (module docstring;
    default: the processes of an initialized torch.distributed group, 1 without one); ``batch_size`` must be a
    multiple."""
    # validated now, not at the first next(): a generator function would report bad arguments late
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_type("schedule", schedule, Schedule)
    if not isinstance(loss, Loss):
        raise TypeError(f"loss must be a seqdiff_kit.losses.Loss (e.g. Loss('simple') or Loss('sa', K=2, lam=1.0)), "
                        f"got {type(loss).__name__}")
    if not isinstance(data, GaussianMixture):
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"data must be a GaussianMixture or a Tensor [N, ...], got {type(data).__name__}")
        check_tensor("data", data, min_ndim=1, nonempty=True, finite=True, dtypes="floating")
    args = dict(steps=check_int("steps", steps, 0), batch_size=check_int("batch_size", batch_size, 1),
                lr=check_float("lr", lr, 0.0, low_open=True), seed=check_int("seed", seed, 0, MAX_SEED),
                ema_decay=check_float("ema_decay", ema_decay, 0.0, 1.0),
                grad_clip=None if grad_clip is None else check_float("grad_clip", grad_clip, 0.0, low_open=True),
                warmup=check_int("warmup", warmup, 0), device=check_device_arg("device", device))
    size = world()[1]
    args["shards"] = size if shards is None else check_int("shards", shards, 1)
    if size > 1 and args["shards"] != size:
        raise ValueError(f"shards must equal the number of processes ({size}) under torchrun, got {args['shards']}")
    if args["batch_size"] % args["shards"]:
        raise ValueError(f"batch_size must be divisible by the number of shards ({args['shards']}; under torchrun "
                         f"the number of processes), each drawing batch_size / shards samples: got batch_size="
                         f"{args['batch_size']}")
    for name, value in (("checkpoint_every", checkpoint_every), ("threads", threads)):
        if value is not None:
            check_int(name, value, 1)
    if checkpoint_every is not None and checkpoint is None:
        raise ValueError(f"checkpoint_every={checkpoint_every} needs a checkpoint path, got checkpoint=None")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path, got checkpoint=None")
    if checkpoint is not None:
        checkpoint_paths(checkpoint)  # refuses pickle-style names early
        model_spec(model)             # the model must be rebuildable from JSON before we spend time training
    return _loop(model, data, schedule, loss, args, cosine_decay=cosine_decay, checkpoint=checkpoint,
                 checkpoint_every=checkpoint_every, resume=resume, progress=progress, threads=threads,
                 dataset_name=dataset_name)


def _shard_prefix(r: int) -> str:
    """The names of shard r's state in a checkpoint: shard 0's are those of a single-process run."""
    return "" if r == 0 else f"shard{r}."


def _mean_output(outs: list[LossOutput]) -> LossOutput:
    """``L = (1/W) sum_r L_r`` over the shards this process computes (one shard: its own output, unchanged)."""
    if len(outs) == 1:
        return outs[0]
    return LossOutput(*(torch.stack([getattr(o, k) for o in outs]).mean() for k in ("total", "simple", "sa")))


def _loop(model, data, schedule, loss, args, *, cosine_decay, checkpoint, checkpoint_every, resume, progress,
          threads, dataset_name) -> Generator[TrainState, None, nn.Module]:
    """The training generator behind ``train_iter``; it returns the EMA model when it ends."""
    set_threads(threads)
    steps, batch_size, lr, seed, ema_decay, grad_clip, warmup, shards, device = (args[k] for k in (
        "steps", "batch_size", "lr", "seed", "ema_decay", "grad_clip", "warmup", "shards", "device"))
    cosine_decay = bool(cosine_decay)
    if dataset_name is None:
        dataset_name = data.name if isinstance(data, GaussianMixture) else f"tensor{list(data.shape)}"
    rank, size = world()
    local = [rank] if size > 1 else list(range(shards))  # the shards this process computes

    model.to(device).train()
    if isinstance(data, torch.Tensor):
        data = data.to(device)
    # CPU generators: the same streams on every device
    generators = [torch.Generator().manual_seed(shard_seed(seed, r)) for r in local]
    batches = [_Batches(data, batch_size // shards, g, device) for g in generators]
    params = list(model.parameters())
    opt = _adam(params, lr)
    run_cfg = _run_config(model, schedule, loss, args, cosine_decay, dataset_name, checkpoint)

    start, ema, history = 0, None, []
    if resume and checkpoint_exists(checkpoint):
        start, ema, history = _resume(checkpoint, run_cfg, steps, model, opt, zip(local, generators, batches))
    elif resume:
        warnings.warn(f"resume=True but no checkpoint at {str(checkpoint)!r}; starting from step 0", stacklevel=2)
    ema = (copy.deepcopy(model) if ema is None else ema).requires_grad_(False).eval()
    ema_params, ema_buffers = list(ema.parameters()), list(zip(ema.buffers(), model.buffers()))
    last_saved = start if (resume and start > 0) else None
    net = model
    if size > 1:  # after the resume: every rank holds the same weights, DDP checks them and hooks the gradients
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def save(state: TrainState) -> None:
        # every rank sends its shards' random and data-order states (a collective); rank 0 alone writes
        mine = {r: (g.get_state(), *b.state()) for r, g, b in zip(local, generators, batches)}
        every = {r: st for part in gather_objects(mine) for r, st in part.items()}
        if rank == 0:
            _save(checkpoint, state, opt, run_cfg, [every[r] for r in range(shards)])

    bar = tqdm(total=steps, initial=start, disable=not progress or rank != 0, desc="train", dynamic_ncols=True)
    try:
        for i in range(start, steps):
            lr_i = lr_at(i, lr=lr, steps=steps, warmup=warmup, cosine_decay=cosine_decay)
            for group in opt.param_groups:
                group["lr"] = lr_i
            out = _mean_output([loss(net, shard.next(), schedule, generator=shard.generator) for shard in batches])
            # the logged losses: means over the ranks (one process: its own), so that every rank decides alike
            value, simple, sa = all_mean(torch.stack([out.total, out.simple, out.sa]).detach()).tolist()
            if not math.isfinite(value):
                raise NonFiniteLossError(_nonfinite_msg(f"loss is {value}", i + 1, out, checkpoint, last_saved))
            opt.zero_grad(set_to_none=True)
            out.total.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, math.inf if grad_clip is None else grad_clip,
                                                             foreach=True))
            if not math.isfinite(grad_norm):
                raise NonFiniteLossError(_nonfinite_msg(f"gradient norm is {grad_norm}", i + 1, out, checkpoint,
                                                        last_saved))
            opt.step()
            _ema_step(ema_params, params, ema_decay_at(i, ema_decay))
            for b_ema, b in ema_buffers:
                b_ema.copy_(b)
            state = TrainState(step=i + 1, loss=value, simple=simple, sa=sa, lr=lr_i, grad_norm=grad_norm,
                               model=model, ema=ema, history=history)
            history.append(state.as_dict())
            if checkpoint is not None and ((checkpoint_every and state.step % checkpoint_every == 0)
                                           or state.step == steps):
                save(state)
                last_saved = state.step
                state.checkpointed = True
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr_i:.2e}", refresh=False)
            yield state
    finally:
        bar.close()
    return ema


def _run_config(model, schedule, loss, args, cosine_decay, dataset, checkpoint) -> dict:
    """What makes a run this run (saved in its checkpoints, compared on a resume)."""
    train_cfg = {k: args[k] for k in ("batch_size", "lr", "ema_decay", "grad_clip", "warmup")}
    train_cfg.update({"cosine_decay": cosine_decay, "optimizer": "Adam", "adam_betas": list(ADAM_BETAS),
                      "adam_eps": ADAM_EPS, "steps": args["steps"]})
    if args["shards"] > 1:  # absent for one shard: the checkpoints of single-process runs stay as they were
        train_cfg["shards"] = args["shards"]
    return {"dataset": dataset, "schedule": schedule.config(), "loss": loss.config, "seed": args["seed"],
            "train": train_cfg, "model": model_spec(model) if checkpoint is not None else None}


def _save(checkpoint, state: TrainState, opt: torch.optim.Optimizer, run_cfg: dict, shard_states: list) -> None:
    """Write the checkpoint after ``state``: the weights, the EMA, Adam's moments, the history and each shard's
    ``(generator state, data-order JSON, data-order tensors)`` of ``shard_states``."""
    extra, shard_meta = {}, []
    for r, (rng_state, data_meta, data_tensors) in enumerate(shard_states):
        prefix = _shard_prefix(r)
        extra[prefix + "rng_state"] = rng_state
        extra.update({prefix + k: v for k, v in data_tensors.items()})
        shard_meta.append(data_meta)
    extra.update({**_optim_tensors(opt), "history": history_tensor(state.history)})
    cfg = {k: v for k, v in run_cfg.items() if k != "model"}
    cfg.update({"step": state.step, "data_state": shard_meta[0], "last": state.as_dict()})
    if len(shard_states) > 1:
        cfg["shard_data_states"] = shard_meta[1:]
    save_checkpoint(checkpoint, state.model, cfg, ema=state.ema, extra_tensors=extra)


def _resume(checkpoint, run_cfg: dict, steps: int, model: nn.Module, opt: torch.optim.Optimizer,
            shards) -> tuple[int, nn.Module, list[dict]]:
    """Load the training state of ``checkpoint`` into ``model``, ``opt`` and each ``(rank, generator, batches)``
    of ``shards``: ``(step, EMA model, history)``. Everything a resume reads is checked before it is used: the
    run's settings, finite weights of the model's dtype, Adam's moments for every parameter at the checkpoint's
    step, the generators' and the data order's states, a finite history; anything else is a ValueError."""
    device = next(model.parameters()).device
    tensors, meta = read_checkpoint(checkpoint, device=device)
    start = _resume_step(checkpoint, meta)
    _check_resume(checkpoint, meta, run_cfg)
    if start > steps:
        raise ValueError(f"checkpoint {str(checkpoint)!r} is at step {start}, beyond steps={steps}")
    where = f"cannot resume from {str(checkpoint)!r}"
    extra = {k: v.cpu() for k, v in sub_state(tensors, EXTRA_PREFIX).items()}
    history = history_from_tensor(extra["history"], start, where) if "history" in extra else []
    for prefix in (MODEL_PREFIX, EMA_PREFIX):
        check_state(sub_state(tensors, prefix), model, where, prefix, same_dtype=True)
    optim = {k: v for k, v in extra.items() if k.startswith("optim.")}
    _check_optim(optim, list(model.parameters()), start, where)
    try:  # a checkpoint that passed the schema and the hash can still lack what a resume needs
        model.load_state_dict(sub_state(tensors, MODEL_PREFIX))
        ema = copy.deepcopy(model)
        ema.load_state_dict(sub_state(tensors, EMA_PREFIX))
        _load_optim(opt, {k: v.to(device) for k, v in optim.items()})
        for r, generator, shard in shards:
            prefix = _shard_prefix(r)
            generator.set_state(extra[prefix + "rng_state"])
            key = "data_state" if r == 0 else "shard_data_states"
            data_meta = meta.get("data_state", {}) if r == 0 else meta[key][r - 1]
            shard.load(_data_state(data_meta, key), {k: extra[prefix + k] for k in ("data_perm",)
                                                      if prefix + k in extra})
    except (KeyError, RuntimeError, ValueError, IndexError, TypeError) as err:
        what = f"no tensor {err}" if isinstance(err, KeyError) else " ".join(str(err).split())
        raise ValueError(f"{where}: its training state is incomplete or damaged ({what})") from None
    return start, ema, history


def _data_state(value, key: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"key {key!r} must hold objects like {{\"pos\": 0, \"has_perm\": false}}, got "
                         f"{value!r:.60}")
    return value


def _check_optim(optim: dict[str, torch.Tensor], params: list, step: int, where: str) -> None:
    """Adam's state as ``_optim_tensors`` saved it after ``step`` updates: ``step``, ``exp_avg`` and
    ``exp_avg_sq`` of every parameter, the moments finite and shaped and typed as their parameter. A dropped or
    partial state would make the resumed run continue with fresh moments: another run, not this one."""
    expected = {f"optim.{i}.{key}" for i in range(len(params) if step > 0 else 0)
                for key in ("step", "exp_avg", "exp_avg_sq")}
    missing, unknown = sorted(expected - set(optim)), sorted(set(optim) - expected)
    if missing or unknown:
        what = (f"lacks {len(missing)} of its {len(expected)} tensors (e.g. {missing[0]!r})" if missing
                else f"has tensors no parameter of the model owns (e.g. {unknown[0]!r})")
        raise ValueError(f"{where}: the optimizer state {what}; without it the resumed run would start Adam afresh "
                         f"and not be the run that was saved")
    for i, p in enumerate(params if step > 0 else ()):
        for key in ("exp_avg", "exp_avg_sq"):
            t = optim[f"optim.{i}.{key}"]
            if t.shape != p.shape or t.dtype != p.dtype or not bool(torch.isfinite(t).all()):
                raise ValueError(f"{where}: tensor 'extra.optim.{i}.{key}' must be finite, {p.dtype} "
                                 f"{list(p.shape)} like its parameter, got {t.dtype} {list(t.shape)}"
                                 + ("" if bool(torch.isfinite(t).all()) else " holding NaN or inf"))
        t = optim[f"optim.{i}.step"]
        # Adam counts in its step tensor's dtype (float32): compare with the count as that dtype holds it
        if t.numel() != 1 or not t.is_floating_point() or float(t) != float(torch.tensor(step, dtype=t.dtype)):
            raise ValueError(f"{where}: tensor 'extra.optim.{i}.step' must be Adam's update count {step} (the "
                             f"checkpoint's step), got {t.flatten()[:2].tolist()}")


def _nonfinite_msg(what: str, step: int, out: LossOutput, checkpoint, last_saved) -> str:
    parts = f"simple={float(out.simple.detach())}, sa={float(out.sa.detach())}"
    if checkpoint is None:
        where = "no checkpoint was requested"
    elif last_saved is None:
        where = f"no checkpoint has been written yet at {str(checkpoint)!r}"
    else:
        where = f"the last good checkpoint ({str(checkpoint)!r}, step {last_saved}) is left intact"
    return (f"training stopped at step {step}: {what} ({parts}); the weights were not updated and {where}. "
            f"Try a smaller lr, gradient clipping, or check the data and model for NaNs.")


_RESUME_KEYS = ("dataset", "schedule", "loss", "seed", "model")


def _check_resume(checkpoint, meta: dict, run_cfg: dict) -> None:
    """Refuse to resume a checkpoint whose run differs from this one (it would not be the same run)."""
    bad = [f"{k}: checkpoint {meta.get(k)!r} != now {run_cfg[k]!r}" for k in _RESUME_KEYS if meta.get(k) != run_cfg[k]]
    old, new = meta.get("train"), run_cfg["train"]
    old = old if isinstance(old, dict) else {}
    if old.get("shards", 1) != new.get("shards", 1):
        bad.append(f"train.shards: checkpoint {old.get('shards', 1)!r} != now {new.get('shards', 1)!r} (resume with "
                   f"as many processes, or shards, as the run had)")
    # shards: compared above; steps: extending a constant-lr run is fine, a cosine schedule depends on the total
    skip = ("shards",) if new["cosine_decay"] else ("shards", "steps")
    bad += [f"train.{k}: checkpoint {old.get(k)!r} != now {v!r}" for k, v in new.items()
            if k not in skip and old.get(k) != v]
    if bad:
        raise ValueError(f"cannot resume from {str(checkpoint)!r}: the run differs from the checkpointed one ("
                         + "; ".join(bad) + ")")


def fit(model: nn.Module, data, schedule: Schedule, loss: Loss, *, on_step=None, **kwargs) -> FitResult:
    """Run ``train_iter`` to the end (same arguments), calling ``on_step(state)`` with every ``TrainState`` when
    given; return the model, its EMA, the per-step history (``TrainState.as_dict()``) and the wall time in
    seconds."""
    t0 = time.perf_counter()
    history, states = [], train_iter(model, data, schedule, loss, **kwargs)
    while True:
        try:
            state = next(states)
        except StopIteration as stop:  # the loop returns its EMA (the checkpoint's when a finished run resumes)
            ema = stop.value
            break
        history.append(state.as_dict())
        if on_step is not None:
            on_step(state)
    return FitResult(model=model, ema=ema, history=history, seconds=time.perf_counter() - t0)


def estimate_seconds(model: nn.Module, data, schedule: Schedule, loss: Loss, *, steps: int,
                     probe_steps: int = 20, **kwargs) -> float:
    """About how many seconds ``fit(model, data, schedule, loss, steps=steps, **kwargs)`` takes on this machine
    at its present load: ``steps`` times the mean time of ``probe_steps`` updates of a copy of ``model``
    (after one untimed update that pays the first step's set-up). ``model`` is left as it was; ``kwargs`` are
    ``fit``'s (checkpointing and progress are ignored: the probe writes nothing)."""
    steps, probe_steps = check_int("steps", steps, 0), check_int("probe_steps", probe_steps, 1)
    for key in ("checkpoint", "checkpoint_every", "resume", "progress"):
        kwargs.pop(key, None)
    states = train_iter(copy.deepcopy(model), data, schedule, loss, steps=probe_steps + 1, progress=False, **kwargs)
    next(states)
    t0 = time.perf_counter()
    for _ in states:
        pass
    return (time.perf_counter() - t0) / probe_steps * steps

