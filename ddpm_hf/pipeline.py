"""`DDPMPaperPipeline`: Algorithm 2 of the paper as a diffusers `DiffusionPipeline`."""

from __future__ import annotations

from typing import Any, Literal

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from . import analysis, likelihood
from .checks import check_choice, check_int
from .data import images_to_model
from .fastpath import Precision, eps_model
from .hub import PipelineHubMixin
from .sampling import p_sample_loop
from .scheduler import DDPMPaperScheduler

OutputType = Literal["pil", "np", "pt"]


class NonFiniteSampleError(FloatingPointError):
    """Sampling produced NaN or infinite values: the network's output was not finite."""


def check_finite(samples: torch.Tensor) -> None:
    """Raise `NonFiniteSampleError` naming how many samples hold NaN or ±inf (they would turn into black images)."""
    bad = ~torch.isfinite(samples.flatten(1)).all(dim=1)
    if bad.any():
        raise NonFiniteSampleError(
            f"{int(bad.sum())} of {len(bad)} samples hold NaN or infinite values: the network's output is not "
            "finite. Check its weights (a diverged or corrupted checkpoint); with precision 'bf16' or 'auto', "
            "compare with 'fp32'."
        )


class DDPMPaperPipeline(PipelineHubMixin, DiffusionPipeline):
    """Unconditional DDPM sampling (Algorithm 2) with a `UNet2DModel` and a `DDPMPaperScheduler`.

    Loads its own folders, vanilla diffusers `DDPMPipeline` folders (their `DDPMScheduler` is converted to a
    `DDPMPaperScheduler` with the same config) and Hub repo ids (`ddpm_hf.hub`). Weights are read from safetensors
    only. Besides sampling it runs the paper's analyses: `bits_per_dim`, `progressive`, `interpolate`,
    `rate_distortion`.
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin) -> None:
        super().__init__()
        channels = (unet.config.in_channels, unet.config.out_channels)
        if channels[0] != channels[1]:
            raise ValueError(
                f"the network maps {channels[0]} channels to {channels[1]}: an ε-prediction (Eq. 11) needs "
                "out_channels == in_channels"
            )
        if not isinstance(scheduler, DDPMPaperScheduler):
            scheduler = DDPMPaperScheduler.from_config(scheduler.config)
        self.register_modules(unet=unet, scheduler=scheduler)

    def _sample_shape(
        self, batch_size: int, generator: torch.Generator | list[torch.Generator] | None
    ) -> tuple[int, ...]:
        """The shape of x_T for `batch_size` images, after checking the batch size and the per-image generators."""
        batch_size = check_int("batch_size", batch_size)
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"got {len(generator)} generators for batch_size={batch_size}; pass one per image")
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
    ) -> ImagePipelineOutput | tuple:
        """Sample `batch_size` images with Algorithm 2.

        Args:
            batch_size: number of images.
            generator: a `torch.Generator`, or one per image so that each image is independent of the batch.
            num_inference_steps: T (1000) for the paper's sampler; fewer samples the respaced sub-chain.
            output_type: `"pil"`, `"np"` (float in [0, 1], NHWC) or `"pt"` (float in [0, 1], NCHW).
            return_dict: return an `ImagePipelineOutput` rather than a tuple.
            precision: `"fp32"` is exact and matches diffusers' `DDPMPipeline`; `"bf16"` runs the network under
                bf16 autocast; `"auto"` is bf16 where the hardware computes it natively, else fp32, and on CUDA
                replays the network from a CUDA graph (`ddpm_hf.fastpath.eps_model`). The scheduler's update is
                float32 in every mode.
        """
        shape = self._sample_shape(batch_size, generator)
        check_choice("output_type", output_type, OutputType)
        device = self._execution_device
        x_T = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        self.scheduler.set_timesteps(num_inference_steps)
        with eps_model(self.unet, precision, device=device) as eps:
            image = p_sample_loop(eps, self.scheduler, x_T, generator, progress=self.progress_bar)
        check_finite(image)

        image = (image / 2 + 0.5).clamp(0, 1)
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
            raise ValueError(f"the analyses need square images, but the network's sample_size is {size}")
        return images_to_model(images, size, self.unet.config.in_channels).to(self._execution_device)

    @torch.no_grad()
    def bits_per_dim(
        self,
        images: Any,
        generator: torch.Generator | None = None,
        clip_denoised: bool = True,
        batch_size: int | None = None,
        precision: Precision = "fp32",
    ) -> likelihood.BitsPerDim:
        """The variational bound of each image in bits/dim (Table 1's NLL); see `ddpm_hf.likelihood.bits_per_dim`.

        `images`: PIL images, uint8 arrays (HWC) or tensors (CHW), or float tensors in [-1, 1]. `precision` is the
        network's, as in `__call__` (default fp32, the reference's); the bound's arithmetic is float64 regardless.
        """
        x_0 = self._images(images)
        with eps_model(self.unet, precision, device=self._execution_device) as eps:
            return likelihood.bits_per_dim(
                eps, self.scheduler, x_0, generator, clip_denoised, batch_size, self.progress_bar
            )

    @torch.no_grad()
    def progressive(
        self,
        batch_size: int = 1,
        every: int = 100,
        generator: torch.Generator | list[torch.Generator] | None = None,
        return_xt: bool = False,
        precision: Precision = "fp32",
    ) -> analysis.Trajectory:
        """Sample with the full chain, keeping x̂_0 (and x_t) every `every` steps (Fig. 6); images on [-1, 1]."""
        shape = self._sample_shape(batch_size, generator)
        device = self._execution_device
        with eps_model(self.unet, precision, device=device) as eps:
            return analysis.progressive_generation(
                eps, self.scheduler, shape, generator, every, return_xt, device=device, progress=self.progress_bar
            )

    @torch.no_grad()
    def interpolate(
        self,
        image_a: Any,
        image_b: Any,
        t: int = 500,
        num: int = 8,
        generator: torch.Generator | None = None,
        precision: Precision = "fp32",
    ) -> analysis.Interpolation:
        """Decode `num` interpolants of two images diffused to step t (Sec. 4.3, Fig. 8); images on [-1, 1]."""
        x_a, x_b = self._images(image_a), self._images(image_b)
        if x_a.shape[0] != 1 or x_b.shape[0] != 1:
            raise ValueError("interpolate takes one image_a and one image_b")
        with eps_model(self.unet, precision, device=self._execution_device) as eps:
            return analysis.interpolate(eps, self.scheduler, x_a[0], x_b[0], t, num, generator, self.progress_bar)

    def rate_distortion(
        self, images: Any, generator: torch.Generator | None = None, batch_size: int | None = None
    ) -> analysis.RateDistortion:
        """Rate (bits/dim) and distortion (RMSE, 0..255) of progressive lossy coding (Table 4, Fig. 5)."""
        return analysis.rate_distortion(self.bits_per_dim(images, generator, batch_size=batch_size))
