"""`DDPMPaperPipeline`: Algorithm 2 of the paper as a diffusers `DiffusionPipeline`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import torch
from diffusers import DDPMScheduler, DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from . import analysis, analytic, likelihood
from .checks import check_choice, check_int
from .data import images_to_model
from .errors import DDPMError, InputError, InputTypeError
from .fastpath import Precision, eps_model
from .hub import PipelineHubMixin
from .identity import IdentityMismatchError, weights_sha256
from .pixels import model_to_unit
from .reporting import progress_bar
from .sampling import ReverseStep, StepCallback, p_sample_loop
from .scheduler import DDPMPaperScheduler
from .schedulers import check_num_inference_steps, check_scheduler
from .unet import check_sample_size

OutputType = Literal["pil", "np", "pt"]
# diffusers' `callback_on_step_end(pipe, i, t, callback_kwargs) -> dict`, or one of its PipelineCallback objects.
StepEndCallback = Callable[[DiffusionPipeline, int, Any, dict[str, torch.Tensor]], dict] | PipelineCallback


class NonFiniteSampleError(DDPMError, FloatingPointError):
    """Sampling produced NaN or infinite values: the network's output was not finite."""


def check_finite(samples: torch.Tensor, what: str = "samples") -> None:
    """Raise `NonFiniteSampleError` naming how many of `what` (samples, interpolants, bounds: one per row) hold NaN
    or ±inf: they would turn into black images, or a NaN shown as a result."""
    bad = ~torch.isfinite(samples.reshape(len(samples), -1)).all(dim=1)
    if bad.any():
        raise NonFiniteSampleError(
            f"{int(bad.sum())} of {len(bad)} {what} hold NaN or infinite values: the network's output is not "
            "finite. Check its weights (a diverged or corrupted checkpoint); with precision 'bf16' or 'auto', "
            "compare with 'fp32'."
        )


def check_gamma_weights(unet: UNet2DModel, scheduler: SchedulerMixin) -> None:
    """Refuse Analytic-DPM's Γ with a network other than the one it was estimated for: Γ_t = E‖ε_θ‖²/d is a
    statistic of those weights (the estimate records their hash), and another network's optimal variance differs."""
    config = scheduler.config
    recorded = (config.get("analytic_estimate") or {}).get("model_weights_sha256")
    if config.get("variance_type") != "analytic" or not recorded:
        return
    actual = weights_sha256(unet)
    if actual != recorded:
        raise IdentityMismatchError(
            f"the scheduler's analytic variance was estimated for other weights (sha256 {recorded[:12]}) than this "
            f"network's ({actual[:12]}): estimate Γ for this network (examples/analytic_variance.py), or use a fixed "
            "variance (DDPMPaperScheduler.from_config(config, variance_type='fixed_large'))"
        )


class BoundInterrupted(DDPMError, InterruptedError):
    """A bound stopped by its step callback (`pipe._interrupt`): a bound missing some t is no bound."""


