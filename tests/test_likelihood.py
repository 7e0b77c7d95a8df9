"""The variational bound in bits/dim: hand-computed values, the oracle model's closed form, the training loss."""

import math

import numpy as np
import pytest
import torch

from ddpm_hf import DDPMPaperScheduler
from ddpm_hf.likelihood import (
    approx_standard_normal_cdf,
    bits_per_dim,
    discretized_gaussian_log_likelihood,
    normal_kl,
    prior_bpd,
    vlb_terms,
)
from tiny import tiny_unet


def phi(z: float) -> float:
    """The reference's tanh approximation of the standard normal CDF, in plain Python."""
    return 0.5 * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z**3)))


def fixed_image() -> torch.Tensor:
    """x* [1, 3, 4, 4]: 8-bit values on [-1, 1] including both extremes, so both edge bins are exercised."""
    pixels = torch.randint(0, 256, (1, 3, 4, 4), generator=torch.Generator().manual_seed(0))
    pixels[0, 0, 0, :2] = torch.tensor([0, 255])
    return pixels.double() / 127.5 - 1.0


def oracle(scheduler: DDPMPaperScheduler, x_star: torch.Tensor):
    """ε(x_t, t) = (x_t - sqrt(ᾱ_t) x*) / sqrt(1 - ᾱ_t): the exact ε when the data is the single image x*."""

    def eps_model(x_t, t):
        alpha_bar = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
        return (x_t - alpha_bar.sqrt() * x_star) / (1.0 - alpha_bar).sqrt()

    return eps_model


def closed_form_bpd(x_star: np.ndarray, variance_type: str, num_timesteps: int = 1000) -> tuple[float, float]:
    """L_T and the whole bound for data = x* under the oracle, derived by hand in numpy (nothing from ddpm_hf)."""
    betas = np.linspace(1e-4, 0.02, num_timesteps, dtype=np.float64)
    alpha_bar = np.cumprod(1.0 - betas)
    alpha_bar_prev = np.append(1.0, alpha_bar[:-1])
    beta_tilde = betas * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    # L_T: KL(N(sqrt(ᾱ) x*, 1 - ᾱ) || N(0, 1)) per dimension.
    a = alpha_bar[-1]
    prior = np.mean(0.5 * (-1.0 - np.log(1.0 - a) + (1.0 - a) + a * x_star**2))
    # L_t, t ≥ 1: x̂_0 = x* exactly, so μ_θ = μ̃ and only the variances can differ.
    if variance_type == "fixed_small":
        kl = 0.0
    else:
        ratio = beta_tilde[1:] / betas[1:]
        kl = np.sum(0.5 * (-1.0 - np.log(ratio) + ratio))
    # L_0: the decoder is N(x*, β̃_1) per pixel, so each pixel's bin probability depends only on its kind.
    d = (1.0 / 255.0) / math.sqrt(beta_tilde[1])
    p_interior, p_edge = phi(d) - phi(-d), phi(d)  # 1 - Φ(-d) = Φ(d) for the symmetric approximation
    is_edge = np.abs(x_star) > 0.999
    decoder = -np.mean(np.where(is_edge, math.log(p_edge), math.log(p_interior)))
    return prior / math.log(2.0), (prior + kl + decoder) / math.log(2.0)


def test_approx_cdf():
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    exact = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    assert float(approx_standard_normal_cdf(torch.zeros(1))) == 0.5
    assert float((approx_standard_normal_cdf(x) - exact).abs().max()) < 2e-4
    assert torch.allclose(approx_standard_normal_cdf(-x), 1 - approx_standard_normal_cdf(x), atol=1e-15)


def test_normal_kl_hand_values():
    zero, one = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    assert torch.allclose(normal_kl(one, zero, one, zero), 0 * zero)
    assert torch.allclose(normal_kl(zero, zero, one, zero), torch.full((3,), 0.5, dtype=torch.float64))
    log2 = math.log(2.0)
    expected = 0.5 * (-1 + log2 + 0.5)  # KL(N(0, 1) || N(0, 2))
    assert torch.allclose(normal_kl(zero, zero, zero, torch.tensor(log2, dtype=torch.float64)), expected + zero)
    # means differ and variances differ: 0.5 (-1 + log 2 - 0 + 1/2 + 9/2)
    assert torch.allclose(normal_kl(zero, zero, 3 * one, log2 + zero), 0.5 * (-1 + log2 + 0.5 + 4.5) + zero)


