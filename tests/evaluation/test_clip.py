"""CLIP embeddings and CMMD (Jayasumana et al. 2024) with a tiny randomly initialised CLIP saved to a folder (the
real weights are not here): the embedding against an independent computation, the MMD against its definition, and
the metric end to end."""

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_hf.card import render_model_card
from ddpm_hf.evaluation import EvaluationError, evaluate
from ddpm_hf.evaluation.clip import CLIP, cmmd
from tiny import tiny_pipeline

transformers = pytest.importorskip("transformers")  # the eval and dev extras install it


def save_tiny_clip(folder, seed=0):
    """A 2-layer, 32-wide CLIP vision tower with a 16-d projection, 28-pixel inputs: CLIP's code path at toy size."""
    torch.manual_seed(seed)
    config = transformers.CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=28,
        patch_size=14, projection_dim=16,
    )  # fmt: skip
    transformers.CLIPVisionModelWithProjection(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip"))


def test_embeddings_are_clips_unit_image_embeds(clip_dir):
    model = CLIP(str(clip_dir))
    rgb = np.random.default_rng(0).integers(0, 256, (3, 10, 12, 3), dtype=np.uint8)
    # Written out here: CLIP's mean and std (R, G, B), bicubic resize to the network's input size, no crop.
    mean = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
    std = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
    pixels = []
    for image in rgb:
        x = np.asarray(Image.fromarray(image).resize((28, 28), Image.BICUBIC), dtype=np.float32) / 255.0
        pixels.append(torch.from_numpy(((x - mean) / std).transpose(2, 0, 1)))
    with torch.no_grad():
        embeds = model.net(pixel_values=torch.stack(pixels)).image_embeds
    expected = embeds / embeds.norm(dim=-1, keepdim=True)
    features = model(torch.from_numpy(rgb).permute(0, 3, 1, 2))
    assert features.shape == (3, 16) and model.dim == 16
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(3))


def test_cmmd_is_its_definition():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 4)), rng.normal(1.0, 2.0, size=(5, 4))
    k = lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * 10.0**2))  # noqa: E731
    mean = lambda p, q: np.mean([k(a, b) for a in p for b in q])  # noqa: E731  (all pairs, diagonal included)
    assert cmmd(x, y) == pytest.approx(1000 * (mean(x, x) + mean(y, y) - 2 * mean(x, y)), rel=1e-10)
    assert cmmd(x, x) == pytest.approx(0.0, abs=1e-12) and cmmd(x, y) > 0
    assert cmmd(x, y) == pytest.approx(cmmd(y, x), rel=1e-12)


def test_cmmd_end_to_end(clip_dir, tmp_path, run_example):
    argv = ["--dataset_name", "sklearn-digits", "--num_images", 12, "--batch_size", 6, "--num_workers", 0]
    argv += ["--extractor", "clip", "--clip_model", clip_dir, "--save_features", "--output", tmp_path / "clip.npz"]
    argv += ["--output_dir", tmp_path / "fid_stats"]
    run_example("fid_stats", argv)
    pipe = tiny_pipeline()
    common = {"num_samples": 4, "batch_size": 2, "num_inference_steps": 2, "grid_size": 0, "clip_model": str(clip_dir)}
    report = evaluate(
        pipe, metrics=["cmmd"], reference_clip=str(tmp_path / "clip.npz"), output_dir=tmp_path / "eval", **common
    )
    store = tmp_path / "eval" / "samples"
    (name,) = {p.stem for p in store.glob("*/*.npy")}
    stored = np.concatenate([np.load(p) for p in sorted(store.glob(f"*/{name}.npy"))])
    assert stored.shape == (4, 16) and name.startswith("clip-")
    assert report.metrics["cmmd"] == cmmd(stored, np.load(tmp_path / "clip.features.npy"))
    assert report.measurements["cmmd"]["features"] == "clip" and report.record["extractors"]["clip"]["model"]
    assert f"| CMMD | {report.metrics['cmmd']:.2f} |" in render_model_card("user/tiny", metrics=report).text
    with pytest.raises(EvaluationError, match="cmmd needs the reference's CLIP embeddings"):
        evaluate(pipe, metrics=["cmmd"], output_dir=tmp_path / "refused", **common)
    with pytest.raises(EvaluationError, match="no CLIP folder at"):
        evaluate(
            pipe, metrics=["cmmd"], reference_clip=str(tmp_path / "clip.npz"), output_dir=tmp_path / "refused",
            **{**common, "clip_model": str(tmp_path / "missing")},
        )  # fmt: skip
    assert not (tmp_path / "refused").exists()  # both before any sampling
