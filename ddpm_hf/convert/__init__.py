"""Converting the networks the paper's authors released into `DDPMPaperPipeline` folders.

Reads their TensorFlow checkpoints (without TensorFlow: `tf_checkpoint`) and pesser/pytorch_diffusion's PyTorch
state dicts of the same networks (`sources`), EMA weights by default; maps each layer onto diffusers' `UNet2DModel`
(`layout`), checks the network against the released model's (`identify`, `models`), and writes the pipeline with
the sampler the authors used and a model card naming the source (`writer`, `describe`).

    from ddpm_hf.convert import convert_checkpoint
    convert_checkpoint("diffusion_cifar10_model/model.ckpt-790000", "ddpm-cifar10-ema")
"""

from .layout import Architecture
from .models import RELEASED_MODELS, ReleasedModel
from .sources import ConversionError, open_source
from .tf_checkpoint import CheckpointFormatError, TFCheckpoint
from .writer import convert_checkpoint, convert_pipeline

__all__ = [
    "RELEASED_MODELS",
    "Architecture",
    "CheckpointFormatError",
    "ConversionError",
    "ReleasedModel",
    "TFCheckpoint",
    "convert_checkpoint",
    "convert_pipeline",
    "open_source",
]