class DDPMPaperPipeline(PipelineHubMixin, DiffusionPipeline):
    """Unconditional sampling of a DDPM ε-network: Algorithm 2 with a `DDPMPaperScheduler` (the default), or the
    algorithm of any diffusers scheduler listed in `ddpm_hf.schedulers.SUPPORTED_SCHEDULERS` (DDIM, DPM-Solver++,
    UniPC, Euler, ...), which it runs as that scheduler's own pipeline would.

    Loads its own folders, vanilla diffusers `DDPMPipeline` folders and Hub repo ids (`ddpm_hf.hub`); weights are
    read from safetensors only. Besides sampling it runs the paper's analyses, `bits_per_dim`, `progressive`,
    `interpolate` and `rate_distortion`, which need the paper's posterior and so a `DDPMPaperScheduler`.
    """

    model_cpu_offload_seq = "unet"
    # What `callback_on_step_end` can ask for: the running sample x_t (diffusers' name, "latents", though this
    # pipeline works in pixels) and x̂_0, where the scheduler's step gives one.
    _callback_tensor_inputs = ["latents", "pred_original_sample"]

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin) -> None:
        super().__init__()
        channels = (unet.config.in_channels, unet.config.out_channels)
        if channels[0] != channels[1]:
            raise InputError(
                f"the network maps {channels[0]} channels to {channels[1]}: an ε-prediction (Eq. 11) needs "
                "out_channels == in_channels"
            )
        check_sample_size(unet.config)
        check_scheduler(scheduler)
        check_gamma_weights(unet, scheduler)
        self.register_modules(unet=unet, scheduler=scheduler)
        self._interrupt = False

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, paper_scheduler: bool = True, **kwargs: Any
    ) -> DDPMPaperPipeline:
        """Load from a local folder or a Hub repo id (see `PipelineHubMixin.from_pretrained`).

        A folder whose scheduler is diffusers' `DDPMScheduler` (every vanilla `DDPMPipeline` folder, google's
        included) loads it as a `DDPMPaperScheduler` with the same config: the same sampler, with the paper's float64
        tables, and the scheduler the analyses need. `paper_scheduler=False` keeps the folder's `DDPMScheduler`; a
        `scheduler=` passed here is used as it is.
        """
        pipe = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        if paper_scheduler and "scheduler" not in kwargs and type(pipe.scheduler) is DDPMScheduler:
            pipe.scheduler = DDPMPaperScheduler.from_config(pipe.scheduler.config)
        return pipe

    @property
    def interrupt(self) -> bool:
        """Set `pipe._interrupt = True` from a step callback to end the loop after that step (diffusers' convention)."""
        return self._interrupt

    def progress_bar(self, iterable: Iterable | None = None, total: int | None = None) -> Iterable:
        """diffusers' bar over the steps, made by `ddpm_hf.reporting.progress_bar` so that it follows the library's
        switch (`ddpm_hf.reporting.disable_progress_bar()`) and shows on the main process only; as diffusers' own,
        `set_progress_bar_config(**tqdm_kwargs)` configures it (`disable=True` hides it)."""
        config = getattr(self, "_progress_bar_config", {})
        if not isinstance(config, dict):
            raise InputError(f"`self._progress_bar_config` should be of type `dict`, but is {type(config)}.")
        if iterable is None and total is None:
            raise InputError("Either `total` or `iterable` has to be defined.")
        return progress_bar(iterable, total=total, **config)

    def _paper_scheduler(self, analysis_name: str) -> DDPMPaperScheduler:
        """The scheduler, which the paper's analyses need to be a `DDPMPaperScheduler`: they read its posterior."""
        if not isinstance(self.scheduler, DDPMPaperScheduler):
            raise InputError(
                f"{analysis_name} needs the paper's posterior q(x_(t-1) | x_t, x_0), which DDPMPaperScheduler "
                f"computes; this pipeline holds a {type(self.scheduler).__name__}. Set it back first, e.g. "
                "pipe.scheduler = DDPMPaperScheduler.from_config(pipe.scheduler.config, variance_type='fixed_large')"
            )
        return self.scheduler

    def _step_callback(
        self, callback_on_step_end: StepEndCallback | None, tensor_inputs: Sequence[str]
    ) -> StepCallback | None:
        """diffusers' `callback_on_step_end` as the loop's callback: it gets the asked-for tensors of each step, may
        return a new "latents", and ends the loop by setting `pipe._interrupt`."""
        self._interrupt = False
        if callback_on_step_end is None:
            return None
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            tensor_inputs = callback_on_step_end.tensor_inputs
        elif not callable(callback_on_step_end):
            raise InputTypeError(f"callback_on_step_end must be callable, got {callback_on_step_end!r}")
        unknown = [name for name in tensor_inputs if name not in self._callback_tensor_inputs]
        if unknown:
            raise InputError(
                f"callback_on_step_end_tensor_inputs must be among {self._callback_tensor_inputs}, got {unknown}"
            )

        def callback(step: ReverseStep) -> bool:
            available = {"latents": step.prev_sample, "pred_original_sample": step.pred_xstart}
            if "pred_original_sample" in tensor_inputs and step.pred_xstart is None:
                raise InputError(
                    f"{type(self.scheduler).__name__}.step gives no pred_original_sample (x̂_0) to pass to the callback"
                )
            outputs = callback_on_step_end(self, step.index, step.timestep, {k: available[k] for k in tensor_inputs})
            if not isinstance(outputs, dict):
                raise InputTypeError(
                    f"callback_on_step_end must return a dict (of the tensors it changes), got {outputs!r}"
                )
            if "latents" in outputs:
                step.prev_sample = self._returned_latents(outputs.pop("latents"), step.prev_sample)
            return self.interrupt

        return callback

    @staticmethod
    def _returned_latents(latents: Any, sample: torch.Tensor) -> torch.Tensor:
        """The latents a step callback returned, if they can replace `sample`: the loop would go on with whatever
        it got, and a batch of another size becomes that many images without a word."""
        if not isinstance(latents, torch.Tensor) or latents.shape != sample.shape:
            got = (
                f"of shape {tuple(latents.shape)}"
                if isinstance(latents, torch.Tensor)
                else f"as {type(latents).__name__}"
            )
            raise InputError(
                f"callback_on_step_end returned latents {got}, but the running sample has shape "
                f"{tuple(sample.shape)}: return a tensor of that shape (one per image), or no 'latents' to keep it"
            )
        return latents

    def _sample_shape(
        self, batch_size: int, generator: torch.Generator | list[torch.Generator] | None
    ) -> tuple[int, ...]:
        """The shape of x_T for `batch_size` images, after checking the batch size and the per-image generators."""
        batch_size = check_int("batch_size", batch_size)
        if isinstance(generator, list) and len(generator) != batch_size:
            raise InputError(f"got {len(generator)} generators for batch_size={batch_size}; pass one per image")
        size = self.unet.config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        return (batch_size, self.unet.config.in_channels, *size)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int = 1000,
        output_type: OutputType = "pil",
        return_dict: bool = True,
        precision: Precision = "auto",
        eta: float | None = None,
        callback_on_step_end: StepEndCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> ImagePipelineOutput | tuple:
        """Sample `batch_size` images with the scheduler's algorithm (Algorithm 2 for a `DDPMPaperScheduler`).

        Args:
            batch_size: number of images.
            generator: a `torch.Generator`, or one per image so that each image is independent of the batch.
            num_inference_steps: T (1000) for the paper's sampler; fewer samples the respaced sub-chain (or, with
                another scheduler, its own schedule of that many steps). A count the scheduler's timestep spacing
                cannot make a chain of is refused before sampling, with the counts it takes
                (`ddpm_hf.schedulers.valid_num_inference_steps`).
            output_type: `"pil"`, `"np"` (float in [0, 1], NHWC) or `"pt"` (float in [0, 1], NCHW).
            return_dict: return an `ImagePipelineOutput` rather than a tuple.
            precision: `"fp32"` is exact and matches diffusers' `DDPMPipeline`; `"bf16"` runs the network under
                bf16 autocast; `"auto"` is bf16 where the hardware computes it natively, else fp32, and on CUDA
                replays the network from a CUDA graph (`ddpm_hf.fastpath.eps_model`). The scheduler's update is
                float32 in every mode.
            eta: DDIM's η (0: deterministic DDIM, 1: DDPM-like noise), for schedulers whose `step` takes it.
            callback_on_step_end: diffusers' `callback(pipe, i, t, callback_kwargs) -> dict`, called after each step
                with the tensors named in `callback_on_step_end_tensor_inputs` (`"latents"`: the running sample;
                `"pred_original_sample"`: x̂_0, where the scheduler gives it); a returned `"latents"` replaces the
                sample, and setting `pipe._interrupt = True` ends sampling after that step (the images are then the
                sample reached so far).
        """
        check_scheduler(self.scheduler)  # also catches `pipe.scheduler = ...` after construction
        check_gamma_weights(self.unet, self.scheduler)  # and `pipe.unet = ...` (the hash is cached on the network)
        callback = self._step_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)
        shape = self._sample_shape(batch_size, generator)
        check_choice("output_type", output_type, OutputType)
        # The counts this scheduler's spacing turns into a chain, known before any network call (`ddpm_hf.schedulers`).
        num_inference_steps = check_num_inference_steps(self.scheduler, num_inference_steps)
        device = self._execution_device
        self.scheduler.set_timesteps(num_inference_steps)  # first: a σ-based scheduler's init_noise_sigma follows it
        x = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        x = x * self.scheduler.init_noise_sigma
        with eps_model(self.unet, precision, device=device) as eps:
            image = p_sample_loop(
                eps, self.scheduler, x, generator, eta=eta, callback=callback, progress=self.progress_bar
            )
        check_finite(image)

        image = model_to_unit(image)
        if output_type != "pt":
            image = image.cpu().permute(0, 2, 3, 1).numpy()
            if output_type == "pil":
                image = self.numpy_to_pil(image)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (image,)
        return ImagePipelineOutput(images=image)

    # --- the paper's analyses (implemented in ddpm_hf.likelihood and ddpm_hf.analysis) --------------------------

    def _images(self, images: Any) -> torch.Tensor:
        size = self.unet.config.sample_size
        if not isinstance(size, int):
            raise InputError(f"the analyses need square images, but the network's sample_size is {size}")
        return images_to_model(images, size, self.unet.config.in_channels).to(self._execution_device)

    @torch.no_grad()
    def bits_per_dim(
        self,
        images: Any,
        generator: torch.Generator | None = None,
        clip_denoised: bool = True,
        batch_size: int | None = None,
        precision: Precision = "fp32",
        callback_on_step_end: StepEndCallback | None = None,
        num_inference_steps: int | None = None,
    ) -> likelihood.BitsPerDim:
        """The variational bound of each image in bits/dim (Table 1's NLL); see `ddpm_hf.likelihood.bits_per_dim`.

        `images`: PIL images, uint8 arrays (HWC) or tensors (CHW), or float tensors in [-1, 1]. `precision` is the
        network's, as in `__call__` (default fp32, the reference's); the bound's arithmetic is float64 regardless.
        `callback_on_step_end(pipe, i, None, {})` is called after each of the bound's network passes (`batch_size`
        (image, t) pairs); setting `pipe._interrupt = True` there stops the bound with `InterruptedError`, since a
        bound missing some t is no bound.
        """
        scheduler = self._paper_scheduler("bits_per_dim")
        x_0 = self._images(images)
        with eps_model(self.unet, precision, device=self._execution_device) as eps:
            bpd = likelihood.bits_per_dim(
                eps,
                scheduler,
                x_0,
                generator,
                clip_denoised,
                batch_size,
                self._passes(callback_on_step_end),
                num_inference_steps,
            )
        check_finite(bpd.total, "images' bounds")
        return bpd

    @torch.no_grad()
    def estimate_gamma(
        self,
        images: Any,
        num_inference_steps: int | Sequence[int] | None = None,
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
        precision: Precision = "fp32",
    ) -> analytic.GammaEstimate:
        """Γ_t = E‖ε_θ(x_t, t)‖²/d of this network on `images` (training images), the statistic of Analytic-DPM's
        optimal variance, at every timestep or at those of the chains of the given step count (or counts)
        (`ddpm_hf.analytic`).

        `pipe.scheduler = ddpm_hf.analytic.with_analytic_variance(pipe.scheduler, estimate)` then samples and bounds
        with it; `examples/analytic_variance.py` does both, on many processes and resumably.
        """
        scheduler = self._paper_scheduler("estimate_gamma")
        x_0 = self._images(images)
        with eps_model(self.unet, precision, device=self._execution_device) as eps:
            estimate = analytic.estimate_gamma(
                eps, scheduler, x_0, num_inference_steps, generator, batch_size, self.progress_bar
            )
        check_finite(torch.from_numpy(estimate.gamma)[None], "estimates of Γ")
        return estimate

    def _passes(self, callback_on_step_end: StepEndCallback | None) -> Callable[[Iterable], Iterable]:
        """The progress bar over the bound's network passes, calling `callback_on_step_end` after each."""
        self._interrupt = False
        if callback_on_step_end is None:
            return self.progress_bar

        def passes(iterable: Iterable) -> Iterable:
            for i, item in enumerate(self.progress_bar(iterable)):
                yield item
                callback_on_step_end(self, i, None, {})
                if self.interrupt:
                    raise BoundInterrupted(f"the bound was interrupted after {i + 1} network passes")

        return passes

    @torch.no_grad()
    def progressive(
        self,
        batch_size: int = 1,
        every: int = 100,
        generator: torch.Generator | list[torch.Generator] | None = None,
        return_xt: bool = False,
        precision: Precision = "fp32",
        callback_on_step_end: StepEndCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> analysis.Trajectory:
        """Sample with the full chain, keeping x̂_0 (and x_t) every `every` steps (Fig. 6); images on [-1, 1].

        `callback_on_step_end` as in `__call__`."""
        scheduler = self._paper_scheduler("progressive")
        callback = self._step_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)
        shape = self._sample_shape(batch_size, generator)
        device = self._execution_device
        with eps_model(self.unet, precision, device=device) as eps:
            run = analysis.progressive_generation(
                eps, scheduler, shape, generator, every, return_xt, device, self.progress_bar, callback
            )
        check_finite(run.images)
        return run

    @torch.no_grad()
    def interpolate(
        self,
        image_a: Any,
        image_b: Any,
        t: int = 500,
        num: int = 8,
        generator: torch.Generator | None = None,
        precision: Precision = "fp32",
        callback_on_step_end: StepEndCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> analysis.Interpolation:
        """Decode `num` interpolants of two images diffused to step t (Sec. 4.3, Fig. 8); images on [-1, 1].

        `callback_on_step_end` as in `__call__`."""
        scheduler = self._paper_scheduler("interpolate")
        callback = self._step_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)
        x_a, x_b = self._images(image_a), self._images(image_b)
        if x_a.shape[0] != 1 or x_b.shape[0] != 1:
            raise InputError("interpolate takes one image_a and one image_b")
        with eps_model(self.unet, precision, device=self._execution_device) as eps:
            out = analysis.interpolate(eps, scheduler, x_a[0], x_b[0], t, num, generator, self.progress_bar, callback)
        check_finite(out.images, "interpolants")
        return out

    def rate_distortion(
        self, images: Any, generator: torch.Generator | None = None, batch_size: int | None = None
    ) -> analysis.RateDistortion:
        """Rate (bits/dim) and distortion (RMSE, 0..255) of progressive lossy coding (Table 4, Fig. 5)."""
        return analysis.rate_distortion(self.bits_per_dim(images, generator, batch_size=batch_size))
