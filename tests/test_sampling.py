"""Karras schedule, Euler/Heun sampling and classifier-free guidance against independent references: a numpy
Karras formula, the analytic denoiser and probability-flow ODE of Gaussian data, and per-frame numpy CFG."""

import numpy as np
import pytest
import torch

from svd.diffusion import guided_denoise, karras_sigmas, linear_frame_guidance, sample


def ref_karras(n, smin, smax, rho):
    """Karras et al. 2022, eq. 5, one term at a time."""
    out = [(smax ** (1 / rho) + i / (n - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho for i in range(n)]
    return np.array(out + [0.0])


@pytest.mark.parametrize(
    "n,smin,smax,rho", [(25, 0.002, 700.0, 7.0), (30, 0.002, 700.0, 7.0), (40, 0.002, 80, 7.0), (7, 0.1, 10.0, 3.0)]
)
def test_karras_sigmas_match_formula(n, smin, smax, rho):
    s = karras_sigmas(n, smin, smax, rho)
    assert s.shape == (n + 1,) and s.dtype == torch.float64
    np.testing.assert_allclose(s.numpy(), ref_karras(n, smin, smax, rho), rtol=1e-12)
    assert s[0].item() == pytest.approx(smax, rel=1e-13) and s[n - 1].item() == pytest.approx(smin, rel=1e-12)
    assert s[-1].item() == 0.0 and bool((s[1:] < s[:-1]).all())


def test_karras_sigmas_edge_cases():
    np.testing.assert_allclose(karras_sigmas(1, 0.002, 700.0).numpy(), [700.0, 0.0], rtol=1e-13)
    assert karras_sigmas(5, dtype=torch.float32).dtype == torch.float32
    with pytest.raises(ValueError):
        karras_sigmas(0)
    with pytest.raises(ValueError):
        karras_sigmas(10, sigma_min=5.0, sigma_max=1.0)


def test_linear_frame_guidance():
    np.testing.assert_allclose(linear_frame_guidance(14, 1.0, 2.5).numpy(), np.linspace(1.0, 2.5, 14), rtol=1e-15)
    w = linear_frame_guidance(25, 1.5, 3.0).numpy()
    np.testing.assert_allclose(w, 1.5 + 1.5 * np.arange(25) / 24, rtol=1e-15)
    np.testing.assert_allclose(np.diff(w), 1.5 / 24, rtol=1e-12)


# ------------------------------------------------------------ Gaussian data: analytic denoiser and ODE

MU = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)
S0 = torch.tensor([0.3, 0.5, 1.0], dtype=torch.float64)


def gaussian_model_fn(z, c_noise):
    """The network output that makes the preconditioned denoiser equal the analytic D(x; s) of N(MU, S0^2) data.
    Inverts the sigma_data = 1 preconditioning by hand: s = exp(4 c_noise), x = z*sqrt(s^2+1),
    F = (D - x/(s^2+1)) / (-s/sqrt(s^2+1))."""
    s = torch.exp(4 * c_noise).reshape(-1, 1)
    x = z * torch.sqrt(s**2 + 1)
    d = MU + (x - MU) * S0**2 / (S0**2 + s**2)
    return (d - x / (s**2 + 1)) / (-s / torch.sqrt(s**2 + 1))


def exact_flow(x_start, s_start, s_end):
    """Probability-flow ODE of Gaussian data, dx/ds = (x - D)/s, solved exactly."""
    return MU + (x_start - MU) * torch.sqrt(S0**2 + s_end**2) / torch.sqrt(S0**2 + s_start**2)


def _noise(n=20_000, seed=0):
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_euler_and_heun_sample_the_gaussian():
    sigmas = karras_sigmas(40, 0.002, 80.0)
    noise = _noise()
    smax = 80.0
    # the exact push-forward of the start N(0, smax^2 + 1) through the flow (the start is not exactly the data
    # marginal N(MU, S0^2 + smax^2), which shifts the mean by MU * S0/smax)
    want_mean = MU * (1 - S0 / torch.sqrt(S0**2 + smax**2))
    want_std = S0 * np.sqrt(smax**2 + 1) / torch.sqrt(S0**2 + smax**2)
    errs = {}
    for method in ("euler", "heun"):
        x = sample(gaussian_model_fn, noise.shape, sigmas, method=method, noise=noise, dtype=torch.float64)
        n = x.shape[0]
        mean_err = (x.mean(0) - want_mean).abs()
        assert bool((mean_err < 4 * S0 / np.sqrt(n) + 1e-3).all()), (method, mean_err)
        rel_std = (x.std(0) / want_std - 1).abs()
        errs[method] = float(rel_std.max())
        # and so the data mean, up to that start offset
        assert bool(((x.mean(0) - MU).abs() < MU.abs() * S0 / smax + 4 * S0 / np.sqrt(n) + 1e-3).all())
    # Euler's known under-dispersion at 40 steps is a few percent; Heun's is far smaller
    assert errs["euler"] < 0.10
    assert errs["heun"] < 0.03
    assert errs["heun"] < errs["euler"] / 3


def test_heun_matches_exact_ode_solution():
    noise = _noise(2000, seed=1)
    sigmas = karras_sigmas(600, 0.002, 80.0)
    x_start = noise * np.sqrt(80.0**2 + 1)
    x = sample(gaussian_model_fn, noise.shape, sigmas, method="heun", noise=noise, dtype=torch.float64)
    exact = exact_flow(x_start, 80.0, 0.0)
    assert float((x - exact).abs().max()) < 2e-4
    # stopping at sigma = 0.5 (Heun's correction on every step, including the last)
    sig = torch.cat([sigmas[sigmas > 0.5], torch.tensor([0.5], dtype=torch.float64)])
    x = sample(gaussian_model_fn, noise.shape, sig, method="heun", noise=noise, dtype=torch.float64)
    assert float((x - exact_flow(x_start, 80.0, 0.5)).abs().max()) < 2e-4


def test_convergence_orders():
    """Errors against the exact ODE solution shrink ~2x per step doubling for Euler and ~4x for Heun."""
    noise = _noise(500, seed=2)
    x_start = noise * np.sqrt(80.0**2 + 1)
    exact = exact_flow(x_start, 80.0, 0.0)

    def err(method, n):
        x = sample(
            gaussian_model_fn,
            noise.shape,
            karras_sigmas(n, 0.002, 80.0),
            method=method,
            noise=noise,
            dtype=torch.float64,
        )
        return float((x - exact).abs().max())

    e = {m: [err(m, n) for n in (40, 80, 160)] for m in ("euler", "heun")}
    for a, b in zip(e["euler"], e["euler"][1:]):
        assert 1.8 < a / b < 2.2
    for a, b in zip(e["heun"], e["heun"][1:]):
        assert 3.5 < a / b < 4.8
    assert e["heun"][0] < e["euler"][0] / 5


# ------------------------------------------------------------ classifier-free guidance

B, T, C, H, W = 2, 5, 2, 3, 3


def frame_model_fn(z, c_noise, y):
    """An elementwise network whose output depends on a per-frame condition y (1, T, 1, 1, 1): frame f's output
    depends on frame f's input and y[f] only."""
    return torch.tanh(z) * y + 0.1 * y**2 * c_noise.reshape(-1, 1, 1, 1, 1)


def _y(values):
    return torch.tensor(values, dtype=torch.float64).reshape(1, T, 1, 1, 1)


Y_C = _y([0.5, -1.0, 2.0, 0.3, 1.5])
Y_U = _y([0.0, 0.7, -0.4, 1.1, 0.2])


def test_guided_denoise_matches_per_frame_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, T, C, H, W)) * 3
    s = np.array([0.7, 4.0])
    w = np.array([1.0, 1.3, 1.9, 2.2, 2.5])
    got = guided_denoise(
        frame_model_fn,
        torch.from_numpy(x),
        torch.from_numpy(s),
        {"y": Y_C},
        {"y": Y_U},
        torch.from_numpy(w),
        frames_dim=1,
    ).numpy()
    sb = s.reshape(-1, 1, 1, 1, 1)
    c_skip, c_out, c_in, c_noise = 1 / (sb**2 + 1), -sb / np.sqrt(sb**2 + 1), 1 / np.sqrt(sb**2 + 1), np.log(sb) / 4

    def d_ref(y):
        y = y.numpy()
        return c_skip * x + c_out * (np.tanh(c_in * x) * y + 0.1 * y**2 * c_noise)

    d_c, d_u = d_ref(Y_C), d_ref(Y_U)
    for f in range(T):
        want = d_u[:, f] + w[f] * (d_c[:, f] - d_u[:, f])
        np.testing.assert_allclose(got[:, f], want, rtol=1e-12, atol=1e-12)
    # frames_dim may be negative; the weights land on the same axis
    got_neg = guided_denoise(
        frame_model_fn,
        torch.from_numpy(x),
        torch.from_numpy(s),
        {"y": Y_C},
        {"y": Y_U},
        torch.from_numpy(w),
        frames_dim=-4,
    ).numpy()
    np.testing.assert_array_equal(got_neg, got)


