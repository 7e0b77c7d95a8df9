"""`DDPMPaperScheduler` where code written for diffusers' `DDPMScheduler` meets it: `add_noise` with one timestep
for a batch, `previous_timestep` of a tensor, the config `from_pretrained` gives back, and `from_config` conversions
to every supported scheduler, which diffusers must not warn about."""

import inspect
import logging
from contextlib import contextmanager

import diffusers
import pytest
import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

from ddpm_hf import DDPMPaperScheduler
from ddpm_hf.schedulers import SUPPORTED_SCHEDULERS
from tiny import tiny_pipeline

CONFIG = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "variance_type": "fixed_small"}


def test_add_noise_broadcasts_one_timestep_of_shape_1_over_the_batch():
    ours, theirs = DDPMPaperScheduler(**CONFIG), DDPMScheduler(**CONFIG)
    g = torch.Generator().manual_seed(0)
    x, noise = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([500])
    expected = theirs.add_noise(x, noise, t)  # diffusers broadcasts it
    got = ours.add_noise(x, noise, t)
    assert got.shape == x.shape and torch.allclose(got, expected, atol=1e-6)
    assert torch.equal(got, ours.add_noise(x, noise, t.repeat(4)))  # the same t for each image
    assert torch.equal(got, ours.add_noise(x, noise, torch.tensor(500)))
    with pytest.raises(ValueError, match=r"one per image \(4\) or one for all, got shape \(2,\)"):
        ours.add_noise(x, noise, torch.tensor([500, 400]))


def test_previous_timestep_of_a_tensor_is_a_tensor_as_in_diffusers():
    ours, theirs = DDPMPaperScheduler(**CONFIG), DDPMScheduler(**CONFIG)
    ours.set_timesteps(10)
    theirs.set_timesteps(10)
    for t in ours.timesteps:
        got, expected = ours.previous_timestep(t), theirs.previous_timestep(t)
        assert isinstance(got, torch.Tensor) and got.ndim == 0 and got.item() == expected.item()
        assert ours.previous_timestep(int(t)) == expected.item() and isinstance(ours.previous_timestep(int(t)), int)


def test_a_saved_and_loaded_config_is_the_constructed_one_as_in_diffusers(tmp_path):
    """diffusers records the keys left at their defaults (`_use_default_values`) and drops the record when saving:
    what `from_pretrained` gives back is the constructed config without it."""
    for cls in (DDPMScheduler, DDPMPaperScheduler):
        scheduler = cls(**CONFIG)
        scheduler.save_pretrained(tmp_path / cls.__name__)
        loaded = cls.from_pretrained(tmp_path / cls.__name__)
        constructed = dict(scheduler.config)
        assert "_use_default_values" in constructed
        del constructed["_use_default_values"]
        assert constructed == dict(loaded.config)


def test_only_our_own_keys_are_left_to_the_target_s_defaults():
    """A conversion drops the keys in `_use_default_values`, for the target's defaults: ours differ from diffusers'
    (variance_type fixed_large), so only Γ's keys, which no diffusers scheduler takes, are recorded there."""
    paper = DDPMPaperScheduler()
    assert paper.config["_use_default_values"] == ["analytic_gamma", "analytic_estimate"]
    assert DDPMScheduler.from_config(paper.config).config.variance_type == "fixed_large"
    assert DDPMPaperScheduler.from_config(DDPMScheduler().config).config.variance_type == "fixed_small"


@contextmanager
def diffusers_warnings():
    """The records diffusers' loggers emit inside the block (they do not propagate to the root logger)."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("diffusers")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def paper_schedulers(tmp_path) -> dict[str, DDPMPaperScheduler]:
    """Configs as a pipeline holds them: built (each variance), or saved and loaded (with Γ)."""
    gamma = [0.9 - 0.01 * t for t in range(20)]
    analytic = {"num_train_timesteps": 20, "variance_type": "analytic", "analytic_gamma": gamma}
    DDPMPaperScheduler(**analytic, analytic_estimate={"num_images": 2}).save_pretrained(tmp_path)
    return {
        "constructed": DDPMPaperScheduler(),
        "fixed_small": DDPMPaperScheduler(**CONFIG),
        "analytic": DDPMPaperScheduler(**analytic, analytic_estimate={"num_images": 2}),
        "loaded": DDPMPaperScheduler.from_pretrained(tmp_path),
    }


@pytest.mark.parametrize("name", [name for name in SUPPORTED_SCHEDULERS if name != "DDPMPaperScheduler"])
def test_a_swap_to_any_supported_scheduler_warns_of_nothing_and_converts_back(tmp_path, name):
    cls = getattr(diffusers, name)
    init_keys = set(inspect.signature(DDPMPaperScheduler.__init__).parameters) - {"self"}
    for source, paper in paper_schedulers(tmp_path).items():
        with diffusers_warnings() as records:
            other = cls.from_config(paper.config)
        assert [r.getMessage()[:160] for r in records] == [], source
        back = DDPMPaperScheduler.from_config(other.config)  # Γ included: the other config keeps what it ignores
        assert {k: back.config[k] for k in init_keys} == {k: paper.config[k] for k in init_keys}, source


def test_the_readme_swap_prints_no_warning():
    pipe = tiny_pipeline()
    with diffusers_warnings() as records:
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    assert records == []
