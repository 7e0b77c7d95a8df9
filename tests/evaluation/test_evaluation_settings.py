"""One table of defaults for `evaluate` and `examples/evaluate.py`, and one vocabulary of metric names for
metrics.json and the model card."""

import dataclasses
import inspect
import subprocess
import sys
import typing
from types import SimpleNamespace

import numpy as np
import pytest

from ddpm_hf.card import render_model_card
from ddpm_hf.evaluation import defaults
from ddpm_hf.evaluation.report import EvaluationSettings
from ddpm_hf.metrics_format import METRIC_KEYS, METRICS, SPREAD_KEYS, TABLE
from example_scripts import load_example

FIELDS = {f.name: f for f in dataclasses.fields(EvaluationSettings)}


@pytest.fixture
def evaluate_script():
    return load_example("evaluate")


def help_text(script, monkeypatch, capsys) -> str:
    monkeypatch.setenv("COLUMNS", "1000")  # unwrapped: argparse breaks lines at hyphens too
    with pytest.raises(SystemExit):
        script.parse_args(["--help"])
    return capsys.readouterr().out


def test_help_shows_every_setting_with_the_dataclasss_default(evaluate_script, monkeypatch, capsys):
    text = " ".join(help_text(evaluate_script, monkeypatch, capsys).split())
    for name, field in FIELDS.items():
        shown = " ".join(field.default) if isinstance(field.default, tuple) else str(field.default)
        assert f"--{name} " in text and f"{field.metadata['help']} (default: {shown})" in text, name
    # Change a default in the dataclass: the flag's default follows, and so does the setting.
    monkeypatch.setattr(FIELDS["num_samples"], "default", 1234)
    monkeypatch.setattr(FIELDS["clip_model"], "default", "someone/clip")
    assert "(default: 1234)" in help_text(evaluate_script, monkeypatch, capsys)
    settings = evaluate_script.parse_args(["--model", "m", "--metrics", "nll", "--nll_dataset", "d"]).settings
    assert (settings.num_samples, settings.clip_model) == (1234, "someone/clip")


def test_every_flag_of_before_still_works(evaluate_script):
    argv = ["--model", "m", "--revision", "r", "--seed", "3", "--device", "cpu", "--output_dir", "out"]
    argv += ["--metrics", "fid", "is", "nll", "precision_recall", "fd_dinov2", "kid", "cmmd"]
    argv += ["--num_samples", "20", "--batch_size", "4", "--num_inference_steps", "5", "--precision", "fp32"]
    argv += ["--shard_size", "8", "--reference", "ref.npz", "--inception_weights", "w.pt", "--is_splits", "2"]
    argv += ["--kid_subsets", "3", "--kid_subset_size", "5", "--reference_dinov2", "d.npz", "--dinov2_model", "dm"]
    argv += ["--reference_clip", "c.npz", "--clip_model", "cm", "--nll_dataset_name", "digits", "--nll_split", "s"]
    argv += ["--convert_images", "--nll_num_images", "6", "--nll_batch_size", "7", "--grid_size", "0"]
    args = evaluate_script.parse_args(argv)
    assert (args.model, args.revision, args.device, args.output_dir) == ("m", "r", "cpu", "out")
    assert args.settings == EvaluationSettings(
        metrics=("fid", "is", "nll", "precision_recall", "fd_dinov2", "kid", "cmmd"), num_samples=20, batch_size=4,
        num_inference_steps=5, seed=3, precision="fp32", shard_size=8, grid_size=0, reference="ref.npz",
        inception_weights="w.pt", is_splits=2, kid_subsets=3, kid_subset_size=5, reference_dinov2="d.npz",
        dinov2_model="dm", reference_clip="c.npz", clip_model="cm", nll_dataset="digits", nll_split="s",
        nll_num_images=6, nll_batch_size=7, convert_images=True,
    )  # fmt: skip
    plain = evaluate_script.parse_args(["--model", "m", "--metrics", "nll", "--nll_dataset", "d"]).settings
    assert plain == EvaluationSettings(metrics=("nll",), nll_dataset="d")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--num_samples", "0"], "num_samples must be a positive whole number, got 0"),
        (["--batch_size", "-2"], "batch_size must be a positive whole number, got -2"),
        (["--shard_size", "0"], "shard_size must be a positive whole number, got 0"),
        (["--nll_num_images", "0"], "nll_num_images must be a positive whole number, got 0"),
        (["--nll_batch_size", "0"], "nll_batch_size must be a positive whole number, got 0"),
        (["--kid_subsets", "0"], "kid_subsets must be a positive whole number, got 0"),
        (["--grid_size", "-5"], "grid_size must be a whole number ≥ 0, got -5"),
        (["--num_samples", "many"], "invalid int value: 'many'"),
        (["--precision", "fp16"], "invalid choice: 'fp16'"),
        (["--metrics", "fid", "lpips"], "invalid choice: 'lpips'"),
        (["--metrics", "kid"], "kid need reference statistics"),
    ],
)
def test_invalid_settings_are_refused_before_any_work(evaluate_script, capsys, argv, message):
    base = ["--model", "nowhere", "--metrics", "nll", "--nll_dataset_name", "d"]  # no such model: nothing is loaded
    with pytest.raises(SystemExit) as exit:
        evaluate_script.parse_args([*base, *argv])
    assert exit.value.code == 2 and message in capsys.readouterr().err


