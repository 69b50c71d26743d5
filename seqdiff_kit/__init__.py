"""seqdiff_kit: teach and explore how diffusion models sample, and why their paths drift.

The package root re-exports the core (schedule, data, denoisers, losses, samplers, solvers). Its modules sit in layers
whose imports flow one way, foundation -> core -> tools -> presentation -> application -> interface
(docs/architecture.md); no module below the root imports the root.
"""
from ._runtime import __version__, set_threads

__all__ = ["Schedule", "GaussianMixture", "digits", "grid25", "preset", "ring8", "two_moons", "IdealDenoiser",
           "MLPDenoiser", "TinyUNet", "Loss", "LossOutput", "sequence_aware_loss", "simple_loss", "Trajectory",
           "generalized_step", "make_noise", "sample", "sample_iter", "SOLVERS", "set_threads"]

from .schedule import Schedule  # noqa: E402
from .data import GaussianMixture, digits, grid25, preset, ring8, two_moons  # noqa: E402
from .denoisers import IdealDenoiser, MLPDenoiser, TinyUNet  # noqa: E402
from .losses import Loss, LossOutput, sequence_aware_loss, simple_loss  # noqa: E402
from .samplers import Trajectory, generalized_step, make_noise  # noqa: E402
from .solvers import SOLVERS, sample, sample_iter  # noqa: E402  (samplers' sample with a choice of solver)
