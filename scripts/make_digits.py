"""Regenerate data/digits.npz from scikit-learn's bundled copy of the UCI 8x8 digits.

Source: "Optical Recognition of Handwritten Digits" (Alpaydin and Kaynak, 1998), UCI Machine Learning
Repository, licensed CC BY 4.0; the 1797-image test subset bundled with scikit-learn (BSD-3-Clause) as
``sklearn.datasets.load_digits``. Pixel values are integers in [0, 16]; stored as uint8, no pickle.

Usage: python scripts/make_digits.py   (needs scikit-learn; nothing is downloaded)
"""
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

out = Path(__file__).resolve().parent.parent / "data" / "digits.npz"
d = load_digits()
np.savez_compressed(out, images=d.images.astype(np.uint8), labels=d.target.astype(np.uint8))
print(f"wrote {out}: {d.images.shape[0]} images, {out.stat().st_size} bytes")
