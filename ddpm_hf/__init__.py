"""ddpm_hf: the DDPM paper (Ho, Jain, Abbeel 2020) as diffusers components."""

# diffusers records a plugin component in model_index.json as [its module, class name] and, when loading, looks up
# `ModelMixin`/`SchedulerMixin` in that module to pick the loader. Recording the public package (not the private
# module it is defined in) keeps saved folders loadable whatever the package's internal layout becomes.
from diffusers import ModelMixin, SchedulerMixin  # noqa: F401

from .pipeline import DDPMPaperPipeline
from .scheduler import DDPMPaperScheduler, DDPMPaperSchedulerOutput
from .unet import DDPMUNet2DModel

for _cls in (DDPMPaperPipeline, DDPMPaperScheduler, DDPMUNet2DModel):
    _cls.__module__ = __name__

__version__ = "0.2.0"
__all__ = ["DDPMPaperPipeline", "DDPMPaperScheduler", "DDPMPaperSchedulerOutput", "DDPMUNet2DModel"]
