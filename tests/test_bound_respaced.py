"""The bound of a respaced chain (`bits_per_dim(..., num_inference_steps=K)`) against its terms written out here.

The ε-model is hand-written so that x̂_0(x_t) is a fixed function of the image whatever the noise: every term of the
bound is then a closed form, computed below in float64 from the paper's formulas (Eqs. 5-7, 13; Analytic-DPM's σ*²)
on the sub-chain's own ᾱ, with none of the library's tables or functions.
"""

import math

import numpy as np
import pytest
import torch

from ddpm_hf import DDPMPaperScheduler
from ddpm_hf.likelihood import bits_per_dim

T, STEPS = 100, 10
BETA_START, BETA_END = 1e-4, 0.02
SHRINK, SHIFT = 0.8, 0.05  # x̂_0 = SHRINK · x_0 + SHIFT, inside [-1, 1] for every x_0 there (no clipping)


def image() -> np.ndarray:
    """One 1×4×4 image of 8-bit pixels on [-1, 1], both edge values (the decoder's open bins) among them."""
    pixels = np.array([0, 255, 1, 254, 17, 128, 127, 200, 64, 3, 90, 255, 0, 140, 33, 250], dtype=np.float64)
    return (pixels / 127.5 - 1.0).reshape(1, 1, 4, 4)


def gamma_values() -> list[float]:
    """Γ_t with some values above 1 (a network may overshoot the ideal Γ ≤ 1), where σ*² falls back to β̃."""
    return [1.05 if t < 15 else 1.0 - 0.6 * t / (T - 1) for t in range(T)]


def full_alphas_cumprod() -> np.ndarray:
    betas = np.linspace(BETA_START, BETA_END, T, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def chain_timesteps(spacing: str) -> list[int]:
    """The ascending timesteps s_0 < … < s_(K-1) the K-step sampler visits, spelled out for T = 100, K = 10."""
    return {"leading": list(range(0, 100, 10)), "trailing": list(range(9, 100, 10))}[spacing]


def hand_eps_model(x_0: np.ndarray):
    """ε such that x̂_0 = (x_t − sqrt(1 − ᾱ_t) ε) / sqrt(ᾱ_t) is SHRINK · x_0 + SHIFT for every x_t."""
    alpha_bar = torch.from_numpy(full_alphas_cumprod())
    target = torch.from_numpy(SHRINK * x_0 + SHIFT)

    def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = alpha_bar[t].view(-1, 1, 1, 1)
        return (x_t - a.sqrt() * target) / (1.0 - a).sqrt()

    return eps


def normal_kl(m1, lv1, m2, lv2):
    return 0.5 * (-1.0 + lv2 - lv1 + np.exp(lv1 - lv2) + (m1 - m2) ** 2 * np.exp(-lv2))


def phi(x):
    """The tanh approximation of the standard normal CDF that the reference uses."""
    return 0.5 * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def decoder_nll(x, mean, variance):
    """−log p(x_0 | x_1) per pixel (Eq. 13): 8-bit bins of half-width 1/255, the edge bins open, floored at 1e-12."""
    sd = math.sqrt(variance)
    upper, lower = phi((x - mean + 1 / 255) / sd), phi((x - mean - 1 / 255) / sd)
    p = np.where(x < -0.999, upper, np.where(x > 0.999, 1.0 - lower, upper - lower))
    return -np.log(np.maximum(p, 1e-12))


def expected_bound(spacing: str, variance_type: str) -> tuple[float, np.ndarray]:
    """(L_T, [L_0, L_1, …, L_(K-1)]) in bits/dim of the K-step chain on `chain_timesteps(spacing)`."""
    x_0 = image()
    s = chain_timesteps(spacing)
    full = full_alphas_cumprod()
    a = full[s]  # ᾱ'_k = ᾱ_(s_k): the sub-chain is a Markov chain with the full chain's marginals at its steps
    a_prev = np.concatenate([[1.0], a[:-1]])
    beta = 1.0 - a / a_prev  # β'_k
    beta_tilde = beta * (1.0 - a_prev) / (1.0 - a)  # β̃'_k (0 at k = 0)
    coef1 = beta * np.sqrt(a_prev) / (1.0 - a)  # the posterior mean's weight on x_0
    x0_hat = SHRINK * x_0 + SHIFT
    ln2 = math.log(2.0)

    # L_T at the chain's own last timestep s_(K-1), against N(0, I).
    prior = normal_kl(np.sqrt(a[-1]) * x_0, np.log(1.0 - a[-1]), 0.0, 0.0).mean() / ln2

    terms = np.zeros(len(s))
    # The decoder at step 0: ᾱ'_(-1) = 1, so its mean is x̂_0 itself; its variance is β̃'_1 for every variance type.
    terms[0] = decoder_nll(x_0, x0_hat, beta_tilde[1]).mean() / ln2
    gamma = np.array(gamma_values())[s]
    for k in range(1, len(s)):
        if variance_type == "fixed_small":
            sigma2 = beta_tilde[k]
        elif variance_type == "fixed_large":
            sigma2 = beta[k]
        else:  # σ*² = β̃ + c1² · E‖x_0 − E[x_0|x_t]‖²/d, the latter clipped to [0, 1] for data in [-1, 1]
            sigma2 = beta_tilde[k] + coef1[k] ** 2 * np.clip((1.0 - a[k]) / a[k] * (1.0 - gamma[k]), 0.0, 1.0)
        # μ̃ − μ_θ: both posterior means share x_t's weight, so only x_0 against x̂_0 is left.
        mean_gap = coef1[k] * (x_0 - x0_hat)
        terms[k] = normal_kl(mean_gap, np.log(beta_tilde[k]), 0.0, np.log(sigma2)).mean() / ln2
    return prior, terms


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large", "analytic"])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_a_respaced_bound_is_its_terms_written_out(spacing, variance_type):
    """Guards the respaced chain's own prior (at s_(K-1), not the full chain's T−1), its sub-chain KLs and decoder."""
    extra = {"analytic_gamma": gamma_values()} if variance_type == "analytic" else {}
    scheduler = DDPMPaperScheduler(
        num_train_timesteps=T,
        beta_start=BETA_START,
        beta_end=BETA_END,
        variance_type=variance_type,
        timestep_spacing=spacing,
        **extra,
    )
    scheduler.set_timesteps(STEPS)
    assert scheduler.timesteps.tolist() == chain_timesteps(spacing)[::-1]  # the chain sampling runs

    x_0 = image()
    got = bits_per_dim(
        hand_eps_model(x_0),
        scheduler,
        torch.from_numpy(x_0),
        generator=torch.Generator().manual_seed(0),
        progress=False,
        num_inference_steps=STEPS,
    )
    prior, terms = expected_bound(spacing, variance_type)
    assert got.terms.shape == (1, STEPS)
    assert got.prior.item() == pytest.approx(prior, rel=1e-10)
    np.testing.assert_allclose(got.terms[0].numpy(), terms, rtol=1e-9, atol=1e-13)
    assert got.total.item() == pytest.approx(prior + terms.sum(), rel=1e-10)
    # The full chain's prior is another number: a bound reusing it would be caught above.
    if spacing == "leading":
        full_prior = normal_kl(np.sqrt(full_alphas_cumprod()[-1]) * x_0, np.log(1 - full_alphas_cumprod()[-1]), 0, 0)
        assert abs(full_prior.mean() / math.log(2.0) - prior) > 1e-3
