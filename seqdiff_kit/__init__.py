"""seqdiff_kit: teach and explore how diffusion models sample, and why their paths drift.

The package root re-exports the core (schedule, data, denoisers, losses, samplers, solvers). Its modules sit in layers
whose imports flow one way, foundation -> core -> tools -> presentation -> application -> interface
(docs/architecture.md); no module below the root imports the root.
"""
from ._runtime import __version__, set_threads

# The core's names are imported on first use (PEP 562), so that importing the package (the `seqdiff` command
# does, before it knows what it will run) does not import torch.
_CORE = {"Schedule": "schedule", "GaussianMixture": "data", "digits": "data", "grid25": "data", "preset": "data",
         "ring8": "data", "two_moons": "data", "IdealDenoiser": "denoisers", "MLPDenoiser": "denoisers",
         "TinyUNet": "denoisers", "Loss": "losses", "LossOutput": "losses", "sequence_aware_loss": "losses",
         "simple_loss": "losses", "Trajectory": "samplers", "generalized_step": "samplers",
         "make_noise": "samplers", "SOLVERS": "solvers", "sample": "solvers",  # the one public sample, with solver=
         "sample_iter": "solvers"}
__all__ = [*_CORE, "set_threads"]


def __getattr__(name: str):
    import importlib

    if name in set(_CORE.values()):  # the core modules themselves (`seqdiff_kit.samplers` after the package import)
        return importlib.import_module(f".{name}", __name__)
    if name not in _CORE:
        raise AttributeError(f"module 'seqdiff_kit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_CORE[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
