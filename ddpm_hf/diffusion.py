"""The Gaussian diffusion of Ho et al. (2020) as small pure functions.

Every table is float64, as in the authors' code; values are gathered per timestep and only then cast to the
compute dtype, which is float32 or wider whatever the input's dtype (bf16/fp16 round ᾱ_t badly).
Equation numbers refer to the paper (arXiv:2006.11239).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, NamedTuple

import numpy as np
import torch

from .checks import check_choice
from .errors import InputError

VarianceType = Literal["fixed_small", "fixed_large", "analytic"]
# Images on the model's scale lie in [-1, 1]: Bao et al.'s (b - a) / 2, which bounds the posterior variance of x_0.
DATA_HALF_RANGE = 1.0


@dataclass(frozen=True)
class DiffusionTables:
    """Per-timestep constants of the forward process and its posterior, index t = 0..T-1, float64."""

    betas: torch.Tensor
    alphas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor
    log_one_minus_alphas_cumprod: torch.Tensor
    sqrt_recip_alphas_cumprod: torch.Tensor
    sqrt_recipm1_alphas_cumprod: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_log_variance_clipped: torch.Tensor
    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def linear_beta_schedule(beta_start: float, beta_end: float, num_timesteps: int) -> np.ndarray:
    """β_1..β_T linear from beta_start to beta_end (Sec. 4), float64."""
    return np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64)


def check_betas(betas: np.ndarray) -> None:
    """Raise a ValueError unless betas is a non-empty 1-D sequence with every β_t in the open interval (0, 1)."""
    if betas.ndim != 1 or betas.shape[0] < 1:
        raise InputError(f"betas must be a non-empty 1-D sequence, got shape {tuple(betas.shape)}")
    bad = np.flatnonzero(~((betas > 0) & (betas < 1)))
    if bad.size:
        raise InputError(f"betas must lie in (0, 1); betas[{bad[0]}] = {float(betas[bad[0]])}")


def make_tables(betas: np.ndarray | torch.Tensor) -> DiffusionTables:
    """Closed forms of q(x_t | x_0) (Eq. 4) and of the posterior q(x_{t-1} | x_t, x_0) (Eqs. 6-7) in float64."""
    betas = torch.as_tensor(np.asarray(betas, dtype=np.float64))
    alphas = 1.0 - betas
    alphas_cumprod = torch.cumprod(alphas, dim=0)
    alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    # β̃_0 = 0: the reference replaces log β̃_0 by log β̃_1 rather than clamping it (diffusers clamps to 1e-20).
    # A one-step (respaced) chain has no β̃_1; its single step adds no noise, so β_0 only fills the slot.
    first = posterior_variance[1:2] if len(betas) > 1 else betas[:1]
    posterior_log_variance_clipped = torch.log(torch.cat([first, posterior_variance[1:]]))
    return DiffusionTables(
        betas=betas,
        alphas=alphas,
        alphas_cumprod=alphas_cumprod,
        alphas_cumprod_prev=alphas_cumprod_prev,
        sqrt_alphas_cumprod=torch.sqrt(alphas_cumprod),
        sqrt_one_minus_alphas_cumprod=torch.sqrt(1.0 - alphas_cumprod),
        log_one_minus_alphas_cumprod=torch.log(1.0 - alphas_cumprod),
        sqrt_recip_alphas_cumprod=torch.sqrt(1.0 / alphas_cumprod),
        sqrt_recipm1_alphas_cumprod=torch.sqrt(1.0 / alphas_cumprod - 1.0),
        posterior_variance=posterior_variance,
        posterior_log_variance_clipped=posterior_log_variance_clipped,
        posterior_mean_coef1=betas * torch.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
        posterior_mean_coef2=(1.0 - alphas_cumprod_prev) * torch.sqrt(alphas) / (1.0 - alphas_cumprod),
    )


def analytic_variance(tables: DiffusionTables, gamma: torch.Tensor) -> torch.Tensor:
    """σ*_t² = β̃_t + c_t² (1 - ᾱ_t)/ᾱ_t (1 - Γ_t), Analytic-DPM's optimal reverse variance (Bao et al. 2022, Thm. 1),
    with E‖x_0 - E[x_0 | x_t]‖²/d clipped to [0, ((b - a)/2)²] (Thm. 2's bounds); c_t = `posterior_mean_coef1`.

    `gamma[t]` = Γ_t = E‖ε_θ(x_t, t)‖²/d at the chain's step t; any chain (full or respaced) whose tables are given.
    """
    x0_variance = (1.0 - tables.alphas_cumprod) / tables.alphas_cumprod * (1.0 - gamma.to(torch.float64))
    x0_variance = x0_variance.clamp(0.0, DATA_HALF_RANGE**2)
    return tables.posterior_variance + tables.posterior_mean_coef1**2 * x0_variance


def model_log_variance_table(
    tables: DiffusionTables, variance_type: VarianceType, gamma: torch.Tensor | None = None
) -> torch.Tensor:
    """log σ_t² of the reverse process (Sec. 3.2): β̃_t for fixed_small; β_t, with β̃_1 at t = 0, for fixed_large;
    Analytic-DPM's σ*_t² for analytic (given Γ at each step), with fixed_small's decoder variance at t = 0."""
    variance_type = check_choice("variance_type", variance_type, VarianceType)
    if variance_type == "fixed_small":
        return tables.posterior_log_variance_clipped
    if variance_type == "analytic":
        if gamma is None or gamma.shape != tables.betas.shape:
            raise InputError(f"variance_type='analytic' needs Γ at each of the chain's {len(tables.betas)} steps")
        # The decoder p(x_0 | x_1) is a discretised Gaussian, not a KL term: it keeps β̃_1, as Analytic-DPM's code.
        return torch.cat([tables.posterior_log_variance_clipped[:1], torch.log(analytic_variance(tables, gamma)[1:])])
    # β̃_1 at t = 0 gives the better decoder likelihood, as in the reference.
    first = tables.posterior_variance[1:2] if len(tables.betas) > 1 else tables.betas[:1]
    return torch.log(torch.cat([first, tables.betas[1:]]))


def custom_timesteps(timesteps: list[int] | np.ndarray | torch.Tensor, num_timesteps: int) -> np.ndarray:
    """User-given timesteps as diffusers' `set_timesteps(timesteps=...)` takes them: integers, strictly
    descending, in [0, num_timesteps); a ValueError naming the first that is not."""
    values = np.asarray(timesteps.tolist() if isinstance(timesteps, torch.Tensor) else timesteps)
    if values.ndim != 1 or values.size == 0:
        raise InputError(f"timesteps must be a non-empty list of integers, got {timesteps!r}")
    if not np.issubdtype(values.dtype, np.integer):
        if not np.issubdtype(values.dtype, np.floating) or not np.all(values == np.round(values)):
            raise InputError(f"timesteps must be integers, got {timesteps!r}")
    values = values.astype(np.int64)
    if np.any(np.diff(values) >= 0):
        raise InputError(f"timesteps must be in descending order, got {values.tolist()}")
    if values[0] >= num_timesteps or values[-1] < 0:
        raise InputError(f"timesteps must lie in [0, {num_timesteps}) (num_train_timesteps), got {values.tolist()}")
    return values


def respaced_betas(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """β'_k = 1 - ᾱ_{s_k} / ᾱ_{s_{k-1}} of the sub-chain on ascending timesteps s_0 < s_1 < … (ᾱ_{s_{-1}} = 1)."""
    kept = alphas_cumprod[timesteps]
    return 1.0 - kept / torch.cat([torch.ones(1, dtype=kept.dtype), kept[:-1]])


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the diffusion arithmetic runs in: float32, or float64 when the input is float64."""
    return torch.promote_types(dtype, torch.float32)


def check_timesteps(t: torch.Tensor | int, num_timesteps: int) -> None:
    """Raise unless every t lies in [0, num_timesteps) and is an integer (a negative index would wrap around).

    Checked on the host for ints and CPU tensors; on an accelerator with an asynchronous device assertion, so
    that a training step never waits for the check.
    """
    if isinstance(t, torch.Tensor):
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise InputError(f"timesteps must be integers, got a {t.dtype} tensor")
        if t.device.type != "cpu":
            torch._assert_async(((t >= 0) & (t < num_timesteps)).all(), f"timesteps must lie in [0, {num_timesteps})")
            return
        low, high = (int(t.min()), int(t.max())) if t.numel() else (0, 0)
    elif isinstance(t, (int, np.integer)) and not isinstance(t, bool):
        low = high = int(t)
    else:
        raise InputError(f"timesteps must be integers, got {t!r}")
    if low < 0 or high >= num_timesteps:
        raise InputError(f"timesteps must lie in [0, {num_timesteps}), got values from {low} to {high}")


def extract(table: torch.Tensor, t: torch.Tensor | int, x: torch.Tensor) -> torch.Tensor:
    """table[t] shaped to broadcast against x: a 0-d CPU scalar for one t, [B, 1, 1, 1] on x's device for [B]."""
    if not isinstance(t, torch.Tensor) or t.ndim == 0:
        # A 0-d CPU tensor combines with a tensor on any device as a scalar: no copy and no host sync.
        return table[int(t)]
    dtype = compute_dtype(x.dtype)
    # MPS has no float64: cast before moving there. Elsewhere gather in float64 and cast once.
    table = table.to(device=x.device, dtype=dtype if x.device.type == "mps" else table.dtype)
    out = table[t.to(device=x.device, dtype=torch.long)].to(dtype)
    return out.reshape(t.shape[0], *([1] * (x.ndim - 1)))


def q_sample(tables: DiffusionTables, x_0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε, a sample of q(x_t | x_0) (Eq. 4), in float32 or wider."""
    check_timesteps(t, len(tables.betas))
    if not x_0.is_floating_point():
        raise InputError(
            f"the images are {x_0.dtype}: q_sample/add_noise take float images on the model's scale [-1, 1] "
            "(uint8 x as x / 127.5 - 1, ddpm_hf.data.scale_to_model), or x_t would be cast back to integers"
        )
    if noise.shape != x_0.shape:
        raise InputError(f"noise must have the samples' shape {tuple(x_0.shape)}, got {tuple(noise.shape)}")
    # One per image, or one for all: a scalar, or shape (1,) as diffusers' add_noise broadcasts it.
    if isinstance(t, torch.Tensor) and t.ndim > 0 and tuple(t.shape) not in ((x_0.shape[0],), (1,)):
        raise InputError(f"timesteps must be one per image ({x_0.shape[0]}) or one for all, got shape {tuple(t.shape)}")
    dtype = compute_dtype(x_0.dtype)
    return extract(tables.sqrt_alphas_cumprod, t, x_0) * x_0.to(dtype) + extract(
        tables.sqrt_one_minus_alphas_cumprod, t, x_0
    ) * noise.to(dtype)


def velocity(tables: DiffusionTables, x_0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x_0, the v-parameterisation's target (Salimans & Ho 2022), float32 or wider."""
    check_timesteps(t, len(tables.betas))
    dtype = compute_dtype(x_0.dtype)
    return extract(tables.sqrt_alphas_cumprod, t, x_0) * noise.to(dtype) - extract(
        tables.sqrt_one_minus_alphas_cumprod, t, x_0
    ) * x_0.to(dtype)


def q_posterior_mean_variance(
    tables: DiffusionTables, x_0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean μ̃_t, variance β̃_t and clipped log-variance of q(x_{t-1} | x_t, x_0) (Eqs. 6-7)."""
    dtype = compute_dtype(x_t.dtype)
    mean = extract(tables.posterior_mean_coef1, t, x_t) * x_0.to(dtype) + extract(
        tables.posterior_mean_coef2, t, x_t
    ) * x_t.to(dtype)
    return mean, extract(tables.posterior_variance, t, x_t), extract(tables.posterior_log_variance_clipped, t, x_t)


def predict_start_from_noise(
    tables: DiffusionTables, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor
) -> torch.Tensor:
    """x̂_0 = sqrt(1/ᾱ_t) x_t - sqrt(1/ᾱ_t - 1) ε (Eq. 4 solved for x_0, as used in Eq. 11)."""
    dtype = compute_dtype(x_t.dtype)
    return extract(tables.sqrt_recip_alphas_cumprod, t, x_t) * x_t.to(dtype) - extract(
        tables.sqrt_recipm1_alphas_cumprod, t, x_t
    ) * eps.to(dtype)


class PMeanVariance(NamedTuple):
    """p_θ(x_{t-1} | x_t) = N(mean, variance), and the x̂_0 its mean was computed from."""

    mean: torch.Tensor
    variance: torch.Tensor
    log_variance: torch.Tensor
    pred_xstart: torch.Tensor


def p_mean_variance(
    tables: DiffusionTables,
    model_log_variance: torch.Tensor,
    eps: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    clip_denoised: bool | float | None = True,
) -> PMeanVariance:
    """Mean and variance of p_θ(x_{t-1} | x_t) for an ε-prediction: μ_θ = μ̃_t(x̂_0, x_t) (Eqs. 7, 11), σ_t² fixed.

    `clip_denoised` clips x̂_0 to [-1, 1] when True, to [-r, r] when a number r, and not at all when False or None.
    """
    if eps.shape != x_t.shape:
        raise InputError(
            f"the network's ε has shape {tuple(eps.shape)} but x_t has {tuple(x_t.shape)}: an ε-prediction needs "
            "out_channels == in_channels"
        )
    pred_xstart = predict_start_from_noise(tables, x_t, t, eps)
    if clip_denoised is not None and clip_denoised is not False:
        bound = 1.0 if clip_denoised is True else float(clip_denoised)
        pred_xstart = pred_xstart.clamp(-bound, bound)
    mean, _, _ = q_posterior_mean_variance(tables, pred_xstart, x_t, t)
    log_variance = extract(model_log_variance, t, x_t)
    return PMeanVariance(mean, torch.exp(log_variance), log_variance, pred_xstart)


def p_sample(out: PMeanVariance, noise: torch.Tensor | None) -> torch.Tensor:
    """x_{t-1} = μ_θ(x_t, t) + σ_t z (Algorithm 2, line 4); `noise` None on the final step, where z = 0."""
    if noise is None:
        return out.mean
    return out.mean + torch.exp(0.5 * out.log_variance) * noise.to(out.mean.dtype)
