"""The training loop: bit-for-bit resume, NaN stops, lr and EMA formulas, progress, and a quality check."""
import copy
import math
import os

import pytest
import torch

import seqdiff_kit as sk
from seqdiff_kit.checkpoint import load_checkpoint, read_checkpoint
from seqdiff_kit.losses import Loss
from seqdiff_kit.recipes import RING8, RING8_FAST, load_shipped, recipe_for
from seqdiff_kit.train import (HISTORY_KEYS, NonFiniteLossError, TrainState, ema_decay_at, fit, lr_at,
                               read_history, train_iter)

SCHED = sk.Schedule.linear()


def _small(seed=0):
    torch.manual_seed(seed)
    return sk.MLPDenoiser(width=32, depth=2, time_dim=16)


def _all_tensors(model, ema):
    out = {f"model.{k}": v for k, v in model.state_dict().items()}
    out.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    return out


# ---------------------------------------------------------------------- resume
@pytest.mark.parametrize("kind", ["mixture", "tensor"])
def test_resume_is_bit_for_bit(tmp_path, kind):
    """40 straight steps == 20 steps, an interruption, a fresh process state, and 20 resumed steps."""
    if kind == "mixture":
        data, loss, steps, kw = sk.ring8(), Loss("simple"), 40, dict(batch_size=64, warmup=5, cosine_decay=True)
    else:  # 100 points, batch 64: minibatches wrap across shuffled epochs, so the data order must resume too
        data = sk.ring8().sample(100, generator=torch.Generator().manual_seed(9))
        loss, steps, kw = Loss("sa", K=2, lam=1.0), 40, dict(batch_size=64, warmup=0, cosine_decay=False)
    common = dict(steps=steps, lr=3e-3, seed=11, ema_decay=0.9, threads=1, progress=False, checkpoint_every=10, **kw)

    straight = fit(_small(0), data, SCHED, loss, checkpoint=tmp_path / "a", **common)

    it = train_iter(_small(0), data, SCHED, loss, checkpoint=tmp_path / "b", **common)
    for state in it:
        if state.step == 20:
            break  # an interruption right after the step-20 checkpoint
    it.close()
    # the resumed run starts from a *different* initialisation: every weight must come from the checkpoint
    resumed = fit(_small(123), data, SCHED, loss, checkpoint=tmp_path / "b", resume=True, **common)
    assert [h["step"] for h in resumed.history] == list(range(21, 41))
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history[20:]]

    a = _all_tensors(straight.model, straight.ema)
    b = _all_tensors(resumed.model, resumed.ema)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the final checkpoints agree on every tensor: weights, EMA, Adam moments and step, generator state
    ta, ma = read_checkpoint(tmp_path / "a")
    tb, mb = read_checkpoint(tmp_path / "b")
    assert ta.keys() == tb.keys() and any(k.startswith("extra.optim.") for k in ta)
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    assert ma["step"] == mb["step"] == steps
    # the history survives the interruption: all 40 steps, the same numbers as the straight run's
    assert read_history(tmp_path / "b") == read_history(tmp_path / "a") == straight.history


def test_resume_refuses_a_different_run(tmp_path):
    common = dict(steps=6, batch_size=16, threads=1, progress=False, checkpoint=tmp_path / "c")
    fit(_small(), sk.ring8(), SCHED, Loss(), lr=1e-3, **common)
    with pytest.raises(ValueError, match=r"cannot resume.*train\.lr"):
        fit(_small(), sk.ring8(), SCHED, Loss(), lr=2e-3, resume=True, **common)
    with pytest.raises(ValueError, match=r"cannot resume.*dataset"):
        fit(_small(), sk.grid25(), SCHED, Loss(), lr=1e-3, resume=True, **common)
    # resuming a finished run does nothing and hands back the checkpointed EMA
    done = fit(_small(5), sk.ring8(), SCHED, Loss(), lr=1e-3, resume=True, **common)
    ema, _ = load_checkpoint(tmp_path / "c")
    assert done.history == []
    for p, q in zip(done.ema.parameters(), ema.parameters()):
        assert torch.equal(p, q)


