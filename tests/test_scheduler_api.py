"""`DDPMPaperScheduler` speaks diffusers' `DDPMScheduler` API: config conversion both ways, custom timesteps, a
one-step chain, every option either honoured or refused with the reason, and its methods' signatures."""

import inspect

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler
from tiny import tiny_unet

DIFFERENT_DEFAULTS = {"variance_type": ("fixed_small", "fixed_large")}  # diffusers' default, ours
OUR_KEYWORDS = ["analytic_gamma", "analytic_estimate"]  # Analytic-DPM's Γ, after every keyword of diffusers'


def test_the_only_differing_default_is_the_variance():
    theirs = inspect.signature(DDPMScheduler.__init__).parameters
    ours = inspect.signature(DDPMPaperScheduler.__init__).parameters
    assert list(ours) == [*theirs, *OUR_KEYWORDS]  # every diffusers keyword, in diffusers' order
    assert all(ours[k].default is None for k in OUR_KEYWORDS)
    differing = {k: (theirs[k].default, ours[k].default) for k in theirs if theirs[k].default != ours[k].default}
    assert differing == DIFFERENT_DEFAULTS


@pytest.mark.parametrize("key", sorted(DIFFERENT_DEFAULTS))
def test_conversion_keeps_the_sources_value_where_defaults_differ(key):
    theirs_default, ours_default = DIFFERENT_DEFAULTS[key]
    assert DDPMPaperScheduler.from_config(DDPMScheduler().config).config[key] == theirs_default
    assert DDPMScheduler.from_config(DDPMPaperScheduler().config).config[key] == ours_default
    assert DDPMPaperScheduler.from_config(DDPMPaperScheduler().config).config[key] == ours_default
    assert DDPMScheduler.from_config(DDPMScheduler().config).config[key] == theirs_default


def test_every_supported_value_survives_a_round_trip():
    given = {
        "num_train_timesteps": 50,
        "beta_start": 2e-4,
        "beta_end": 0.03,
        "variance_type": "fixed_large",
        "clip_sample": False,
        "clip_sample_range": 2.0,
        "timestep_spacing": "trailing",
        "steps_offset": 1,
        "dynamic_thresholding_ratio": 0.9,
        "sample_max_value": 2.0,
    }
    theirs = DDPMScheduler(**given)
    ours = DDPMPaperScheduler.from_config(theirs.config)
    back = DDPMScheduler.from_config(ours.config)
    for key, value in given.items():
        assert ours.config[key] == value and back.config[key] == value, key


def test_a_pipeline_keeps_the_scheduler_it_is_given():
    """A DDPMScheduler handed in runs as itself (diffusers' float32 tables), not converted: the same sampler as the
    paper scheduler with diffusers' default fixed_small, to diffusers' float32 rounding."""
    unet = tiny_unet()
    theirs = DDPMScheduler()  # diffusers' default: fixed_small
    kept = DDPMPaperPipeline(unet=unet, scheduler=theirs)
    assert kept.scheduler is theirs
    direct = DDPMPaperPipeline(unet=unet, scheduler=DDPMPaperScheduler(variance_type="fixed_small"))
    for pipe in (kept, direct):
        pipe.set_progress_bar_config(disable=True)
    kwargs = {"batch_size": 2, "num_inference_steps": 10, "output_type": "np", "precision": "fp32"}
    a = kept(generator=torch.Generator().manual_seed(0), **kwargs).images
    b = direct(generator=torch.Generator().manual_seed(0), **kwargs).images
    assert np.abs(a - b).max() < 1e-4 and not np.array_equal(a, b)


def test_custom_timesteps_step_as_diffusers_does():
    timesteps = [999, 700, 400, 123, 50, 0]
    ours, theirs = DDPMPaperScheduler(variance_type="fixed_small"), DDPMScheduler(variance_type="fixed_small")
    theirs.alphas_cumprod = ours.alphas_cumprod.float()  # same ᾱ, so only the stepping is compared
    ours.set_timesteps(timesteps=timesteps)
    theirs.set_timesteps(timesteps=timesteps)
    assert ours.timesteps.tolist() == theirs.timesteps.tolist() == timesteps
    assert ours.custom_timesteps and ours.num_inference_steps == len(timesteps)
    assert [ours.previous_timestep(t) for t in timesteps] == [int(theirs.previous_timestep(t)) for t in timesteps]
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g) * 0.5
    for t in timesteps[:-1]:  # at t = 0 diffusers adds noise of its clamped 1e-20 variance, ours none
        a = ours.step(eps, t, x, generator=torch.Generator().manual_seed(t)).prev_sample
        b = theirs.step(eps, t, x, generator=torch.Generator().manual_seed(t)).prev_sample
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"timesteps": [10, 10, 3]}, "descending"),
        ({"timesteps": [3, 10]}, "descending"),
        ({"timesteps": [1000, 3]}, r"\[0, 1000\)"),
        ({"timesteps": [5, -1]}, r"\[0, 1000\)"),
        ({"timesteps": [5.5, 1]}, "integers"),
        ({"timesteps": [5, 1], "num_inference_steps": 2}, "exactly one"),
        ({}, "exactly one"),
    ],
)
def test_custom_timesteps_are_checked_as_diffusers_checks_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DDPMPaperScheduler().set_timesteps(**kwargs)


