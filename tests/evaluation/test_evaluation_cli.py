"""`python -m ddpm_hf.evaluation.fid`, `examples/fid_stats.py` and `examples/evaluate.py`, end to end on a CPU.

A tiny TorchScript stands in for Inception (tests/support/tiny_inception.py) so that these run in seconds.
"""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_hf.card import render_model_card
from ddpm_hf.evaluation import FIDStatistics, InceptionV3, frechet_distance, image_folder, statistics_of
from ddpm_hf.evaluation.fid import main as fid_main
from tiny import tiny_pipeline, write_images
from tiny_inception import TinyFeatures, TinyWithHead, save_tiny


def test_fid_cli_between_folders_and_statistics(tmp_path, capsys):
    weights = save_tiny(TinyFeatures(), tmp_path)
    a, b = write_images(tmp_path / "a", 0), write_images(tmp_path / "b", 1)
    fid = fid_main([str(a), str(b), "--weights", str(weights), "--batch_size", "4", "--device", "cpu"])
    assert f"FID: {fid:.6f}" in capsys.readouterr().out
    model = InceptionV3(weights)
    assert len(image_folder(a)) == 6
    stats_a = statistics_of(a, model, batch_size=6)
    assert fid == pytest.approx(frechet_distance(stats_a, statistics_of(b, model)), rel=1e-9) and fid > 0
    stats_a.save(tmp_path / "a.npz")
    assert abs(fid_main([str(a), str(tmp_path / "a.npz"), "--weights", str(weights)])) < 1e-6  # a set vs itself
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        fid_main([str(a), str(tmp_path / "empty"), "--weights", str(weights)])
    assert "no images" in capsys.readouterr().err
    # Images of two sizes were all resized to the first sorted file's size, with no word: refused unless asked.
    mixed = write_images(tmp_path / "mixed", 2, n=2, size=8)
    write_images(mixed / "big", 3, n=1, size=12)
    with pytest.raises(SystemExit):
        fid_main([str(mixed), str(b), "--weights", str(weights)])
    assert "holds images of 2 sizes (8×8: " in capsys.readouterr().err
    assert fid_main([str(mixed), str(b), "--weights", str(weights), "--resize"]) > 0


def test_statistics_that_are_not_a_covariance_are_refused(tmp_path):
    """A covariance of −I gave a finite FID."""
    good = FIDStatistics(np.zeros(3), np.diag([2.0, 1.0, 0.0]), 5)  # singular is fine: PSD
    good.save(tmp_path / "good.npz")
    assert FIDStatistics.load(tmp_path / "good.npz").num_images == 5
    cases = {
        "negative": (np.zeros(3), -np.eye(3), "not positive semi-definite (smallest eigenvalue -1"),
        "asymmetric": (np.zeros(3), np.array([[1.0, 0.5, 0], [0, 1, 0], [0, 0, 1]]), "not symmetric"),
        "nan": (np.array([0.0, np.nan, 0.0]), np.eye(3), "NaN or infinite"),
        "shapes": (np.zeros(3), np.eye(4), "they must be [D] and [D, D]"),
    }
    for name, (mu, sigma, message) in cases.items():
        np.savez(tmp_path / f"{name}.npz", mu=mu, sigma=sigma)
        with pytest.raises(ValueError, match=re.escape(f"{name}.npz does not hold valid FID statistics")) as error:
            FIDStatistics.load(tmp_path / f"{name}.npz")
        assert message in str(error.value)


