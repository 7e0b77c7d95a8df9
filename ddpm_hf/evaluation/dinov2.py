"""DINOv2 features for FD_DINOv2 (Stein et al. 2023, "Exposing flaws of generative model evaluation metrics").

As their `dgm-eval` computes them: each image resized to 224×224 with PIL's bicubic filter (on the 8-bit image),
scaled to [0, 1], normalised with the ImageNet mean and standard deviation, and the feature is the class token of
the last layer after its layer norm (`Dinov2Model`'s `pooler_output`; 1024-d for ViT-L/14). The network is
`transformers`' `Dinov2Model`, from a Hub id (default `facebook/dinov2-large`, ViT-L/14) or a local folder, in
float32 with TF32 off. The weights are looked up before anything else runs, so that a missing download fails at
once, with what to download, rather than after hours of sampling.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DDPMError, InputError, MissingDependencyError
from ..hub import is_local_path
from ..identity import files_sha256
from .defaults import DEFAULT_DINOV2
from .inception import full_float32

INPUT_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_FILES = ["config.json", "*.safetensors", "*.safetensors.index.json"]


class EncoderWeightsError(DDPMError, FileNotFoundError):
    """A feature network's weights are neither a local folder nor in the Hub cache, and cannot be downloaded now."""


class DINOv2WeightsError(EncoderWeightsError):
    """The DINOv2 weights are neither a local folder nor in the Hub cache, and cannot be downloaded now."""


def encoder_folder(
    model: str,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
    *,
    what: str = "DINOv2",
    flag: str = "--dinov2_model",
    error: type[EncoderWeightsError] = DINOv2WeightsError,
) -> Path:
    """The local folder of a `transformers` checkpoint: `model` itself if it is a folder, else its Hub snapshot.

    Downloads what is missing unless offline (`local_files_only`, default: HF_HUB_OFFLINE); raises `error`,
    naming what to download, when the weights cannot be had (`what` names the network, `flag` the option).
    """
    if Path(model).is_dir():
        folder = Path(model)
    elif is_local_path(model):  # ./x, /x, a/b/c: a folder that is not there, never a Hub id to download
        raise error(f"no {what} folder at {model}: the directory does not exist")
    else:
        import huggingface_hub

        offline = huggingface_hub.constants.HF_HUB_OFFLINE if local_files_only is None else local_files_only
        try:
            folder = Path(
                huggingface_hub.snapshot_download(
                    model, revision=revision, cache_dir=cache_dir, allow_patterns=_FILES, local_files_only=offline
                )
            )
        except Exception as cause:  # offline and not cached, unreachable Hub, unknown repo...
            raise error(
                f"the {what} weights {model!r} are not available here ({type(cause).__name__}: {cause}). Download "
                f"them where the Hub is reachable, `hf download {model}` (into the Hugging Face cache, then copy "
                "the cache here or set HF_HOME), or pass a local folder holding config.json and model.safetensors "
                f"({flag} FOLDER)."
            ) from cause
    if not (folder / "config.json").is_file() or not list(folder.glob("*.safetensors")):
        raise error(f"{folder} is not a {what} checkpoint: it needs config.json and *.safetensors")
    return folder


def dinov2_folder(
    model: str = DEFAULT_DINOV2,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
) -> Path:
    """The local folder of a DINOv2 checkpoint (see `encoder_folder`); `DINOv2WeightsError` when it cannot be had."""
    return encoder_folder(model, revision, cache_dir, local_files_only)


class HubImageEncoder(torch.nn.Module):
    """A `transformers` image network giving features of uint8 NCHW images (1 or 3 channels): each image resized to
    `input_size`² with PIL's bicubic filter on the 8-bit image, scaled to [0, 1] and normalised with `mean`/`std`,
    then `embed`ded in float32 with TF32 off. Subclasses name the network class and what it outputs."""

    name = ""
    has_classifier = False
    network_class = ""  # the transformers class that loads the folder
    default_model = DEFAULT_DINOV2
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    what, flag, weights_error = "DINOv2", "--dinov2_model", DINOv2WeightsError

    def __init__(
        self,
        model: str | None = None,
        device: str | torch.device = "cpu",
        revision: str | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        """`model`: a Hub id or a local folder (default: the class's `default_model`)."""
        super().__init__()
        model = model or self.default_model
        try:
            import transformers
            from transformers.utils import logging as hf_logging
        except ImportError as error:
            raise MissingDependencyError(
                f"{self.what} features need transformers: pip install 'ddpm_hf[eval]'"
            ) from error
        self.model = model
        self.folder = encoder_folder(
            model, revision, cache_dir, what=self.what, flag=self.flag, error=self.weights_error
        )
        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # its loading bar would sit among the evaluation's one bar
        try:
            network = getattr(transformers, self.network_class)
            self.net = network.from_pretrained(self.folder).float().to(device).eval()
        finally:
            if shown:
                hf_logging.enable_progress_bar()
        self.register_buffer("pixel_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)
        self.to(device)

    @cached_property
    def weights_id(self) -> str:
        """sha256 of the weights files (first 16 hex digits): statistics from different weights never mix."""
        return files_sha256(sorted(self.folder.glob("*.safetensors")))[:16]

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def input_size(self) -> int:
        """The side the images are resized to: the network's own input size."""
        return int(self.net.config.image_size)

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The network's features of normalised float images."""
        raise NotImplementedError

    @staticmethod
    def resize(images: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
        """uint8 N×{1,3}×H×W images as uint8 N×3×size×size RGB, resized by PIL's bicubic filter as dgm-eval does."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise InputError(f"expected uint8 N×C×H×W images with 1 or 3 channels, got {images.dtype} {images.shape}")
        out = []
        for image in images.cpu().numpy():
            pil = Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)).convert("RGB")
            out.append(np.asarray(pil.resize((size, size), Image.BICUBIC)).transpose(2, 0, 1))
        return torch.from_numpy(np.stack(out))

    @torch.inference_mode()
    def extract(self, images: torch.Tensor, probabilities: bool = False) -> tuple[torch.Tensor, None]:
        """Features [N, D] (float32, on CPU) of uint8 NCHW images; these networks have no class probabilities."""
        if probabilities:
            raise InputError(f"{self.what} has no classifier: the Inception Score needs Inception weights with a head")
        x = self.resize(images, self.input_size).to(self.device, torch.float32) / 255.0
        x = (x - self.pixel_mean) / self.pixel_std
        with full_float32():
            features = self.embed(x)
        return features.float().cpu(), None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features [N, D] of uint8 N×C×H×W images."""
        return self.extract(images)[0]


class DINOv2(HubImageEncoder):
    """`transformers`' `Dinov2Model` giving FD_DINOv2 features: the last layer's normalised class token."""

    name = "dinov2"
    network_class = "Dinov2Model"
    input_size = INPUT_SIZE  # dgm-eval's 224, whatever size the checkpoint was trained at

    @property
    def dim(self) -> int:
        return int(self.net.config.hidden_size)

    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values=pixel_values).pooler_output