def test_the_defaults_are_stated_once():
    from ddpm_hf.evaluation import clip, dinov2, kid
    from ddpm_hf.evaluation.inception_score import inception_score
    from ddpm_hf.evaluation.precision_recall import precision_recall
    from ddpm_hf.fastpath import Precision

    def default(function, name):
        return inspect.signature(function).parameters[name].default

    assert default(kid.kernel_inception_distance, "num_subsets") == FIELDS["kid_subsets"].default
    assert default(kid.kernel_inception_distance, "subset_size") == FIELDS["kid_subset_size"].default
    assert default(inception_score, "splits") == FIELDS["is_splits"].default == defaults.IS_SPLITS
    assert default(precision_recall, "k") == defaults.NEIGHBOURHOOD
    assert clip.CLIP.default_model == FIELDS["clip_model"].default == defaults.DEFAULT_CLIP
    assert dinov2.DINOv2.default_model == FIELDS["dinov2_model"].default == defaults.DEFAULT_DINOV2
    assert FIELDS["precision"].metadata["choices"] == defaults.PRECISIONS == typing.get_args(Precision)
    assert FIELDS["metrics"].metadata["choices"] == METRICS
    assert f"k = {defaults.NEIGHBOURHOOD}" in METRIC_KEYS["precision"].label


def test_the_report_module_loads_no_metric_module():
    """report.py imported the CLIP, DINOv2, KID and precision/recall modules for their defaults alone."""
    code = """
import importlib.util, sys, types
import ddpm_hf
# The package without its __init__ (which loads everything), to see what report.py itself imports.
package = types.ModuleType("ddpm_hf.evaluation")
package.__path__ = list(importlib.util.find_spec("ddpm_hf.evaluation").submodule_search_locations)
sys.modules["ddpm_hf.evaluation"] = package
import ddpm_hf.evaluation.report
print(" ".join(sorted(m for m in sys.modules if m.startswith("ddpm_hf.evaluation."))))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["ddpm_hf.evaluation.defaults", "ddpm_hf.evaluation.report"]


def test_every_key_measures_can_write_is_in_the_table_and_on_the_card(monkeypatch):
    """Every metric asked for at once, with the metric computations stubbed: the keys written are the table's, each
    with its count where the table says, and the card shows each by its label with its spread."""
    from ddpm_hf.evaluation import measures

    numbers = iter(range(1, 100))  # distinct values, to find each on the card

    def value(*_, **__):
        return float(next(numbers))

    monkeypatch.setattr(measures, "shard_statistics", lambda *_: None)
    monkeypatch.setattr(measures, "frechet_distance", value)
    monkeypatch.setattr(measures, "inception_score_of_blocks", lambda *_: (value(), value()))
    monkeypatch.setattr(
        measures, "precision_recall", lambda *_, **__: SimpleNamespace(precision=value(), recall=value(), k=3)
    )
    monkeypatch.setattr(measures, "kernel_inception_distance", lambda *_: (value(), value()))
    monkeypatch.setattr(measures, "cmmd", value)
    monkeypatch.setattr(measures, "bound_summary", lambda *_: {"bpd": value(), "bpd_stderr": value(), "num_images": 7})
    settings = EvaluationSettings(
        metrics=METRICS, num_samples=10, reference="r.npz", reference_dinov2="d.npz", reference_clip="c.npz",
        nll_dataset="sklearn-digits",
    )  # fmt: skip
    reference = SimpleNamespace(dataset="cifar10", split="train", num_images=20)
    spec = SimpleNamespace(features_name="features", probabilities_name="probabilities")
    stub = SimpleNamespace(
        inception=SimpleNamespace(device="cpu"), dinov2=None, clip=None, reference=reference,
        reference_dinov2=reference, reference_clip=reference, reference_features=np.zeros((20, 4)),
        reference_clip_features=None, spec=lambda _: spec,
    )  # fmt: skip
    samples = SimpleNamespace(blocks=lambda *_: [], array=lambda *_: np.zeros((10, 4)))
    written = measures.compute_metrics(settings, stub, samples, nll=object(), num_nll=7)

    assert set(written["metrics"]) == set(METRIC_KEYS) | SPREAD_KEYS
    assert set(written["measurements"]) == set(METRIC_KEYS)
    for metric in TABLE:
        record = written["measurements"][metric.key]
        assert record[metric.count] == (10 if metric.sampled else 7) and record.get("features") == metric.features
    card = render_model_card("user/model", metrics={"seed": 0, **written}).text
    rows = {line.split(" | ")[0].lstrip("| "): line for line in card.splitlines() if line.startswith("| ")}
    for metric in TABLE:
        shown = f"{written['metrics'][metric.key]:.2f}"
        if metric.spread:
            shown += f" ± {written['metrics'][metric.spread]:.2f}"
        assert rows[metric.label].startswith(f"| {metric.label} | {shown} | "), rows[metric.label]
