"""`DDPMPaperScheduler`: diffusers' DDPM scheduler API over the paper's float64 tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers, SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from .checks import check_choice, check_int
from .diffusion import (
    PMeanVariance,
    VarianceType,
    check_betas,
    linear_beta_schedule,
    make_tables,
    model_log_variance_table,
    p_mean_variance,
    p_sample,
    predict_start_from_noise,
    q_posterior_mean_variance,
    q_sample,
    respaced_betas,
)

TimestepSpacing = Literal["leading", "linspace", "trailing"]


@dataclass
class DDPMPaperSchedulerOutput(BaseOutput):
    """Output of `DDPMPaperScheduler.step`, named as diffusers' `DDPMSchedulerOutput`."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class DDPMPaperScheduler(SchedulerMixin, ConfigMixin):
    """DDPM ancestral sampling (Algorithm 2) exactly as in Ho et al. (2020) and its released code.

    A drop-in variant of diffusers' `DDPMScheduler` (same config keys, `set_timesteps`, `step`, `add_noise`) whose
    tables are float64 and named as in the paper (`betas`, `alphas_cumprod`, `posterior_variance`,
    `posterior_log_variance_clipped`, `posterior_mean_coef1/2`, `model_log_variance`). Unlike diffusers it keeps the
    reference's t = 0 variances (β̃_1, not a 1e-20 clamp), so likelihoods computed from it match the paper.

    With fewer inference steps than `num_train_timesteps`, `step` samples the exact posterior of the sub-chain on the
    scheduled timesteps (β'_k = 1 - ᾱ_{s_k} / ᾱ_{s_{k-1}}), as diffusers and improved-diffusion do.

    Args:
        num_train_timesteps: T, the length of the forward process.
        beta_start, beta_end: β_1 and β_T of the linear schedule.
        beta_schedule: only `"linear"`, the paper's; `trained_betas` overrides it.
        trained_betas: explicit β_1..β_T.
        variance_type: `"fixed_large"` (σ_t² = β_t, the CIFAR-10 model) or `"fixed_small"` (σ_t² = β̃_t).
        clip_sample: clip x̂_0 to [-1, 1] before computing the posterior mean, as the reference does when sampling.
        prediction_type: only `"epsilon"`, the paper's parameterisation (Eq. 11).
        timestep_spacing, steps_offset: how `set_timesteps` picks a sub-sequence, as in diffusers.
    """

    _compatibles = [e.name for e in KarrasDiffusionSchedulers]
    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: np.ndarray | list[float] | None = None,
        variance_type: VarianceType = "fixed_large",
        clip_sample: bool = True,
        prediction_type: str = "epsilon",
        timestep_spacing: TimestepSpacing = "leading",
        steps_offset: int = 0,
    ) -> None:
        check_choice("variance_type", variance_type, VarianceType)
        if prediction_type != "epsilon":
            raise ValueError(f"prediction_type must be 'epsilon' (the paper's), got {prediction_type!r}")
        check_choice("timestep_spacing", timestep_spacing, TimestepSpacing)
        if trained_betas is not None:
            betas = np.asarray(trained_betas, dtype=np.float64)
        elif beta_schedule == "linear":
            if not beta_end > beta_start:
                raise ValueError(f"beta_end must be greater than beta_start, got {beta_start=} and {beta_end=}")
            betas = linear_beta_schedule(beta_start, beta_end, num_train_timesteps)
        else:
            raise ValueError(f"beta_schedule must be 'linear' (or pass trained_betas), got {beta_schedule!r}")
        check_betas(betas)
        if betas.shape[0] != num_train_timesteps:
            raise ValueError(f"trained_betas has {betas.shape[0]} values but num_train_timesteps={num_train_timesteps}")

        self.tables = make_tables(betas)
        for name, value in self.tables.as_dict().items():
            setattr(self, name, value)
        self.model_log_variance = model_log_variance_table(self.tables, variance_type)
        self.init_noise_sigma = 1.0
        self.num_inference_steps: int | None = None
        self._set_schedule(np.arange(num_train_timesteps)[::-1].copy())

    # --- the paper's math on the full T-step chain ------------------------------------------------------------

    def q_sample(self, x_0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Sample q(x_t | x_0) (Eq. 4), in float32 or wider."""
        return q_sample(self.tables, x_0, t, noise)

    def q_posterior_mean_variance(
        self, x_0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (Eqs. 6-7)."""
        return q_posterior_mean_variance(self.tables, x_0, x_t, t)

    def predict_start_from_noise(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x̂_0 from x_t and a predicted ε (Eq. 4 solved for x_0)."""
        return predict_start_from_noise(self.tables, x_t, t, eps)

    def p_mean_variance(
        self, eps: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, clip_denoised: bool = True
    ) -> PMeanVariance:
        """Mean, variance, log-variance and x̂_0 of p_θ(x_{t-1} | x_t) for the configured variance type."""
        return p_mean_variance(self.tables, self.model_log_variance, eps, x_t, t, clip_denoised)

    # --- diffusers' scheduler API -------------------------------------------------------------------------------

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """diffusers' name for `q_sample`; computed in float32 or wider, returned in the samples' dtype."""
        return q_sample(self.tables, original_samples, timesteps, noise).to(original_samples.dtype)

    def scale_model_input(self, sample: torch.Tensor, timestep: int | None = None) -> torch.Tensor:
        """DDPM feeds x_t to the network unscaled."""
        return sample

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Choose the descending timesteps to sample on (diffusers' spacings) and build that sub-chain's tables."""
        num_train = self.config.num_train_timesteps
        num_inference_steps = check_int("num_inference_steps", num_inference_steps, 1, num_train)
        spacing = self.config.timestep_spacing
        if spacing == "leading":
            ratio = num_train // num_inference_steps
            timesteps = np.arange(num_inference_steps)[::-1] * ratio + self.config.steps_offset
        elif spacing == "linspace":
            timesteps = np.linspace(0, num_train - 1, num_inference_steps).round()[::-1]
        else:
            ratio = num_train / num_inference_steps
            timesteps = np.round(np.arange(num_train, 0, -ratio)) - 1
        timesteps = timesteps.astype(np.int64)
        if timesteps.max() >= num_train or timesteps.min() < 0:
            raise ValueError(f"steps_offset={self.config.steps_offset} puts timesteps outside [0, {num_train})")
        self.num_inference_steps = num_inference_steps
        self._set_schedule(timesteps, device)

    def _set_schedule(self, timesteps: np.ndarray, device: str | torch.device | None = None) -> None:
        ascending = torch.from_numpy(timesteps[::-1].copy())
        if torch.equal(ascending, torch.arange(self.config.num_train_timesteps)):
            self.step_tables, self.step_model_log_variance = self.tables, self.model_log_variance
        else:
            self.step_tables = make_tables(respaced_betas(self.alphas_cumprod, ascending))
            self.step_model_log_variance = model_log_variance_table(self.step_tables, self.config.variance_type)
        # step k of the sub-chain ↔ timestep s_k; looked up on the host, so stepping never syncs a device.
        self._index_of_timestep = {int(s): k for k, s in enumerate(ascending)}
        self.timesteps = torch.from_numpy(timesteps.copy()).to(device)

    def index_for_timestep(self, timestep: int | torch.Tensor) -> int:
        """Position k of `timestep` in the ascending schedule; ValueError if it is not scheduled."""
        try:
            return self._index_of_timestep[int(timestep)]
        except (KeyError, TypeError, ValueError, RuntimeError):
            raise ValueError(
                f"timestep {timestep!r} is not in the current schedule ({len(self._index_of_timestep)} steps, "
                f"{int(self.timesteps[-1])}..{int(self.timesteps[0])}); call set_timesteps first"
            ) from None

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        return_dict: bool = True,
        variance_noise: torch.Tensor | None = None,
    ) -> DDPMPaperSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """One step of Algorithm 2: x_{t-1} = μ_θ(x_t, t) + σ_t z, with no noise on the final step.

        z is drawn from `generator` (one per image, or one for the batch), or is `variance_noise` when the caller
        supplies it (as diffusers' `DDIMScheduler.step`; it broadcasts against the sample, so one z can be shared by
        every image). `timestep` is read on the host: pass an int or an element of `self.timesteps` (kept on the CPU
        by default), not a CUDA tensor, to keep the loop free of device syncs. The update runs in float32 or wider
        whatever `model_output`'s dtype.
        """
        if variance_noise is not None and generator is not None:
            raise ValueError("pass either generator or variance_noise to step, not both")
        k = self.index_for_timestep(timestep)
        out = p_mean_variance(
            self.step_tables, self.step_model_log_variance, model_output, sample, k, self.config.clip_sample
        )
        noise = None
        if k > 0:
            noise = variance_noise
            if noise is None:
                noise = randn_tensor(out.mean.shape, generator=generator, device=out.mean.device, dtype=out.mean.dtype)
        prev_sample = p_sample(out, noise)
        if not return_dict:
            return prev_sample, out.pred_xstart
        return DDPMPaperSchedulerOutput(prev_sample=prev_sample, pred_original_sample=out.pred_xstart)

    def previous_timestep(self, timestep: int | torch.Tensor) -> int:
        """The scheduled timestep after `timestep` (-1 after the last one), as diffusers' method of that name."""
        k = self.index_for_timestep(timestep)
        return int(self.timesteps[len(self.timesteps) - k]) if k > 0 else -1

    def __len__(self) -> int:
        return self.config.num_train_timesteps
