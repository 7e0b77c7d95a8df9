"""examples/analytic_variance.py: one command from a trained pipeline to a folder whose sampler and bound use
Analytic-DPM's variance; its estimate is the per-image Monte Carlo written out, resumes, and refuses other runs.
(Two processes against one: tests/evaluation/test_evaluation_sharded.py.)"""

import json
import shutil

import numpy as np
import pytest
import torch

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler
from ddpm_hf.analytic import eps_mean_squares
from ddpm_hf.card import card_section, rerender_card
from ddpm_hf.data import DIGITS, ImageDataset, load_image_dataset
from ddpm_hf.fastpath import eps_model
from ddpm_hf.pixels import scale_to_model
from tiny import train_tiny_digits

T = 50


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("analytic") / "model"
    train_tiny_digits(steps=60, num_train_timesteps=T).save_pretrained(folder)
    return folder


def argv(model, out, *extra):
    return ["--model", model, "--dataset_name", DIGITS, "--output_dir", out, "--device", "cpu", "--seed", 5,
            "--num_images", 6, "--batch_size", 64, "--shard_size", 4, "--grid_size", 4, "--grid_steps", 10,
            *extra]  # fmt: skip


def test_one_command_writes_a_pipeline_that_samples_and_bounds_with_it(model, tmp_path, run_example):
    out = tmp_path / "analytic"
    estimate = run_example("analytic_variance", argv(model, out))
    assert estimate.timesteps == list(range(T)) and estimate.num_images == 6

    # The estimate is the mean of each training image's ‖ε_θ‖²/d, image i's noise seeded seed + i.
    pipe = DDPMPaperPipeline.from_pretrained(model)
    ds, column = load_image_dataset(DIGITS, split="train")
    images = ImageDataset(ds, column, 8, 1)
    timesteps = torch.arange(T)
    with eps_model(pipe.unet, "fp32", device="cpu") as eps:
        squares = [
            eps_mean_squares(
                eps, pipe.scheduler, scale_to_model(images[i][None]), timesteps, torch.Generator().manual_seed(5 + i),
                64, progress=False,
            )[0][0].numpy()
            for i in range(6)
        ]  # fmt: skip
    np.testing.assert_allclose(estimate.gamma, np.mean(squares, axis=0), rtol=1e-5)
    np.testing.assert_allclose(estimate.stderr, np.std(squares, axis=0, ddof=1) / np.sqrt(6), rtol=1e-4)

    loaded = DDPMPaperPipeline.from_pretrained(out)
    scheduler = loaded.scheduler
    assert isinstance(scheduler, DDPMPaperScheduler) and scheduler.config.variance_type == "analytic"
    np.testing.assert_allclose(scheduler.gamma.numpy(), estimate.gamma, rtol=1e-12)
    record = scheduler.config.analytic_estimate
    assert (record["num_images"], record["seed"], record["split"], record["dataset"]) == (6, 5, "train", DIGITS)
    assert record["model_weights_sha256"] == estimate.source["model_weights_sha256"]
    assert torch.equal(loaded.unet.state_dict()["conv_in.weight"], pipe.unet.state_dict()["conv_in.weight"])
    for steps in (T, 10, 3):
        sample = loaded(2, generator=torch.Generator().manual_seed(0), num_inference_steps=steps, output_type="np")
        assert np.isfinite(sample.images).all()
    bound = loaded.bits_per_dim(images[0][None], generator=torch.Generator().manual_seed(0), num_inference_steps=10)
    assert bound.terms.shape == (1, 10)

    gamma_json = json.loads((out / "gamma.json").read_text())
    assert gamma_json["gamma"] == estimate.gamma.tolist() and len(gamma_json["eps_mse"]) == T
    card = (out / "README.md").read_text()
    assert "## Reverse variance" in card and "from 6 images of sklearn-digits (train)" in card
    assert "![samples of this model](samples.png)" in card and (out / "samples.png").is_file()
    assert 'variance_type="fixed_large"' in card  # the vanilla-diffusers snippet asks for a variance it has
    pushed = rerender_card(out / "README.md", "you/digits-analytic").text  # what push_to_hub.py renders
    assert card_section(pushed, "Reverse variance") == card_section(card, "Reverse variance")
    assert (out / "gamma.png").stat().st_size > 10_000


