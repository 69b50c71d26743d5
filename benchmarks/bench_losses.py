"""Cost of the sequence-aware loss: one training step (forward + backward + Adam) with SA K = 2, 3, 4 relative to
the simple loss at the same batch, and the batched K*B model call versus one model call per k.

MLPDenoiser on ring8 (batch 512) and TinyUNet on the 8x8 digits (batch 128). Every configuration is timed in
each repeat round (interleaved, so drifting load hits all of them alike); medians over rounds are printed with
the machine load. Usage: python benchmarks/bench_losses.py [--repeats 5] [--iters 5] [--threads 1]
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch
from einops import rearrange

import seqdiff_kit as sk
from seqdiff_kit.losses import LossOutput, sequence_aware_loss, simple_loss


def sa_loss_per_k(model, x0, schedule, K, lam, *, t, noise) -> LossOutput:
    """The same SA loss with one model call per k (the obvious implementation the batched one replaces)."""
    simple, acc = None, torch.zeros_like(x0)
    for k in range(K):
        mask = rearrange((t >= k).to(x0.dtype), "b -> b" + " 1" * (x0.ndim - 1))
        t_k = (t - k).clamp(min=0)
        r = noise[k] - model(schedule.add_noise(x0, t_k, noise[k]), t_k)
        if k == 0:
            simple = rearrange(r**2, "b ... -> b (...)").sum(1).mean()
        acc = acc + mask * r
    sa = rearrange(acc**2, "b ... -> b (...)").sum(1).mean() / K**2
    return LossOutput(simple + lam * sa, simple, sa)


def make_step(model, x0, schedule, kind, K, generator):
    """A closure running one training step; fresh t and eps are drawn from ``generator`` each time."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    B = x0.shape[0]

    def step():
        t = schedule.sample_t(B, generator=generator)
        noise = torch.randn(K, *x0.shape, generator=generator)
        if kind.startswith("eval"):  # the loss value alone: forward passes only
            with torch.no_grad():
                fn = sequence_aware_loss if kind == "eval-batched" else sa_loss_per_k
                fn(model, x0, schedule, K, 1.0, t=t, noise=noise)
            return
        opt.zero_grad(set_to_none=True)
        if kind == "simple":
            out = simple_loss(model, x0, schedule, t=t, noise=noise[:1])
        elif kind == "batched":
            out = sequence_aware_loss(model, x0, schedule, K=K, lam=1.0, t=t, noise=noise)
        else:
            out = sa_loss_per_k(model, x0, schedule, K, 1.0, t=t, noise=noise)
        out.total.backward()
        opt.step()

    return step


def bench_model(label, model, x0, schedule, repeats, iters):
    g = torch.Generator().manual_seed(0)
    # the two SA implementations must agree before their speeds mean anything
    t = schedule.sample_t(x0.shape[0], generator=g)
    noise = torch.randn(4, *x0.shape, generator=g)
    a = sequence_aware_loss(model, x0, schedule, K=4, lam=1.0, t=t, noise=noise).total
    b = sa_loss_per_k(model, x0, schedule, 4, 1.0, t=t, noise=noise).total
    print(f"\n{label}: batch {x0.shape[0]}, {sum(p.numel() for p in model.parameters())} parameters; "
          f"batched vs per-k SA loss (K=4): {float(a.detach()):.6f} vs {float(b.detach()):.6f}")
    configs = [("simple", 1)] + [(kind, K) for K in (2, 3, 4)
                                 for kind in ("batched", "per-k", "eval-batched", "eval-per-k")]
    steps = {c: make_step(copy.deepcopy(model), x0, schedule, c[0], c[1], g) for c in configs}
    for step in steps.values():  # warm-up (allocator, autograd graph caches)
        step()
        step()
    times = {c: [] for c in configs}
    for _ in range(repeats):
        for c in configs:
            t0 = time.perf_counter()
            for _ in range(iters):
                steps[c]()
            times[c].append((time.perf_counter() - t0) / iters)
    med = {c: statistics.median(v) for c, v in times.items()}
    base = med[("simple", 1)]
    print("training step (forward + backward + Adam), and the loss evaluation alone (no_grad forward):")
    print(f"{'loss':>14} {'ms/step':>9} {'vs simple':>10} {'per-k/batched':>14} {'eval ms':>8} "
          f"{'eval per-k/batched':>19}")
    print(f"{'simple':>14} {1e3 * base:9.2f} {1.0:10.2f}")
    for K in (2, 3, 4):
        bt, lp = med[("batched", K)], med[("per-k", K)]
        ebt, elp = med[("eval-batched", K)], med[("eval-per-k", K)]
        print(f"{f'SA K={K} batched':>14} {1e3 * bt:9.2f} {bt / base:10.2f} {lp / bt:14.2f} {1e3 * ebt:8.2f} "
              f"{elp / ebt:19.2f}")
        print(f"{f'SA K={K} per-k':>14} {1e3 * lp:9.2f} {lp / base:10.2f} {'':>14} {1e3 * elp:8.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--iters", type=int, default=5, help="training steps per timing")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)  # deliberate: oversubscribing a shared 2-core machine distorts ratios
    print(f"load average before: {os.getloadavg()}  (cores: {os.cpu_count()}, torch threads: "
          f"{torch.get_num_threads()}, repeats: {args.repeats} x {args.iters} steps)")
    schedule = sk.Schedule.linear(1000)
    torch.manual_seed(0)  # model initialisation only
    x_mlp = sk.ring8().sample(512, torch.Generator().manual_seed(1))
    bench_model("MLPDenoiser (2-D ring8)", sk.MLPDenoiser(dim=2, T=1000), x_mlp, schedule, args.repeats, args.iters)
    images, _ = sk.digits()
    x_img = images[torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(2))[:128]]
    bench_model("TinyUNet (8x8 digits)", sk.TinyUNet(T=1000), x_img, schedule, args.repeats, args.iters)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
