"""`DDPMPaperPipeline`: Algorithm 2 of the paper as a diffusers `DiffusionPipeline`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from huggingface_hub import CommitInfo, ModelCard

from . import analysis, likelihood
from .card import render_model_card
from .data import images_to_model
from .fastpath import GraphedFunction, native_bf16, sampling_memory_format
from .hub import download_pipeline, upload_pipeline
from .scheduler import DDPMPaperScheduler

PRECISIONS = ("auto", "fp32", "bf16")


OUTPUT_TYPES = ("pil", "np", "pt")


class DDPMPaperPipeline(DiffusionPipeline):
    """Unconditional DDPM sampling (Algorithm 2) with a `UNet2DModel` and a `DDPMPaperScheduler`.

    Loads its own folders, vanilla diffusers `DDPMPipeline` folders (their `DDPMScheduler` is converted to a
    `DDPMPaperScheduler` with the same config) and Hub repo ids. Weights are read from safetensors only.
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin) -> None:
        super().__init__()
        if not isinstance(scheduler, DDPMPaperScheduler):
            scheduler = DDPMPaperScheduler.from_config(scheduler.config)
        self.register_modules(unet=unet, scheduler=scheduler)

    @classmethod
    def download(cls, pretrained_model_name: str, **kwargs: Any) -> str:
        """Fetch a pipeline repo from the Hub (see `ddpm_hf.hub.download_pipeline`)."""
        return download_pipeline(pretrained_model_name, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> DDPMPaperPipeline:
        """Load from a local folder or a Hub repo id; only safetensors weights are read.

        Takes diffusers' `from_pretrained` arguments (`revision`, `token`, `cache_dir`, `torch_dtype`, ...).
        """
        if kwargs.get("use_safetensors") is False:
            raise ValueError("DDPMPaperPipeline only loads safetensors weights; drop use_safetensors=False")
        folder = pretrained_model_name_or_path
        if not os.path.isdir(folder):
            folder = cls.download(str(folder), **kwargs)
        return super().from_pretrained(folder, use_safetensors=True, **kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        create_pr: bool = False,
        safe_serialization: bool = True,
        variant: str | None = None,
        *,
        revision: str | None = None,
        model_card: ModelCard | None = None,
        **card_kwargs: Any,
    ) -> CommitInfo:
        """Upload the pipeline and its model card to `repo_id`, on branch `revision` (created from main if missing).

        diffusers' own `push_to_hub` writes a generic card and cannot target a branch. The card is `model_card`, or
        `ddpm_hf.card.render_model_card(repo_id, **card_kwargs)` (`dataset`, `training_details`, `metrics`...).
        Failures raise `ddpm_hf.hub.HubUploadError`, which says why.
        """
        if not safe_serialization:
            raise ValueError("DDPMPaperPipeline only saves safetensors weights; drop safe_serialization=False")
        card = model_card or render_model_card(repo_id, revision=revision, **card_kwargs)
        return upload_pipeline(
            self,
            repo_id,
            card=card,
            revision=revision,
            private=private,
            commit_message=commit_message,
            token=token,
            create_pr=create_pr,
            variant=variant,
        )

    def resolve_precision(self, precision: str) -> str:
        """`"auto"` → `"bf16"` where the device computes bf16 natively (CUDA with bf16, CPUs with AMX/AVX-512 bf16),
        else `"fp32"`; checks the name."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision != "auto":
            return precision
        return "bf16" if native_bf16(self._execution_device) and self.unet.dtype == torch.float32 else "fp32"

    def _network_mode(self, precision: str, graphed: bool = False) -> contextlib.AbstractContextManager:
        """The network's numeric mode: bf16 autocast in the device's fast memory format, or untouched fp32.

        Only the network changes; the scheduler's update and the bound's arithmetic stay float32 or wider.
        `graphed`: for a network recorded in a CUDA graph, where autocast must not cache its weight casts.
        """
        if precision != "bf16":
            return contextlib.nullcontext()
        self.unet.to(memory_format=sampling_memory_format(self._execution_device))  # a no-op once done
        return torch.autocast(device_type=self._execution_device.type, dtype=torch.bfloat16, cache_enabled=not graphed)

    def _eps_model(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """ε_θ(x_t, t) in float32, x_t cast to the network's dtype, under whatever `_network_mode` is active."""
        dtype = self.unet.dtype  # a property that walks every parameter: read it once, not at every step
        return lambda x_t, t: self.unet(x_t.to(dtype), t).sample.float()

    def _sample_shape(
        self, batch_size: int, generator: torch.Generator | list[torch.Generator] | None
    ) -> tuple[int, ...]:
        """The shape of x_T for `batch_size` images, after checking the batch size and the per-image generators."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
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
        output_type: str = "pil",
        return_dict: bool = True,
        precision: str = "auto",
    ) -> ImagePipelineOutput | tuple:
        """Sample `batch_size` images with Algorithm 2.

        Args:
            batch_size: number of images.
            generator: a `torch.Generator`, or one per image so that each image is independent of the batch.
            num_inference_steps: T (1000) for the paper's sampler; fewer samples the respaced sub-chain.
            output_type: `"pil"`, `"np"` (float in [0, 1], NHWC) or `"pt"` (float in [0, 1], NCHW).
            return_dict: return an `ImagePipelineOutput` rather than a tuple.
            precision: `"fp32"` is exact and matches diffusers' `DDPMPipeline`; `"bf16"` runs the network under
                bf16 autocast (channels_last on CPUs); `"auto"` is bf16 where the hardware computes it natively, else
                fp32 (see `resolve_precision`), and on CUDA replays the network from a CUDA graph. The scheduler's
                update is float32 in every mode.
        """
        shape = self._sample_shape(batch_size, generator)
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        device = self._execution_device
        # "auto" on CUDA also records the network as a CUDA graph (not under accelerate's offload hooks, which move
        # weights during the forward): same kernels, so the same numbers as eager, without the launch gaps.
        graphed = precision == "auto" and device.type == "cuda" and not hasattr(self.unet, "_hf_hook")
        precision = self.resolve_precision(precision)
        image = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)

        self.scheduler.set_timesteps(num_inference_steps)
        # The network gets its timesteps from a copy made once on the device (a CPU scalar would be copied, and the
        # host synced, at every step); the scheduler reads the same values on the host, where they cost nothing.
        network_timesteps = self.scheduler.timesteps.to(device)
        with self._network_mode(precision, graphed):
            eps_model = self._eps_model()
            if graphed:
                eps_model = GraphedFunction(eps_model, image, network_timesteps[0])
            for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
                eps = eps_model(image, network_timesteps[i])
                image = self.scheduler.step(eps, t, image, generator=generator).prev_sample

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
        precision: str = "fp32",
    ) -> likelihood.BitsPerDim:
        """The variational bound of each image in bits/dim (Table 1's NLL); see `ddpm_hf.likelihood.bits_per_dim`.

        `images`: PIL images, uint8 arrays (HWC) or tensors (CHW), or float tensors in [-1, 1]. `precision` is the
        network's, as in `__call__` (default fp32, the reference's); the bound's arithmetic is float64 regardless.
        """
        x_0 = self._images(images)
        with self._network_mode(self.resolve_precision(precision)):
            return likelihood.bits_per_dim(
                self._eps_model(), self.scheduler, x_0, generator, clip_denoised, batch_size, self.progress_bar
            )

    @torch.no_grad()
    def progressive(
        self,
        batch_size: int = 1,
        every: int = 100,
        generator: torch.Generator | list[torch.Generator] | None = None,
        return_xt: bool = False,
    ) -> analysis.Trajectory:
        """Sample with the full chain, keeping x̂_0 (and x_t) every `every` steps (Fig. 6); images on [-1, 1]."""
        shape = self._sample_shape(batch_size, generator)
        return analysis.progressive_generation(
            self._eps_model(),
            self.scheduler,
            shape,
            generator,
            every,
            return_xt,
            device=self._execution_device,
            progress=self.progress_bar,
        )

    @torch.no_grad()
    def interpolate(
        self, image_a: Any, image_b: Any, t: int = 500, num: int = 8, generator: torch.Generator | None = None
    ) -> analysis.Interpolation:
        """Decode `num` interpolants of two images diffused to step t (Sec. 4.3, Fig. 8); images on [-1, 1]."""
        x_a, x_b = self._images(image_a), self._images(image_b)
        if x_a.shape[0] != 1 or x_b.shape[0] != 1:
            raise ValueError("interpolate takes one image_a and one image_b")
        return analysis.interpolate(
            self._eps_model(), self.scheduler, x_a[0], x_b[0], t, num, generator, self.progress_bar
        )

    def rate_distortion(
        self, images: Any, generator: torch.Generator | None = None, batch_size: int | None = None
    ) -> analysis.RateDistortion:
        """Rate (bits/dim) and distortion (RMSE, 0..255) of progressive lossy coding (Table 4, Fig. 5)."""
        return analysis.rate_distortion(self.bits_per_dim(images, generator, batch_size=batch_size))
