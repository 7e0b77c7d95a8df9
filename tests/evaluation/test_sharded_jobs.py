"""Every sharded job is a `run_sharded` caller: reference statistics resume after a crash (they started over), a
non-finite network ends every job with the same clear error (the Γ estimate raised a bare NonFiniteSampleError),
and each job keeps its shards inside its output folder."""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler
from ddpm_hf.evaluation import EvaluationError, FIDStatistics, StoreMismatchError, reference_statistics
from ddpm_hf.evaluation.inception import InceptionV3
from tiny import tiny_unet
from tiny_inception import TinyWithHead, save_tiny

EVALUATION = Path(__file__).resolve().parents[2] / "ddpm_hf" / "evaluation"
COMMON = {"split": "train", "batch_size": 4, "num_workers": 0, "shard_size": 4, "device": "cpu"}


@pytest.fixture
def weights(tmp_path):
    return str(save_tiny(TinyWithHead(), tmp_path))


def test_reference_statistics_resume_after_a_crash_and_match_one_run(tmp_path, weights, monkeypatch):
    extract, seen = InceptionV3.extract, []

    def crashing(self, images, probabilities=False):
        if len(seen) == 3:
            raise KeyboardInterrupt  # killed during the fourth batch
        seen.append(len(images))
        return extract(self, images, probabilities)

    monkeypatch.setattr(InceptionV3, "extract", crashing)
    job = tmp_path / "job"
    with pytest.raises(KeyboardInterrupt):
        reference_statistics("sklearn-digits", output_dir=job, weights=weights, num_images=20, **COMMON)
    assert not (job / "statistics.npz").exists()

    def counting(self, images, probabilities=False):
        seen.append(len(images))
        return extract(self, images, probabilities)

    monkeypatch.setattr(InceptionV3, "extract", counting)
    seen.clear()
    resumed = reference_statistics(
        "sklearn-digits", output_dir=job, weights=weights, num_images=20, save_features=True, **COMMON
    )
    assert sum(seen) == 20 - 12  # the three finished shards were kept
    seen.clear()
    whole = reference_statistics(
        "sklearn-digits", output_dir=tmp_path / "whole", weights=weights, num_images=20, save_features=True, **COMMON
    )
    assert sum(seen) == 20
    assert np.array_equal(resumed.mu, whole.mu) and np.array_equal(resumed.sigma, whole.sigma)
    assert FIDStatistics.load(job / "statistics.npz").num_images == 20
    features = np.load(job / "statistics.features.npy")
    assert np.allclose(features.mean(axis=0, dtype=np.float64), resumed.mu, rtol=0, atol=1e-5)  # row by row
    assert features.shape == (20, resumed.mu.shape[0]) and np.array_equal(
        features, np.load(tmp_path / "whole" / "statistics.features.npy")
    )
    assert sorted(p.name for p in job.iterdir()) == ["inception", "statistics.features.npy", "statistics.npz"]


def test_reference_statistics_of_other_data_in_the_same_folder_are_refused(tmp_path, weights):
    job = tmp_path / "job"
    reference_statistics("sklearn-digits", output_dir=job, weights=weights, num_images=8, **COMMON)
    with pytest.raises(StoreMismatchError):
        reference_statistics("sklearn-digits", output_dir=job, weights=weights, num_images=8, resolution=16, **COMMON)


def test_a_non_finite_network_ends_the_gamma_estimate_with_an_evaluation_error(tmp_path):
    from ddpm_hf.evaluation import estimate_analytic_variance

    unet = tiny_unet()
    with torch.no_grad():
        unet.conv_out.bias.fill_(float("nan"))
    pipe = DDPMPaperPipeline(unet=unet, scheduler=DDPMPaperScheduler(num_train_timesteps=10))
    with pytest.raises(EvaluationError, match=r"NaN or infinite values.* Nothing was written"):
        estimate_analytic_variance(
            pipe,
            output_dir=tmp_path / "out",
            num_images=2,
            dataset="sklearn-digits",
            convert_images=True,
            batch_size=10,
            device="cpu",
        )
    assert not (tmp_path / "out" / "model_index.json").exists()


def test_only_the_runner_plans_and_counts_a_sharded_job():
    """Each job used to repeat the skeleton (check, create, plan, progress, barrier)."""
    callers = {}
    for path in EVALUATION.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", None))
                if name in ("JobProgress", "barrier", "create"):
                    callers.setdefault(name, set()).add(path.name)
    assert callers == {"JobProgress": {"sharded.py"}, "barrier": {"sharded.py"}, "create": {"sharded.py"}}


@pytest.mark.parametrize(
    ("settings", "values", "message"),
    [
        ("ReferenceSettings", {"num_workers": -1}, "num_workers must be an integer ≥ 0"),
        ("ReferenceSettings", {"batch_size": 0}, "batch_size must be an integer ≥ 1"),
        ("BoundEvaluationSettings", {"batch_size": 0}, "batch_size must be an integer ≥ 1"),
        ("BoundEvaluationSettings", {"shard_size": 0}, "shard_size must be an integer ≥ 1"),
        ("GammaSettings", {"num_images": 1}, "from 2"),
        ("GammaSettings", {"num_inference_steps": (10, 0)}, "num_inference_steps must be an integer ≥ 1"),
    ],
)
def test_each_jobs_settings_refuse_bad_values_when_made(settings, values, message):
    from ddpm_hf.evaluation.analytic import GammaSettings
    from ddpm_hf.evaluation.reference import ReferenceSettings
    from ddpm_hf.evaluation.runner import BoundEvaluationSettings

    cls = {"ReferenceSettings": ReferenceSettings, "BoundEvaluationSettings": BoundEvaluationSettings}.get(
        settings, GammaSettings
    )
    with pytest.raises(ValueError, match=message):
        cls(**values)
