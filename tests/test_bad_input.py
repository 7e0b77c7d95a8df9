"""Bad input at the pipeline's doors gets a message that says what is wrong, not a wrong result or a raw traceback:
a network whose output is not finite, a local folder that does not exist."""

import numpy as np
import pytest
import torch

from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.pipeline import NonFiniteSampleError
from tiny import tiny_pipeline


def test_a_network_with_non_finite_output_does_not_sample_black_images():
    pipe = tiny_pipeline()
    with torch.no_grad():
        pipe.unet.conv_out.bias[0] = float("nan")  # one channel of every ε̂ is NaN
    with pytest.raises(NonFiniteSampleError, match="2 of 2 samples hold NaN"):
        pipe(batch_size=2, num_inference_steps=3, precision="fp32")
    with pytest.raises(NonFiniteSampleError):
        pipe(batch_size=1, num_inference_steps=3, output_type="np", precision="bf16")


@pytest.mark.parametrize("path", ["./runs/missing", "/nonexistent/run", "a/b/c"])
def test_a_missing_folder_is_reported_as_a_missing_folder(path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DDPMPaperPipeline.from_pretrained(path)


def test_a_name_that_is_neither_a_folder_nor_a_repo_says_both(hub_server):
    with pytest.raises(OSError, match=r"runs/missing is not a folder here \(no such directory\), and as a Hub repo"):
        DDPMPaperPipeline.from_pretrained("runs/missing")


def test_examples_report_a_missing_model_folder(run_example, tmp_path):
    missing = tmp_path / "no-such-run"
    with pytest.raises(FileNotFoundError, match=f"no pipeline folder at {missing}"):
        run_example("evaluate_nll", ["--model", missing, "--dataset_name", "sklearn-digits", "--num_images", 1])


def test_the_fid_cli_checks_statistics_before_computing_any_features(tmp_path, monkeypatch, capsys):
    import ddpm_hf.evaluation.features as features
    from ddpm_hf.evaluation import FIDStatistics
    from ddpm_hf.evaluation.fid import main as fid_main
    from tiny import write_images
    from tiny_inception import TinyFeatures, save_tiny

    weights = save_tiny(TinyFeatures(), tmp_path)
    folder = write_images(tmp_path / "samples", 0)
    other = FIDStatistics(np.zeros(8), np.eye(8), 10, weights_id="another-network")
    other.save(tmp_path / "other.npz")
    computed = []
    monkeypatch.setattr(features, "dataset_statistics", lambda *a, **k: computed.append(a) or pytest.fail("features"))
    for paths, message in (
        ([folder, tmp_path / "other.npz"], "computed with other Inception weights"),
        ([folder, tmp_path / "missing.npz"], "does not exist"),
    ):
        with pytest.raises(SystemExit):
            fid_main([*map(str, paths), "--weights", str(weights)])
        assert message in capsys.readouterr().err
    assert computed == []  # refused before extracting a single feature


def test_non_finite_statistics_are_refused_and_a_nan_model_stops_the_evaluation(tmp_path, run_example):
    from ddpm_hf.evaluation import FIDStatistics
    from tiny_inception import TinyFeatures, save_tiny

    with pytest.raises(ValueError, match="NaN or infinite"):
        FIDStatistics(np.array([0.0, np.nan]), np.eye(2), 5)
    weights = save_tiny(TinyFeatures(), tmp_path)
    FIDStatistics(np.zeros(8), np.eye(8), 10).save(tmp_path / "ref.npz")
    pipe = tiny_pipeline()
    with torch.no_grad():
        pipe.unet.conv_out.bias.fill_(float("nan"))
    pipe.save_pretrained(tmp_path / "model")
    argv = ["--model", tmp_path / "model", "--num_samples", 4, "--batch_size", 4, "--num_inference_steps", 2]
    argv += ["--reference", tmp_path / "ref.npz", "--inception_weights", weights, "--output_dir", tmp_path / "eval"]
    with pytest.raises(SystemExit, match="samples hold NaN or infinite values"):  # not a finite FID from black images
        run_example("evaluate", argv)
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_a_sample_size_the_network_cannot_halve_is_refused_when_built():
    """sample_size 7 through two down levels used to fail at the first step with "Sizes of tensors must match"."""
    from ddpm_hf import DDPMUNet2DModel
    from tiny import TINY_UNET

    with pytest.raises(ValueError, match=r"sample_size 7 .* multiple of 2 \(e\.g\. 6 or 8, not 7\)"):
        DDPMUNet2DModel.from_paper_config("cifar10", **{**TINY_UNET, "sample_size": 7})
    unet = DDPMUNet2DModel(**{**DDPMUNet2DModel.paper_config("cifar10", **TINY_UNET), "sample_size": (8, 12)})
    unet.register_to_config(sample_size=(8, 9))  # e.g. a hand-edited config.json
    with pytest.raises(ValueError, match=r"sample_size \(8, 9\) .* multiple of 2 \(e\.g\. 8 or 10, not 9\)"):
        DDPMPaperPipeline(unet=unet, scheduler=tiny_pipeline().scheduler)


def test_add_noise_refuses_integer_images_and_mismatched_timesteps():
    scheduler = tiny_pipeline().scheduler
    uint8 = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"the images are torch\.uint8: .* \[-1, 1\]"):
        scheduler.add_noise(uint8, torch.randn(2, 3, 8, 8), torch.tensor([10, 20]))
    x = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"one per image \(2\) or one for all, got shape \(3,\)"):
        scheduler.add_noise(x, torch.randn_like(x), torch.tensor([1, 2, 3]))
    assert scheduler.add_noise(x, torch.randn_like(x), torch.tensor(5)).shape == x.shape  # one t for all: fine


def test_step_refuses_a_generator_list_of_the_wrong_length():
    scheduler = tiny_pipeline().scheduler
    x = torch.zeros(2, 3, 8, 8)
    generators = [torch.Generator().manual_seed(i) for i in range(3)]
    with pytest.raises(ValueError, match="got 3 generators for 2 images"):
        scheduler.step(torch.zeros_like(x), int(scheduler.timesteps[0]), x, generator=generators)


def test_the_analyses_of_a_non_finite_network_raise_instead_of_showing_nan():
    """Interpolation gave black interpolants and the bound "nan bits/dim" (the app showed both as results)."""
    pipe = tiny_pipeline()
    with torch.no_grad():
        pipe.unet.conv_out.bias[0] = float("nan")
    image = torch.zeros(3, 8, 8)
    with pytest.raises(NonFiniteSampleError, match="3 of 3 interpolants hold NaN"):
        pipe.interpolate(image, image, t=5, num=3)
    with pytest.raises(NonFiniteSampleError, match="1 of 1 images' bounds hold NaN"):
        pipe.bits_per_dim(image[None], batch_size=250)
    with pytest.raises(NonFiniteSampleError, match="2 of 2 samples hold NaN"):
        pipe.progressive(2, every=500)
