"""A small CNN for the 8x8 digits, whose penultimate layer is the feature space of the digit Frechet distance.

- ``DigitClassifier``: ``logits = head(features(x))`` for images [B, 1, 8, 8] in [-1, 1] (as ``data.digits()``).
- ``digit_split``: the fixed, seeded, label-stratified train / held-out split the shipped weights were trained on.
- ``train_classifier``: seeded CPU training (random one-pixel shifts as augmentation).
- ``save_classifier`` / ``load_classifier``: safetensors weights + a JSON config, never pickles;
  ``get_classifier``: the shipped classifier, loaded once per process (what ``classifier=None`` means).
- ``digit_features``: features of many images in batches, without gradients.
- ``confidence_share``, ``class_counts``: scores of generated digits.
- ``digit_frechet_distance`` (with ``digit_feature_stats``) and ``digit_class_coverage``: the digit metrics,
  ``metrics``' Frechet distance and mode coverage computed on this classifier's features and classes; here, not
  in ``metrics``, because they read the shipped classifier and digits from disk.

The shipped weights are ``data/classifier.safetensors`` + ``data/classifier.json``
(regenerate with ``python scripts/train_classifier.py``).
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
from einops import rearrange
from safetensors.torch import save
from torch import nn

from ._io import atomic_write
from ._limits import check_memory
from ._validate import check_float, check_int, check_tensor
from .checkpoint import PICKLE_SUFFIXES, check_state, checkpoint_paths, read_json_file, read_tensor_file
from .data import DATA_DIR, digits
from .denoisers import seeded_model
from .metrics import ModeCoverage, coverage_noise, gaussian_fit, gaussian_frechet_distance

DEFAULT_PATH = DATA_DIR / "classifier"


class DigitClassifier(nn.Module):
    """``features(x) = SiLU(W_f flatten(conv_stack(x)) + b_f)`` in R^feature_dim; ``logits = W_c features + b_c``.

    conv_stack: conv3x3(1->c) SiLU conv3x3(c->2c) SiLU maxpool2 (8x8 -> 4x4) conv3x3(2c->4c) SiLU maxpool2 (-> 2x2).
    ``channels=16, feature_dim=64`` gives about 40k parameters."""

    def __init__(self, channels: int = 16, feature_dim: int = 64, n_classes: int = 10):
        super().__init__()
        self.config = {"channels": check_int("channels", channels, 1),
                       "feature_dim": check_int("feature_dim", feature_dim, 1),
                       "n_classes": check_int("n_classes", n_classes, 2)}
        c = channels  # the parameters: 90 c^2 + 16 c in the convolutions, then the two linear layers
        n = 90 * c**2 + 16 * c * (feature_dim + 1) + feature_dim * (n_classes + 1) + n_classes
        check_memory("DigitClassifier size", self.config, 4 * n, f"{n} float32 parameters")  # before allocating
        self.conv = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * c, 4 * c, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2),
        )
        self.fc = nn.Linear(4 * c * 2 * 2, feature_dim)
        self.head = nn.Linear(feature_dim, n_classes)
        self.act = nn.SiLU()
        self.info: dict = {}  # filled by load_classifier with the JSON metadata (split, accuracy, versions)

    @property
    def feature_dim(self) -> int:
        return self.config["feature_dim"]

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x)
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 8, 8):
            raise ValueError(f"x must have shape [B, 1, 8, 8] (digits in [-1, 1]), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor in [-1, 1], got dtype {x.dtype}")
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer: ``SiLU(W_f flatten(conv_stack(x)) + b_f)``, shape [B, feature_dim]."""
        h = self.conv(self._check(x))
        return self.act(self.fc(rearrange(h, "b c h w -> b (c h w)")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``W_c features(x) + b_c``, shape [B, n_classes]."""
        return self.head(self.features(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """``argmax_k logits_k``: the predicted digit of each image, LongTensor [B]."""
        return self(x).argmax(dim=-1)


# ---------------------------------------------------------------------------------------------- data split
def digit_split(labels: torch.Tensor, held_out: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A stratified split: for each class c with n_c images, ``round(held_out * n_c)`` of them, chosen by a
    permutation from ``torch.Generator().manual_seed(seed)``, go to the held-out set.

    Returns ``(train_idx, held_out_idx)``, sorted LongTensors that partition ``range(len(labels))``."""
    check_tensor("labels", labels, ndim=1, nonempty=True)
    if labels.is_floating_point():
        raise TypeError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    held_out = check_float("held_out", held_out, 0.0, 1.0, low_open=True, high_open=True)
    seed = check_int("seed", seed, 0)
    g = torch.Generator().manual_seed(seed)
    test = []
    # classes in sorted order so the generator's stream (and thus the split) is fixed by the seed alone
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        perm = idx[torch.randperm(idx.numel(), generator=g)]
        test.append(perm[: int(round(held_out * idx.numel()))])
    test_idx = torch.sort(torch.cat(test)).values
    mask = torch.ones(labels.numel(), dtype=torch.bool)
    mask[test_idx] = False
    return torch.nonzero(mask).flatten(), test_idx


# -------------------------------------------------------------------------------------------------- training
def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator, fill: float = -1.0) -> torch.Tensor:
    """Translate each image by (dy, dx) drawn uniformly from {-max_shift..max_shift}^2, filling with ``fill``
    (the digits' background, -1): ``out[b, :, i, j] = x[b, :, i - dy_b, j - dx_b]`` (``fill`` outside)."""
    if max_shift == 0:
        return x
    B, _, H, W = x.shape
    s = max_shift
    padded = nn.functional.pad(x, (s, s, s, s), value=fill)
    # offset o in {0..2s} of the crop window means a shift of s - o
    oy = torch.randint(0, 2 * s + 1, (B,), generator=generator)
    ox = torch.randint(0, 2 * s + 1, (B,), generator=generator)
    rows = oy[:, None] + torch.arange(H)  # [B, H]
    cols = ox[:, None] + torch.arange(W)  # [B, W]
    b = torch.arange(B)[:, None, None]
    out = padded[:, 0][b, rows[:, :, None], cols[:, None, :]]  # [B, H, W]
    return rearrange(out, "b h w -> b 1 h w")


@torch.no_grad()
def accuracy(model: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images whose predicted class equals the label: ``mean_i 1[argmax logits(x_i) = y_i]``."""
    was_training = model.training
    model.eval()
    pred = torch.cat([model.predict(chunk) for chunk in images.split(1024)])
    model.train(was_training)
    return float((pred == labels.to(pred.device)).float().mean())


def train_classifier(images: torch.Tensor, labels: torch.Tensor, *, epochs: int = 40, batch_size: int = 64,
                     lr: float = 3e-3, weight_decay: float = 1e-4, max_shift: int = 1, seed: int = 0,
                     channels: int = 16, feature_dim: int = 64, device: str | torch.device = "cpu",
                     log=None) -> tuple[DigitClassifier, list[dict]]:
    """Minimise the cross-entropy ``-mean_i log softmax(logits(shift(x_i)))_{y_i}`` with AdamW and a cosine
    learning-rate decay. Initialisation, minibatch order and shifts all come from ``seed``.

    Returns ``(model in eval mode, history)`` where history holds one dict per epoch (epoch, loss, train_acc)."""
    check_tensor("images", images, ndim=4, nonempty=True, finite=True)
    check_tensor("labels", labels, ndim=1)
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"labels must have one entry per image ({images.shape[0]}), got {labels.shape[0]}")
    epochs = check_int("epochs", epochs, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    lr = check_float("lr", lr, 0.0, low_open=True)
    max_shift = check_int("max_shift", max_shift, 0, 3)
    seed = check_int("seed", seed, 0)
    model = seeded_model(DigitClassifier, seed, channels=channels, feature_dim=feature_dim,
                         n_classes=int(labels.max()) + 1)
    model.to(device).train()
    g = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = images.shape[0]
    steps_per_epoch = (n + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    history = []
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=g)
        total, correct = 0.0, 0
        for idx in perm.split(batch_size):
            x = random_shift(images[idx], max_shift, g).to(device)
            y = labels[idx].to(device)
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * idx.numel()
            correct += int((logits.argmax(-1) == y).sum())
        history.append({"epoch": epoch + 1, "loss": total / n, "train_acc": correct / n})
        if log is not None:
            log(history[-1])
    return model.eval(), history


# ------------------------------------------------------------------------------------------------- file I/O
def _paths(path: str | Path | None) -> tuple[Path, Path]:
    """``(<stem>.safetensors, <stem>.json)`` as ``checkpoint.checkpoint_paths`` names them (the shipped
    ``data/classifier`` when ``path`` is None); pickle-style names are refused."""
    path = DEFAULT_PATH if path is None else path
    if Path(path).suffix.lower() in PICKLE_SUFFIXES:
        raise ValueError(f"path must name a safetensors + JSON pair (stem, .json or .safetensors); "
                         f"pickled weights are refused, got {str(path)!r}")
    return checkpoint_paths(path)


def save_classifier(model: DigitClassifier, path: str | Path | None = None, info: dict | None = None) -> Path:
    """Write ``<stem>.safetensors`` (weights) and ``<stem>.json`` (class, config and ``info``). Returns the stem."""
    if not isinstance(model, DigitClassifier):
        raise TypeError(f"model must be a DigitClassifier, got {type(model).__name__}")
    st, js = _paths(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"class": "DigitClassifier", "config": model.config, **(info or {})}
    atomic_write(st, save(tensors))
    atomic_write(js, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return st.with_suffix("")


def load_classifier(path: str | Path | None = None, device: str | torch.device = "cpu") -> DigitClassifier:
    """Load a ``DigitClassifier`` (eval mode) from ``<stem>.safetensors`` + ``<stem>.json``
    (default: the shipped ``data/classifier``). The JSON metadata is kept in ``model.info``."""
    st, js = _paths(path)
    for f in (js, st):
        if not f.is_file():
            raise FileNotFoundError(f"classifier file not found at {f}; run scripts/train_classifier.py to create it")
    meta = read_json_file(js)
    got = meta.get("class") if isinstance(meta, dict) else type(meta).__name__
    if got != "DigitClassifier":
        raise ValueError(f"{js} describes class {got!r:.60}, expected 'DigitClassifier'")
    config = meta.get("config")
    try:
        if not isinstance(config, dict):
            raise TypeError(f"got {config!r:.60}")
        model = DigitClassifier(**config)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{js}: key 'config' must hold DigitClassifier's arguments (channels, feature_dim, "
                         f"n_classes): {' '.join(str(err).split())[:160]}") from None
    tensors = read_tensor_file(st)  # a file safetensors cannot parse is a ValueError naming it, never a crash
    check_state(tensors, model, f"classifier {str(st)!r}")
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise ValueError(f"classifier {str(st)!r}: its weights do not fit DigitClassifier({config}): "
                         f"{' '.join(str(err).split())[:200]}") from None
    model.info = meta
    return model.to(device).eval()


@functools.lru_cache(maxsize=None)
def _shipped(device: str) -> DigitClassifier:
    return load_classifier(device=device)


def get_classifier(classifier: DigitClassifier | None = None, device: str | torch.device = "cpu") -> DigitClassifier:
    """``classifier`` itself, or (None) the shipped ``data/classifier`` on ``device``, read from disk once per
    process and device and then shared: callers must not train, move or modify it."""
    return _shipped(str(device)) if classifier is None else classifier


@torch.no_grad()
def digit_features(x: torch.Tensor, classifier: DigitClassifier | None = None, batch_size: int = 1024) -> torch.Tensor:
    """``classifier.features(x)`` for many images, in batches and without gradients: float64 [N, feature_dim]
    (float64 because Frechet distances subtract nearly equal covariance traces)."""
    check_tensor("x", x, nonempty=True, finite=True)
    if x.ndim == 3:
        x = rearrange(x, "n h w -> n 1 h w")
    clf = get_classifier(classifier)
    if not isinstance(clf, DigitClassifier):
        raise TypeError(f"classifier must be a DigitClassifier or None, got {type(clf).__name__}")
    was_training = clf.training
    clf.eval()
    dev = next(clf.parameters()).device
    feats = torch.cat([clf.features(chunk.to(dev, torch.float32)) for chunk in x.split(batch_size)])
    clf.train(was_training)
    return feats.double().cpu()


# ---------------------------------------------------------------------- scores of generated digits
@torch.no_grad()
def class_probabilities(images: torch.Tensor, classifier: DigitClassifier | None = None,
                        batch_size: int = 1024) -> torch.Tensor:
    """``softmax(classifier(x))`` [N, 10] for images [N, 1, 8, 8] in [-1, 1] (shipped classifier by default)."""
    check_tensor("images", images, ndim=4, nonempty=True, finite=True)
    if tuple(images.shape[1:]) != (1, 8, 8):
        raise ValueError(f"images must have shape [N, 1, 8, 8], got {tuple(images.shape)}")
    clf = get_classifier(classifier)
    dev = next(clf.parameters()).device
    clf.eval()
    probs = [torch.softmax(clf(chunk.to(dev, torch.float32)), dim=-1) for chunk in images.split(batch_size)]
    return torch.cat(probs).cpu()


def confidence_share(images: torch.Tensor, classifier: DigitClassifier | None = None,
                     threshold: float = 0.9) -> float:
    """``(1/N) sum_i 1[max_k softmax(logits(x_i))_k >= threshold]``: the share of images the classifier
    assigns a class with confidence at least ``threshold`` (recognisable digits)."""
    threshold = check_float("threshold", threshold, 0.0, 1.0)
    p = class_probabilities(images, classifier)
    return float((p.max(dim=-1).values >= threshold).double().mean())


def class_counts(images: torch.Tensor, classifier: DigitClassifier | None = None) -> torch.Tensor:
    """How many images the classifier assigns to each digit: ``bincount(argmax softmax)`` [10]."""
    p = class_probabilities(images, classifier)
    return torch.bincount(p.argmax(dim=-1), minlength=p.shape[1])


# ---------------------------------------------------------------------- digit metrics (the classifier's features)
def _check_digits(name: str, x) -> None:
    check_tensor(name, x, finite=True)
    if tuple(x.shape[1:]) not in ((1, 8, 8), (8, 8)) or x.shape[0] < 2:
        raise ValueError(f"{name} must have shape [N, 1, 8, 8] or [N, 8, 8] with N >= 2, got {tuple(x.shape)}")


def _digit_stats(name: str, images: torch.Tensor, classifier) -> tuple[torch.Tensor, torch.Tensor]:
    return gaussian_fit(digit_features(images, classifier), f"features of {name}")


def digit_feature_stats(images: torch.Tensor, classifier=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, S)``: the mean [F] and unbiased covariance [F, F] (float64) of ``classifier.features(x)`` over
    ``images`` [N, 1, 8, 8] or [N, 8, 8] in [-1, 1], N >= 2 (the shipped classifier when ``classifier`` is
    None). Compute a fixed reference's statistics once and pass them to ``digit_frechet_distance`` as
    ``reference_stats``."""
    _check_digits("images", images)
    return _digit_stats("images", images, classifier)


def digit_class_coverage(images: torch.Tensor, classifier=None) -> ModeCoverage:
    """Digit coverage, the image counterpart of ``mode_coverage``: each image [N, 1, 8, 8] in [-1, 1] to the
    classifier's most likely digit (the shipped classifier when ``classifier`` is None), the shares of the ten
    digits against their shares among the 1797 real digits, and the total variation distance
    ``(1/2) sum_k |share_k - weight_k|``. The classifier's own errors (about 1% on held-out digits) count too:
    score real digits the same way for the floor."""
    _check_digits("images", images)
    counts = class_counts(images.reshape(-1, 1, 8, 8), classifier)
    _, labels = digits()
    weights = torch.bincount(labels, minlength=counts.numel()).double() / labels.numel()
    n = int(counts.sum())
    shares = counts.double() / n
    return ModeCoverage(counts=counts, shares=shares, weights=weights, tv=0.5 * float((shares - weights).abs().sum()),
                        tv_noise=coverage_noise(weights, n), n=n)


def digit_frechet_distance(samples: torch.Tensor, reference: torch.Tensor | None = None, classifier=None, *,
                           reference_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> float:
    """Squared Frechet distance between Gaussians fitted to digit-classifier features of two image sets:

        FD = ||mu_s - mu_r||^2 + tr(S_s) + tr(S_r) - 2 tr((S_s^(1/2) S_r S_s^(1/2))^(1/2)),

    with ``(mu, S)`` the mean and covariance of ``classifier.features(x)`` (the 64-D penultimate layer of the
    shipped ``data/classifier`` when ``classifier`` is None). ``samples`` and ``reference`` are [N, 1, 8, 8]
    (or [N, 8, 8]) images in [-1, 1]. Give either ``reference`` or ``reference_stats``, the reference's
    ``digit_feature_stats`` under the same classifier (the same number, without recomputing them).
    The estimate is biased upwards at small N: compare models at the same N (docs/digits_results.md gives the
    scale: the score of real digits against real digits, and of noise). Two disjoint halves of the real digits
    do not score 0, and their score depends on the halving: ``evaluate.frechet_floor_spread`` gives that
    floor's mean and spread, the noise of any comparison of digit FDs.
    """
    if (reference is None) == (reference_stats is None):
        raise ValueError("give exactly one of reference (images) and reference_stats (digit_feature_stats), got "
                         + ("both" if reference is not None else "neither"))
    _check_digits("samples", samples)
    if reference is not None:
        _check_digits("reference", reference)
        reference_stats = _digit_stats("reference", reference, classifier)
    return gaussian_frechet_distance(*_digit_stats("samples", samples, classifier), *reference_stats)
