"""The float64 tables and the pure functions of ddpm_hf.diffusion against the paper's closed forms."""

import math

import numpy as np
import pytest
import torch

from ddpm_hf.diffusion import (
    make_tables,
    model_log_variance_table,
    p_mean_variance,
    predict_start_from_noise,
    q_posterior_mean_variance,
    q_sample,
    respaced_betas,
)

T = 1000
BETAS = [1e-4 + (0.02 - 1e-4) * i / (T - 1) for i in range(T)]


def closed_forms() -> dict[str, list[float]]:
    """The reference's tables written out with Python floats, one timestep at a time."""
    out = {k: [] for k in ("alphas_cumprod", "posterior_variance", "coef1", "coef2", "log_var_clipped")}
    abar_prev = 1.0
    for beta in BETAS:
        abar = abar_prev * (1.0 - beta)
        out["alphas_cumprod"].append(abar)
        out["posterior_variance"].append(beta * (1.0 - abar_prev) / (1.0 - abar))
        out["coef1"].append(beta * math.sqrt(abar_prev) / (1.0 - abar))
        out["coef2"].append((1.0 - abar_prev) * math.sqrt(1.0 - beta) / (1.0 - abar))
        abar_prev = abar
    pv = out["posterior_variance"]
    out["log_var_clipped"] = [math.log(pv[1])] + [math.log(v) for v in pv[1:]]
    return out


def test_tables_equal_closed_forms():
    tables = make_tables(np.linspace(1e-4, 0.02, T))
    ref = closed_forms()
    assert tables.betas.dtype == torch.float64
    np.testing.assert_allclose(tables.betas.numpy(), BETAS, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tables.alphas_cumprod.numpy(), ref["alphas_cumprod"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(tables.alphas_cumprod_prev.numpy(), [1.0, *ref["alphas_cumprod"][:-1]], rtol=1e-12)
    np.testing.assert_allclose(tables.posterior_variance.numpy(), ref["posterior_variance"], rtol=1e-12, atol=1e-300)
    assert tables.posterior_variance[0] == 0.0
    np.testing.assert_allclose(tables.posterior_log_variance_clipped.numpy(), ref["log_var_clipped"], rtol=1e-12)
    np.testing.assert_allclose(tables.posterior_mean_coef1.numpy(), ref["coef1"], rtol=1e-12)
    np.testing.assert_allclose(tables.posterior_mean_coef2.numpy(), ref["coef2"], rtol=1e-12)
    np.testing.assert_allclose(
        tables.sqrt_recipm1_alphas_cumprod.numpy(), [math.sqrt(1 / a - 1) for a in ref["alphas_cumprod"]], rtol=1e-12
    )


def test_model_log_variance_per_type():
    tables = make_tables(np.linspace(1e-4, 0.02, T))
    ref = closed_forms()
    small = model_log_variance_table(tables, "fixed_small")
    large = model_log_variance_table(tables, "fixed_large")
    np.testing.assert_allclose(small.numpy(), ref["log_var_clipped"], rtol=1e-12)
    # fixed_large: log β_t for t ≥ 1 and the reference's log β̃_1 at t = 0 (not log β_0, as diffusers has it).
    np.testing.assert_allclose(large[1:].numpy(), np.log(BETAS[1:]), rtol=1e-12)
    assert large[0].item() == pytest.approx(math.log(ref["posterior_variance"][1]), rel=1e-12)
    with pytest.raises(ValueError, match="learned"):
        model_log_variance_table(tables, "learned")


def test_respaced_chain_keeps_alphas_cumprod():
    tables = make_tables(np.linspace(1e-4, 0.02, T))
    steps = torch.tensor([0, 100, 400, 999])
    sub = make_tables(respaced_betas(tables.alphas_cumprod, steps))
    np.testing.assert_allclose(sub.alphas_cumprod.numpy(), tables.alphas_cumprod[steps].numpy(), rtol=1e-12)
    full = make_tables(respaced_betas(tables.alphas_cumprod, torch.arange(T)))
    np.testing.assert_allclose(full.betas.numpy(), BETAS, rtol=1e-9)


def test_q_sample_is_eq4_and_float32_for_low_precision_inputs():
    tables = make_tables(np.linspace(1e-4, 0.02, T))
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1, torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 1, 500, 999])
    abar = tables.alphas_cumprod[t].view(-1, 1, 1, 1)
    expected = abar.sqrt() * x0.double() + (1 - abar).sqrt() * noise.double()
    assert torch.allclose(q_sample(tables, x0.double(), t, noise.double()), expected, atol=1e-14, rtol=0)
    out = q_sample(tables, x0.bfloat16(), t, noise.bfloat16())
    assert out.dtype == torch.float32
    expected_bf16_inputs = abar.sqrt() * x0.bfloat16().double() + (1 - abar).sqrt() * noise.bfloat16().double()
    assert (out.double() - expected_bf16_inputs).abs().max() < 1e-6


def test_posterior_and_p_mean_variance():
    tables = make_tables(np.linspace(1e-4, 0.02, T))
    g = torch.Generator().manual_seed(1)
    x0 = (torch.rand(3, 2, 4, 4, generator=g, dtype=torch.float64) * 2 - 1) * 0.9
    eps = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 10, 999])
    xt = q_sample(tables, x0, t, eps)
    assert torch.allclose(predict_start_from_noise(tables, xt, t, eps), x0, atol=1e-10)
    mean, var, _ = q_posterior_mean_variance(tables, x0, xt, t)
    # Eq. 11: μ_θ = (x_t - β_t / sqrt(1 - ᾱ_t) ε) / sqrt(α_t) with the true ε and no clipping.
    beta, abar = tables.betas[t].view(-1, 1, 1, 1), tables.alphas_cumprod[t].view(-1, 1, 1, 1)
    eq11 = (xt - beta / (1 - abar).sqrt() * eps) / (1 - beta).sqrt()
    assert torch.allclose(mean, eq11, atol=1e-9)
    assert torch.allclose(var.flatten(), tables.posterior_variance[t])
    out = p_mean_variance(tables, model_log_variance_table(tables, "fixed_large"), eps, xt, t, clip_denoised=False)
    assert torch.allclose(out.mean, eq11, atol=1e-9)
    assert torch.allclose(out.variance.flatten(), tables.betas[t])
    # Clipping x̂_0 acts before the posterior mean: a huge ε pushes x̂_0 out of [-1, 1].
    clipped = p_mean_variance(tables, tables.posterior_log_variance_clipped, 50 * eps, xt, t, clip_denoised=True)
    assert clipped.pred_xstart.abs().max() <= 1.0
    assert torch.allclose(clipped.mean, q_posterior_mean_variance(tables, clipped.pred_xstart, xt, t)[0])