def test_guidance_one_equals_conditional_sample():
    sig = karras_sigmas(12, 0.002, 80.0)
    kw = dict(method="heun", dtype=torch.float64)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    cond_only = sample(frame_model_fn, (B, T, C, H, W), sig, {"y": Y_C}, generator=g(), **kw)
    guided = sample(frame_model_fn, (B, T, C, H, W), sig, {"y": Y_C}, {"y": Y_U}, 1.0, generator=g(), **kw)
    torch.testing.assert_close(guided, cond_only, rtol=1e-10, atol=1e-10)
    uncond_only = sample(frame_model_fn, (B, T, C, H, W), sig, {"y": Y_U}, generator=g(), **kw)
    w0 = sample(frame_model_fn, (B, T, C, H, W), sig, {"y": Y_C}, {"y": Y_U}, 0.0, generator=g(), **kw)
    torch.testing.assert_close(w0, uncond_only, rtol=1e-10, atol=1e-10)


def test_per_frame_guidance_applies_each_weight_to_its_frame_only():
    sig = karras_sigmas(10, 0.002, 80.0)
    w = linear_frame_guidance(T, 1.0, 2.5)
    g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    per_frame = sample(
        frame_model_fn,
        (B, T, C, H, W),
        sig,
        {"y": Y_C},
        {"y": Y_U},
        w,
        generator=g(),
        frames_dim=1,
        dtype=torch.float64,
    )
    for f in range(T):
        scalar = sample(
            frame_model_fn,
            (B, T, C, H, W),
            sig,
            {"y": Y_C},
            {"y": Y_U},
            float(w[f]),
            generator=g(),
            dtype=torch.float64,
        )
        torch.testing.assert_close(per_frame[:, f], scalar[:, f], rtol=1e-12, atol=1e-12)
        others = [k for k in range(T) if abs(float(w[k]) - float(w[f])) > 1e-9]
        assert not torch.allclose(per_frame[:, others], scalar[:, others])