def test_discretized_gaussian_interior_and_edges():
    sigma = 0.01
    log_scales = torch.tensor(math.log(sigma), dtype=torch.float64)
    x = torch.tensor([0.0, -1.0, 1.0, 10 / 127.5 - 1], dtype=torch.float64)
    means = torch.tensor([0.0, -1.0, 1.0, 10 / 127.5 - 1 + 0.003], dtype=torch.float64)
    d = 1 / 255 / sigma
    expected = [
        math.log(phi(d) - phi(-d)),  # interior bin centred on the mean
        math.log(phi(d)),  # x = -1: the bin runs from -∞ to -1 + 1/255
        math.log(1 - phi(-d)),  # x = +1: from 1 - 1/255 to +∞
        math.log(phi(d - 0.3) - phi(-d - 0.3)),  # interior, mean 0.3 σ above x
    ]
    got = discretized_gaussian_log_likelihood(x, means, log_scales)
    assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)


def test_discretized_gaussian_floor_and_partition():
    grid = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    far = discretized_gaussian_log_likelihood(grid[:1], torch.tensor([0.5], dtype=torch.float64), torch.tensor(-8.0))
    assert float(far) == pytest.approx(math.log(1e-12))
    # The 256 bins (edge bins open) partition the real line: their probabilities sum to one for any Gaussian
    # (plus 1e-12 for each bin that the floor lifts).
    for mean, log_scale in [(0.0, -2.0), (0.97, -4.0), (-1.0, -5.0), (0.3, 0.0)]:
        logp = discretized_gaussian_log_likelihood(grid, torch.full_like(grid, mean), torch.tensor(log_scale))
        assert float(logp.exp().sum()) == pytest.approx(1.0, abs=1e-9)


def test_discretized_gaussian_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        discretized_gaussian_log_likelihood(torch.zeros(3), torch.zeros(4), torch.zeros(()))


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("clip_denoised", [True, False])
def test_oracle_matches_closed_form(variance_type, clip_denoised):
    scheduler = DDPMPaperScheduler(variance_type=variance_type)  # T = 1000, the paper's schedule
    x_star = fixed_image()
    expected_prior, expected = closed_form_bpd(x_star.numpy()[0], variance_type)
    for batch_size in (1, 77, 1000) if variance_type == "fixed_large" and clip_denoised else (250,):
        result = bits_per_dim(
            oracle(scheduler, x_star), scheduler, x_star, torch.Generator().manual_seed(1), clip_denoised,
            batch_size, progress=False,
        )  # fmt: skip
        # Relative tolerances (achieved: 3e-13): L_T ≈ 1e-5 bits/dim is checked on its own, not lost in the total.
        assert float(result.total) == pytest.approx(expected, rel=1e-10, abs=0)
        assert float(result.prior) == pytest.approx(expected_prior, rel=1e-10, abs=0)
        assert torch.allclose(result.total, result.prior + result.terms.sum(dim=1), rtol=0, atol=1e-12)
        assert float(result.x0_mse.max()) < 1e-20
        assert result.terms.shape == result.x0_mse.shape == (1, 1000)
    assert 1e-5 < float(result.prior) < 1.1e-5  # the reference's L_T ≈ 1e-5 bits/dim
    if variance_type == "fixed_small":
        assert float(result.terms[0, 1:].abs().max()) < 1e-12