def test_checkpoint_config_and_reload(tmp_path):
    res = fit(_small(), sk.ring8(), SCHED, Loss("sa", K=2, lam=0.5), steps=5, batch_size=16, seed=4,
              threads=1, progress=False, checkpoint=tmp_path / "run")
    model, cfg = load_checkpoint(tmp_path / "run")
    assert cfg["model"] == {"class": "MLPDenoiser", "args": res.model.config}
    assert cfg["schedule"] == SCHED.config() and cfg["loss"] == {"name": "sa", "K": 2, "lam": 0.5}
    assert cfg["dataset"] == "ring8" and cfg["step"] == 5 and cfg["seed"] == 4
    assert cfg["torch_version"] == torch.__version__ and cfg["library_version"] == sk.__version__
    assert Loss.from_config(cfg["loss"]) == Loss("sa", K=2, lam=0.5)
    x, t = torch.randn(8, 2), torch.arange(8) * 100
    with torch.no_grad():
        assert torch.equal(model(x, t), res.ema(x, t))


# ---------------------------------------------------------------------- non-finite loss
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    model = _small()
    calls = {"n": 0}

    def poison(module, inputs, output):  # the forward pass of step 8 returns NaN
        calls["n"] += 1
        return output * float("nan") if calls["n"] >= 8 else output

    model.register_forward_hook(poison)
    snapshots = {}
    it = train_iter(model, sk.ring8(), SCHED, Loss(), steps=20, batch_size=16, threads=1, progress=False,
                    checkpoint=tmp_path / "n", checkpoint_every=5)
    with pytest.raises(NonFiniteLossError, match=r"step 8: loss is nan.*step 5\) is left intact") as err:
        for state in it:
            snapshots[state.step] = copy.deepcopy(model.state_dict())
    assert isinstance(err.value, RuntimeError)
    assert max(snapshots) == 7
    for k, v in model.state_dict().items():  # the poisoned step did not touch the weights
        assert torch.equal(v, snapshots[7][k])
    tensors, cfg = read_checkpoint(tmp_path / "n")
    assert cfg["step"] == 5
    for k, v in snapshots[5].items():
        assert torch.equal(tensors["model." + k], v)
        assert bool(torch.isfinite(tensors["model." + k]).all())


def test_states_carry_the_whole_history_and_say_when_a_checkpoint_was_written(tmp_path):
    common = dict(steps=6, batch_size=8, threads=1, progress=False, checkpoint=tmp_path / "h", checkpoint_every=4)
    states = list(train_iter(_small(), sk.ring8(), SCHED, Loss(), **common))
    assert [s.checkpointed for s in states] == [False, False, False, True, False, True]
    assert states[-1].history == [s.as_dict() for s in states] and states[0].history is states[-1].history
    assert set(HISTORY_KEYS) == set(states[0].as_dict())
    resumed = list(train_iter(_small(), sk.ring8(), SCHED, Loss(), resume=True, **common))
    assert resumed == []  # a finished run: nothing to do, and the stored history is kept
    assert read_history(tmp_path / "h") == states[-1].history


def _craft(stem, edit):
    """Rewrite a checkpoint pair consistently (embedded config, SHA-256) after ``edit(meta, tensors)``."""
    import hashlib
    import json

    from safetensors.torch import load, save

    st, js = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    tensors, meta = load(st.read_bytes()), json.loads(js.read_text())
    meta = {k: v for k, v in meta.items() if k not in ("weights_file", "weights_sha256")}
    edit(meta, tensors)
    blob = save(tensors, metadata={"config": json.dumps(meta, sort_keys=True)})
    st.write_bytes(blob)
    js.write_text(json.dumps({**meta, "weights_sha256": hashlib.sha256(blob).hexdigest()}))