def test_fid_stats_then_evaluate_writes_metrics_and_grid(tmp_path, run_example, capsys):
    weights = save_tiny(TinyWithHead(), tmp_path)
    stats_path = tmp_path / "digits.npz"
    argv = ["--dataset_name", "sklearn-digits", "--num_images", 24, "--batch_size", 12, "--num_workers", 0]
    run_example(
        "fid_stats", [*argv, "--weights", weights, "--output", stats_path, "--output_dir", tmp_path / "fid_stats"]
    )
    stats = FIDStatistics.load(stats_path)
    assert (stats.num_images, stats.dataset, stats.split) == (24, "sklearn-digits", "train")

    tiny_pipeline().save_pretrained(tmp_path / "model")
    out = tmp_path / "eval"
    argv = ["--model", tmp_path / "model", "--num_samples", 10, "--batch_size", 4, "--num_inference_steps", 2]
    argv += ["--reference", stats_path, "--inception_weights", weights, "--metrics", "fid", "is", "--is_splits", 2]
    run_example("evaluate", [*argv, "--output_dir", out, "--grid_size", 6])
    result = json.loads((out / "metrics.json").read_text())
    assert result["metrics"]["fid"] > 0 and result["metrics"]["inception_score"] >= 1
    assert "inception_score_std" in result["metrics"]
    assert (result["num_samples"], result["num_inference_steps"], result["seed"]) == (10, 2, 0)
    assert result["model_revision"] is None and len(result["model_weights_sha256"]) == 64
    assert result["reference"]["dataset"] == "sklearn-digits" and result["wall_time_s"]["total"] > 0
    assert Image.open(out / "samples.png").size == (3 * 8, 2 * 8)  # 6 samples of 8×8 in a 2×3 grid
    # The sample store is a folder of PNGs that the FID command line reads as it is; pointed at evaluate.py's
    # output folder it reads the store too, not the grid samples.png beside it (which it used to count as a sample).
    for folder in (out / "samples", out):
        assert fid_main([str(folder), str(stats_path), "--weights", str(weights)]) == pytest.approx(
            result["metrics"]["fid"], rel=1e-6
        )
    assert len(image_folder(out)) == 10

    # A truncated features file and a hand-copied one with too few rows were read as they were (numpy's "mmap
    # length" error, or an FID of the wrong rows beside the full count): each damaged shard is named, set aside and
    # made again, to the same FID.
    first, second = sorted(p for p in (out / "samples").iterdir() if p.is_dir() and "-" in p.name)[:2]
    features = sorted(first.glob("*.npy"))[0]
    features.write_bytes(features.read_bytes()[:-40])
    copied = sorted(second.glob("*.npy"))[0]
    np.save(copied, np.load(copied)[:2])
    capsys.readouterr()
    again = run_example("evaluate", [*argv, "--output_dir", out, "--grid_size", 6])
    warned = capsys.readouterr().err
    assert (
        f"{features} is " in warned and "truncated or altered" in warned and "holds 2 rows for the 4 images" in warned
    )
    assert again["metrics"]["fid"] == result["metrics"]["fid"] and again["samples_made"] == 8
    assert sorted(p.name.split(".")[0] for p in (out / "samples.damaged").iterdir()) == [first.name, second.name]
    # The model card carries each metric with its image count and feature extractor.
    card = render_model_card("user/tiny", metrics=result).text
    inception = "Inception-v3 (TF 2015-12-05)"
    assert f"| FID | {result['metrics']['fid']:.2f} | sklearn-digits (train) | 10 | {inception} |" in card
    score = result["metrics"]["inception_score"]
    assert re.search(rf"\| Inception Score \| {score:.2f} ± [\d.]+ \| — \| 10 \| {re.escape(inception)} \|", card)

    # The samples are those of the pipeline with one generator per image, whatever the batch size.
    pipe = tiny_pipeline()
    images = pipe(batch_size=1, generator=[torch.Generator().manual_seed(1)], num_inference_steps=2).images[0]
    grid = np.asarray(Image.open(out / "samples.png"))
    assert np.array_equal(grid[:8, 8:16], np.asarray(images))


