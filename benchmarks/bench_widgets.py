"""Median Python time of one slider update for each dashboard (the budget is 50 ms per update), and the size
of the frames each dashboard sends to the browser once.

The browser switches frames itself (``frontend.load_frames``: every frame travels once, a slider's index is
jslinked to the figure); the kernel's callback only keeps ``fig.data`` equal to what is shown and sends the
frame's index. This measures that callback (from setting ``slider.value`` to the traces holding the new data),
not the browser's redraw: the time from a key press to the redrawn figure is measured in the browser by
tests/browser/test_dashboards.py.

    .venv/bin/python benchmarks/bench_widgets.py [--repeats 200]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from seqdiff_kit import IdealDenoiser, Schedule, digits, make_noise, ring8, sample
from seqdiff_kit import widgets

BUDGET_MS = 50.0


def time_updates(dashboard, repeats: int) -> float:
    """Median milliseconds of ``slider.value = j`` over ``repeats`` moves cycling through every frame."""
    n = dashboard.n_frames
    times = []
    for r in range(repeats):
        j = (r + 1) % n
        if j == dashboard.slider.value:
            j = (j + 1) % n
        t0 = time.perf_counter()
        dashboard.slider.value = j
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    mix, sch = ring8(), Schedule.linear(1000)
    ideal = IdealDenoiser(mix, sch)
    g = torch.Generator().manual_seed(0)
    images, _ = digits()
    x_T = torch.randn(400, 2, generator=g)
    noise = make_noise(50, x_T.shape, g)
    a = sample(ideal, x_T, sch, 50, eta=1.0, noise=noise)
    b = sample(lambda x, t: 0.9 * ideal(x, t), x_T, sch, 50, eta=1.0, noise=noise)
    finals = [sample(ideal, x_T, sch, n).final for n in (5, 10, 20, 50, 100)]
    boards = {
        "NoisingDashboard (400 of 600 points + 4 digits)": widgets.NoisingDashboard(mix.sample(600, generator=g), sch,
                                                                             images[:4], generator=g),
        "ScoreFieldDashboard (15x15 arrows + heads, 50x50)": widgets.ScoreFieldDashboard(mix, sch),
        "PathDashboard (2 paths x 200 points + segments)": widgets.PathDashboard({"learned": b, "ideal": a},
                                                                                 mixture=mix),
        "StepCountDashboard (2 panels x 250 points)": widgets.StepCountDashboard(
            [5, 10, 20, 50, 100], {"ideal": finals, "copy": [f + 0.01 for f in finals]}, mixture=mix),
    }
    worst = 0.0
    for name, board in boards.items():
        ms = time_updates(board, args.repeats)
        worst = max(worst, ms)
        kb = len(board.fig._seqdiff_frames) / 1024
        print(f"{name:<52} median {ms:7.3f} ms per slider update; {board.n_frames} frames, {kb:7.1f} KB sent once")
    print(f"worst median {worst:.3f} ms; budget {BUDGET_MS:.0f} ms: {'OK' if worst < BUDGET_MS else 'OVER BUDGET'}")
    return 0 if worst < BUDGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
