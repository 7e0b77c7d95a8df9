"""Analytic-DPM's optimal reverse variance against closed forms: single-point data (σ*² = β̃, Γ = 1) and Gaussian data
N(μ, s²I), whose true reverse process is Gaussian with a variance computed here by hand in numpy; the Monte Carlo
estimate of Γ and its standard error; the variance carried by the scheduler's config."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler
from ddpm_hf.analytic import GammaEstimate, estimate_gamma, variance_curves, with_analytic_variance
from ddpm_hf.likelihood import bits_per_dim
from tiny import tiny_unet

MU, S = 0.1, 0.3  # the Gaussian data N(μ, s²I)
T = 1000


def linear_alpha_bar(num_timesteps: int = T) -> np.ndarray:
    return np.cumprod(1.0 - np.linspace(1e-4, 0.02, num_timesteps, dtype=np.float64))


def gaussian_gamma(alpha_bar: np.ndarray) -> np.ndarray:
    """Γ_t for N(μ, s²I) data: E[ε | x_t] = sqrt(1 - ᾱ)/(ᾱ s² + 1 - ᾱ) (x_t - sqrt(ᾱ) μ), so
    Γ = (1 - ᾱ)/(ᾱ s² + 1 - ᾱ)."""
    return (1.0 - alpha_bar) / (alpha_bar * S**2 + 1.0 - alpha_bar)


def gaussian_reverse_variance(alpha_bar: np.ndarray, timesteps: np.ndarray) -> np.ndarray:
    """Var(x_s | x_t) of consecutive ascending timesteps (s, t) for N(μ, s²I) data, by Gaussian conditioning:
    x_s ~ N(·, v), x_t = sqrt(a) x_s + sqrt(1 - a) z with a = ᾱ_t/ᾱ_s, so Var(x_s | x_t) = v (1 - a)/(a v + 1 - a)."""
    prev, cur = alpha_bar[timesteps[:-1]], alpha_bar[timesteps[1:]]
    v = prev * S**2 + 1.0 - prev
    a = cur / prev
    return v * (1.0 - a) / (a * v + 1.0 - a)


def gaussian_eps_model(scheduler: DDPMPaperScheduler):
    """The exact ε-prediction E[ε | x_t] for N(μ, s²I) data."""

    def eps_model(x_t, t):
        a = scheduler.alphas_cumprod[t.cpu()].view(-1, 1, 1, 1).to(x_t.device)
        return (1.0 - a).sqrt() / (a * S**2 + 1.0 - a) * (x_t - a.sqrt() * MU)

    return eps_model


def gaussian_images(n: int, seed: int = 0) -> torch.Tensor:
    """n 1×4×4 images of N(μ, s²) pixels, rounded to 8-bit values on [-1, 1] as the bound requires."""
    x = MU + S * torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (torch.round((x.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1).to(torch.float64)


def analytic_scheduler(gamma: np.ndarray, **config) -> DDPMPaperScheduler:
    return DDPMPaperScheduler(variance_type="analytic", analytic_gamma=gamma.tolist(), **config)


def test_single_point_data_gives_the_true_posterior_variance():
    """Γ = 1 (ε_θ = ε exactly) makes σ*² the posterior's β̃ on the full chain and on respaced ones."""
    analytic = analytic_scheduler(np.ones(T))
    small = DDPMPaperScheduler(variance_type="fixed_small")
    assert torch.allclose(analytic.model_log_variance, small.model_log_variance, rtol=0, atol=1e-12)
    for steps in (100, 10):
        a, s = analytic.chain(steps), small.chain(steps)
        assert torch.equal(a.timesteps, s.timesteps)
        assert torch.allclose(a.model_log_variance, s.model_log_variance, rtol=0, atol=1e-12)


def test_single_point_monte_carlo_gamma_is_one():
    x_star = gaussian_images(1)
    scheduler = DDPMPaperScheduler()

    def oracle(x_t, t):
        a = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
        return (x_t - a.sqrt() * x_star) / (1.0 - a).sqrt()

    est = estimate_gamma(oracle, scheduler, x_star.repeat(64, 1, 1, 1), [20], torch.Generator().manual_seed(0), 640)
    z = (est.gamma - 1.0) / est.stderr
    assert est.num_images == 64 and len(est.timesteps) == 20
    assert np.abs(z).max() < 4.5, z  # E‖ε‖²/d = 1, within the Monte Carlo error
    assert np.abs(est.eps_mse).max() < 1e-10  # the oracle is exact


