"""TinyUNet: size, shapes, per-sample independence, time conditioning, the skip path, config round trip,
argument checks, and that it can fit a fixed denoising batch."""
import pytest
import torch

from seqdiff_kit import Schedule, TinyUNet, digits
from seqdiff_kit.denoisers import timestep_embedding



def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return TinyUNet(**kw)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_count_in_range_and_grows_with_channels():
    m = _model()
    n = n_params(m)
    print(f"TinyUNet(channels=32) parameters: {n}")
    assert 100_000 <= n <= 250_000
    # conv weights scale ~ C^2: doubling the channels roughly quadruples the count
    n16, n64 = n_params(TinyUNet(channels=16)), n_params(TinyUNet(channels=64))
    assert n16 < n < n64
    assert 3.0 < n64 / n < 4.2


def test_shape_dtype_and_scalar_t():
    m = _model().eval()
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 10, 200, 500, 999])
    out = m(x, t)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # a 0-d t is broadcast to the batch
    torch.testing.assert_close(m(x, torch.tensor(7)), m(x, torch.full((5,), 7)))
    # other even sizes work too (the U-Net only halves once)
    assert m(torch.randn(2, 1, 12, 16), torch.tensor([1, 2])).shape == (2, 1, 12, 16)


def test_outputs_are_per_sample():
    """GroupNorm normalises each sample on its own: sample i's output must not depend on the rest of the batch."""
    m = _model().eval()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 1, 8, 8, generator=g)
    t = torch.randint(0, 1000, (6,), generator=g)
    full = m(x, t)
    for i in range(6):
        torch.testing.assert_close(full[i:i + 1], m(x[i:i + 1], t[i:i + 1]), rtol=1e-5, atol=1e-5)
    # autograd: d out[0] / d x[1] is exactly zero
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(m(xr, t)[0].sum(), xr)
    assert grad[1:].abs().max() == 0 and grad[0].abs().max() > 0


def test_time_embedding_conditions_the_output():
    m = _model().eval()
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    a, b = m(x, torch.full((4,), 10)), m(x, torch.full((4,), 900))
    assert (a - b).abs().max() > 1e-3
    # and the embedding it uses is the library's sinusoid: cos/sin of t * 10000^(-k/half)
    t = torch.tensor([0, 3, 999])
    emb = timestep_embedding(t, 8)
    k = torch.arange(4, dtype=torch.float32)
    w = 10000.0 ** (-k / 4)
    torch.testing.assert_close(emb, torch.cat([torch.cos(t[:, None] * w), torch.sin(t[:, None] * w)], -1))
    # every residual block receives gradient through its time projection
    m.train()
    m(x, torch.tensor([1, 50, 400, 999])).square().mean().backward()
    for blk in (m.enc, m.mid, m.dec):
        assert blk.temb.weight.grad.abs().sum() > 0


def test_skip_connection_carries_the_8x8_path():
    """With the up-sampling branch cut (its conv zeroed), the output still depends on the input: via the skip."""
    m = _model().eval()
    with torch.no_grad():
        m.up[1].weight.zero_()
        m.up[1].bias.zero_()
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    t = torch.tensor([5, 50, 500])
    (grad,) = torch.autograd.grad(m(x, t).sum(), x)
    assert grad.abs().sum() > 0
    # and the 4x4 branch is truly cut: the mid block gets no gradient
    m.zero_grad()
    m(x.detach(), t).sum().backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in m.mid.parameters())


def test_config_round_trip():
    m = _model(channels=16, time_dim=32, T=200).eval()
    assert m.config == {"channels": 16, "time_dim": 32, "T": 200}
    m2 = TinyUNet(**m.config)
    m2.load_state_dict(m.state_dict(), strict=True)
    m2.eval()
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([0, 199])
    torch.testing.assert_close(m(x, t), m2(x, t))