def reference_bound(x_0, noise, eps_fn, variance_type, clip_denoised, num_timesteps=1000):
    """calc_bpd_loop of the paper's released code, re-derived in float64 numpy from the formulas (nothing from
    ddpm_hf): pair p = t·B + i diffuses image i to t = p // B with noise[p]; returns (prior, terms, x0_mse)."""
    num_images, dims = x_0.shape[0], x_0[0].size
    betas = np.linspace(1e-4, 0.02, num_timesteps, dtype=np.float64)
    alphas = 1.0 - betas
    abar = np.cumprod(alphas)
    abar_prev = np.append(1.0, abar[:-1])
    beta_tilde = betas * (1.0 - abar_prev) / (1.0 - abar)
    log_beta_tilde = np.log(np.append(beta_tilde[1], beta_tilde[1:]))  # log β̃_0 = -∞ is replaced by log β̃_1
    log_sigma2 = log_beta_tilde if variance_type == "fixed_small" else np.log(np.append(beta_tilde[1], betas[1:]))
    coef1, coef2 = betas * np.sqrt(abar_prev) / (1.0 - abar), (1.0 - abar_prev) * np.sqrt(alphas) / (1.0 - abar)

    pair = np.arange(num_images * num_timesteps)
    t, image = pair // num_images, pair % num_images
    col = (slice(None), None, None, None)  # a per-pair scalar against [n, C, H, W]
    x0 = x_0[image]
    x_t = np.sqrt(abar[t])[col] * x0 + np.sqrt(1.0 - abar[t])[col] * noise
    x0_hat = (x_t - np.sqrt(1.0 - abar[t])[col] * eps_fn(x_t, t)) / np.sqrt(abar[t])[col]
    if clip_denoised:
        x0_hat = np.clip(x0_hat, -1.0, 1.0)
    mu_theta = coef1[t][col] * x0_hat + coef2[t][col] * x_t
    mu_tilde = coef1[t][col] * x0 + coef2[t][col] * x_t
    lv1, lv2 = log_beta_tilde[t][col], log_sigma2[t][col]
    kl = 0.5 * (-1.0 + lv2 - lv1 + np.exp(lv1 - lv2) + (mu_tilde - mu_theta) ** 2 * np.exp(-lv2))
    # L_0: the discretised Gaussian N(μ_θ, σ_0²) with the tanh CDF, bins x ± 1/255, open edge bins, floor 1e-12.
    cdf = np.vectorize(phi)
    inv_sigma = np.exp(-0.5 * lv2)
    upper, lower = cdf(inv_sigma * (x0 - mu_theta + 1 / 255)), cdf(inv_sigma * (x0 - mu_theta - 1 / 255))
    p = np.where(x0 < -0.999, upper, np.where(x0 > 0.999, 1.0 - lower, upper - lower))
    decoder = -np.log(np.maximum(p, 1e-12))
    per_pair = np.where((t == 0)[col], decoder, kl).reshape(len(pair), dims).mean(axis=1) / math.log(2.0)
    terms = np.zeros((num_images, num_timesteps))
    terms[image, t] = per_pair
    x0_mse = np.zeros((num_images, num_timesteps))
    x0_mse[image, t] = ((x0_hat - x0) ** 2).reshape(len(pair), dims).mean(axis=1)
    a = abar[-1]  # L_T = KL(q(x_T | x_0) || N(0, I)) at the last timestep
    prior = (0.5 * (-1.0 - np.log(1.0 - a) + (1.0 - a) + a * x_0**2)).reshape(num_images, dims).mean(axis=1)
    return prior / math.log(2.0), terms, x0_mse


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("clip_denoised", [True, False])
def test_bound_of_a_non_oracle_model_matches_an_independent_reference(variance_type, clip_denoised):
    """An ε-model that is not the oracle (a fixed random linear map of x_t and t), so that x̂_0 is wrong, clipping
    changes it at most t, and every term of the bound is far from any closed form: each term, the prior and the
    x̂_0 error agree with `reference_bound` to a tolerance relative to that term."""
    num_timesteps = 1000
    pixels = torch.randint(0, 256, (2, 3, 4, 4), generator=torch.Generator().manual_seed(5))
    pixels[0, 0, 0, :2] = torch.tensor([0, 255])  # both edge bins of the decoder
    x_0 = pixels.double() / 127.5 - 1.0
    rng = np.random.default_rng(7)
    dims = x_0[0].numel()
    weight, bias = rng.standard_normal((dims, dims)) / math.sqrt(dims), rng.standard_normal(dims)

    def eps_fn(x_t: np.ndarray, t: np.ndarray) -> np.ndarray:
        flat = x_t.reshape(len(x_t), dims)
        return (flat @ weight.T + np.outer(t / num_timesteps, bias)).reshape(x_t.shape)

    def eps_model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(eps_fn(x_t.numpy(), t.numpy()))

    scheduler = DDPMPaperScheduler(variance_type=variance_type, num_train_timesteps=num_timesteps)
    num_pairs = 2 * num_timesteps
    result = bits_per_dim(
        eps_model, scheduler, x_0, torch.Generator().manual_seed(11), clip_denoised, num_pairs, progress=False
    )
    # One batch of all pairs: its noise is one float64 draw of that shape from the same seed.
    noise = torch.randn((num_pairs, 3, 4, 4), generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    prior, terms, x0_mse = reference_bound(x_0.numpy(), noise.numpy(), eps_fn, variance_type, clip_denoised)
    np.testing.assert_allclose(result.prior.numpy(), prior, rtol=1e-12, atol=0)
    np.testing.assert_allclose(result.terms.numpy(), terms, rtol=1e-9, atol=0)
    np.testing.assert_allclose(result.x0_mse.numpy(), x0_mse, rtol=1e-9, atol=0)
    np.testing.assert_allclose(result.total.numpy(), prior + terms.sum(axis=1), rtol=1e-12, atol=0)
    # The model is wrong enough for clipping to matter: the other setting moves most terms by far more than rtol.
    _, other_terms, _ = reference_bound(x_0.numpy(), noise.numpy(), eps_fn, variance_type, not clip_denoised)
    assert (np.abs(other_terms - terms) > 1e-3 * np.abs(terms)).mean() > 0.9


def test_prior_bpd_hand_value():
    scheduler = DDPMPaperScheduler(num_train_timesteps=10, beta_start=0.1, beta_end=0.5)
    a = float(scheduler.alphas_cumprod[-1])
    x_0 = torch.tensor([[[[0.5]]]], dtype=torch.float64)
    expected = 0.5 * (-1 - math.log(1 - a) + (1 - a) + a * 0.25) / math.log(2)
    assert float(prior_bpd(scheduler, x_0)) == pytest.approx(expected, rel=1e-12)


def test_vlb_terms_equal_bits_per_dim_terms():
    """The training loss and the evaluation share one code path: same t, x_t and model give the same term."""
    scheduler = DDPMPaperScheduler(num_train_timesteps=20, variance_type="fixed_large")
    unet = tiny_unet()
    x_0 = torch.randint(0, 256, (2, 3, 8, 8), generator=torch.Generator().manual_seed(0)).double() / 127.5 - 1

    def eps_model(x_t, t):
        return unet(x_t.float(), t).sample

    num_pairs = 2 * 20
    result = bits_per_dim(eps_model, scheduler, x_0, torch.Generator().manual_seed(3), False, num_pairs, False)
    # Rebuild the single batch that bits_per_dim drew: pairs are timestep-major, noise is float64.
    noise = torch.randn((num_pairs, 3, 8, 8), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    t, image = torch.arange(num_pairs) // 2, torch.arange(num_pairs) % 2
    x_t = scheduler.q_sample(x_0[image], t, noise)
    with torch.no_grad():
        eps = eps_model(x_t, t)
    loss = vlb_terms(scheduler, x_0[image], x_t, t, eps)
    assert loss.dtype == torch.float64 and loss.shape == (num_pairs,)
    assert torch.allclose(loss, result.terms[image, t], rtol=1e-12, atol=1e-14)


def test_vlb_terms_gradient_and_float32_inputs():
    scheduler = DDPMPaperScheduler(num_train_timesteps=50, variance_type="fixed_small")
    x_0 = torch.randint(0, 256, (4, 3, 8, 8), generator=torch.Generator().manual_seed(0)).float() / 127.5 - 1
    t = torch.tensor([0, 1, 25, 49])
    noise = torch.randn(x_0.shape, generator=torch.Generator().manual_seed(1))
    x_t = scheduler.add_noise(x_0, noise, t)  # float32, as a training loop makes it
    eps = (noise + 0.1 * torch.randn(x_0.shape)).requires_grad_()
    loss = vlb_terms(scheduler, x_0, x_t, t, eps)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and (loss > 0).all()
    assert torch.isfinite(eps.grad).all() and (eps.grad.abs().sum(dim=(1, 2, 3)) > 0).all()
    # With the exact noise the KL terms of fixed_small vanish, up to x_t's float32 rounding.
    exact = vlb_terms(scheduler, x_0, x_t.double(), t, noise)
    assert float(exact[1:].abs().max()) < 1e-6


def test_vlb_terms_rejects_bad_shapes():
    scheduler = DDPMPaperScheduler(num_train_timesteps=10)
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="one shape"):
        vlb_terms(scheduler, x, x, torch.zeros(2, dtype=torch.long), torch.zeros(2, 1, 4, 5))
    with pytest.raises(ValueError, match="t must have shape"):
        vlb_terms(scheduler, x, x, torch.zeros(3, dtype=torch.long), x)


@pytest.mark.parametrize(
    ("x_0", "kwargs", "match"),
    [
        (torch.zeros(3, 4, 4), {}, r"\[B, C, H, W\]"),
        (torch.zeros(1, 3, 4, 4, dtype=torch.uint8), {}, "float tensor"),
        (torch.full((1, 3, 4, 4), 1.5), {}, r"\[-1, 1\]"),
        (torch.zeros(1, 3, 4, 4), {"batch_size": 0}, "batch_size"),
        (torch.zeros(1, 3, 4, 4), {"generator": [torch.Generator()]}, "single"),
    ],
)
def test_bits_per_dim_rejects_bad_inputs(x_0, kwargs, match):
    scheduler = DDPMPaperScheduler(num_train_timesteps=10)
    with pytest.raises(ValueError, match=match):
        bits_per_dim(lambda x, t: x, scheduler, x_0, progress=False, **kwargs)
