"""The networks' time embedding is computed once per distinct timestep: the same outputs and gradients as
computing it for every point (to float32 summation-order error), and really one row per distinct t."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import seqdiff_kit.denoisers as denoisers
from seqdiff_kit import MLPDenoiser, TinyUNet
from seqdiff_kit.denoisers import EQUAL_T_ROWS, distinct_timesteps, gather_rows

# The two paths differ only in how many rows each Linear layer multiplies at once, which can change the
# BLAS kernel and so the summation order of its dot products (128 terms deep): at most a few float32 ulps of
# the outputs (|out| ~ 1), far below 1e-5 (equal t is bitwise equal on the BLAS builds measured, not promised).
TOL = dict(rtol=1e-5, atol=1e-5)


@given(st.lists(st.integers(0, 999), min_size=1, max_size=64), st.booleans())
@settings(max_examples=200, deadline=None)
def test_distinct_timesteps_rebuild_t(values, all_equal):
    t = torch.tensor([values[0]] * len(values) if all_equal else values)
    t_u, index = distinct_timesteps(t)
    rebuilt = gather_rows(t_u, index)
    assert torch.equal(rebuilt.expand(t.shape[0]), t)  # a single row broadcasts over the batch
    if index is None:
        assert torch.equal(t_u, t)
    elif isinstance(index, slice):  # every t equal: a few copies, the first one broadcast
        assert t_u.numel() == EQUAL_T_ROWS < t.numel() and bool((t_u == t[0]).all()) and rebuilt.numel() == 1
    else:
        assert t_u.numel() == len(set(t.tolist())) < t.numel() and torch.equal(t_u, t_u.unique())


def _per_point(monkeypatch):
    """Make the networks embed every point's t on its own row (the computation before the per-t cache)."""
    monkeypatch.setattr(denoisers, "distinct_timesteps", lambda t: (t, None))


def _inputs(kind, B, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, *shape, generator=g)
    t = {"equal": torch.full((B,), 437),
         "repeats": torch.randint(0, 12, (B,), generator=g),      # ~B/12 points per t
         "distinct": torch.randperm(1000, generator=g)[:B]}[kind]
    return x, t


def _nets():
    torch.manual_seed(0)
    return [(MLPDenoiser(), (2,)), (TinyUNet(channels=16), (1, 8, 8))]


@pytest.mark.parametrize("kind", ["equal", "repeats", "distinct"])
def test_outputs_match_the_per_point_embedding(kind, monkeypatch):
    for net, shape in _nets():
        net.eval()
        x, t = _inputs(kind, 96, shape)
        with torch.no_grad():
            cached = net(x, t)
            _per_point(monkeypatch)
            per_point = net(x, t)
            monkeypatch.undo()
        if kind == "distinct":  # nothing to share: literally the same computation
            assert torch.equal(cached, per_point)
        torch.testing.assert_close(cached, per_point, **TOL)


@pytest.mark.parametrize("kind", ["equal", "repeats"])
def test_training_gradients_match_the_per_point_embedding(kind, monkeypatch):
    """The gathered embedding back-propagates to the time MLP the sum over the points that share a t."""
    for net, shape in _nets():
        net.train()
        x, t = _inputs(kind, 64, shape, seed=1)
        target = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
        grads = []
        for patch in (False, True):
            if patch:
                _per_point(monkeypatch)
            net.zero_grad()
            (net(x, t) - target).square().sum(dim=tuple(range(1, x.ndim))).mean().backward()
            grads.append({n: p.grad.clone() for n, p in net.named_parameters()})
        monkeypatch.undo()
        assert grads[0].keys() == grads[1].keys()
        for name in grads[0]:
            scale = float(grads[1][name].abs().max()) + 1.0
            torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-5 * scale,
                                       msg=lambda m, n=name: f"{n}: {m}")
        assert grads[0]["time_mlp.0.weight"].abs().sum() > 0


@pytest.mark.parametrize("kind, rows", [("equal", EQUAL_T_ROWS), ("repeats", 12), ("distinct", 96)])
def test_the_time_mlp_runs_on_the_distinct_timesteps_only(kind, rows):
    for net, shape in _nets():
        seen = []
        hook = net.time_mlp.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[0]))
        x, t = _inputs(kind, 96, shape)
        assert t.unique().numel() == (1 if kind == "equal" else rows)
        with torch.no_grad():
            net(x, t)
        hook.remove()
        assert seen == [rows]
