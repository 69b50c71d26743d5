"""Retrain the digit classifier behind the digit Frechet distance and write data/classifier.{safetensors,json}.

Seeded and CPU-only: the same arguments give the same weights on the same machine and torch version.
Trains on the 80% side of the fixed stratified split (``seqdiff_kit.classifier.digit_split``, seed 0) and
records the held-out accuracy in the JSON.

Usage: python scripts/train_classifier.py [--epochs 40] [--seed 0] [--threads 1] [--out data/classifier]
"""
import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import seqdiff_kit  # noqa: E402
from seqdiff_kit.classifier import DEFAULT_PATH, accuracy, digit_split, save_classifier, train_classifier  # noqa: E402
from seqdiff_kit.data import digits  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--held-out", type=float, default=0.2)
    p.add_argument("--max-shift", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(DEFAULT_PATH))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)

    images, labels = digits()
    train_idx, test_idx = digit_split(labels, held_out=a.held_out, seed=a.split_seed)
    t0 = time.perf_counter()

    def log(h):
        if h["epoch"] % 5 == 0 or h["epoch"] == a.epochs:
            print(f"epoch {h['epoch']:3d}  loss {h['loss']:.4f}  train acc {h['train_acc']:.4f}", flush=True)

    model, history = train_classifier(images[train_idx], labels[train_idx], epochs=a.epochs,
                                      batch_size=a.batch_size, lr=a.lr, max_shift=a.max_shift, seed=a.seed, log=log)
    seconds = time.perf_counter() - t0
    acc_train = accuracy(model, images[train_idx], labels[train_idx])
    acc_test = accuracy(model, images[test_idx], labels[test_idx])
    info = {
        "dataset": "digits (UCI 8x8, data/digits.npz), scaled to [-1, 1]",
        "split": {"held_out": a.held_out, "seed": a.split_seed},
        "train": {"epochs": a.epochs, "batch_size": a.batch_size, "lr": a.lr, "seed": a.seed,
                  "max_shift": a.max_shift, "optimizer": "AdamW + cosine decay", "threads": a.threads,
                  "seconds": round(seconds, 1)},
        "train_accuracy": round(acc_train, 4),
        "held_out_accuracy": round(acc_test, 4),
        "n_train": int(train_idx.numel()), "n_held_out": int(test_idx.numel()),
        "library_version": seqdiff_kit.__version__, "torch_version": torch.__version__,
        "python_version": platform.python_version(),
    }
    stem = save_classifier(model, a.out, info)
    print(f"train acc {acc_train:.4f}  held-out acc {acc_test:.4f} ({test_idx.numel()} images)  "
          f"{seconds:.1f} s  -> {stem}.safetensors / .json")


if __name__ == "__main__":
    main()
