"""Inception Score: exp(E_x KL(p(y|x) ‖ p(y))), reported as mean ± std over splits like the original code."""

from __future__ import annotations

import numpy as np
from scipy.special import rel_entr


def inception_score(probabilities: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Mean and standard deviation of the score over `splits` consecutive, equal parts of an [N, K] probability array.

    Parts are cut at i·N // splits as in improved-gan's `inception_score.py`; with `splits=1` this is the paper's
    released `classifier_score_from_logits` on softmax(logits).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or len(p) < splits or splits < 1:
        raise ValueError(f"need an [N, K] probability array with N >= splits >= 1, got {p.shape} and {splits} splits")
    scores = []
    for i in range(splits):
        part = p[i * len(p) // splits : (i + 1) * len(p) // splits]
        kl = rel_entr(part, part.mean(axis=0, keepdims=True)).sum(axis=1)  # 0·log 0 = 0 for empty classes
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))
