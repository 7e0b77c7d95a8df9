"""TF1's `resize_bilinear(align_corners=False)` written out from its definition, without ddpm_hf: the reference
that both `evaluation/test_fid_inception_score.py` and `data/make_inception_reference.py` compare our preprocessing
against."""

import numpy as np


def tf1_resize_bilinear(channel: np.ndarray, size: int) -> np.ndarray:
    """TF1 resize_bilinear of one H×W channel to size×size: output j samples input j·in/out, clamped (float64)."""

    def taps(n_in: int):
        src = np.arange(size) * (n_in / size)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo

    (y0, y1, fy), (x0, x1, fx) = taps(channel.shape[0]), taps(channel.shape[1])
    top = channel[y0][:, x0] * (1 - fx) + channel[y0][:, x1] * fx
    bottom = channel[y1][:, x0] * (1 - fx) + channel[y1][:, x1] * fx
    return top * (1 - fy[:, None]) + bottom * fy[:, None]
