"""`convert_checkpoint`: a released checkpoint of the paper's authors to a `DDPMPaperPipeline` folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..card import render_model_card
from ..errors import OutputExistsError
from ..pipeline import DDPMPaperPipeline
from ..publish import publish
from ..scheduler import DDPMPaperScheduler
from ..unet import DDPMUNet2DModel, check_sample_size
from .describe import paper_section, source_section
from .identify import identify_model, infer_architecture
from .models import ReleasedModel
from .sources import open_source
from .state import unet_state_dict


def _refuse_existing(output_dir: Path) -> None:
    if output_dir.exists() or output_dir.is_symlink():
        raise OutputExistsError(f"{output_dir} already exists: a conversion never overwrites; name a new output folder")


def convert_pipeline(
    source: str | os.PathLike, *, model: str | ReleasedModel | None = None, ema: bool = True, verify: bool = True
) -> tuple[DDPMPaperPipeline, dict[str, str | None]]:
    """The pipeline of a released checkpoint, and its model card's arguments (`render_model_card`'s keywords).

    `source`: the authors' TF checkpoint (prefix such as `.../model.ckpt-790000`, or its folder) or a
    pytorch_diffusion state dict. `model`: a name of `RELEASED_MODELS` (or a `ReleasedModel`); by default the one
    the path names (`diffusion_<name>_model`), else the only one of the checkpoint's architecture. `ema`: the EMA
    weights (what the paper samples from) or the raw ones. `verify`: check the TF checkpoint's CRC-32C checksums.
    """
    weights = open_source(source, ema=ema, verify=verify)
    arch = infer_architecture(weights)
    released = identify_model(arch, weights.path, model)
    unet = DDPMUNet2DModel(**released.unet_config)
    check_sample_size(unet.config)
    expected = {name: tensor.shape for name, tensor in unet.state_dict().items()}
    unet.load_state_dict(unet_state_dict(weights, arch, expected), strict=True)
    scheduler = DDPMPaperScheduler(variance_type=released.variance_type)
    card = {
        "dataset": released.dataset,
        "training_details": released.training,
        "source": source_section(weights, released),
        "paper_results": paper_section(released, ema),
    }
    return DDPMPaperPipeline(unet=unet.eval(), scheduler=scheduler), card


def convert_checkpoint(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    model: str | ReleasedModel | None = None,
    ema: bool = True,
    verify: bool = True,
) -> Path:
    """Convert a released checkpoint (see `convert_pipeline`) into a new `DDPMPaperPipeline` folder `output_dir`
    with its model card (README.md); returns the folder. An existing `output_dir` is refused, never overwritten; the
    folder appears whole or not at all."""
    output_dir = Path(output_dir)
    _refuse_existing(output_dir)  # before the minutes a 114M-parameter checkpoint takes to read
    pipe, card = convert_pipeline(source, model=model, ema=ema, verify=verify)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staged = output_dir.with_name(f".{output_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(staged, ignore_errors=True)
    try:
        pipe.save_pretrained(staged)
        render_model_card(str(output_dir), **card).save(staged / "README.md")
        if not publish(staged, output_dir, replace=False):
            _refuse_existing(output_dir)  # another process made it meanwhile
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return output_dir
