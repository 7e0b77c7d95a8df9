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


def test_roofline_runs():
    args = ["--batch_size", "1", "--matmul_size", "64", "--calls", "1", "--device", "cpu"]
    result = subprocess.run(
        [sys.executable, "roofline.py", *args], cwd=BENCHMARKS, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "bf16 / fp32: matmul peak" in result.stdout and result.stdout.count("GFLOP/s") == 4


def test_memory_benchmark_runs():
    args = ["--model", "cifar10", "--resolution", "8", "--batch_size", "1", "--device", "cpu"]
    result = subprocess.run(
        [sys.executable, "memory.py", *args], cwd=BENCHMARKS, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "ours / diffusers: memory" in result.stdout and result.stdout.count("step peak above the weights") == 2