@pytest.mark.parametrize("kwargs, exc, words", [
    ({"channels": 15}, ValueError, ["channels", "15"]),
    ({"channels": 0}, ValueError, ["channels", "0"]),
    ({"channels": 32.0}, TypeError, ["channels", "32.0"]),
    ({"time_dim": 1}, ValueError, ["time_dim", "1"]),
    ({"T": 0}, ValueError, ["T", "0"]),
])
def test_bad_constructor_arguments(kwargs, exc, words):
    with pytest.raises(exc) as e:
        TinyUNet(**kwargs)
    assert all(w in str(e.value) for w in words)


def test_bad_call_arguments():
    m = _model(T=100)
    x = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"x must have shape \[B, 1, H, W\].*\(2, 64\)"):
        m(torch.zeros(2, 64), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"x must have shape.*\(2, 3, 8, 8\)"):
        m(torch.zeros(2, 3, 8, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"t must be in \[0, 99\].*100"):
        m(x, torch.tensor([0, 100]))
    with pytest.raises(TypeError, match="t must be a LongTensor"):
        m(x, torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \[B\]"):
        m(x, torch.tensor([0, 1, 2]))


def test_fits_a_fixed_denoising_batch():
    """A few Adam steps on one batch of noised digits must cut the eps MSE well below the start
    (and below 1, the error of predicting zero noise is E||eps||^2 / D = 1)."""
    g = torch.Generator().manual_seed(6)
    x0 = digits()[0][:32]
    sched = Schedule.linear(T=1000)
    t = torch.randint(0, 1000, (32,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    a = sched.alpha_bar(t).float().view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    m = _model(seed=7, channels=16)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        loss = (m(x_t, t) - eps).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print(f"fixed-batch eps MSE: {losses[0]:.3f} -> {losses[-1]:.3f}")
    assert losses[-1] < 0.3 * losses[0] and losses[-1] < 0.3


# ---------------------------------------------------------------------- dtypes and devices (issue 16)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bool, torch.int64])
def test_networks_refuse_x_in_another_dtype_than_their_parameters(dtype):
    """float64/float16/bool/int inputs failed inside torch ("mat1 and mat2 must have the same dtype")."""
    from seqdiff_kit import MLPDenoiser

    t = torch.tensor([0, 1])
    for model, x in ((MLPDenoiser(dim=2, width=8, depth=1, T=10), torch.zeros(2, 2)),
                     (TinyUNet(channels=2, time_dim=4, T=10), torch.zeros(2, 1, 4, 4))):
        with pytest.raises(TypeError, match=rf"^x must have dtype float32, got dtype {str(dtype)[6:]} \(this "
                                            r"model's parameters are float32 on cpu"):
            model(x.to(dtype), t)
        with pytest.raises(TypeError, match="^x must hold values on a real device"):
            model(x.to("meta"), t)
        if dtype.is_floating_point:  # converting the model is the documented way out
            assert model.to(dtype)(x.to(dtype), t).dtype == dtype


def test_timestep_embedding_odd_dims_and_its_range():
    """Found by hypothesis: dim = 1 gave shape [B, 0] (the padding column was cut from an empty embedding);
    t = 1e300 (inf in float32) and max_period < 1 (frequencies overflow) gave NaN."""
    t = torch.tensor([0, 5, 9])
    assert timestep_embedding(t, 1).shape == (3, 1) and timestep_embedding(t, 5).shape == (3, 5)
    assert torch.equal(timestep_embedding(t, 1), torch.zeros(3, 1))  # no frequency, only the padding column
    with pytest.raises(ValueError, match=r"t must be finite and inside float32's range"):
        timestep_embedding(torch.tensor([1e300], dtype=torch.float64), 4)
    with pytest.raises(ValueError, match=r"max_period must be in \[1.0, inf\]"):
        timestep_embedding(t, 8, 1e-57)
    with pytest.raises(TypeError, match="t must be a real-valued tensor"):
        timestep_embedding(t.bool(), 8)
