"""Smoke tests: each benchmark runs one tiny measurement end to end and prints its comparison (not a timing test)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", ["bench_sampling.py", "bench_training.py"])
def test_benchmark_runs(script, tmp_path):
    out = tmp_path / "result.json"
    args = ["--batch_size", "1", "--steps", "1", "--repeats", "1", "--device", "cpu", "--json", str(out)]
    result = subprocess.run(
        [sys.executable, script, *args], cwd=BENCHMARKS, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "speed-up (ours / diffusers)" in result.stdout
    data = json.loads(out.read_text())
    assert len(data["images_per_s"]) == 2 and all(v > 0 for v in data["images_per_s"].values())


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        ("roofline.py", ["--batch_size", "1", "--matmul_size", "64", "--calls", "1"], "bf16 / fp32: matmul peak"),
        ("memory.py", ["--model", "cifar10", "--resolution", "8", "--batch_size", "1"], "ours / diffusers: memory"),
    ],
)
def test_measurement_script_runs(script, args, expected):
    result = subprocess.run(
        [sys.executable, script, *args, "--device", "cpu"], cwd=BENCHMARKS, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