def test_evaluate_refuses_what_it_cannot_measure(tmp_path, run_example):
    tiny_pipeline().save_pretrained(tmp_path / "model")
    base = ["--model", tmp_path / "model", "--num_samples", 2, "--output_dir", tmp_path / "eval"]
    features_only = save_tiny(TinyFeatures(), tmp_path)
    with pytest.raises(SystemExit, match="no classifier head"):
        run_example("evaluate", [*base, "--metrics", "is", "--is_splits", 1, "--inception_weights", features_only])
    other = tmp_path / "other.npz"
    FIDStatistics(np.zeros(16), np.eye(16), 2, weights_id="0123456789abcdef").save(other)
    with pytest.raises(SystemExit, match="other Inception weights"):  # before any sampling
        run_example("evaluate", [*base, "--reference", other, "--inception_weights", features_only])
    with pytest.raises(SystemExit):  # argparse: FID needs reference statistics
        run_example("evaluate", [*base, "--metrics", "fid"])
    with pytest.raises(SystemExit):  # a negative grid was accepted, and failed after all the sampling
        run_example("evaluate", [*base, "--metrics", "nll", "--nll_dataset_name", "sklearn-digits", "--grid_size", -5])
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_evaluate_nll_is_the_pipelines_bound(tmp_path, run_example):
    from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler
    from ddpm_hf.data import ImageDataset, load_image_dataset
    from tiny import tiny_unet

    def short_chain():  # T = 20: the plumbing is the point here; the bound's math is tested in test_likelihood.py
        pipe = DDPMPaperPipeline(unet=tiny_unet(), scheduler=DDPMPaperScheduler(num_train_timesteps=20))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    short_chain().save_pretrained(tmp_path / "model")
    argv = ["--model", tmp_path / "model", "--metrics", "nll", "--nll_dataset_name", "sklearn-digits"]
    argv += ["--nll_num_images", 3, "--nll_batch_size", 1000, "--output_dir", tmp_path / "eval", "--num_samples", 1]
    argv += ["--grid_size", 1, "--num_inference_steps", 2, "--convert_images"]  # grey digits, RGB network
    run_example("evaluate", argv)
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    ds, column = load_image_dataset("sklearn-digits", split="test")  # evaluate.py's default --nll_split
    images = ImageDataset(ds, column, 8, 3)
    pipe = short_chain()
    # Image i's bound draws its noise from a generator seeded seed + i, whichever process computes it.
    totals = [
        pipe.bits_per_dim(images[i][None], generator=torch.Generator().manual_seed(i), batch_size=1000).total.item()
        for i in range(3)
    ]
    # rel 1e-6: the script samples its grid first, which may leave the network in channels_last (other fp32 kernels)
    assert result["metrics"]["nll_bits_per_dim"] == pytest.approx(np.mean(totals), rel=1e-6)
    assert result["metrics"]["nll_bits_per_dim_stderr"] == pytest.approx(np.std(totals, ddof=1) / np.sqrt(3), rel=1e-4)
    assert result["nll_data"] == {"dataset": "sklearn-digits", "split": "test", "num_images": 3}
    assert result["num_samples"] == 0 and result["measurements"]["nll_bits_per_dim"]["num_images"] == 3


def test_a_non_finite_network_writes_no_metric(tmp_path, run_example):
    """--metrics nll on a network with non-finite output wrote nll_bits_per_dim: NaN and exited 0."""
    pipe = tiny_pipeline()
    with torch.no_grad():
        pipe.unet.conv_out.bias[0] = float("nan")
    pipe.save_pretrained(tmp_path / "nan-model")
    data = ["--convert_images", "--nll_dataset_name", "sklearn-digits", "--nll_num_images", 2, "--nll_batch_size", 500]
    argv = ["--model", tmp_path / "nan-model", "--metrics", "nll", *data, "--num_samples", 1, "--grid_size", 0]
    with pytest.raises(SystemExit, match=r"NaN or infinite values.* No metric was written"):
        run_example("evaluate", [*argv, "--output_dir", tmp_path / "eval"])
    assert not (tmp_path / "eval" / "metrics.json").exists()
    nll = ["--model", tmp_path / "nan-model", "--dataset_name", "sklearn-digits", "--convert_images"]
    nll += ["--num_images", 2, "--batch_size", 500, "--output_dir", tmp_path / "nll"]
    with pytest.raises(SystemExit, match=r"NaN or infinite values.* Nothing was written"):
        run_example("evaluate_nll", nll)
    assert not (tmp_path / "nll" / "nll.json").exists()