def test_guidance_argument_errors():
    x = torch.zeros(B, T, C, H, W)
    with pytest.raises(ValueError, match="frames_dim"):
        guided_denoise(frame_model_fn, x, 1.0, {"y": Y_C}, {"y": Y_U}, torch.ones(T))
    with pytest.raises(ValueError, match="guidance weights"):
        guided_denoise(frame_model_fn, x, 1.0, {"y": Y_C}, {"y": Y_U}, torch.ones(T + 1), frames_dim=1)
    with pytest.raises(ValueError, match="both uncond and guidance"):
        guided_denoise(frame_model_fn, x, 1.0, {"y": Y_C}, {"y": Y_U})


# ------------------------------------------------------------ reproducibility and argument checks


def test_seeds_make_samples_reproducible():
    sig = karras_sigmas(6, 0.002, 80.0)

    def run(seed, method):
        return sample(
            frame_model_fn,
            (B, T, C, H, W),
            sig,
            {"y": Y_C},
            {"y": Y_U},
            2.0,
            method=method,
            generator=torch.Generator().manual_seed(seed),
        )

    for method in ("euler", "heun"):
        a, b, c = run(7, method), run(7, method), run(8, method)
        assert a.dtype == torch.float32
        assert torch.equal(a, b)
        assert not torch.allclose(a, c)


def test_sample_rejects_bad_schedules():
    f = gaussian_model_fn
    with pytest.raises(ValueError, match="strictly decreasing"):
        sample(f, (2, 3), torch.tensor([1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="only the last may be 0"):
        sample(f, (2, 3), torch.tensor([1.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="method"):
        sample(f, (2, 3), karras_sigmas(3), method="dpm")
    with pytest.raises(ValueError, match="noise shape"):
        sample(f, (2, 3), karras_sigmas(3), noise=torch.zeros(3, 3))


def test_callback_sees_every_step():
    seen = []
    sample(
        gaussian_model_fn,
        (4, 3),
        karras_sigmas(5, 0.002, 80.0),
        method="heun",
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(0),
        callback=lambda i, x, d: seen.append(i),
    )
    assert seen == list(range(5))
