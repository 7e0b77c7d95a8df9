"""`DDPMPaperScheduler`: diffusers' DDPM scheduler API over the paper's float64 tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from .checks import check_choice, check_int
from .diffusion import (
    DiffusionTables,
    PMeanVariance,
    VarianceType,
    check_betas,
    custom_timesteps,
    linear_beta_schedule,
    make_tables,
    model_log_variance_table,
    p_mean_variance,
    p_sample,
    predict_start_from_noise,
    q_posterior_mean_variance,
    q_sample,
    respaced_betas,
    velocity,
)
from .errors import InputError
from .schedulers import SUPPORTED_SCHEDULERS

TimestepSpacing = Literal["leading", "linspace", "trailing"]
# diffusers' DDPMScheduler names for σ_t² computed in log space: the same variances.
_VARIANCE_ALIASES = {"fixed_small_log": "fixed_small", "fixed_large_log": "fixed_large"}
# Config keys no diffusers scheduler takes: where they hold their defaults, a conversion may drop them unseen.
_OWN_CONFIG_KEYS = ("analytic_gamma", "analytic_estimate")
# diffusers' DDPMScheduler options -> (values that mean a sampler other than the paper's, why they are refused).
_NOT_THE_PAPERS = {
    "variance_type": (
        {"learned", "learned_range"},
        "the paper fixes σ_t² (Sec. 3.2) and its network predicts no variance",
    ),
    "prediction_type": (
        {"sample", "v_prediction"},
        "the paper's network predicts ε (Eq. 11); read as another parameterisation it would sample garbage",
    ),
    "beta_schedule": (
        {"scaled_linear", "squaredcos_cap_v2", "sigmoid"},
        "the paper's schedule is linear (Sec. 4); pass trained_betas for another, or use diffusers' DDPMScheduler",
    ),
    "thresholding": ({True}, "dynamic thresholding (Imagen) is not the paper's sampler, which clips x̂_0"),
    "rescale_betas_zero_snr": ({True}, "a zero-terminal-SNR schedule makes β_T = 1, which the paper's does not"),
}


def _refuse_other_samplers(**options: object) -> None:
    """A ValueError saying why, for a diffusers option whose value asks for something the paper does not do."""
    for name, value in options.items():
        refused, why = _NOT_THE_PAPERS[name]
        if value in refused:
            raise InputError(f"DDPMPaperScheduler does not implement {name}={value!r}: {why}")


def _is_mean_square(value: Any) -> bool:
    """Whether `value` can be Γ_t = E‖ε_θ(x_t, t)‖²/d: a finite number ≥ 0. A bool is an int to Python, but it is
    no measurement (a flag written where a value belongs)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < np.inf


def _gamma_table(gamma: Any, num_train_timesteps: int) -> torch.Tensor | None:
    """Γ_t for t = 0..T-1 as float64, NaN where it was not estimated (None); a ValueError for anything else."""
    if gamma is None:
        return None
    values = list(gamma.tolist() if hasattr(gamma, "tolist") else gamma)
    if len(values) != num_train_timesteps:
        raise InputError(f"analytic_gamma has {len(values)} values but num_train_timesteps={num_train_timesteps}")
    bad = [t for t, v in enumerate(values) if v is not None and not _is_mean_square(v)]
    if bad:
        raise InputError(
            f"analytic_gamma[{bad[0]}] = {values[bad[0]]!r}: Γ_t = E‖ε_θ(x_t, t)‖²/d is a finite mean square (≥ 0), "
            "or None where it was not estimated"
        )
    return torch.tensor([np.nan if v is None else float(v) for v in values], dtype=torch.float64)


