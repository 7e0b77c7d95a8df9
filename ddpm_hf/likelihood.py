"""The variational bound of Ho et al. (2020) in bits/dim: the NLL column of Table 1 and the true-bound loss of Table 2.

L = L_T + Σ_{t≥1} L_{t-1} + L_0 (Eq. 5), with L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_θ(x_{t-1} | x_t)) and L_0 the
discretised Gaussian decoder (Eq. 13). Indices are the code's, t = 0..T-1, as in the reference: `terms[:, 0]` is L_0
and `terms[:, t]` for t ≥ 1 is the paper's L_t. All of the bound's arithmetic runs in float64, whatever the network's
dtype, so that sums over 1000 terms of size ~1e-4 keep their digits.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch
from diffusers.utils.torch_utils import randn_tensor

from .checks import check_int
from .diffusion import DiffusionTables, p_mean_variance, q_posterior_mean_variance, q_sample
from .errors import InputError
from .fastpath import EpsModel
from .reporting import Progress, track
from .scheduler import Chain, DDPMPaperScheduler
from .schedulers import check_num_inference_steps

BIN_HALF_WIDTH = 1.0 / 255.0  # 8-bit pixels scaled to [-1, 1] lie 2/255 apart
EDGE = 0.999  # pixels beyond ±EDGE are the extreme values, whose bins extend to ±∞
PROB_FLOOR = 1e-12


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension but the batch one."""
    return x.mean(dim=tuple(range(1, x.ndim)))


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) per element, in nats (the KLs of Eq. 5)."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Φ(x) ≈ 0.5 (1 + tanh(sqrt(2/π) (x + 0.044715 x³))), the approximation the reference uses."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    """log p(x) per element of the decoder p_θ(x_0 | x_1) (Eq. 13): N(means, e^{2 log_scales}) over 8-bit bins.

    `x` holds 8-bit pixels scaled to [-1, 1]; each bin is x ± 1/255, except that the bins of -1 and +1 extend to
    -∞ and +∞. Probabilities are floored at 1e-12 before the log.
    """
    if x.shape != means.shape:
        raise InputError(f"x and means must have the same shape, got {tuple(x.shape)} and {tuple(means.shape)}")
    centered_x = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered_x + BIN_HALF_WIDTH))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered_x - BIN_HALF_WIDTH))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=PROB_FLOOR))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=PROB_FLOOR))
    log_cdf_delta = torch.log((cdf_plus - cdf_min).clamp(min=PROB_FLOOR))
    return torch.where(x < -EDGE, log_cdf_plus, torch.where(x > EDGE, log_one_minus_cdf_min, log_cdf_delta))


def prior_bpd(scheduler: DDPMPaperScheduler | Chain, x_0: torch.Tensor) -> torch.Tensor:
    """L_T = KL(q(x_T | x_0) || N(0, I)) in bits/dim per example [B] (the first term of Eq. 5), x_T the chain's last."""
    x_0 = x_0.to(torch.float64)
    tables = scheduler.tables
    mean = tables.sqrt_alphas_cumprod[-1] * x_0
    logvar = tables.log_one_minus_alphas_cumprod[-1]  # a 0-d CPU scalar, combines with x_0 on any device
    return mean_flat(normal_kl(mean, logvar, torch.zeros_like(x_0), torch.zeros_like(x_0))) / math.log(2.0)


