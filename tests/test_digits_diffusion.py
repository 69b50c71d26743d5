"""Diffusion on the 8x8 digits: evaluation helpers (against brute-force recomputation), the training script,
and the shipped checkpoints (recognisable samples, recorded recipe)."""
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from seqdiff_kit import Schedule, TinyUNet, digits
from seqdiff_kit.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from seqdiff_kit.classifier import class_counts, class_probabilities, confidence_share, load_classifier
from seqdiff_kit.data import CHECKPOINT_DIR
from seqdiff_kit.drift import total_std
from seqdiff_kit.evaluate import (frechet_floor, image_drift, real_halves, sample_grids, sample_images,
                                  shipped_table, start_noise, steps_table)
from seqdiff_kit.losses import Loss
from seqdiff_kit.classifier import digit_frechet_distance
from seqdiff_kit.recipes import DIGITS, SHIPPED, load_shipped, train
from seqdiff_kit.samplers import make_noise
from seqdiff_kit.solvers import sample
from seqdiff_kit.train import train_iter

DIGIT_MODELS = ("simple", "sa")  # the shipped checkpoints digits_<name>
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import train_digits  # noqa: E402


@pytest.fixture(scope="module")
def clf():
    return load_classifier()


@pytest.fixture(scope="module")
def schedule():
    return Schedule.linear(1000)


def tiny_unet(seed=0):
    torch.manual_seed(seed)
    return TinyUNet(channels=4, time_dim=8).eval()


# ---------------------------------------------------------------------- classifier scores
def test_confidence_share_matches_per_image_loop(clf):
    x, _ = digits()
    g = torch.Generator().manual_seed(3)
    noise = torch.rand(40, 1, 8, 8, generator=g) * 2 - 1
    images = torch.cat([x[:60], noise])
    share = confidence_share(images, clf, threshold=0.9)
    hits = 0
    with torch.no_grad():
        for img in images:  # one image at a time, softmax written out
            logits = clf(img[None])[0]
            p = torch.exp(logits - logits.max())
            p = p / p.sum()
            hits += int(p.max() >= 0.9)
    assert share == pytest.approx(hits / len(images), abs=1e-12)
    counts = class_counts(images, clf)
    assert int(counts.sum()) == len(images) and counts.shape == (10,)
    assert torch.allclose(class_probabilities(images, clf).sum(-1), torch.ones(len(images), dtype=torch.float32))
    # real digits are recognisable; the held-out accuracy of the classifier is ~99%
    assert confidence_share(x[:300], clf) >= 0.95
    assert confidence_share(images, clf, threshold=0.0) == 1.0


def test_real_halves_partition_and_floor(clf):
    x, _ = digits()
    a, b = real_halves(0)
    assert a.shape[0] + b.shape[0] == x.shape[0] and abs(a.shape[0] - b.shape[0]) <= 1

    def rows(v):
        # the distinct images with their counts: exact (no arithmetic), independent of order and CPU kernels
        return torch.unique(v.reshape(len(v), -1), dim=0, return_counts=True)

    (ua, ca), (ux, cx) = rows(torch.cat([a, b])), rows(x)
    assert torch.equal(ua, ux) and torch.equal(ca, cx)  # together the halves are exactly the data
    floor = frechet_floor(0, clf)
    assert floor == pytest.approx(digit_frechet_distance(b, a, clf))
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(900, 1, 8, 8, generator=g) * 2 - 1
    assert 0 < floor < 15 < 10 * floor < digit_frechet_distance(noise, a, clf)


# ---------------------------------------------------------------------- sampling
def test_sample_images_is_the_sampler_from_seeded_noise(schedule):
    model = tiny_unet()
    x = sample_images(model, schedule, n=6, steps=3, seed=5, clamp=False)
    x_T = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    assert torch.equal(start_noise((1, 8, 8), 6, 5), x_T)
    ref = sample(model, x_T, schedule, 3).final
    assert torch.allclose(x, ref, atol=1e-6)
    # Chunking changes the batch shape, so the convolution kernels and their rounding may differ by CPU: the
    # model's float32 rounding (about 1e-6 relative after its sums of a few hundred terms) is amplified by the
    # first step's 1 / sqrt(alpha_bar_T) (about 160 on this schedule), so compare to 1e-3 of the output's scale.
    tol = 1e-3 * float(ref.abs().max())
    assert torch.allclose(sample_images(model, schedule, n=6, steps=3, seed=5, clamp=False, batch_size=4), ref,
                          rtol=0, atol=tol)
    assert torch.equal(sample_images(model, schedule, n=6, steps=3, seed=5), ref.clamp(-1, 1))
    # stochastic steps: noise from seed + 1, the same for every chunking
    z = make_noise(3, (6, 1, 8, 8), torch.Generator().manual_seed(6))
    ref1 = sample(model, x_T, schedule, 3, eta=1.0, noise=z).final
    got = sample_images(model, schedule, n=6, steps=3, seed=5, eta=1.0, clamp=False, batch_size=4)
    assert torch.allclose(got, ref1, rtol=0, atol=1e-3 * float(ref1.abs().max()))