@pytest.mark.parametrize("steps", [None, 100, 20, 10])
def test_gaussian_data_optimal_variance_is_the_true_reverse_variance(steps):
    """With the closed-form Γ, σ*² equals Var(x_s | x_t) derived by hand, and lies strictly between β̃ and β."""
    alpha_bar = linear_alpha_bar()
    scheduler = analytic_scheduler(gaussian_gamma(alpha_bar))
    curves = variance_curves(scheduler, steps)
    timesteps = curves["timesteps"]
    expected = gaussian_reverse_variance(alpha_bar, timesteps)
    np.testing.assert_allclose(curves["analytic"][1:], expected, rtol=1e-9)
    np.testing.assert_allclose(np.exp(scheduler.chain(steps).model_log_variance[1:].numpy()), expected, rtol=1e-9)
    assert np.all(curves["analytic"][1:] > curves["fixed_small"][1:])
    assert np.all(curves["analytic"][1:] < curves["fixed_large"][1:])


@pytest.mark.parametrize("steps", [None, 50, 10])
def test_gaussian_data_bound_is_below_both_fixed_variances(steps):
    """The same images and noise under the exact ε: the bound with σ*² is below the bounds with β̃ and with β."""
    images = gaussian_images(32)
    alpha_bar = linear_alpha_bar()
    bounds = {}
    for variance_type in ("fixed_small", "fixed_large", "analytic"):
        config = {"analytic_gamma": gaussian_gamma(alpha_bar).tolist()} if variance_type == "analytic" else {}
        scheduler = DDPMPaperScheduler(variance_type=variance_type, **config)
        bpd = bits_per_dim(
            gaussian_eps_model(scheduler), scheduler, images, torch.Generator().manual_seed(3), True, 4096,
            progress=False, num_inference_steps=steps,
        )  # fmt: skip
        bounds[variance_type] = bpd
    analytic = bounds["analytic"]
    for fixed in ("fixed_small", "fixed_large"):
        difference = bounds[fixed].total - analytic.total  # paired: the same noise for every variance
        assert float(difference.mean()) > 4 * float(difference.std() / len(difference) ** 0.5), fixed
        # Only the KL terms differ: the prior and the decoder are the same for the three variances.
        assert torch.equal(bounds[fixed].prior, analytic.prior)
        assert torch.allclose(bounds[fixed].terms[:, 0], analytic.terms[:, 0])
    assert analytic.terms.shape[1] == (T if steps is None else steps)


def test_gaussian_monte_carlo_estimate_and_its_error():
    """The estimate from the exact ε on Gaussian images agrees with the closed form within its standard error, and
    the error shrinks as 1/√M."""
    scheduler = DDPMPaperScheduler()
    eps_model = gaussian_eps_model(scheduler)
    closed = gaussian_gamma(linear_alpha_bar())
    small, large = (
        estimate_gamma(eps_model, scheduler, gaussian_images(m, seed=m), [10], torch.Generator().manual_seed(m), 4096,
                       progress=False)
        for m in (100, 400)
    )  # fmt: skip
    for est in (small, large):
        z = (est.gamma - closed[est.timesteps]) / est.stderr
        assert np.abs(z).max() < 4.5, z
        # The exact E[ε | x_t] has error E‖ε - E[ε | x_t]‖²/d = 1 - Γ_t.
        np.testing.assert_allclose(est.eps_mse, 1 - closed[est.timesteps], atol=6 * est.stderr.max())
    ratio = large.stderr / small.stderr
    assert np.all((ratio > 0.35) & (ratio < 0.7)), ratio  # 1/√4 = 0.5


def test_bounds_clip_an_estimate_outside_them():
    """Γ above 1 (estimation error) gives β̃, the lower bound; Γ = 0 gives at most the data-range bound."""
    above, zero = analytic_scheduler(np.full(T, 1.3)), analytic_scheduler(np.zeros(T))
    small = DDPMPaperScheduler(variance_type="fixed_small")
    assert torch.allclose(above.model_log_variance, small.model_log_variance, atol=1e-12)
    tables = small.tables
    upper = tables.posterior_variance + tables.posterior_mean_coef1**2 * torch.clamp(
        (1 - tables.alphas_cumprod) / tables.alphas_cumprod, max=1.0
    )
    assert torch.allclose(zero.model_log_variance[1:], torch.log(upper[1:]), rtol=1e-12)
    assert torch.all(zero.model_log_variance[1:] <= torch.log(tables.betas[1:] / tables.alphas[1:]) + 1e-12)


