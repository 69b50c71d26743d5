"""seqdiff_kit: teach and explore how diffusion models sample, and why their paths drift.

Modules follow one chain (imports flow one way):
schedule -> data -> denoisers -> losses -> samplers -> drift -> train / metrics -> viz, widgets, report, cli.
"""
import os as _os

import torch as _torch

__version__ = "0.1.0"
__all__ = ["Schedule", "GaussianMixture", "digits", "grid25", "preset", "ring8", "two_moons", "IdealDenoiser",
           "MLPDenoiser", "TinyUNet", "Loss", "LossOutput", "sequence_aware_loss", "simple_loss", "Trajectory",
           "generalized_step", "make_noise", "sample", "sample_iter", "set_threads"]

from .schedule import Schedule  # noqa: E402
from .data import GaussianMixture, digits, grid25, preset, ring8, two_moons  # noqa: E402
from .denoisers import IdealDenoiser, MLPDenoiser, TinyUNet  # noqa: E402
from .losses import Loss, LossOutput, sequence_aware_loss, simple_loss  # noqa: E402
from .samplers import Trajectory, generalized_step, make_noise, sample, sample_iter  # noqa: E402


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count deliberately (default: ``SEQDIFF_THREADS``, else 1).

    The models here are tiny: a second thread buys little, while oversubscribing a busy 2-core machine
    (measured while four processes shared it) slowed training and sampling 20 to 40 times."""
    if n is None:
        n = int(_os.environ.get("SEQDIFF_THREADS", 1))
    _torch.set_num_threads(max(1, int(n)))
    return _torch.get_num_threads()
