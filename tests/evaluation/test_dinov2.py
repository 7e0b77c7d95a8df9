"""FD_DINOv2 end to end with a tiny randomly initialised DINOv2 saved to a folder (the real weights are not here)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_hf.card import render_model_card
from ddpm_hf.evaluation import DINOv2, DINOv2WeightsError, FIDStatistics, SampleStore, frechet_distance
from ddpm_hf.evaluation.dinov2 import dinov2_folder
from tiny import tiny_pipeline
from tiny_inception import TinyFeatures, save_tiny

transformers = pytest.importorskip("transformers")  # the eval and dev extras install it


def save_tiny_dinov2(folder, seed=0):
    """A 2-layer, 32-wide ViT with 14-pixel patches: DINOv2's code path at toy size, random weights."""
    torch.manual_seed(seed)
    config = transformers.Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=14, image_size=224
    )
    transformers.Dinov2Model(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def dinov2_dir(tmp_path_factory):
    return save_tiny_dinov2(tmp_path_factory.mktemp("dinov2"))


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_features_are_dgm_evals(dinov2_dir):
    """PIL bicubic to 224², ImageNet normalisation, the last layer's normalised class token."""
    model = DINOv2(str(dinov2_dir))
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 10, 10, 3), dtype=np.uint8)
    expected = []
    # Written out here, not read from our module: a mean in BGR order or a swapped std must fail this test.
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)  # R, G, B
    for image in rgb:
        x = np.asarray(Image.fromarray(image).resize((224, 224), Image.BICUBIC), dtype=np.float32) / 255.0
        expected.append(torch.from_numpy(((x - mean) / std).transpose(2, 0, 1)))
    with torch.no_grad():
        hidden = model.net(pixel_values=torch.stack(expected)).last_hidden_state
    features = model(torch.from_numpy(rgb).permute(0, 3, 1, 2))
    assert features.shape == (3, 32) and features.dtype == torch.float32
    torch.testing.assert_close(features, hidden[:, 0], rtol=1e-5, atol=1e-5)  # layernormed CLS token
    gray = torch.from_numpy(rgb[:, :, :, :1]).permute(0, 3, 1, 2)  # 1 channel: seen as the same gray in RGB
    torch.testing.assert_close(model(gray), model(gray.expand(-1, 3, -1, -1)))
    other = DINOv2(str(save_tiny_dinov2(dinov2_dir.parent / "other", seed=1)))
    assert len(model.weights_id) == 16 and model.weights_id != other.weights_id
    with pytest.raises(ValueError, match="no classifier"):
        model.extract(gray, probabilities=True)