def vb_terms_bpd(
    scheduler: DDPMPaperScheduler | Chain,
    x_0: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    eps: torch.Tensor,
    clip_denoised: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The bound's term at each example's step t in bits/dim [B] — L_0 where t = 0, L_t otherwise (Eqs. 5, 13) —
    and x̂_0; t indexes the scheduler's full chain, or a `Chain`'s steps.

    Runs in float64 and is differentiable with respect to `eps`.
    """
    x_0, x_t, eps = (v.to(torch.float64) for v in (x_0, x_t, eps))
    tables = scheduler.tables
    true_mean, _, true_log_variance = q_posterior_mean_variance(tables, x_0, x_t, t)
    model = p_mean_variance(tables, scheduler.model_log_variance, eps, x_t, t, clip_denoised)
    kl = mean_flat(normal_kl(true_mean, true_log_variance, model.mean, model.log_variance))
    decoder_nll = -mean_flat(discretized_gaussian_log_likelihood(x_0, model.mean, 0.5 * model.log_variance))
    # Both are computed for every example and the right one picked, as in the reference; neither branch can be NaN.
    terms = torch.where(t.to(x_0.device) == 0, decoder_nll, kl) / math.log(2.0)
    return terms, model.pred_xstart


def vlb_terms(
    scheduler: DDPMPaperScheduler, x_0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, eps_pred: torch.Tensor
) -> torch.Tensor:
    """The true-bound training loss (Table 2's L; the reference's "kl"): L_0 or L_t in bits/dim per example [B].

    Args:
        x_0: the clean batch [B, C, H, W], 8-bit pixels scaled to [-1, 1].
        x_t: q_sample(x_0, t, noise), any float dtype.
        t: the sampled timesteps [B] (long), 0..T-1.
        eps_pred: the network's ε_θ(x_t, t) [B, C, H, W], any float dtype.

    Returns float64 [B], differentiable with respect to `eps_pred`; x̂_0 is not clipped, as in the reference.
    """
    if not (x_0.shape == x_t.shape == eps_pred.shape):
        raise InputError(
            f"x_0, x_t and eps_pred must have one shape, got {tuple(x_0.shape)}, {tuple(x_t.shape)}, "
            f"{tuple(eps_pred.shape)}"
        )
    if t.shape != x_0.shape[:1]:
        raise InputError(f"t must have shape [{x_0.shape[0]}], got {tuple(t.shape)}")
    return vb_terms_bpd(scheduler, x_0, x_t, t, eps_pred, clip_denoised=False)[0]


@dataclass
class BitsPerDim:
    """The variational bound of each image in bits/dim, float64, with its per-timestep parts."""

    total: torch.Tensor  # [B]: prior + terms.sum(1), the upper bound on -log2 p(x_0) per dimension
    prior: torch.Tensor  # [B]: L_T
    terms: torch.Tensor  # [B, T]: L_0 (decoder) at t = 0, the KL L_t at t ≥ 1
    x0_mse: torch.Tensor  # [B, T]: mean squared error of x̂_0(x_t) against x_0 on the [-1, 1] scale


def _check_images(x_0: torch.Tensor, scheduler: DDPMPaperScheduler) -> None:
    if not isinstance(x_0, torch.Tensor) or x_0.ndim != 4 or not x_0.is_floating_point() or x_0.shape[0] == 0:
        raise InputError(f"x_0 must be a non-empty float tensor [B, C, H, W] in [-1, 1], got {_describe(x_0)}")
    low, high = float(x_0.min()), float(x_0.max())
    if low < -1.0 or high > 1.0:
        raise InputError(f"x_0 must lie in [-1, 1] (8-bit pixels / 127.5 - 1), got values in [{low}, {high}]")
    if not isinstance(scheduler, DDPMPaperScheduler):
        raise InputError(f"scheduler must be a DDPMPaperScheduler, got {type(scheduler).__name__}")


def _describe(x: object) -> str:
    return f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


class NoisedPairs(NamedTuple):
    """A batch of (image, step) pairs: x_t ~ q(x_t | x_0) with its noise, and the network's ε_θ(x_t, t)."""

    image: torch.Tensor  # [n] which image of x_0
    step: torch.Tensor  # [n] which of the timesteps
    x_0: torch.Tensor  # [n, C, H, W]
    noise: torch.Tensor  # [n, C, H, W], ε
    x_t: torch.Tensor  # [n, C, H, W]
    eps: torch.Tensor  # [n, C, H, W], ε_θ(x_t, t)


def noised_pairs(
    eps_model: EpsModel,
    tables: DiffusionTables,
    x_0: torch.Tensor,
    timesteps: torch.Tensor,
    generator: torch.Generator | None,
    batch_size: int,
    progress: Progress = True,
) -> Iterator[NoisedPairs]:
    """Every (image, timestep) pair of x_0 [B, ...] and `timesteps` [K] with fresh noise, `batch_size` pairs per
    network pass, timestep-major (the order the noise is drawn in), in float64: the Monte Carlo loop of the bound."""
    if isinstance(generator, list):
        raise InputError("pass a single torch.Generator, not a list")
    num_images, device = x_0.shape[0], x_0.device
    x_0 = x_0.to(torch.float64)
    timesteps = timesteps.to(device)
    num_pairs = num_images * len(timesteps)
    for start in track(range(0, num_pairs, batch_size), progress):
        pair = torch.arange(start, min(start + batch_size, num_pairs), device=device)
        step, image = pair // num_images, pair % num_images
        x_start, t = x_0[image], timesteps[step]
        noise = randn_tensor(x_start.shape, generator=generator, device=device, dtype=torch.float64)
        x_t = q_sample(tables, x_start, t, noise)
        with torch.no_grad():
            eps = eps_model(x_t, t)
        yield NoisedPairs(image, step, x_start, noise, x_t, eps)


def bits_per_dim(
    eps_model: EpsModel,
    scheduler: DDPMPaperScheduler,
    x_0: torch.Tensor,
    generator: torch.Generator | None = None,
    clip_denoised: bool = True,
    batch_size: int | None = None,
    progress: Progress = True,
    num_inference_steps: int | None = None,
) -> BitsPerDim:
    """The variational bound (Eq. 5) of each image in bits/dim: Table 1's NLL, as the reference's `calc_bpd_loop`.

    Every (image, t) pair gets fresh noise; the B·T pairs are fed to the network `batch_size` at a time (default B),
    timestep-major, so one forward pass covers many timesteps when batch_size > B.

    Args:
        eps_model: `(x_t, t) -> ε̂`, called with float64 x_t [n, C, H, W] and long t [n]; it casts as it needs.
        scheduler: gives T, the β schedule and the reverse-process variance.
        x_0: images [B, C, H, W], 8-bit pixels scaled to [-1, 1].
        generator: a single `torch.Generator` for the noise.
        clip_denoised: clip x̂_0 to [-1, 1] before the posterior mean, as the reference does when evaluating.
        batch_size: (image, t) pairs per forward pass.
        progress: show a progress bar (or a callable wrapping the loop).
        num_inference_steps: the bound of the respaced chain that sampling with this many steps runs
            (`scheduler.chain`): its prior at its last timestep, a KL per step and the decoder at its first;
            `terms` then has one column per step. None (default): the full T-step chain.
    """
    _check_images(x_0, scheduler)
    num_images = x_0.shape[0]
    batch_size = check_int("batch_size", num_images if batch_size is None else batch_size)
    if num_inference_steps is not None:
        num_inference_steps = check_num_inference_steps(scheduler, num_inference_steps)
    chain = scheduler.chain(num_inference_steps)
    x_0 = x_0.to(torch.float64)
    terms = torch.zeros(num_images, len(chain.timesteps), dtype=torch.float64, device=x_0.device)
    x0_mse = torch.zeros_like(terms)
    for pairs in noised_pairs(eps_model, scheduler.tables, x_0, chain.timesteps, generator, batch_size, progress):
        new_terms, pred_xstart = vb_terms_bpd(chain, pairs.x_0, pairs.x_t, pairs.step, pairs.eps, clip_denoised)
        terms[pairs.image, pairs.step] = new_terms
        x0_mse[pairs.image, pairs.step] = mean_flat((pred_xstart - pairs.x_0) ** 2)
    prior = prior_bpd(chain, x_0)
    return BitsPerDim(total=prior + terms.sum(dim=1), prior=prior, terms=terms, x0_mse=x0_mse)