def test_config_round_trip_and_refusals(tmp_path):
    gamma = gaussian_gamma(linear_alpha_bar(50))
    gamma_list: list[float | None] = gamma.tolist()
    scheduler = DDPMPaperScheduler(
        num_train_timesteps=50, variance_type="analytic", analytic_gamma=gamma_list, analytic_estimate={"seed": 3}
    )
    scheduler.save_pretrained(tmp_path)
    loaded = DDPMPaperScheduler.from_pretrained(tmp_path)
    assert loaded.config.variance_type == "analytic" and loaded.config.analytic_estimate == {"seed": 3}
    assert torch.equal(loaded.model_log_variance, scheduler.model_log_variance)
    # Switching back to a fixed variance keeps Γ, so the three share one config.
    assert (
        DDPMPaperScheduler.from_config(loaded.config, variance_type="fixed_small").config.analytic_gamma == gamma_list
    )

    with pytest.raises(ValueError, match="needs analytic_gamma"):
        DDPMPaperScheduler(variance_type="analytic")
    with pytest.raises(ValueError, match="has 3 values but num_train_timesteps=50"):
        DDPMPaperScheduler(num_train_timesteps=50, analytic_gamma=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"analytic_gamma\[2\] = nan"):
        DDPMPaperScheduler(num_train_timesteps=50, analytic_gamma=[1.0, 1.0, float("nan")] + [1.0] * 47)
    with pytest.raises(ValueError, match="only DDPMPaperScheduler implements"):
        DDPMPaperPipeline(tiny_unet(), DDPMScheduler.from_config(loaded.config))


def test_a_partial_estimate_serves_its_step_counts_only():
    """Γ estimated for the 10-step chain samples 10 steps; a chain through other timesteps is refused by name."""
    scheduler = DDPMPaperScheduler(num_train_timesteps=100)
    timesteps = scheduler.chain(10).timesteps.tolist()
    est = GammaEstimate(timesteps, np.full(10, 0.9), np.full(10, 0.01), np.full(10, 0.1), 8)
    analytic = with_analytic_variance(scheduler, est)
    assert analytic.config.analytic_gamma[timesteps[3]] == 0.9 and analytic.config.analytic_gamma[1] is None
    analytic.set_timesteps(10)
    x = torch.zeros(2, 1, 4, 4)
    analytic.step(torch.zeros_like(x), analytic.timesteps[0], x, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"where it was not estimated .*at 10 of the 100"):
        analytic.set_timesteps(20)
    fresh = with_analytic_variance(scheduler, est)  # its default schedule is the full chain
    with pytest.raises(ValueError, match="not estimated"):
        fresh.step(torch.zeros_like(x), 99, x)


def test_pipeline_estimates_samples_and_bounds_with_it():
    pipe = DDPMPaperPipeline(tiny_unet(), DDPMPaperScheduler(num_train_timesteps=20))
    pipe.set_progress_bar_config(disable=True)
    images = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    est = pipe.estimate_gamma(images, generator=torch.Generator().manual_seed(0))
    assert est.timesteps == list(range(20)) and np.all(est.stderr > 0)
    pipe.scheduler = with_analytic_variance(pipe.scheduler, est)
    out = pipe(2, generator=torch.Generator().manual_seed(0), num_inference_steps=5, output_type="np")
    assert out.images.shape == (2, 8, 8, 3)
    bpd = pipe.bits_per_dim(images[:2], generator=torch.Generator().manual_seed(1), num_inference_steps=5)
    assert bpd.terms.shape == (2, 5) and torch.isfinite(bpd.total).all()


def test_other_samplers_take_an_analytic_config_without_a_word(capfd):
    """diffusers' schedulers built from the analytic config drop Γ silently (as they drop variance_type), and the
    pipeline samples with them; only a scheduler that reads variance_type is refused (above)."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    config = analytic_scheduler(np.ones(T)).config
    capfd.readouterr()
    schedulers = [cls.from_config(config) for cls in (DDIMScheduler, DPMSolverMultistepScheduler)]
    assert "analytic_gamma" not in capfd.readouterr().err
    for scheduler in schedulers:
        pipe = DDPMPaperPipeline(tiny_unet(), scheduler)
        pipe.set_progress_bar_config(disable=True)
        assert pipe(1, num_inference_steps=3, output_type="np").images.shape == (1, 8, 8, 3)