def test_evaluate_from_python_is_the_scripts_evaluation(tmp_path, run_example):
    """`ddpm_hf.evaluation.evaluate` on a pipeline object: the script's report (same samples, metrics and weights
    hash as for the saved folder), refusals before any sampling, and a report the model card reads."""
    from ddpm_hf.evaluation import EvaluationError, EvaluationReport, evaluate

    weights = save_tiny(TinyWithHead(), tmp_path)
    argv = ["--dataset_name", "sklearn-digits", "--num_images", 24, "--batch_size", 12, "--num_workers", 0]
    argv += [
        "--weights",
        weights,
        "--output",
        tmp_path / "ref.npz",
        "--save_features",
        "--output_dir",
        tmp_path / "fid_stats",
    ]
    run_example("fid_stats", argv)
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "model")
    common = {"num_samples": 6, "batch_size": 3, "num_inference_steps": 2, "grid_size": 4, "kid_subsets": 5}
    script = run_example(
        "evaluate",
        ["--model", tmp_path / "model", "--reference", tmp_path / "ref.npz", "--inception_weights", weights]
        + [a for k, v in common.items() for a in (f"--{k}", v)]
        + ["--metrics", "fid", "is", "kid", "--is_splits", 2, "--output_dir", tmp_path / "script"],
    )
    report = evaluate(
        pipe, metrics=["fid", "is", "kid"], reference=str(tmp_path / "ref.npz"), inception_weights=str(weights),
        is_splits=2, output_dir=tmp_path / "python", **common,
    )  # fmt: skip
    assert isinstance(report, EvaluationReport)
    assert report.metrics == script["metrics"] and report.measurements == script["measurements"]
    assert report.model_weights_sha256 == script["model_weights_sha256"]  # a pushed folder's metrics bind to it
    assert EvaluationReport.load(tmp_path / "python" / "metrics.json").metrics == report.metrics
    card = render_model_card("user/tiny", metrics=report).text
    assert f"| FID | {report.metrics['fid']:.2f} |" in card
    assert f"| KID | {report.metrics['kid']:.2f} ± {report.metrics['kid_std']:.2f} |" in card
    # KID from the stored sample features and the reference's, computed directly (6 samples: subsets of 6).
    from ddpm_hf.evaluation.kid import kernel_inception_distance

    store = tmp_path / "python" / "samples"
    (name,) = {p.stem for p in store.glob("*/*.npy") if "logits" not in p.stem and "prob" not in p.stem}
    stored = np.concatenate([np.load(p) for p in sorted(store.glob(f"*/{name}.npy"))])
    reference = np.load(tmp_path / "ref.features.npy")
    assert (report.metrics["kid"], report.metrics["kid_std"]) == kernel_inception_distance(stored, reference, 5, 1000)
    assert report.measurements["kid"]["subset_size"] == 6
    for bad, message in [
        ({"metrics": ["fid"]}, "need reference statistics"),
        ({"metrics": ["is"], "num_samples": 1}, "needs num_samples ≥ is_splits"),
        ({"metrics": ["lpips"]}, "metrics must be some of"),
        ({"metrics": ["fid"], "reference": str(tmp_path / "ref.npz"), "batch_size": 0}, "batch_size must be"),
    ]:
        with pytest.raises(EvaluationError, match=message):
            evaluate(pipe, output_dir=tmp_path / "refused", **bad)
    assert not (tmp_path / "refused").exists()  # refused before anything was written


def test_reference_statistics_round_trip_through_a_hub_dataset_repo(hub_server, tmp_path, run_example, capsys):
    """Two users comparing FIDs load the same reference, with its extractor's id, from a dataset repo."""
    from huggingface_hub import DatasetCard

    from ddpm_hf.evaluation import evaluate

    weights = save_tiny(TinyWithHead(), tmp_path)
    argv = ["--dataset_name", "sklearn-digits", "--num_images", 24, "--batch_size", 12, "--num_workers", 0]
    argv += [
        "--weights",
        weights,
        "--output",
        tmp_path / "ref.npz",
        "--save_features",
        "--output_dir",
        tmp_path / "job",
    ]
    run_example("fid_stats", [*argv, "--push_to_hub", "user/digits-reference"])
    assert "pushed to hf://datasets/user/digits-reference/ref.npz" in capsys.readouterr().out
    files = hub_server.server.files("user/digits-reference", repo_type="dataset")
    assert {"ref.npz", "ref.features.npy", "README.md"} <= set(files)
    card = DatasetCard(files["README.md"].data.decode()).text
    stats = FIDStatistics.load(tmp_path / "ref.npz")
    assert f"weights id `{stats.weights_id}`" in card and "24 images" in card and "sklearn-digits (train)" in card

    pipe = tiny_pipeline()
    common = {"metrics": ["fid", "kid"], "num_samples": 6, "batch_size": 3, "num_inference_steps": 2, "grid_size": 0}
    common.update(inception_weights=str(weights), kid_subsets=3)
    local = evaluate(pipe, reference=str(tmp_path / "ref.npz"), output_dir=tmp_path / "local", **common)
    remote = evaluate(
        pipe, reference="hf://datasets/user/digits-reference/ref.npz", output_dir=tmp_path / "hub", **common
    )
    assert remote.metrics == local.metrics  # the very same reference, features included (KID)
    assert remote.measurements["fid"]["reference"]["path"] == "hf://datasets/user/digits-reference/ref.npz"
    with pytest.raises(FileNotFoundError, match="could not be downloaded"):
        evaluate(pipe, reference="hf://datasets/user/digits-reference/other.npz", output_dir=tmp_path / "x", **common)
    assert not (tmp_path / "x").exists()  # before any sampling
    with pytest.raises(SystemExit):
        run_example("fid_stats", [*argv, "--push_to_hub", "user/not a repo!"])