@pytest.mark.parametrize("edit, match", [
    (lambda m, t: m.pop("step"), "key 'step' must be the number of updates done"),
    (lambda m, t: t.pop("extra.rng_state"), "incomplete or damaged .*rng_state"),
    (lambda m, t: t.pop("ema.out.bias"), "incomplete or damaged .*out.bias"),
    (lambda m, t: t.update({"extra.rng_state": torch.zeros(3, dtype=torch.uint8)}), "incomplete or damaged"),
    (lambda m, t: t.update({"extra.history": t["extra.history"][:-1]}), "consecutive steps ending at step 4"),
    (lambda m, t: t.update({"extra.history": t["extra.history"].float()}), "float64"),
    (lambda m, t: m.update(train=5), "train.batch_size"),
])
def test_resume_refuses_a_damaged_training_state(tmp_path, edit, match):
    common = dict(steps=4, batch_size=8, threads=1, progress=False, checkpoint=tmp_path / "d")
    fit(_small(), sk.ring8(), SCHED, Loss(), **common)
    _craft(tmp_path / "d", edit)
    with pytest.raises(ValueError, match=match):
        fit(_small(), sk.ring8(), SCHED, Loss(), resume=True, **common)


# ---------------------------------------------------------------------- lr and EMA formulas
def test_warmup_and_cosine_lr_follow_their_formula():
    lr, steps, warmup = 4e-3, 30, 6

    def expected(i):
        if i < warmup:
            return lr * (i + 1) / warmup
        return lr * 0.5 * (1 + math.cos(math.pi * (i - warmup) / (steps - warmup)))

    model = _small()
    seen = []
    prev = [p.detach().clone() for p in model.parameters()]
    for state in train_iter(model, sk.ring8(), SCHED, Loss(), steps=steps, lr=lr, warmup=warmup,
                            cosine_decay=True, grad_clip=None, batch_size=16, threads=1, progress=False):
        seen.append(state.lr)
        if state.step == 1:  # Adam's first step is -lr_0 g / (|g| + eps): it shows the lr really applied
            moves = torch.cat([(p.detach() - q).flatten() for p, q in zip(model.parameters(), prev)])
            g = torch.cat([p.grad.flatten() for p in model.parameters()])
            want = -(lr / warmup) * g / (g.abs() + 1e-8)
            assert torch.allclose(moves, want, rtol=1e-3, atol=2e-7)
            assert float(moves.abs().max()) == pytest.approx(lr / warmup, rel=1e-3)
    assert seen == pytest.approx([expected(i) for i in range(steps)], rel=1e-12, abs=0)
    assert seen[warmup - 1] == pytest.approx(lr) and seen[-1] < lr * 0.01
    assert [lr_at(i, lr=lr, steps=steps) for i in range(3)] == [lr] * 3
    assert lr_at(2, lr=1.0, steps=10, warmup=4) == pytest.approx(0.75)


def test_ema_update_follows_its_formula():
    decay = 0.95
    model = _small()
    it = train_iter(model, sk.ring8(), SCHED, Loss(), steps=25, ema_decay=decay, batch_size=16, threads=1,
                    progress=False)
    ema_prev = None
    for state in it:
        i = state.step - 1
        d = min(decay, (1 + i) / (10 + i))
        assert ema_decay_at(i, decay) == pytest.approx(d)
        if ema_prev is None:  # the EMA starts as a copy of the initial weights
            ema_prev = [p.detach().clone() for p in _small().parameters()]
        for e_new, e_old, p in zip(state.ema.parameters(), ema_prev, model.parameters()):
            assert torch.allclose(e_new, d * e_old + (1 - d) * p.detach(), rtol=1e-6, atol=1e-7)
        ema_prev = [p.detach().clone() for p in state.ema.parameters()]
        assert isinstance(state, TrainState) and not any(p.requires_grad for p in state.ema.parameters())
    assert ema_decay_at(10_000, decay) == decay


