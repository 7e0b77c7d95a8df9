"""Every diffusers scheduler outside `SUPPORTED_SCHEDULERS` is refused by the pipeline with the reason, and so is a
variance the network does not predict; a check that listed only some of them would let the others sample noise.

The classes are found in the installed diffusers, not listed here, so a scheduler added by a later diffusers is
covered too.
"""

import inspect

import diffusers
import pytest
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, DPMSolverSinglestepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler
from ddpm_hf.schedulers import SUPPORTED_SCHEDULERS
from tiny import tiny_unet


def diffusers_schedulers() -> dict[str, type]:
    """Every SchedulerMixin subclass that diffusers exports (those whose optional packages are missing are absent)."""
    found = {}
    for module in (diffusers, diffusers.schedulers):
        for name in dir(module):
            try:
                obj = getattr(module, name)
            except Exception:  # a lazily imported name whose optional dependency is missing
                continue
            if inspect.isclass(obj) and issubclass(obj, SchedulerMixin) and obj is not SchedulerMixin:
                found[obj.__name__] = obj
    return found


SCHEDULERS = diffusers_schedulers()
OTHERS = sorted(name for name in SCHEDULERS if name not in SUPPORTED_SCHEDULERS)


def instance(cls: type) -> SchedulerMixin:
    """The scheduler built from the paper's config, as a user would swap it in; else with its own defaults; else,
    for a class whose constructor needs arguments of its own (a token id, class counts...), without running it: what
    is refused is its kind, which the refusal reads first."""
    for build in (lambda: cls.from_config(DDPMPaperScheduler().config), cls):
        try:
            return build()
        except Exception:
            continue
    return cls.__new__(cls)


def test_the_installed_diffusers_has_schedulers_outside_the_supported_ones():
    assert set(SUPPORTED_SCHEDULERS) - {"DDPMPaperScheduler"} <= set(SCHEDULERS)
    assert len(OTHERS) >= 20  # LCM, TCD, EDM, flow matching, consistency models, Wuerstchen, ...


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


@pytest.mark.parametrize("name", OTHERS)
def test_a_scheduler_outside_the_supported_ones_is_refused_with_its_reason(unet, name):
    scheduler = instance(SCHEDULERS[name])
    message = rf"^{name} cannot sample this pipeline: it .+\. Use one of: DDPMPaperScheduler, "
    with pytest.raises(ValueError, match=message):
        DDPMPaperPipeline(unet=unet, scheduler=scheduler)
    # Swapped in after construction: refused when sampling, before the network runs.
    pipe = DDPMPaperPipeline(unet=unet, scheduler=DDPMPaperScheduler(num_train_timesteps=20))
    pipe.set_progress_bar_config(disable=True)
    calls = []
    hook = unet.register_forward_hook(lambda *args: calls.append(1))
    try:
        pipe.scheduler = scheduler
        with pytest.raises(ValueError, match=message):
            pipe(1, num_inference_steps=2)
    finally:
        hook.remove()
    assert calls == []


@pytest.mark.parametrize("variance_type", ["learned", "learned_range"])
@pytest.mark.parametrize("cls", [DDPMScheduler, DPMSolverMultistepScheduler, DPMSolverSinglestepScheduler])
def test_a_learned_variance_is_refused(unet, cls, variance_type):
    """The network predicts ε only: a scheduler splitting a variance off its output would read half of ε as one.
    These are the supported schedulers that take a `variance_type`."""
    scheduler = cls.from_config({**DDPMPaperScheduler().config, "variance_type": variance_type})
    assert scheduler.config.variance_type == variance_type
    message = rf"variance_type='{variance_type}', which needs a network that also predicts its variance"
    with pytest.raises(ValueError, match=message):
        DDPMPaperPipeline(unet=unet, scheduler=scheduler)
    # The paper's scheduler refuses it itself, by name.
    with pytest.raises(ValueError, match=variance_type):
        DDPMPaperScheduler(variance_type=variance_type)