def test_fd_dinov2_end_to_end(tmp_path, dinov2_dir, run_example, one_thread):
    """FD_DINOv2 asked for after an FID run: the stored samples get DINOv2 features, none is sampled again."""
    stats_path, inception_stats = tmp_path / "digits_dinov2.npz", tmp_path / "digits_inception.npz"
    argv = ["--dataset_name", "sklearn-digits", "--num_images", 24, "--batch_size", 12, "--num_workers", 0]
    run_example(
        "fid_stats",
        [
            *argv,
            "--extractor",
            "dinov2",
            "--dinov2_model",
            dinov2_dir,
            "--output",
            stats_path,
            "--output_dir",
            tmp_path / "fid_stats",
        ],
    )
    reference = FIDStatistics.load(stats_path)
    assert (reference.extractor, reference.num_images, reference.mu.shape) == ("dinov2", 24, (32,))
    weights = save_tiny(TinyFeatures(), tmp_path)
    run_example(
        "fid_stats", [*argv, "--weights", weights, "--output", inception_stats, "--output_dir", tmp_path / "fid_stats"]
    )

    tiny_pipeline().save_pretrained(tmp_path / "model")
    out = tmp_path / "eval"
    argv = ["--model", tmp_path / "model", "--num_samples", 6, "--batch_size", 3, "--num_inference_steps", 2]
    argv += ["--output_dir", out, "--device", "cpu", "--inception_weights", weights, "--reference", inception_stats]
    fid_only = run_example("evaluate", [*argv, "--metrics", "fid"])
    assert fid_only["samples_made"] == 6
    inception_files = {p: p.stat().st_mtime_ns for p in (out / "samples").rglob("inception-*.npy")}
    assert len(inception_files) == 2  # two shards of 3

    argv += ["--reference_dinov2", stats_path, "--dinov2_model", dinov2_dir]
    result = run_example("evaluate", [*argv, "--metrics", "fid", "fd_dinov2"])
    assert (result["samples_made"], result["samples_reused"]) == (0, 6)
    assert result["metrics"]["fid"] == fid_only["metrics"]["fid"]
    assert {p: p.stat().st_mtime_ns for p in (out / "samples").rglob("inception-*.npy")} == inception_files
    model = DINOv2(str(dinov2_dir))
    assert len(list((out / "samples").rglob(f"dinov2-{model.weights_id}.npy"))) == 2
    assert result["extractors"]["dinov2"] == {"model": str(dinov2_dir), "id": model.weights_id}
    assert result["measurements"]["fd_dinov2"]["features"] == "dinov2"
    assert result["measurements"]["fd_dinov2"]["num_samples"] == 6
    assert json.loads((out / "metrics.json").read_text())["metrics"] == result["metrics"]
    # The distance is that of the stored samples' DINOv2 features to the reference, computed directly.
    store = SampleStore(out / "samples", {})
    images = torch.cat(list(store.image_batches(6)))
    direct = frechet_distance(FIDStatistics.from_features(model(images).numpy(), extractor="dinov2"), reference)
    assert result["metrics"]["fd_dinov2"] == pytest.approx(direct, rel=1e-6) and direct > 0
    card = render_model_card("user/tiny", metrics=result)
    value = result["metrics"]["fd_dinov2"]
    assert f"| FD_DINOv2 | {value:.2f} | sklearn-digits (train) | 6 | DINOv2 ({dinov2_dir.name}) |" in card.text
    assert {r.metric_type for r in card.data.eval_results} == {"fid", "fd_dinov2"}


def test_fd_dinov2_refusals_come_before_sampling(tmp_path, dinov2_dir, run_example, monkeypatch):
    tiny_pipeline().save_pretrained(tmp_path / "model")
    out = tmp_path / "eval"
    base = ["--model", tmp_path / "model", "--num_samples", 4, "--num_inference_steps", 2, "--output_dir", out]
    base += ["--metrics", "fd_dinov2", "--device", "cpu"]
    # Inception statistics given as the DINOv2 reference.
    inception = tmp_path / "inception.npz"
    FIDStatistics(np.zeros(32), np.eye(32), 2, weights_id="0123456789abcdef").save(inception)  # no extractor
    with pytest.raises(SystemExit, match="holds inception statistics"):
        run_example("evaluate", [*base, "--reference_dinov2", inception, "--dinov2_model", dinov2_dir])
    # DINOv2 statistics of other weights.
    other = tmp_path / "other.npz"
    FIDStatistics(np.zeros(32), np.eye(32), 2, weights_id="0123456789abcdef", extractor="dinov2").save(other)
    with pytest.raises(SystemExit, match="other DINOv2 weights"):
        run_example("evaluate", [*base, "--reference_dinov2", other, "--dinov2_model", dinov2_dir])
    # The default weights, offline and not downloaded: say what to download, before anything is sampled.
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(SystemExit, match=r"facebook/dinov2-large.*hf download facebook/dinov2-large"):
        run_example("evaluate", [*base, "--reference_dinov2", other])
    with pytest.raises(DINOv2WeightsError, match="facebook/dinov2-large"):
        dinov2_folder(cache_dir=tmp_path / "empty_cache")
    with pytest.raises(DINOv2WeightsError, match=r"config\.json"):
        dinov2_folder(str(tmp_path))  # a folder without a checkpoint
    assert not out.exists()


@pytest.mark.parametrize("name", ["./no_such_dinov2", "/no/such/dinov2", "models/dinov2/large"])
def test_a_missing_local_folder_is_named_as_a_folder(name, monkeypatch):
    """It was reported as an invalid Hub id, with advice to download it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DINOv2WeightsError, match=f"no DINOv2 folder at {name}: the directory does not exist"):
        dinov2_folder(name)