def test_steps_table_recomputes(clf, schedule):
    models = {"a": tiny_unet(0), "b": tiny_unet(1)}
    table = steps_table(models, schedule, steps=(2, 3), n=24, seed=1, classifier=clf)
    ref, other = real_halves(0)
    for name, m in models.items():
        for j, s in enumerate((2, 3)):
            x = sample_images(m, schedule, 24, s, seed=1)
            assert table.fd[name][j] == pytest.approx(digit_frechet_distance(x, ref, clf), rel=1e-9)
            assert table.confident[name][j] == pytest.approx(confidence_share(x, clf))
    assert table.floor == pytest.approx(digit_frechet_distance(other, ref, clf))
    md = table.markdown()
    assert md.count("\n| 2 |") == 1 and "FD a" in md and "Floor" in md
    again = type(table).from_dict(json.loads(json.dumps(table.as_dict())))
    assert again.fd == table.fd and again.steps == table.steps


def test_sample_grids_and_image_drift(schedule):
    models = {"a": tiny_unet(0), "b": tiny_unet(1)}
    grids = sample_grids(models, schedule, steps=(1, 2), n=5, seed=2)
    assert grids["a"].shape == (2, 5, 1, 8, 8)
    assert torch.equal(grids["b"][1], sample_images(models["b"], schedule, 5, 2, seed=2))
    drift = image_drift(models, schedule, steps=3, n=32, seed=4, n_reference=64)
    data, _ = digits()
    D = 64
    tr0 = float(data.double().reshape(len(data), -1).var(dim=0, unbiased=False).sum())
    for name, d in drift.items():
        assert torch.equal(d.trajectory.x[0], start_noise((1, 8, 8), 32, 4))  # every model starts from the same x_T
        assert d.t.tolist() == [999, 666, 332, -1]
        final = d.trajectory.final
        assert d.std_ratio[-1].item() == pytest.approx(total_std(final) / math.sqrt(tr0 / D), rel=1e-9)
        assert torch.isfinite(d.mmd).all()


def test_bad_arguments(clf, schedule):
    model = tiny_unet()
    with pytest.raises(ValueError, match="steps"):
        sample_images(model, schedule, n=2, steps=0)
    with pytest.raises(TypeError, match="n must be an integer"):
        sample_images(model, schedule, n=2.5, steps=2)
    with pytest.raises(ValueError, match="name must be one of"):
        load_shipped("digits_large")
    with pytest.raises(ValueError, match="threshold"):
        confidence_share(digits()[0][:4], clf, threshold=1.5)
    with pytest.raises(ValueError, match=r"\[N, 1, 8, 8\]"):
        class_probabilities(torch.zeros(3, 1, 4, 4), clf)
    with pytest.raises(TypeError, match="models"):
        steps_table({}, schedule)


