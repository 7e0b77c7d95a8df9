"""Fetching pipelines from the Hub and checking their files, for components diffusers does not know by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData, snapshot_download

# What a pipeline folder needs; never pickles (.bin/.pt), which `from_pretrained` refuses to read anyway.
PIPELINE_FILE_PATTERNS = [
    "model_index.json",
    "*/config.json",
    "*/scheduler_config.json",
    "*/*.safetensors",
    "*/*.safetensors.index.json",
    "README.md",
]
_SNAPSHOT_KWARGS = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision")


def download_pipeline(repo_id: str, **kwargs: Any) -> str:
    """Snapshot a pipeline repo into the Hub cache and return its local folder.

    diffusers' own `DiffusionPipeline.download` refuses a `model_index.json` that names a pip-installed
    library's module (ours: `ddpm_hf.unet`) before downloading anything; this fetches the same files with
    `huggingface_hub.snapshot_download`, which honours `revision`, `token`, `cache_dir`, `local_files_only`
    and `HF_HUB_OFFLINE` like any diffusers download.
    """
    snapshot_kwargs = {k: kwargs[k] for k in _SNAPSHOT_KWARGS if kwargs.get(k) is not None}
    return snapshot_download(repo_id, allow_patterns=PIPELINE_FILE_PATTERNS, **snapshot_kwargs)


MODEL_CARD_TEMPLATE = Path(__file__).with_name("model_card.md")  # a link to the repository's top-level model_card.md
CARD_TAGS = ["pytorch", "diffusers", "ddpm", "ddpm_hf", "unconditional-image-generation"]


def render_model_card(
    repo_id: str,
    *,
    dataset: str | None = None,
    training_details: str | None = None,
    results: str | None = None,
) -> ModelCard:
    """The model card pushed with a checkpoint, rendered from `model_card.md` with `huggingface_hub.ModelCard`."""
    card_data = ModelCardData(
        library_name="diffusers",
        license="apache-2.0",
        tags=CARD_TAGS,
        pipeline_tag="unconditional-image-generation",
        datasets=[dataset] if dataset else None,
        model_name=repo_id.rsplit("/", 1)[-1],
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(MODEL_CARD_TEMPLATE),
        model_name=card_data.model_name,
        repo_id=repo_id,
        training_details=training_details,
        results=results,
    )