def test_resumes_and_refuses_another_run(model, tmp_path, run_example):
    out = tmp_path / "analytic"
    first = run_example("analytic_variance", argv(model, out, "--grid_size", 0))
    shards = out / "gamma"
    kept = {p.name: p.stat().st_mtime_ns for p in shards.iterdir() if p.name[0].isdigit()}
    assert sorted(kept) == ["00000000-00000004", "00000004-00000006"]
    more = run_example("analytic_variance", argv(model, out, "--grid_size", 0, "--num_images", 8))
    again = {p.name: p.stat().st_mtime_ns for p in shards.iterdir() if p.name[0].isdigit()}
    assert again.items() >= kept.items() and "00000006-00000008" in again  # only the new images were measured
    fresh = run_example("analytic_variance", argv(model, tmp_path / "fresh", "--grid_size", 0, "--num_images", 8))
    np.testing.assert_array_equal(more.gamma, fresh.gamma)
    assert not np.array_equal(more.gamma, first.gamma)
    with pytest.raises(SystemExit, match="seed: 5 there, 6 now"):
        run_example("analytic_variance", [*argv(model, out, "--grid_size", 0), "--seed", 6])


def test_step_counts_only_and_bad_settings(model, tmp_path, run_example):
    out = tmp_path / "partial"
    estimate = run_example("analytic_variance", argv(model, out, "--num_inference_steps", 10, "--grid_size", 2))
    assert len(estimate.timesteps) == 10
    pipe = DDPMPaperPipeline.from_pretrained(out)
    pipe(1, num_inference_steps=10)
    with pytest.raises(ValueError, match="where it was not estimated"):
        pipe(1, num_inference_steps=20)
    with pytest.raises(SystemExit, match=r"from 2 .* to the 1500 images of the train split"):
        run_example("analytic_variance", [*argv(model, tmp_path / "x"), "--num_images", 5000])
    with pytest.raises(SystemExit, match="from 2"):
        run_example("analytic_variance", [*argv(model, tmp_path / "x"), "--num_images", 1])


def test_the_bound_of_the_analytic_folder_and_its_store(model, tmp_path, run_example):
    """evaluate_nll.py bounds with the folder's variance and respaced chain; a store made with another variance of the
    same weights is refused, not mixed in (the weights hash alone could not tell them apart)."""
    out = tmp_path / "analytic"
    run_example("analytic_variance", argv(model, out, "--grid_size", 0))
    nll = [
        "--dataset_name",
        DIGITS,
        "--num_images",
        3,
        "--batch_size",
        64,
        "--device",
        "cpu",
        "--output_dir",
        tmp_path / "n",
    ]
    fixed = run_example("evaluate_nll", ["--model", model, *nll, "--num_inference_steps", 10])
    assert (fixed["variance_type"], fixed["num_inference_steps"], fixed["num_timesteps"]) == ("fixed_large", 10, 10)
    with pytest.raises(SystemExit, match="scheduler"):
        run_example("evaluate_nll", ["--model", out, *nll, "--num_inference_steps", 10])
    nll[-1] = tmp_path / "a"
    analytic = run_example("evaluate_nll", ["--model", out, *nll, "--num_inference_steps", 10])
    assert analytic["variance_type"] == "analytic" and analytic["bpd"] != fixed["bpd"]
    pipe = DDPMPaperPipeline.from_pretrained(out)
    test, column = load_image_dataset(DIGITS, split="test")
    images = ImageDataset(test, column, 8, 1)
    totals = [
        pipe.bits_per_dim(images[i][None], generator=torch.Generator().manual_seed(i), batch_size=64,
                          num_inference_steps=10).total.item()
        for i in range(3)
    ]  # fmt: skip
    assert analytic["bpd"] == pytest.approx(np.mean(totals), rel=1e-9)


def test_the_source_folder_is_never_the_output(model, tmp_path, run_example):
    """--output_dir equal to --model converted the source pipeline in place and deleted its samples.png."""
    source = tmp_path / "source"
    shutil.copytree(model, source)
    (source / "samples.png").write_bytes(b"\x89PNG grid")
    before = {p: p.read_bytes() for p in source.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit, match="is the source pipeline's folder"):
        run_example("analytic_variance", argv(source, source, "--grid_size", 0))
    with pytest.raises(SystemExit, match="holds a pipeline that no Γ estimate wrote"):
        run_example("analytic_variance", argv(model, source, "--grid_size", 0))
    assert {p: p.read_bytes() for p in source.rglob("*") if p.is_file()} == before
