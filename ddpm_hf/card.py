"""The model card pushed with a checkpoint: the top-level `model_card.md` rendered with `huggingface_hub.ModelCard`.

Only measured numbers go into it: the metrics JSON that `examples/evaluate.py` writes becomes the card's
`model-index` (the Hub's evaluation results) and its Results table; without one the card says nothing was measured.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .identity import describe_sampler
from .metrics_format import TABLE, MetricKey

if TYPE_CHECKING:
    from .evaluation import EvaluationReport

MODEL_CARD_TEMPLATE = Path(__file__).with_name("model_card.md")  # a link to the repository's top-level model_card.md
CARD_TAGS = ["pytorch", "diffusers", "ddpm", "ddpm_hf", "unconditional-image-generation"]
TASK = "unconditional-image-generation"
NO_TRAINING_DETAILS = "Training configuration not recorded."
FEATURES = {"inception": "Inception-v3 (TF 2015-12-05)", "dinov2": "DINOv2", "clip": "CLIP"}


def _sampler(metrics: dict[str, Any], metric: MetricKey) -> str:
    """The sampler, its variance and step count that made a metric, in words (older reports: the run's, or none)."""
    record = (metrics.get("measurements") or {}).get(metric.key) or {}
    sampler = record.get("sampler") or metrics.get("sampler")
    steps = record.get("num_inference_steps") or (metrics.get("num_inference_steps") if metric.sampled else None)
    return describe_sampler(sampler, steps)


def _measurement(metrics: dict[str, Any], metric: MetricKey) -> tuple[dict[str, Any], int | None, str]:
    """The data a metric was measured against, on how many images, and with which features.

    evaluate.py records these per metric under "measurements"; JSONs written before it did (FID, IS and NLL only)
    hold one sample count and one reference for all.
    """
    record = (metrics.get("measurements") or {}).get(metric.key)
    if record is None:  # an older metrics.json
        data = (metrics.get(metric.data) or {}) if metric.data else {}
        count = (metrics if metric.sampled else data).get(metric.count)
        return data, count, metric.features or ""
    data = record.get("reference") or record.get("data") or {}
    return data, record.get(metric.count), record.get("features", "")


def _features_name(metrics: dict[str, Any], features: str) -> str:
    """How the card names a feature extractor: Inception's weights, or the DINOv2 checkpoint's name."""
    if features == "dinov2":
        model = ((metrics.get("extractors") or {}).get("dinov2") or {}).get("model")
        return f"DINOv2 ({dataset_id(model)})" if model else FEATURES["dinov2"]
    return FEATURES.get(features, features or "—")


def dataset_id(name: str | None) -> str | None:
    """A dataset name fit for card metadata: a local path (`../shared/data/cifar10`) becomes its folder name."""
    if not name:
        return None
    # Hub ids are "name" or "owner/name"; anything else (or anything on disk) is a path.
    is_path = os.path.exists(name) or name.startswith((".", "/", "~")) or name.count("/") > 1
    return Path(name).expanduser().resolve().name if is_path else name


def _metric_rows(metrics: dict[str, Any], dataset: str | None) -> list[dict[str, Any]]:
    """One row per measured metric: name, value, the data and image count it was measured on, its features, and
    its model-index entry."""
    rows = []
    for metric in TABLE:
        value = metrics.get("metrics", {}).get(metric.key)
        if value is None:
            continue
        data, count, features = _measurement(metrics, metric)
        data_name = dataset_id(data.get("dataset")) or dataset
        split = data.get("split")
        spread = metrics["metrics"].get(metric.spread) if metric.spread else None
        rows.append(
            {
                "name": metric.label,
                "value": f"{value:.2f}" + (f" ± {spread:.2f}" if spread is not None else ""),
                "data": " ".join(filter(None, [data_name, split and f"({split})"])) if metric.data else "—",
                "images": f"{count:,}" if count else "—",
                "features": _features_name(metrics, features),
                "sampler": _sampler(metrics, metric),
                "result": EvalResult(
                    task_type=TASK,
                    dataset_type=data_name,
                    dataset_name=data_name,
                    dataset_split=split,
                    metric_type=metric.index_type,
                    metric_name=metric.label,
                    metric_value=round(float(value), 6),
                )
                if data_name
                else None,
            }
        )
    return rows


def render_model_card(
    repo_id: str,
    *,
    dataset: str | None = None,
    training_details: str | None = None,
    results: str | None = None,
    metrics: EvaluationReport | dict[str, Any] | None = None,
    revision: str | None = None,
    license: str = "apache-2.0",
    samples: str | None = None,
    variance: str | None = None,
    source: str | None = None,
    paper_results: str | None = None,
) -> ModelCard:
    """The model card pushed with a checkpoint, rendered from `model_card.md` with `huggingface_hub.ModelCard`.

    Args:
        repo_id: the Hub repo the card describes (used in the usage snippets).
        dataset: the training dataset (Hub id, or a local path whose folder name is used).
        training_details: markdown describing the training configuration.
        results: extra markdown for the Results section.
        metrics: an `EvaluationReport` of `ddpm_hf.evaluation.evaluate` (or its metrics.json as a dict); its metrics
            become the model-index and a table.
        revision: the branch the card is pushed to, for the usage snippet.
        license: the SPDX id in the metadata.
        samples: the path, in the repo, of a sample grid pushed with the card (shown under Samples).
        variance: markdown on the scheduler's reverse variance where it is not the paper's (Analytic-DPM's, from
            `ddpm_hf.analytic.describe`), under "Reverse variance".
        source: markdown on where weights not trained here come from (a released checkpoint converted by
            `ddpm_hf.convert`), under "Source"; the card then introduces the network as converted.
        paper_results: markdown of what the paper reports for these weights, under "Reported in the paper", apart
            from the measured Results.
    """
    dataset = dataset_id(dataset)
    if hasattr(metrics, "to_dict"):  # an EvaluationReport (not imported here: the card needs no evaluation stack)
        metrics = metrics.to_dict()
    rows = _metric_rows(metrics or {}, dataset)
    eval_results = [row["result"] for row in rows if row["result"] is not None]
    card_data = ModelCardData(
        library_name="diffusers",
        license=license,
        tags=CARD_TAGS,
        pipeline_tag=TASK,
        datasets=[dataset] if dataset else None,
        model_name=repo_id.rsplit("/", 1)[-1],
        eval_results=eval_results or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(MODEL_CARD_TEMPLATE),
        model_name=card_data.model_name,
        repo_id=repo_id,
        revision=revision if revision not in (None, "main") else None,
        training_details=training_details,
        results=results,
        metric_rows=rows,
        evaluation=metrics or {},
        samples=samples,
        variance=variance,
        source=source,
        paper_results=paper_results,
    )


def card_section(card: ModelCard | str, heading: str) -> str | None:
    """The markdown under `## heading` in a rendered card, up to the next `## ` heading (None if absent)."""
    text = card.text if isinstance(card, ModelCard) else ModelCard(card).text
    match = re.search(rf"^## {re.escape(heading)}[ \t]*\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    return match.group(1).strip() if match else None


def rerender_card(card_path: str | Path, repo_id: str, **kwargs: Any) -> ModelCard:
    """A card for `repo_id` keeping the training details, dataset, reverse-variance note, source and the paper's
    figures of a saved card (if any)."""
    path = Path(card_path)
    if path.is_file():
        old = ModelCard.load(path)
        training = card_section(old, "Training")
        kwargs.setdefault("training_details", None if training == NO_TRAINING_DETAILS else training)
        kwargs.setdefault("dataset", (old.data.datasets or [None])[0])
        kwargs.setdefault("variance", card_section(old, "Reverse variance"))
        kwargs.setdefault("source", card_section(old, "Source"))
        kwargs.setdefault("paper_results", card_section(old, "Reported in the paper"))
    if (path.parent / "samples.png").is_file():  # a training folder's grid, pushed with it
        kwargs.setdefault("samples", "samples.png")
    return render_model_card(repo_id, **kwargs)
