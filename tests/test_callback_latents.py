"""What a step callback may return as "latents": a tensor of the running sample's shape, or nothing."""

import pytest
import torch
from diffusers import DDIMScheduler

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler
from ddpm_hf.errors import InputError
from tiny import tiny_unet


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


@pytest.fixture(params=["paper", "DDIM"])
def pipe(request, unet):
    scheduler = DDPMPaperScheduler(num_train_timesteps=20)
    if request.param == "DDIM":
        scheduler = DDIMScheduler.from_config(scheduler.config)
    pipe = DDPMPaperPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_latents_of_another_shape_are_refused(pipe):
    """Returning the latents of 1 of 2 images used to end the call with 1 image, without a word."""
    first_only = lambda p, i, t, kw: {"latents": kw["latents"][:1]} if i == 2 else {}  # noqa: E731
    with pytest.raises(InputError, match=r"latents of shape \(1, 3, 8, 8\), but the running sample has shape \(2,"):
        pipe(2, num_inference_steps=5, callback_on_step_end=first_only)
    flat = lambda p, i, t, kw: {"latents": kw["latents"].flatten()}  # noqa: E731
    with pytest.raises(InputError, match=r"latents of shape \(384,\)"):
        pipe(2, num_inference_steps=5, callback_on_step_end=flat)
    cropped = lambda p, i, t, kw: {"latents": kw["latents"][:, :, :4]}  # noqa: E731
    with pytest.raises(InputError, match=r"latents of shape \(2, 3, 4, 8\)"):
        pipe(2, num_inference_steps=5, callback_on_step_end=cropped)
    as_numpy = lambda p, i, t, kw: {"latents": kw["latents"].numpy()}  # noqa: E731
    with pytest.raises(InputError, match="latents as ndarray"):
        pipe(2, num_inference_steps=5, callback_on_step_end=as_numpy)
    with pytest.raises(InputError, match="latents as NoneType"):
        pipe(2, num_inference_steps=5, callback_on_step_end=lambda p, i, t, kw: {"latents": None})


def test_latents_of_the_same_shape_replace_the_sample(pipe):
    seen = {}

    def halve_the_last(p, i, t, kw):
        if i != 4:
            return {}
        seen["latents"] = kw["latents"].clone()
        return {"latents": kw["latents"] * 0.5}

    images = pipe(2, num_inference_steps=5, output_type="pt", callback_on_step_end=halve_the_last).images
    assert torch.equal(images, (seen["latents"] * 0.5 / 2 + 0.5).clamp(0, 1))


def test_the_analyses_refuse_them_too(unet):
    pipe = DDPMPaperPipeline(unet=unet, scheduler=DDPMPaperScheduler(num_train_timesteps=20))
    pipe.set_progress_bar_config(disable=True)
    first_only = lambda p, i, t, kw: {"latents": kw["latents"][:1]}  # noqa: E731
    with pytest.raises(InputError, match="latents of shape"):
        pipe.progressive(2, every=5, callback_on_step_end=first_only)
    image = torch.zeros(3, 8, 8)
    with pytest.raises(InputError, match="latents of shape"):
        pipe.interpolate(image, image, t=5, num=2, callback_on_step_end=first_only)
