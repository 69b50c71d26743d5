"""The digit classifier (shipped weights, split, augmentation, seeded training, safetensors I/O) and the
digit Frechet distance built on its features."""
import json

import pytest
import torch

from seqdiff_kit import digits
from seqdiff_kit.classifier import (DigitClassifier, accuracy, digit_features, digit_split, load_classifier,
                                    random_shift, save_classifier, train_classifier)



@pytest.fixture(scope="module")
def data():
    return digits()


@pytest.fixture(scope="module")
def clf():
    return load_classifier()


# ------------------------------------------------------------------------------------------- shipped weights
def test_shipped_weights_reach_95_percent_on_held_out(data, clf):
    x, y = data
    train_idx, test_idx = digit_split(y, **clf.info["split"])
    acc = accuracy(clf, x[test_idx], y[test_idx])
    print(f"held-out accuracy of the shipped classifier: {acc:.4f} on {test_idx.numel()} images")
    assert acc >= 0.95
    # the JSON's figure is what the weights really give (recomputed here, not trusted)
    assert abs(acc - clf.info["held_out_accuracy"]) < 1e-3
    assert clf.info["n_held_out"] == test_idx.numel() and clf.info["n_train"] == train_idx.numel()
    assert not clf.training


def test_features_shape_and_head_consistency(data, clf):
    x = data[0][:37]
    f = clf.features(x)
    assert f.shape == (37, clf.feature_dim) == (37, 64)
    # forward is head(features): the penultimate layer really is the one the logits are read from
    torch.testing.assert_close(clf(x), clf.head(f))
    # batched, gradient-free helper: same values (float64), any batch size, 3-D input accepted
    fb = digit_features(x, clf, batch_size=5)
    assert fb.dtype == torch.float64 and not fb.requires_grad
    torch.testing.assert_close(fb, f.detach().double(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(digit_features(x[:, 0], clf), fb, rtol=1e-5, atol=1e-5)
    # features are differentiable w.r.t. the images (e.g. for guidance)
    xr = x[:2].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(clf.features(xr).sum(), xr)
    assert g.abs().sum() > 0


@pytest.mark.parametrize("bad, exc, pattern", [
    (torch.zeros(3, 64), ValueError, r"x must have shape \[B, 1, 8, 8\].*\(3, 64\)"),
    (torch.zeros(3, 1, 7, 7), ValueError, r"x must have shape.*\(3, 1, 7, 7\)"),
    (torch.zeros(3, 1, 8, 8, dtype=torch.long), TypeError, "x must be a floating-point tensor"),
    ([0.0] * 64, TypeError, "x must be a torch.Tensor"),
])
def test_bad_images_raise(clf, bad, exc, pattern):
    with pytest.raises(exc, match=pattern):
        clf.features(bad)


# ------------------------------------------------------------------------------------------------- the split
def test_split_is_a_seeded_stratified_partition(data):
    y = data[1]
    tr, te = digit_split(y, held_out=0.2, seed=0)
    assert torch.equal(torch.sort(torch.cat([tr, te])).values, torch.arange(y.numel()))
    counts_all, counts_te = torch.bincount(y, minlength=10), torch.bincount(y[te], minlength=10)
    assert torch.equal(counts_te, torch.round(0.2 * counts_all.double()).long())
    tr2, te2 = digit_split(y, held_out=0.2, seed=0)
    assert torch.equal(te, te2) and torch.equal(tr, tr2)
    _, te3 = digit_split(y, held_out=0.2, seed=1)
    assert not torch.equal(te, te3)
    # the split does not consume the global RNG
    state = torch.get_rng_state()
    digit_split(y, seed=3)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("kwargs, exc, words", [
    ({"held_out": 0.0}, ValueError, ["held_out", "0.0"]),
    ({"held_out": 1.0}, ValueError, ["held_out", "1.0"]),
    ({"held_out": "0.2"}, TypeError, ["held_out"]),
    ({"seed": -1}, ValueError, ["seed", "-1"]),
    ({"seed": 1.5}, TypeError, ["seed", "1.5"]),
])
def test_split_bad_arguments(data, kwargs, exc, words):
    with pytest.raises(exc) as e:
        digit_split(data[1], **kwargs)
    assert all(w in str(e.value) for w in words)
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        digit_split(data[1].float())


# -------------------------------------------------------------------------------------- augmentation, training
def test_random_shift_matches_explicit_translations(data):
    x = data[0][:50]
    out = random_shift(x, 1, torch.Generator().manual_seed(0))
    assert out.shape == x.shape

    def translate(img, dy, dx):  # out[i, j] = img[i - dy, j - dx], -1 outside: by explicit loops
        res = torch.full_like(img, -1.0)
        for i in range(8):
            for j in range(8):
                if 0 <= i - dy < 8 and 0 <= j - dx < 8:
                    res[0, i, j] = img[0, i - dy, j - dx]
        return res

    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    seen = set()
    for b in range(50):
        hits = [s for s in shifts if torch.equal(out[b], translate(x[b], *s))]
        assert hits, f"image {b} is not a one-pixel translation of its input"
        seen.update(hits)
    assert len(seen) >= 6  # the shifts really vary
    assert torch.equal(random_shift(x, 0, torch.Generator()), x)


def test_training_is_seeded_and_learns(data):
    x, y = data
    tr, te = digit_split(y)
    rng_before = torch.get_rng_state()
    kw = dict(epochs=6, batch_size=64, channels=8, feature_dim=32)
    m1, h1 = train_classifier(x[tr], y[tr], seed=5, **kw)
    assert torch.equal(rng_before, torch.get_rng_state())  # the caller's global RNG is untouched
    m2, _ = train_classifier(x[tr[:300]], y[tr[:300]], seed=5, epochs=1, channels=8, feature_dim=32)
    m3, _ = train_classifier(x[tr[:300]], y[tr[:300]], seed=5, epochs=1, channels=8, feature_dim=32)
    m4, _ = train_classifier(x[tr[:300]], y[tr[:300]], seed=6, epochs=1, channels=8, feature_dim=32)
    for (k, a), b in zip(m2.state_dict().items(), m3.state_dict().values()):
        assert torch.equal(a, b), k
    assert not torch.equal(m2.fc.weight, m4.fc.weight)
    acc = accuracy(m1, x[te], y[te])
    print(f"6-epoch small classifier: held-out accuracy {acc:.3f}, loss {h1[0]['loss']:.3f} -> {h1[-1]['loss']:.3f}")
    assert h1[-1]["loss"] < 0.5 * h1[0]["loss"]
    assert acc > 0.85


def test_training_bad_arguments(data):
    x, y = data
    with pytest.raises(ValueError, match=r"labels must have one entry per image \(10\), got 9"):
        train_classifier(x[:10], y[:9])
    with pytest.raises(ValueError, match=r"epochs must be in \[1, inf\], got 0"):
        train_classifier(x[:10], y[:10], epochs=0)
    with pytest.raises(ValueError, match=r"max_shift must be in \[0, 3\], got 4"):
        train_classifier(x[:10], y[:10], max_shift=4)


# ------------------------------------------------------------------------------------------------- file I/O
def test_save_load_round_trip(tmp_path, data):
    torch.manual_seed(0)
    m = DigitClassifier(channels=4, feature_dim=8).eval()
    stem = save_classifier(m, tmp_path / "clf", {"note": "test"})
    assert (tmp_path / "clf.safetensors").is_file() and (tmp_path / "clf.json").is_file()
    meta = json.loads((tmp_path / "clf.json").read_text())
    assert meta["class"] == "DigitClassifier" and meta["config"] == m.config and meta["note"] == "test"
    x = data[0][:6]
    for p in (stem, tmp_path / "clf.json", tmp_path / "clf.safetensors", str(stem)):
        m2 = load_classifier(p)
        assert m2.config == m.config and m2.info["note"] == "test"
        torch.testing.assert_close(m2(x), m(x))
    # no temporary files left behind
    assert sorted(f.name for f in tmp_path.iterdir()) == ["clf.json", "clf.safetensors"]


def test_load_refuses_pickles_and_bad_files(tmp_path):
    with pytest.raises(ValueError, match="pickled weights are refused.*model.pt"):
        load_classifier(tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match="scripts/train_classifier.py"):
        load_classifier(tmp_path / "missing")
    save_classifier(DigitClassifier(channels=2, feature_dim=4), tmp_path / "c")
    meta = json.loads((tmp_path / "c.json").read_text())
    meta["class"] = "TinyUNet"
    (tmp_path / "c.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="'TinyUNet', expected 'DigitClassifier'"):
        load_classifier(tmp_path / "c")
    with pytest.raises(TypeError, match="model must be a DigitClassifier"):
        save_classifier(torch.nn.Linear(2, 2), tmp_path / "d")


@pytest.mark.parametrize("name, data, match", [
    ("c.safetensors", b"not safetensors at all", r"corrupt checkpoint '.*c.safetensors': not a safetensors file"),
    ("c.safetensors", b"", r"'.*c.safetensors': 0 bytes is too short"),
    ("c.safetensors", b"\x80\x04K\x01.", r"pickle"),
    ("c.json", b"[1, 2]", r"describes class 'list', expected 'DigitClassifier'"),
    ("c.json", b"{trunc", r"not valid UTF-8 JSON"),
    ("c.json", b'{"class": "DigitClassifier"}', r"key 'config' must hold DigitClassifier's arguments .*got None"),
    ("c.json", b'{"class": "DigitClassifier", "config": {"evil": 1}}', r"unexpected keyword argument 'evil'"),
    ("c.json", b'{"class": "DigitClassifier", "config": {"channels": 1000000}}',
     r"DigitClassifier size .* needs about .* of memory"),
    ("c.json", b'{"class": "DigitClassifier", "config": {"channels": 4, "feature_dim": 4}}',
     r"its weights do not fit DigitClassifier\(\{'channels': 4, 'feature_dim': 4\}\): .*size mismatch"),
])
def test_load_names_the_damaged_file_in_one_value_error(tmp_path, name, data, match):
    """Non-safetensors bytes once escaped as safetensors' own error, a list as an AttributeError, a huge config
    tried to allocate terabytes."""
    save_classifier(DigitClassifier(channels=2, feature_dim=4), tmp_path / "c")
    (tmp_path / name).write_bytes(data)
    with pytest.raises(ValueError, match=match):
        load_classifier(tmp_path / "c")


def test_load_refuses_weights_that_are_not_finite_floats(tmp_path):
    from safetensors.torch import load, save

    stem = save_classifier(DigitClassifier(channels=2, feature_dim=4), tmp_path / "c")
    tensors = load((tmp_path / "c.safetensors").read_bytes())
    tensors["head.bias"][3] = float("nan")
    (tmp_path / "c.safetensors").write_bytes(save(tensors))
    with pytest.raises(ValueError, match=r"classifier '.*c.safetensors': tensor 'head.bias' holds 1 NaN"):
        load_classifier(stem)
    tensors["head.bias"] = tensors["head.bias"].to(torch.int8)
    (tmp_path / "c.safetensors").write_bytes(save(tensors))
    with pytest.raises(ValueError, match=r"tensor 'head.bias' has dtype torch.int8; weights must be floating"):
        load_classifier(stem)


# ------------------------------------------------------------------------------------ digit Frechet distance
def _blur(x):
    """3x3 box blur with the background value (-1) outside the image."""
    w = torch.ones(1, 1, 3, 3) / 9.0
    return torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1, 1, 1, 1), value=-1.0), w)