def test_a_one_step_chain():
    scheduler = DDPMPaperScheduler(num_train_timesteps=1)
    pipe = DDPMPaperPipeline(unet=tiny_unet(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(batch_size=2, num_inference_steps=1, output_type="pt", precision="fp32").images
    assert images.shape == (2, 3, 8, 8) and torch.isfinite(images).all()
    x, eps = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    out = scheduler.step(eps, 0, x, generator=torch.Generator().manual_seed(0))
    # x̂_0 = (x - sqrt(1 - ᾱ) ε) / sqrt(ᾱ) with ᾱ = 1 - β_start, clipped; no noise on the only step.
    abar = 1 - 1e-4
    expected = ((x - (1 - abar) ** 0.5 * eps) / abar**0.5).clamp(-1, 1)
    torch.testing.assert_close(out.prev_sample, expected)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"thresholding": True}, "thresholding=True: dynamic thresholding"),
        ({"rescale_betas_zero_snr": True}, "zero-terminal-SNR"),
        ({"variance_type": "learned_range"}, r"fixes σ_t²"),
        ({"prediction_type": "v_prediction"}, "predicts ε"),
        ({"beta_schedule": "squaredcos_cap_v2"}, "linear"),
        ({"num_train_timesteps": 10.5}, "num_train_timesteps"),
        ({"num_train_timesteps": 0}, "num_train_timesteps"),
        ({"clip_sample_range": 0.0}, "clip_sample_range"),
    ],
)
def test_options_the_paper_does_not_use_are_refused_with_the_reason(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DDPMPaperScheduler(**kwargs)
    if "num_train_timesteps" not in kwargs and "clip_sample_range" not in kwargs:
        with pytest.raises(ValueError, match=match):  # also when converting a diffusers config that asks for it
            DDPMPaperScheduler.from_config(DDPMScheduler(**kwargs).config)


def test_clip_sample_range_is_honoured_as_diffusers_honours_it():
    ours, theirs = (
        DDPMPaperScheduler(clip_sample_range=2.0),
        DDPMScheduler(variance_type="fixed_large", clip_sample_range=2.0),
    )
    theirs.alphas_cumprod = ours.alphas_cumprod  # float64 on both sides: only the clipping is compared
    x, eps = torch.randn(2, 3, 4, 4, dtype=torch.float64), 40 * torch.randn(2, 3, 4, 4, dtype=torch.float64)
    a = ours.step(eps, 3, x, generator=torch.Generator().manual_seed(0)).pred_original_sample
    b = theirs.step(eps, 3, x, generator=torch.Generator().manual_seed(0)).pred_original_sample
    assert a.abs().max() == 2.0 and (a.abs() > 1).any()  # ε pushed x̂_0 out of range; clipped at 2, not 1
    torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_log_variance_names_are_the_same_variances():
    for log_name, name in (("fixed_small_log", "fixed_small"), ("fixed_large_log", "fixed_large")):
        aliased = DDPMPaperScheduler(variance_type=log_name)
        assert aliased.config.variance_type == log_name  # kept for the round trip to diffusers
        assert torch.equal(aliased.model_log_variance, DDPMPaperScheduler(variance_type=name).model_log_variance)


def test_methods_take_diffusers_arguments():
    for name in ("step", "add_noise", "previous_timestep", "scale_model_input", "set_timesteps", "get_velocity"):
        theirs = list(inspect.signature(getattr(DDPMScheduler, name)).parameters)
        ours = list(inspect.signature(getattr(DDPMPaperScheduler, name)).parameters)
        assert ours[: len(theirs)] == theirs, name


def test_velocity_matches_diffusers():
    ours, theirs = DDPMPaperScheduler(), DDPMScheduler()
    theirs.alphas_cumprod = ours.alphas_cumprod  # float64 on both sides: only the formula is compared
    x, noise = torch.randn(3, 3, 4, 4, dtype=torch.float64), torch.randn(3, 3, 4, 4, dtype=torch.float64)
    t = torch.tensor([0, 500, 999])
    torch.testing.assert_close(ours.get_velocity(x, noise, t), theirs.get_velocity(x, noise, t), atol=1e-12, rtol=0)


def test_bad_timesteps_are_refused_where_they_enter():
    scheduler, x = DDPMPaperScheduler(), torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"\[0, 1000\).*-1"):  # would wrap around to t = 999
        scheduler.add_noise(x, x, torch.tensor([-1, 3]))
    with pytest.raises(ValueError, match="integers"):
        scheduler.add_noise(x, x, torch.tensor([1.5, 3.0]))
    with pytest.raises(ValueError, match="must be an integer"):
        scheduler.step(x, 2.5, x)
    with pytest.raises(ValueError, match="out_channels == in_channels"):
        scheduler.step(x[:, :1], 5, x)  # a 1-channel ε for 3-channel images would broadcast


def test_a_network_that_predicts_other_channels_is_refused():
    unet = tiny_unet()
    unet.register_to_config(out_channels=1)
    with pytest.raises(ValueError, match="maps 3 channels to 1"):
        DDPMPaperPipeline(unet=unet, scheduler=DDPMPaperScheduler())
