"""Improved precision/recall, streaming Inception Score and float64 feature sums against direct computations."""

import numpy as np
import pytest

from ddpm_hf.evaluation import (
    FeatureSums,
    FIDStatistics,
    ShardStore,
    frechet_distance,
    inception_score,
    inception_score_of_blocks,
    manifold_radii,
    precision_recall,
)
from ddpm_hf.evaluation.store import Shard


def brute_force(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Precision, recall and both radii from full float64 distance matrices, as Kynkäänniemi et al. define them."""

    def squared(a, b):
        return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)

    real, fake = real.astype(np.float64), fake.astype(np.float64)
    real_radii = np.sort(squared(real, real), axis=1)[:, k]  # the k-th neighbour; the point itself is the 0th
    fake_radii = np.sort(squared(fake, fake), axis=1)[:, k]
    cross = squared(fake, real)
    precision = (cross <= real_radii[None, :]).any(axis=1).mean()
    recall = (cross.T <= fake_radii[None, :]).any(axis=1).mean()
    return precision, recall, real_radii, fake_radii


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(61, 8)).astype(np.float32)
    fake = (rng.normal(size=(47, 8)) + 1.0).astype(np.float32)
    return real, fake


@pytest.mark.parametrize("block_size", [7, 1000])
def test_precision_recall_is_the_direct_computation(features, block_size):
    real, fake = features
    precision, recall, real_radii, fake_radii = brute_force(real, fake)
    assert 0.1 < precision < 0.9 and 0.1 < recall < 0.9  # a case where neither metric is trivially 0 or 1
    np.testing.assert_allclose(manifold_radii(real, block_size=block_size), real_radii, rtol=1e-5)
    np.testing.assert_allclose(manifold_radii(fake, block_size=block_size), fake_radii, rtol=1e-5)
    pr = precision_recall(real, fake, block_size=block_size)
    assert (pr.precision, pr.recall) == (precision, recall)
    assert (pr.num_real, pr.num_fake, pr.k) == (61, 47, 3)
    # k is the neighbourhood: larger balls can only cover more.
    wider = precision_recall(real, fake, k=5, block_size=block_size)
    assert (wider.precision, wider.recall) == brute_force(real, fake, k=5)[:2]
    assert wider.precision >= pr.precision and wider.recall >= pr.recall


def test_precision_recall_extremes(features):
    real, fake = features
    same = precision_recall(real, real.copy(), block_size=16)
    assert (same.precision, same.recall) == (1.0, 1.0)
    far = precision_recall(real, fake + 100.0, block_size=16)
    assert (far.precision, far.recall) == (0.0, 0.0)
    mode_collapse = precision_recall(real, np.repeat(real[:4], 10, axis=0), block_size=16)
    assert mode_collapse.precision == 1.0 and mode_collapse.recall < 0.2  # realistic, but covers little
    with pytest.raises(ValueError, match="more than k"):
        manifold_radii(real[:3])


def test_precision_recall_reads_features_from_shards_and_maps(features, tmp_path):
    real, fake = features
    store = ShardStore(tmp_path / "store", {"kind": "test"}, shard_size=10)
    store.create()
    for shard in store.missing(len(fake)):
        store.write(shard, {"f": fake[shard.start : shard.end]})
    np.save(tmp_path / "real.npy", real)
    mapped = np.load(tmp_path / "real.npy", mmap_mode="r")
    sharded = precision_recall(mapped, store.array("f", len(fake)), block_size=13)
    assert (sharded.precision, sharded.recall) == brute_force(real, fake)[:2]
    assert store.covering(len(fake))[-1] == Shard(40, 47)


def test_streaming_inception_score_is_the_released_formula():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(23, 6)) * 3
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    p[0] = np.eye(6)[2]  # exact zeros: 0·log 0 = 0 in both
    blocks = [p[i : i + 5] for i in range(0, 23, 5)]  # blocks that do not line up with the splits
    for splits in (1, 4):
        assert inception_score_of_blocks(blocks, 23, splits) == pytest.approx(inception_score(p, splits), rel=1e-10)
    assert inception_score_of_blocks(blocks, 17, 3) == pytest.approx(inception_score(p[:17], 3), rel=1e-10)
    with pytest.raises(ValueError, match="only 23"):
        inception_score_of_blocks(blocks, 30, 3)


def test_feature_sums_give_the_covariance_and_merge():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 12)) * rng.uniform(0.1, 3, size=12) + rng.uniform(-1, 5, size=12)
    whole = FeatureSums(12).add(x)
    np.testing.assert_allclose(whole.mean(), x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(whole.covariance(), np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)
    parts = FeatureSums(12).add(x[:123]).merge(FeatureSums(12).add(x[123:400])).merge(FeatureSums(12).add(x[400:]))
    assert parts.count == 500
    np.testing.assert_allclose(parts.covariance(), whole.covariance(), rtol=1e-12, atol=1e-13)
    stats = FIDStatistics.from_sums(whole, weights_id="w", extractor="dinov2")
    assert (stats.num_images, stats.extractor, stats.weights_id) == (500, "dinov2", "w")
    with pytest.raises(ValueError, match="at least 2"):
        FeatureSums(3).add(np.ones((1, 3))).covariance()
    with pytest.raises(ValueError, match=r"\[n, 12\]"):
        whole.add(np.ones((2, 3)))


def test_statistics_of_other_extractors_are_never_compared(tmp_path):
    rng = np.random.default_rng(3)
    inception = FIDStatistics.from_features(rng.normal(size=(20, 4)), weights_id="a")  # an old file: no extractor
    dinov2 = FIDStatistics.from_features(rng.normal(size=(20, 4)), weights_id="b", extractor="dinov2")
    with pytest.raises(ValueError, match="different feature extractors"):
        frechet_distance(inception, dinov2)
    other = FIDStatistics.from_features(rng.normal(size=(20, 4)), weights_id="c", extractor="dinov2")
    with pytest.raises(ValueError, match="different DINOv2 weights"):
        frechet_distance(dinov2, other)
    dinov2.features_file = "x.features.npy"
    dinov2.save(tmp_path / "d.npz")
    loaded = FIDStatistics.load(tmp_path / "d.npz")
    assert (loaded.extractor, loaded.weights_id, loaded.features_file) == ("dinov2", "b", "x.features.npy")
    assert FIDStatistics.load(tmp_path / "d.npz").extractor_name == "dinov2" and inception.extractor_name == "inception"
