"""The training examples' companions: the shipped Accelerate configs and the digits recognisability score."""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_accelerate_configs_parse():
    from accelerate.commands.config.config_args import load_config_from_file

    found = {p.stem: load_config_from_file(str(p)) for p in (ROOT / "examples" / "accelerate_configs").glob("*.yaml")}
    assert {k: (v.distributed_type.value, v.num_processes) for k, v in found.items()} == {
        "single_gpu": ("NO", 1),
        "multi_gpu": ("MULTI_GPU", 8),
        "multi_node": ("MULTI_GPU", 16),
        "multi_cpu": ("MULTI_CPU", 2),
    }


def test_digits_score_tells_digits_from_noise():
    sys.path.insert(0, str(ROOT / "examples"))
    from score_digits import fit_classifier, score_digits
    from sklearn.datasets import load_digits

    classifier = fit_classifier()
    real = score_digits(load_digits().images / 16.0, classifier)
    noise = score_digits(np.random.default_rng(0).random((300, 8, 8)), classifier)
    assert real["confident_fraction"] > 0.9 and real["classes_found"] == 10
    assert noise["confident_fraction"] < 0.3