def test_digit_frechet_distance_floor_versus_noise_and_blur(data, clf):
    from seqdiff_kit.classifier import digit_frechet_distance
    from seqdiff_kit.metrics import frechet_distance

    x, y = data
    a, b = digit_split(y, held_out=0.5, seed=0)  # two disjoint, class-balanced halves
    floor = digit_frechet_distance(x[a], x[b], clf)
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(x[a].shape, generator=g) * 2 - 1
    fd_noise = digit_frechet_distance(noise, x[b], clf)
    fd_blur = digit_frechet_distance(_blur(x[a]), x[b], clf)
    fd_drop = digit_frechet_distance(x[a][y[a] < 5], x[b], clf)  # half the classes missing (mode collapse)
    print(f"digit FD: halves (floor) {floor:.2f}, uniform noise {fd_noise:.1f}, 3x3 blur {fd_blur:.1f}, "
          f"classes 0-4 only {fd_drop:.1f}")
    assert 0 < floor < 0.05 * min(fd_noise, fd_blur, fd_drop)
    # identical sets: zero (up to round-off); symmetric; the default classifier is the shipped one
    assert digit_frechet_distance(x[a], x[a], clf) < 1e-6 * fd_noise
    assert digit_frechet_distance(x[b], x[a], clf) == pytest.approx(floor, rel=1e-6)
    assert digit_frechet_distance(x[a], x[b]) == pytest.approx(floor, rel=1e-6)
    # it is frechet_distance on the classifier's penultimate features
    direct = frechet_distance(clf.features(x[a]).detach(), clf.features(x[b]).detach())
    assert floor == pytest.approx(direct, rel=1e-4)


