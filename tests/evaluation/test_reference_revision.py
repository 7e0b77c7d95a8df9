"""`hf://datasets/OWNER/NAME@REVISION/FILE.npz` loads the statistics, and their features, of that revision.

A published FID is comparable only against the very reference it was computed with: after the dataset repo's
statistics are replaced, naming the old commit must give the old numbers, not the default branch's.
"""

from pathlib import Path

import numpy as np
import pytest

from ddpm_hf.evaluation import FIDStatistics, evaluate, push_reference, reference_statistics, resolve_reference
from tiny import tiny_pipeline
from tiny_inception import TinyWithHead, save_tiny

REPO = "user/digits-reference"


@pytest.fixture
def two_versions(hub_server, tmp_path):
    """The repo's ref.npz (with its features) pushed twice, from 24 then 30 digits: (old commit, old file, new file)."""
    weights = save_tiny(TinyWithHead(), tmp_path)
    made = {}
    for version, count in (("old", 24), ("new", 30)):
        output = tmp_path / version / "ref.npz"
        output.parent.mkdir()
        reference_statistics(
            "sklearn-digits",
            output_dir=output.parent,
            output=output,
            weights=str(weights),
            num_images=count,
            batch_size=12,
            num_workers=0,
            save_features=True,
            device="cpu",
        )
        assert push_reference(output, REPO) == f"hf://datasets/{REPO}/ref.npz"
        made[version] = (hub_server.server.repos[("dataset", REPO)].branches["main"], output)
    assert made["old"][0] != made["new"][0]
    return {"weights": weights, "old_commit": made["old"][0], "old": made["old"][1], "new": made["new"][1]}


def assert_same_reference(path: str, expected: Path) -> None:
    got, want = FIDStatistics.load(path), FIDStatistics.load(expected)
    assert got.num_images == want.num_images
    np.testing.assert_array_equal(got.mu, want.mu)
    np.testing.assert_array_equal(got.sigma, want.sigma)
    features = Path(path).parent / got.features_file  # where evaluation reads them: beside the statistics
    np.testing.assert_array_equal(np.load(features), np.load(expected.with_name("ref.features.npy")))


def test_a_revision_loads_that_revisions_statistics_and_features(two_versions):
    old, new, commit = two_versions["old"], two_versions["new"], two_versions["old_commit"]
    assert_same_reference(resolve_reference(f"hf://datasets/{REPO}@{commit}/ref.npz"), old)
    assert FIDStatistics.load(resolve_reference(f"hf://datasets/{REPO}@{commit}/ref.npz")).num_images == 24
    # Without one, the default branch: the newer statistics.
    assert_same_reference(resolve_reference(f"hf://datasets/{REPO}/ref.npz"), new)
    assert_same_reference(resolve_reference(f"hf://datasets/{REPO}@main/ref.npz"), new)
    # The old one again, after the newer was fetched into the same cache.
    assert_same_reference(resolve_reference(f"hf://datasets/{REPO}@{commit}/ref.npz"), old)
    with pytest.raises(FileNotFoundError, match="could not be downloaded"):
        resolve_reference(f"hf://datasets/{REPO}@{'0' * 40}/ref.npz")


def test_an_evaluation_against_a_revision_measures_against_it(two_versions, tmp_path):
    common = {"metrics": ["fid", "kid"], "num_samples": 4, "batch_size": 4, "num_inference_steps": 2, "grid_size": 0}
    common.update(inception_weights=str(two_versions["weights"]), kid_subsets=2, device="cpu")
    pipe = tiny_pipeline()
    local = evaluate(pipe, reference=str(two_versions["old"]), output_dir=tmp_path / "local", **common)
    address = f"hf://datasets/{REPO}@{two_versions['old_commit']}/ref.npz"
    remote = evaluate(pipe, reference=address, output_dir=tmp_path / "hub", **common)
    assert remote.metrics == local.metrics  # FID from the old statistics, KID from the old features
    assert remote.measurements["fid"]["reference"]["num_images"] == 24
    newest = evaluate(pipe, reference=str(two_versions["new"]), output_dir=tmp_path / "new", **common)
    assert newest.metrics["fid"] != local.metrics["fid"]
