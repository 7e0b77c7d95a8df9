"""ddpm_hf: the DDPM paper (Ho, Jain, Abbeel 2020) as diffusers components."""

# diffusers records a plugin component in model_index.json as [its module, class name] and, when loading, looks up
# `ModelMixin`/`SchedulerMixin` in that module to pick the loader. Recording the public package (not the private
# module it is defined in) keeps saved folders loadable whatever the package's internal layout becomes.
import diffusers as _diffusers
from diffusers import ModelMixin, SchedulerMixin  # noqa: F401

from .errors import DDPMError
from .pipeline import DDPMPaperPipeline
from .scheduler import DDPMPaperScheduler, DDPMPaperSchedulerOutput
from .unet import DDPMUNet2DModel

for _cls in (DDPMPaperPipeline, DDPMPaperScheduler, DDPMUNet2DModel):
    _cls.__module__ = __name__

# diffusers' `from_config` drops, without a word, the config keys of a source scheduler it knows by name (in its
# namespace) that the target does not take; knowing ours, `DDIMScheduler.from_config(pipe.scheduler.config)` drops
# `analytic_gamma` (1000 numbers) silently, as it drops `variance_type`, instead of printing it in a warning.
setattr(_diffusers, DDPMPaperScheduler.__name__, DDPMPaperScheduler)

__version__ = "0.5.0"
__all__ = ["DDPMError", "DDPMPaperPipeline", "DDPMPaperScheduler", "DDPMPaperSchedulerOutput", "DDPMUNet2DModel"]