# ---------------------------------------------------------------------- the training script
def test_train_script_writes_ema_snapshots(tmp_path):
    threads = torch.get_num_threads()  # the script sets the thread count; give it back afterwards
    try:
        _check_train_script(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _check_train_script(tmp_path):
    out = tmp_path / "run"
    args = ["--loss", "sa", "--lam", "0.5", "--steps", "3", "--snapshots", "2", "--batch-size", "8",
            "--channels", "4", "--time-dim", "8", "--seed", "7", "--threads", "1", "--out", str(out)]
    result = train_digits.main(["train", *args]) or json.loads((out / "result.json").read_text())
    assert result["snapshots"] == [2, 3]
    model, cfg = load_checkpoint(out / "step3")
    assert isinstance(model, TinyUNet) and model.config["channels"] == 4
    assert cfg["loss"] == {"name": "sa", "K": 2, "lam": 0.5} and cfg["weights"] == "ema"
    assert cfg["trained_by"]["device"] == "cpu" and cfg["step"] == 3 and cfg["train"]["batch_size"] == 8
    tensors, _ = read_checkpoint(out / "step3")
    assert all(k.startswith("model.") for k in tensors)  # the EMA only: no optimizer state, no raw weights
    # brute force: the same run through train_iter; its EMA at step 3 is what the snapshot holds
    x, _ = digits()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        ref = TinyUNet(channels=4, time_dim=8)
    last = None
    for last in train_iter(ref, x, Schedule.linear(1000), Loss("sa", K=2, lam=0.5), steps=3, batch_size=8,
                           lr=2e-3, seed=7, ema_decay=0.999, grad_clip=1.0, warmup=200, progress=False,
                           threads=1):
        pass
    for k, v in last.ema.state_dict().items():
        assert torch.allclose(model.state_dict()[k], v, atol=1e-7), k
    # export adds what the JSON should record
    info = tmp_path / "info.json"
    info.write_text(json.dumps({"evaluation": {"floor": 1.0}}))
    train_digits.main(["export", "--snapshot", str(out / "step3"), "--to", str(tmp_path / "digits_x"),
                       "--info", str(info)])
    m2, cfg2 = load_checkpoint(tmp_path / "digits_x")
    assert cfg2["evaluation"] == {"floor": 1.0} and cfg2["loss"] == cfg["loss"]
    assert all(torch.equal(m2.state_dict()[k], v) for k, v in model.state_dict().items())


# ---------------------------------------------------------------------- the shipped checkpoints
@pytest.mark.parametrize("name", DIGIT_MODELS)
def test_shipped_checkpoint_records_recipe(name):
    st = (CHECKPOINT_DIR / f"digits_{name}").with_suffix(".safetensors")
    assert st.stat().st_size < 1_500_000  # small: EMA weights only
    tensors, _ = read_checkpoint(CHECKPOINT_DIR / f"digits_{name}")
    assert all(k.startswith("model.") for k in tensors)
    shipped = load_shipped(f"digits_{name}")
    model, sched, cfg = shipped.model, shipped.schedule, shipped.config
    assert isinstance(model, TinyUNet) and not model.training and sched.T == 1000
    assert cfg["dataset"] == "digits8x8" and cfg["weights"] == "ema" and cfg["step"] == 6000
    assert cfg["trained_on"]["device"] in ("cpu", "cuda")
    cpu = cfg["recipe_cpu_time"]
    assert cpu["sa_minutes"] <= 10 and cpu["simple_minutes"] <= 10
    if name == "sa":
        assert cfg["loss"]["name"] == "sa" and cfg["loss"]["K"] == 2
        # lam was the sweep's winner under its recorded criterion (lowest mean FD)
        sweep = {r["loss"]["lam"]: r["mean_fd"] for r in cfg["lam_sweep"]["runs"].values()
                 if r["loss"]["name"] == "sa" and r["seed"] == 0}
        assert set(sweep) == {0.25, 0.5, 1.0} and cfg["loss"]["lam"] == min(sweep, key=sweep.get)
    else:
        assert cfg["loss"] == {"name": "simple", "K": 1, "lam": 0.0}


@pytest.mark.slow
@pytest.mark.parametrize("name", DIGIT_MODELS)
def test_shipped_samples_are_recognisable(name, clf):
    """At 50 DDIM steps the classifier assigns >= 80% of 1000 samples a class with confidence >= 0.9."""
    shipped = load_shipped(f"digits_{name}")
    model, sched = shipped.model, shipped.schedule
    t0 = time.perf_counter()
    x = sample_images(model, sched, n=1000, steps=50, seed=0)
    print(f"{name}: 1000 samples x 50 steps in {time.perf_counter() - t0:.1f}s")
    assert confidence_share(x, clf, threshold=0.9) >= 0.8
    a, _ = real_halves(0)
    assert digit_frechet_distance(x, a, clf) < 3 * frechet_floor(0, clf)
    # every digit appears (no mode collapse): each class holds at least 4% of the samples
    assert int(class_counts(x, clf).min()) >= 40


def test_shipped_table_reads_the_checkpoint_json():
    table = shipped_table()
    assert list(table.fd) == list(DIGIT_MODELS) and table.steps == (5, 10, 20, 50, 100) and table.n == 1000
    for name in DIGIT_MODELS:
        _, cfg = read_checkpoint(CHECKPOINT_DIR / f"digits_{name}")
        assert table.fd[name] == next(iter(cfg["evaluation"]["fd"].values()))
        # the recorded 50-step share is the one the slow test re-measures on the CPU
        assert table.confident[name][table.steps.index(50)] >= 0.8


def test_training_the_digits_recipe():
    threads = torch.get_num_threads()
    try:
        res = train(SHIPPED["digits_simple"].replace(steps=2), progress=False, threads=1)
    finally:
        torch.set_num_threads(threads)
    ema, sched = res.model, res.schedule
    assert isinstance(ema, TinyUNet) and ema.config["channels"] == DIGITS.model_args["channels"]
    assert len(res.history) == 2 and sched.T == DIGITS.model_args["T"] == DIGITS.make_schedule().T
    assert res.history[0]["lr"] == pytest.approx(DIGITS.fit["lr"] / DIGITS.fit["warmup"])
    # the shipped digits checkpoints record this recipe (their JSON predates Recipe; train.steps was the
    # length of the constant-lr run the 6000-step EMA snapshot was taken from)
    for name in DIGIT_MODELS:
        cfg = load_shipped(f"digits_{name}").config
        assert cfg["model"] == SHIPPED[f"digits_{name}"].model_spec() and cfg["step"] == DIGITS.steps
        assert cfg["loss"] == SHIPPED[f"digits_{name}"].loss.config and cfg["schedule"] == DIGITS.schedule
        assert {k: cfg["train"][k] for k in DIGITS.fit if k != "steps"} == \
            {k: v for k, v in DIGITS.fit.items() if k != "steps"}


def test_digit_grid_dashboard_indexes_precomputed_tiles():
    from seqdiff_kit import viz, widgets

    g = torch.Generator().manual_seed(0)
    grids = {"a": torch.rand(3, 12, 1, 8, 8, generator=g), "b": torch.rand(3, 12, 1, 8, 8, generator=g)}
    dash = widgets.DigitGridDashboard([5, 10, 20], grids, nrow=4)
    dash.slider.value = 2  # the slider drives update()
    for k, name in enumerate(grids):
        want = viz.image_grid(grids[name][2], nrow=4).numpy()
        got = np.asarray(dash.fig.data[k].z, dtype=np.float64)
        assert np.array_equal(got, want, equal_nan=True)
    assert "20 sampling steps" in dash.label.value
    with pytest.raises(ValueError, match="one grid per step count"):
        widgets.DigitGridDashboard([5, 10], grids)


def test_seeds_mode_scores_the_shipped_and_the_trained_networks(tmp_path):
    """`train_digits.py seeds` with its snapshots already there: no training, seed 0 from the shipped
    checkpoints, each row tied to its weights; a snapshot of another loss is refused before anything is scored."""
    def copy(loss: str, name: str) -> None:  # the shipped weights as a seed-1 snapshot
        model, cfg = load_checkpoint(CHECKPOINT_DIR / f"digits_{loss}")
        keep = {k: cfg[k] for k in ("dataset", "schedule", "loss", "train", "weights", "step")}
        save_checkpoint(tmp_path / name / "step6000", model, {**keep, "seed": 1, "trained_by": {"device": "cpu"}})

    copy("simple", "simple_s1")
    copy("sa", "sa1.0_s1")
    out = tmp_path / "seeds.json"
    common = ["seeds", "--seeds", "1", "--work-dir", str(tmp_path), "--eval-n", "40", "--eval-steps", "2",
              "--out", str(out)]
    record = train_digits.main(common) or json.loads(out.read_text())
    assert record["seeds"] == [0, 1] and record["steps"] == [2] and record["evaluation"]["n"] == 40
    for loss in ("simple", "sa"):
        s0, s1 = record["networks"][loss]["0"], record["networks"][loss]["1"]
        assert s0["fd"] == s1["fd"] and s0["confident"] == s1["confident"]   # the same weights score the same
        assert s0["shipped"] and s0["checkpoint"] == f"data/checkpoints/digits_{loss}" and not s1["shipped"]
        assert s0["weights_sha256"] == load_shipped(f"digits_{loss}").config["weights_sha256"]
        assert s0["trained_by"]["device"] == "cuda" and s1["trained_by"] == {"device": "cpu"}
    assert record["paired"]["fd"]["2"]["sd"] == 0.0 and record["command"].startswith("python scripts/train_digits.py seeds")
    assert record["recipe"]["steps"] == 6000 and record["recipe"]["channels"] == 32
    # a snapshot trained with another loss under the SA name
    copy("simple", "sa1.0_s1")
    with pytest.raises(SystemExit, match=r"sa1.0_s1/step6000: loss .*'simple'.*; expected .*'sa'"):
        train_digits.main(common)