def test_digit_frechet_distance_bad_arguments(data):
    from seqdiff_kit.classifier import digit_frechet_distance

    x = data[0][:20]
    with pytest.raises(ValueError, match=r"samples must have shape \[N, 1, 8, 8\].*\(20, 64\)"):
        digit_frechet_distance(x.reshape(20, 64), x)
    with pytest.raises(ValueError, match=r"reference must have shape .*N >= 2.*\(1, 1, 8, 8\)"):
        digit_frechet_distance(x, x[:1])
    with pytest.raises(TypeError, match="reference must be a torch.Tensor"):
        digit_frechet_distance(x, x.numpy())
    with pytest.raises(ValueError, match="samples must be finite"):
        digit_frechet_distance(torch.full_like(x, float("nan")), x)


def test_stem_with_a_dot_round_trips(tmp_path):
    torch.manual_seed(0)
    m = DigitClassifier(channels=2, feature_dim=4).eval()
    stem = save_classifier(m, tmp_path / "runs" / "clf.v2")
    assert stem == tmp_path / "runs" / "clf.v2"
    assert sorted(f.name for f in (tmp_path / "runs").iterdir()) == ["clf.v2.json", "clf.v2.safetensors"]
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    for p in (stem, tmp_path / "runs" / "clf.v2.json", tmp_path / "runs" / "clf.v2.safetensors"):
        torch.testing.assert_close(load_classifier(p)(x), m(x))