class Chain(NamedTuple):
    """The reverse process on some timesteps: its steps k = 0..K-1 are the ascending timesteps s_k, with the
    tables of the Markov sub-chain on them (the full chain's own when every timestep is kept)."""

    timesteps: torch.Tensor  # [K] ascending s_k: what the network is called with at step k
    tables: DiffusionTables
    model_log_variance: torch.Tensor  # [K] log σ_k² of p(x_{s_(k-1)} | x_{s_k}); at k = 0 the decoder's


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
        variance_type: `"fixed_large"` (σ_t² = β_t, the CIFAR-10 model), `"fixed_small"` (σ_t² = β̃_t), the two
            extremes of Sec. 3.2, or `"analytic"`: Analytic-DPM's optimal variance (Bao et al. 2022) from
            `analytic_gamma`, for the full chain and every respaced one (`ddpm_hf.analytic`). diffusers'
            `"fixed_small_log"` / `"fixed_large_log"` are the same variances as the first two.
        analytic_gamma: Γ_t = E‖ε_θ(x_t, t)‖²/d of the trained network for t = 0..T-1 (None where not estimated),
            measured by `ddpm_hf.analytic.estimate_gamma`; carried in the config like `trained_betas`.
        analytic_estimate: how `analytic_gamma` was estimated (images, seed, standard errors, weights hash).
        clip_sample: clip x̂_0 to [-clip_sample_range, clip_sample_range] before computing the posterior mean, as
            the reference does (range 1) when sampling.
        prediction_type: only `"epsilon"`, the paper's parameterisation (Eq. 11).
        timestep_spacing, steps_offset: how `set_timesteps` picks a sub-sequence, as in diffusers.
        thresholding, dynamic_thresholding_ratio, sample_max_value, rescale_betas_zero_snr: diffusers' options,
            accepted at their defaults only (dynamic thresholding and zero-terminal-SNR are not the paper's sampler).

    Every other keyword of diffusers' `DDPMScheduler` is accepted with its meaning, and conversions in either
    direction (`from_config`) keep every value the source scheduler uses.
    """

    # What `from_config` can swap in for sampling this scheduler's networks (`ddpm_hf.schedulers`), and only that.
    _compatibles = [name for name in SUPPORTED_SCHEDULERS if name != "DDPMPaperScheduler"]
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
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        timestep_spacing: TimestepSpacing = "leading",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
        analytic_gamma: list[float | None] | None = None,
        analytic_estimate: dict[str, Any] | None = None,
    ) -> None:
        num_train_timesteps = check_int("num_train_timesteps", num_train_timesteps, 1)
        _refuse_other_samplers(
            variance_type=variance_type,
            prediction_type=prediction_type,
            beta_schedule=beta_schedule,
            thresholding=thresholding,
            rescale_betas_zero_snr=rescale_betas_zero_snr,
        )
        check_choice("variance_type", _VARIANCE_ALIASES.get(variance_type, variance_type), VarianceType)
        check_choice("prediction_type", prediction_type, ("epsilon",))
        check_choice("timestep_spacing", timestep_spacing, TimestepSpacing)
        check_int("steps_offset", steps_offset, 0)
        if not clip_sample_range > 0:
            raise InputError(f"clip_sample_range must be positive, got {clip_sample_range!r}")
        if trained_betas is not None:
            betas = np.asarray(trained_betas, dtype=np.float64)
        elif beta_schedule == "linear":
            if num_train_timesteps > 1 and not beta_end > beta_start:
                raise InputError(f"beta_end must be greater than beta_start, got {beta_start=} and {beta_end=}")
            betas = linear_beta_schedule(beta_start, beta_end, num_train_timesteps)
        else:
            raise InputError(f"beta_schedule must be 'linear' (or pass trained_betas), got {beta_schedule!r}")
        check_betas(betas)
        if betas.shape[0] != num_train_timesteps:
            raise InputError(f"trained_betas has {betas.shape[0]} values but num_train_timesteps={num_train_timesteps}")

        self.tables = make_tables(betas)
        for name, value in self.tables.as_dict().items():
            setattr(self, name, value)
        self.variance_type = _VARIANCE_ALIASES.get(variance_type, variance_type)
        self.gamma = _gamma_table(analytic_gamma, num_train_timesteps)
        if self.variance_type == "analytic" and self.gamma is None:
            raise InputError(
                "variance_type='analytic' needs analytic_gamma, Γ_t of the trained network: estimate it with "
                "ddpm_hf.analytic.estimate_gamma or examples/analytic_variance.py"
            )
        # NaN where Γ was not estimated; a chain through such a timestep is refused when it is used (`chain`).
        self.model_log_variance = model_log_variance_table(self.tables, self.variance_type, self.gamma)
        self.init_noise_sigma = 1.0
        self.one = torch.tensor(1.0)
        self.num_inference_steps: int | None = None
        self.custom_timesteps = False
        self._set_schedule(np.arange(num_train_timesteps)[::-1].copy(), strict=False)

    # --- config: conversions keep every value the source uses -------------------------------------------------

    def register_to_config(self, **kwargs) -> None:
        """As diffusers', with two differences in what the config records, both for `OtherScheduler.from_config`:

        - `_use_default_values` (the keys left at their defaults, which a conversion drops so that the target takes
          its own) lists only our own keys (`analytic_gamma`, `analytic_estimate`): our other defaults differ from
          diffusers' (variance_type), so a converted config must carry those values themselves.
        - `_class_name` from the start, as diffusers' configs have it once saved or loaded: knowing the source class
          (ddpm_hf registers it in diffusers' namespace), a conversion drops the keys the target does not take
          without a warning, and keeps them in its config, so a conversion back restores them (Γ included).
        """
        given = kwargs.pop("_use_default_values", ())
        defaults = [key for key in _OWN_CONFIG_KEYS if key in given]  # in one order: configs compare equal
        if defaults:
            kwargs["_use_default_values"] = defaults
        if not hasattr(self, "_internal_dict"):
            kwargs.setdefault("_class_name", type(self).__name__)
        super().register_to_config(**kwargs)

    @classmethod
    def from_config(cls, config: dict | None = None, return_unused_kwargs: bool = False, **kwargs):
        """As diffusers', keeping the values a source scheduler used even where it took its own defaults (diffusers
        would replace those with ours: a `DDPMScheduler()` would turn from `fixed_small` into `fixed_large`)."""
        if config is not None:
            config = dict(config)
            # Only our own keys may take our defaults: the rest keep the source's values. Our own keys keep their
            # mark, so that `from_config(s.config).config == s.config`.
            own = [key for key in config.pop("_use_default_values", ()) if key in _OWN_CONFIG_KEYS]
            if own:
                config["_use_default_values"] = own
        return super().from_config(config, return_unused_kwargs=return_unused_kwargs, **kwargs)

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

    def get_velocity(self, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x_0 (Salimans & Ho 2022), as diffusers' method of that name."""
        return velocity(self.tables, sample, noise, timesteps).to(sample.dtype)

    def scale_model_input(self, sample: torch.Tensor, timestep: int | None = None) -> torch.Tensor:
        """DDPM feeds x_t to the network unscaled."""
        return sample

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: list[int] | None = None,
    ) -> None:
        """Choose the descending timesteps to sample on and build that sub-chain's tables: `num_inference_steps`
        spaced as `timestep_spacing` says, or exactly the given `timesteps` (descending, below T), as diffusers."""
        if (num_inference_steps is None) == (timesteps is None):
            raise InputError("pass exactly one of num_inference_steps and timesteps to set_timesteps")
        if timesteps is not None:
            self._set_schedule(custom_timesteps(timesteps, self.config.num_train_timesteps), device)
            self.num_inference_steps, self.custom_timesteps = len(self.timesteps), True
            return
        self._set_schedule(self.spaced_timesteps(num_inference_steps), device)
        self.num_inference_steps, self.custom_timesteps = num_inference_steps, False

    def spaced_timesteps(self, num_inference_steps: int) -> np.ndarray:
        """The descending timesteps `set_timesteps(num_inference_steps)` samples on, spaced as `timestep_spacing`."""
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
            raise InputError(f"steps_offset={self.config.steps_offset} puts timesteps outside [0, {num_train})")
        return timesteps

    def chain(self, num_inference_steps: int | None = None) -> Chain:
        """The reverse process that `set_timesteps(num_inference_steps)` samples (the full T-step chain when None),
        without changing the scheduler's own schedule; refused if its analytic variance lacks a Γ it needs."""
        if num_inference_steps is None:
            return self._chain(np.arange(self.config.num_train_timesteps)[::-1])
        return self._chain(self.spaced_timesteps(num_inference_steps))

    def _chain(self, timesteps: np.ndarray, strict: bool = True) -> Chain:
        ascending = torch.from_numpy(timesteps[::-1].copy())
        gamma = None if self.gamma is None else self.gamma[ascending]
        if torch.equal(ascending, torch.arange(self.config.num_train_timesteps)):
            tables, log_variance = self.tables, self.model_log_variance
        else:
            tables = make_tables(respaced_betas(self.alphas_cumprod, ascending))
            log_variance = model_log_variance_table(tables, self.variance_type, gamma)
        if strict:
            self._check_gamma(ascending, log_variance)
        return Chain(ascending, tables, log_variance)

    def _check_gamma(self, ascending: torch.Tensor, log_variance: torch.Tensor, steps: slice = slice(1, None)) -> None:
        """Refuse a chain whose analytic variance needs Γ at a timestep where it was not estimated."""
        if self.variance_type != "analytic":
            return
        missing = ascending[steps][torch.isnan(log_variance[steps])].tolist()
        if missing:
            known = int((~torch.isnan(self.gamma)).sum())
            raise InputError(
                f"variance_type='analytic' needs Γ_t at timesteps {missing[:8]}{' ...' if len(missing) > 8 else ''}, "
                f"where it was not estimated (it was at {known} of the {self.config.num_train_timesteps}): use a step "
                "count it was estimated for, or estimate Γ at every timestep (ddpm_hf.analytic.estimate_gamma)"
            )

    def _set_schedule(
        self, timesteps: np.ndarray, device: str | torch.device | None = None, strict: bool = True
    ) -> None:
        chain = self._chain(timesteps, strict)
        self.step_tables, self.step_model_log_variance = chain.tables, chain.model_log_variance
        # step k of the sub-chain ↔ timestep s_k; looked up on the host, so stepping never syncs a device.
        self._index_of_timestep = {int(s): k for k, s in enumerate(chain.timesteps)}
        self._ascending = chain.timesteps
        self.timesteps = torch.from_numpy(timesteps.copy()).to(device)

    def index_for_timestep(self, timestep: int | torch.Tensor) -> int:
        """Position k of `timestep` in the ascending schedule; ValueError if it is not an integer or not scheduled."""
        value = timestep.item() if isinstance(timestep, torch.Tensor) and timestep.numel() == 1 else timestep
        if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
            raise InputError(f"timestep must be one integer, got {timestep!r}")
        if value != int(value):
            raise InputError(f"timestep must be an integer (a DDPM step), got {timestep!r}")
        try:
            return self._index_of_timestep[int(value)]
        except KeyError:
            raise InputError(
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
            raise InputError("pass either generator or variance_noise to step, not both")
        if isinstance(generator, list) and len(generator) != sample.shape[0]:
            raise InputError(f"got {len(generator)} generators for {sample.shape[0]} images; pass one per image")
        k = self.index_for_timestep(timestep)
        if k > 0:  # a schedule set at construction is checked here, where its step is first used
            self._check_gamma(self._ascending, self.step_model_log_variance, slice(k, k + 1))
        clip = self.config.clip_sample_range if self.config.clip_sample else None
        out = p_mean_variance(self.step_tables, self.step_model_log_variance, model_output, sample, k, clip)
        noise = None
        if k > 0:
            noise = variance_noise
            if noise is None:
                noise = randn_tensor(out.mean.shape, generator=generator, device=out.mean.device, dtype=out.mean.dtype)
        prev_sample = p_sample(out, noise)
        if not return_dict:
            return prev_sample, out.pred_xstart
        return DDPMPaperSchedulerOutput(prev_sample=prev_sample, pred_original_sample=out.pred_xstart)

    def previous_timestep(self, timestep: int | torch.Tensor) -> int | torch.Tensor:
        """The scheduled timestep after `timestep` (-1 after the last one), as diffusers' method of that name: a 0-d
        tensor on the timestep's device for a tensor timestep (as diffusers returns), an int for an int."""
        k = self.index_for_timestep(timestep)
        previous = int(self.timesteps[len(self.timesteps) - k]) if k > 0 else -1
        if isinstance(timestep, torch.Tensor):
            return torch.tensor(previous, device=timestep.device)
        return previous

    def __len__(self) -> int:
        return self.config.num_train_timesteps
