"""What a converted pipeline's model card says of its source: the checkpoint, its files' hashes, which weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .models import ReleasedModel
from .sources import EMA_SUFFIX, SourceWeights, TFWeights

RELEASE_URL = "https://www.dropbox.com/sh/pm6tn31da21yrx4/AABWKZnBzIROmDjGxpB6vn6Ja"  # the authors' README's link
PORT_URL = "https://heibox.uni-heidelberg.de/d/01207c3f6b8441779abf/"  # pytorch_diffusion's README's link
VARIANCES = {"fixed_large": "σ_t² = β_t (`fixed_large`)", "fixed_small": "σ_t² = β̃_t (`fixed_small`)"}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_section(weights: SourceWeights, model: ReleasedModel) -> str:
    """Markdown: the released model, the files converted with their sha256, which weights, and the sampler."""
    if not weights.ema:
        which = "raw (not EMA): the trained weights themselves; the paper samples from the EMA ones"
    elif isinstance(weights, TFWeights):
        which = f"EMA: the `{EMA_SUFFIX.strip('/')}` shadow variables, which the paper samples from"
    else:
        which = "EMA (pytorch_diffusion's `ema_` file), which the paper samples from"
    files = "<br>".join(f"`{path.name}` (sha256 `{sha256(path)}`)" for path in weights.files)
    rows = [
        ("model", f"{model.title}, the authors' `{model.folder}`"),
        ("format", weights.format),
        ("files", files),
        ("weights", which),
        ("training step", f"{weights.step:,}" if weights.step is not None else "not recorded"),
        ("sampler", f"{VARIANCES.get(model.variance_type, model.variance_type)}, as the authors sampled this model"),
    ]
    table = "| | |\n|---|---|\n" + "\n".join(f"| {key} | {value} |" for key, value in rows)
    origin = (
        f"the checkpoint the authors released ([download]({RELEASE_URL}))"
        if isinstance(weights, TFWeights)
        else f"pytorch_diffusion's port of the checkpoint the authors released ([download]({PORT_URL}))"
    )
    return f"Converted with `ddpm_hf.convert` (`examples/convert_checkpoint.py`) from {origin}:\n\n{table}"


def paper_section(model: ReleasedModel, ema: bool) -> str:
    """Markdown: the paper's figures for the model, said to be the paper's and not measured on these weights."""
    note = "" if ema else " These are the raw weights, for which the paper reports nothing."
    return f"{model.paper_results}{note} Not measured on this conversion: see Results for what was."