# ---------------------------------------------------------------------- progress and arguments
def test_progress_false_prints_nothing(capfd):
    fit(_small(), sk.ring8(), SCHED, Loss(), steps=3, batch_size=8, threads=1, progress=False)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    fit(_small(), sk.ring8(), SCHED, Loss(), steps=3, batch_size=8, threads=1, progress=True)
    out, err = capfd.readouterr()
    assert "3/3" in err  # the tqdm bar reached the end


def test_fit_history_and_threads():
    before = torch.get_num_threads()
    res = fit(_small(), sk.ring8(), SCHED, Loss(), steps=4, batch_size=8, threads=1, progress=False)
    assert torch.get_num_threads() == 1
    torch.set_num_threads(before)
    assert [h["step"] for h in res.history] == [1, 2, 3, 4] and res.seconds > 0
    assert set(res.history[0]) == {"step", "loss", "simple", "sa", "lr", "grad_norm"}
    assert all(h["sa"] == 0.0 and h["loss"] == h["simple"] for h in res.history)
    assert isinstance(res.ema, sk.MLPDenoiser)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(steps=-1), ValueError, "steps"),
    (dict(steps=5, batch_size=0), ValueError, "batch_size"),
    (dict(steps=5, lr=0.0), ValueError, "lr"),
    (dict(steps=5, ema_decay=1.5), ValueError, "ema_decay"),
    (dict(steps=5, checkpoint_every=2), ValueError, "checkpoint_every"),
    (dict(steps=5, resume=True), ValueError, "resume"),
    (dict(steps=5, threads=0), ValueError, "threads"),
    (dict(steps=5, checkpoint="model.pt"), ValueError, "pickle"),
    (dict(steps=5, seed=-1), ValueError, "seed"),
    (dict(steps=5, seed=2**70), ValueError, "seed"),
])
def test_bad_arguments_raise_at_call_time(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        train_iter(_small(), sk.ring8(), SCHED, Loss(), **kwargs)  # raises before any next()


def test_bad_types():
    with pytest.raises(TypeError, match="loss"):
        train_iter(_small(), sk.ring8(), SCHED, lambda *a: None, steps=2)
    with pytest.raises(TypeError, match="data"):
        train_iter(_small(), [[0.0, 1.0]], SCHED, Loss(), steps=2)
    with pytest.raises(ValueError, match="data must be finite"):
        train_iter(_small(), torch.tensor([[0.0, float("nan")]]), SCHED, Loss(), steps=2)


# ---------------------------------------------------------------------- quality
@pytest.fixture(scope="module")
def ring8_yardstick():
    """What both quality tests compare with, computed once: a shared x_T of N = 4000 points, the MMD to N fresh
    data draws (unbiased, RBF bandwidths 0.05..1 to see the 0.1-wide modes; the reference's kernel sum once),
    its sampling-noise floor (the mean |MMD| of three independent data draws), E_data log p (200k exact draws),
    and the ideal denoiser eps* sampled with 100 DDIM steps (trailing) on both yardsticks of ``_quality``."""
    from seqdiff_kit.metrics import ReferenceMMD, mean_log_likelihood

    mix, n = sk.ring8(), 4000
    g = torch.Generator().manual_seed(1)
    ll_data = mean_log_likelihood(mix.sample(200_000, generator=g), mix)
    x_T = torch.randn(n, 2, generator=g)
    mmd_to_ref = ReferenceMMD(mix.sample(n, generator=g), (0.05, 0.1, 0.2, 0.5, 1.0))
    floor = sum(abs(mmd_to_ref(mix.sample(n, generator=g))) for _ in range(3)) / 3

    def measure(net) -> tuple[float, float]:
        x = sk.sample(net, x_T, SCHED, 100, record_every=100).final
        return mmd_to_ref(x), ll_data - mean_log_likelihood(x, mix)

    return measure, {"data_floor_mmd": floor, **dict(zip(("ideal_mmd", "ideal_ll_gap"),
                                                          measure(sk.IdealDenoiser(mix, SCHED))))}


def _quality(net, yardstick) -> tuple[dict, str]:
    """A ring8 network against the ideal denoiser, both sampled with 100 DDIM steps from the same x_T:
    the log-likelihood gap ``E_data log p - (1/N) sum log p(x_i)`` (the ideal's is negative: 100 DDIM steps
    over-concentrate) and the MMD to fresh data draws, with the data's own floor."""
    measure, figures = yardstick
    figures = dict(figures)
    figures["learned_mmd"], figures["learned_ll_gap"] = measure(net)
    msg = ", ".join(f"{k}={v:.4g}" for k, v in figures.items())
    return figures, msg


def _assert_within_2x_of_ideal(figures, msg):
    assert abs(figures["learned_ll_gap"]) <= 2 * abs(figures["ideal_ll_gap"]), msg
    assert figures["learned_mmd"] <= 2 * max(figures["ideal_mmd"], figures["data_floor_mmd"]), msg


@pytest.mark.slow
def test_quality_ring8_default_recipe_within_2x_of_ideal(ring8_yardstick):
    """The default recipe of new 2-D trainings (``recipe_for("ring8")``: RING8_FAST), trained here with one
    thread: its EMA network within 2x of the ideal denoiser on both yardsticks of ``_quality``."""
    recipe = recipe_for("ring8")
    assert recipe.fit == RING8_FAST.fit and recipe.model_args == RING8_FAST.model_args
    load = os.getloadavg()[0]
    threads_before = torch.get_num_threads()
    # one thread: on a shared 2-core machine, 2 threads of a small MLP spin against each other (10x slower)
    res = fit(recipe.build_model(), recipe.data(), SCHED, Loss("simple"), seed=0, progress=False, threads=1,
              **recipe.fit)
    torch.set_num_threads(threads_before)
    figures, msg = _quality(res.ema, ring8_yardstick)
    print(f"\nquality (ring8, RING8_FAST, 100 DDIM steps): train_seconds={res.seconds:.1f}, load_avg_1min={load:.2f}, "
          f"train_threads=1, {msg}")
    _assert_within_2x_of_ideal(figures, msg)
    assert res.history[-1]["step"] == RING8_FAST.steps


@pytest.mark.slow
def test_quality_shipped_ring8_model_within_2x_of_ideal(ring8_yardstick):
    """The shipped simple-loss ring8 network (what the RING8 recipe made, recorded in its JSON) on the same
    yardsticks."""
    shipped = load_shipped("ring8_simple")
    assert {k: shipped.config["train"][k] for k in RING8.fit} == RING8.fit
    figures, msg = _quality(shipped.model, ring8_yardstick)
    print("\nquality (ring8, the shipped RING8 network, 100 DDIM steps):", msg)
    _assert_within_2x_of_ideal(figures, msg)


# ---------------------------------------------------------------------- estimate
def test_estimate_seconds_probes_a_copy_and_writes_nothing(tmp_path):
    from seqdiff_kit.train import estimate_seconds

    model = _small()
    before = [p.detach().clone() for p in model.parameters()]
    est = estimate_seconds(model, sk.ring8(), SCHED, Loss(), steps=1000, probe_steps=3, batch_size=8, threads=1,
                           checkpoint=tmp_path / "ck", progress=True)
    assert math.isfinite(est) and est > 0
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))
    assert list(tmp_path.iterdir()) == []
    assert estimate_seconds(model, sk.ring8(), SCHED, Loss(), steps=0, probe_steps=1, batch_size=8) == 0
    with pytest.raises(ValueError, match="probe_steps"):
        estimate_seconds(model, sk.ring8(), SCHED, Loss(), steps=10, probe_steps=0)
