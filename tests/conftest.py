import contextlib
import os
import time
from pathlib import Path

import pytest
import torch

# The one place the suite sets its thread count (deliberately 1 unless SEQDIFF_THREADS says otherwise):
# it runs on 2 shared cores, where oversubscription slows these small models 20-40x. Under pytest-xdist every
# worker process imports this file, so each keeps one thread.
torch.set_num_threads(int(os.environ.get("SEQDIFF_THREADS", "1")))

# The screenshots of the browser tests (git-ignored). This run's are those written after this file was imported:
# every pytest-xdist worker imports it while it collects, and no test starts before all workers have collected.
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "browser"
RUN_START = time.time()


def in_xdist_worker() -> bool:
    return "PYTEST_XDIST_WORKER" in os.environ


@pytest.fixture(scope="session")
def artifacts():
    """The screenshots folder. ``path(name)`` gives a path in it; the screenshots of earlier runs are deleted
    (they would pass for this run's), this run's kept whichever worker wrote them; the terminal summary lists
    this run's."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        with contextlib.suppress(FileNotFoundError):
            if old.stat().st_mtime < RUN_START:
                old.unlink()

    class Artifacts:
        folder = ARTIFACTS

        @staticmethod
        def path(name: str) -> Path:
            return ARTIFACTS / name

    return Artifacts


def pytest_terminal_summary(terminalreporter):
    """The screenshots this run wrote (in the controller under pytest-xdist, which sees every worker's files)."""
    if in_xdist_worker() or not ARTIFACTS.is_dir():
        return
    shots = sorted((p for p in ARTIFACTS.glob("*.png") if p.stat().st_mtime >= RUN_START),
                   key=lambda p: p.stat().st_mtime)
    if shots:
        terminalreporter.write_sep("-", "browser artifacts")
        terminalreporter.write_line(f"{len(shots)} screenshots in {ARTIFACTS}")
        for p in shots:
            terminalreporter.write_line(f"  {p.name}")


@pytest.fixture(scope="session")
def rounding_bound():
    """``rounding_bound(traj, schedule, dtype)``: see ``sampler_rounding_bound``."""
    return sampler_rounding_bound


def sampler_rounding_bound(traj, schedule, dtype) -> float:
    """A bound on how far a sampler run in ``dtype`` may land from the float64 run ``traj`` (every step recorded)
    through rounding alone: each step rounds x_t, eps_pred, x0_pred and x_s about once each, and the division by
    sqrt(alpha_bar_t) scales those errors by ``kappa = sqrt(alpha_bar_s / alpha_bar_t)`` on the way to x_s, so

        |x_low - x_64| <= 4 eps(dtype) sum_i kappa_i max(|x_t|, |eps_pred|, |x_s|)_i

    (4 rather than 3 roundings leaves room for the errors of earlier steps). It ignores how much the flow itself
    amplifies earlier errors, so it holds for short runs only: over many steps a point near the boundary between
    two modes can follow the other one, which no rounding bound describes."""
    ts = traj.timesteps
    a_t = schedule.alpha_bar(ts)
    a_s = schedule.alpha_bar(torch.cat([ts[1:], torch.tensor([-1])]))
    kappa = (a_s / a_t).sqrt()
    size = torch.stack([traj.x[:-1].abs().flatten(1).amax(1), traj.eps_pred.abs().flatten(1).amax(1),
                        traj.x[1:].abs().flatten(1).amax(1)]).amax(0).double()
    return 4 * torch.finfo(dtype).eps * float((kappa * size).sum())


def _ring_with_outliers(seed: int, n: int = 2000, outliers: int = 100):
    """Exact ring8 draws with ``outliers`` of them replaced by uniform points over the ring's box, and the same
    draws with every mode's core shrunk to 0.85 of its width (no outliers); the reference draw."""
    from seqdiff_kit import ring8

    mix = ring8()
    g = torch.Generator().manual_seed(seed)
    ref, x = mix.sample(n, g), mix.sample(n, g)
    spread = x.clone()
    spread[:outliers] = (torch.rand(outliers, 2, generator=g) * 2 - 1) * 1.2 * float(mix.means.norm(dim=1).max())
    centre = mix.means[mix.responsibilities(x.double(), 1.0).argmax(1)].float()
    return mix, ref, spread, centre + 0.85 * (x - centre)


@pytest.fixture
def ring_with_outliers():
    """``(mixture, reference, with 5% outliers, cores 0.85 wide)`` of a seed: where std and MAD spread disagree."""
    return _ring_with_outliers
