"""The vocabulary of metrics.json, in one table: each key an evaluation writes under "metrics" and "measurements",
the metric asked for (`metrics=[...]`, `--metrics`) that writes it, how a model card labels it, what it is measured
on and the key of its spread.

`ddpm_hf.evaluation` writes its keys from this table and `ddpm_hf.card` reads them back with it, so a metric cannot
be written under a name the card does not know. The card sits below the evaluation and must not import it, hence
a root module of its own, importing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricKey:
    """One number of metrics.json and what it means.

    Attributes:
        key: its key under "metrics" (the value) and "measurements" (its image count, features, data, sampler).
        metric: the metric asked for that writes it; one metric may write several keys (precision_recall).
        label: how the model card names it.
        index_type: its metric type in the card's `model-index`.
        data: the report's record of the data it is measured against ("reference") or on ("nll_data"); None when
            it is measured on the samples alone. Reports written before "measurements" hold only these records.
        features: the feature extractor it is computed on ("inception", "dinov2", "clip"); None for a metric of
            the dataset's images rather than of samples (the bound).
        spread: the key of its companion spread (a standard deviation over splits or subsets, or the bound's
            standard error), when it has one.
    """

    key: str
    metric: str
    label: str
    index_type: str
    data: str | None
    features: str | None
    spread: str | None = None

    @property
    def sampled(self) -> bool:
        """Measured on samples (made with the sampler's steps), not on a dataset's images."""
        return self.features is not None

    @property
    def count(self) -> str:
        """The key its measurement's image count is under: samples, or the dataset's images."""
        return "num_samples" if self.sampled else "num_images"


FID = MetricKey("fid", "fid", "FID", "fid", "reference", "inception")
INCEPTION_SCORE = MetricKey(
    "inception_score", "is", "Inception Score", "inception_score", None, "inception", "inception_score_std"
)
PRECISION = MetricKey("precision", "precision_recall", "Precision (k = 3)", "precision", "reference", "inception")
RECALL = MetricKey("recall", "precision_recall", "Recall (k = 3)", "recall", "reference", "inception")
FD_DINOV2 = MetricKey("fd_dinov2", "fd_dinov2", "FD_DINOv2", "fd_dinov2", "reference", "dinov2")
KID = MetricKey("kid", "kid", "KID", "kid", "reference", "inception", "kid_std")
CMMD = MetricKey("cmmd", "cmmd", "CMMD", "cmmd", "reference", "clip")
NLL = MetricKey("nll_bits_per_dim", "nll", "NLL (bits/dim)", "nll", "nll_data", None, "nll_bits_per_dim_stderr")

TABLE: tuple[MetricKey, ...] = (FID, INCEPTION_SCORE, PRECISION, RECALL, FD_DINOV2, KID, CMMD, NLL)  # card order
METRIC_KEYS: dict[str, MetricKey] = {m.key: m for m in TABLE}
SPREAD_KEYS: frozenset[str] = frozenset(m.spread for m in TABLE if m.spread)
METRICS: tuple[str, ...] = tuple(dict.fromkeys(m.metric for m in TABLE))  # what may be asked for, in table order
