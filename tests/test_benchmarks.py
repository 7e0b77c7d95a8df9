"""Smoke tests: each benchmark runs one tiny measurement end to end and prints its comparison (not a timing test).

The scripts run as `python benchmarks/NAME.py ARGS` would (their `__main__`, their own imports), in this process and
with every paper network at toy size: what is checked is that they run and report, which the CIFAR-10 network's
35.7M parameters would only make slower (the smallest preset at batch 1 took a minute for the four).
"""

import json
import runpy
import sys
from pathlib import Path

import pytest
from accelerate.state import AcceleratorState

from ddpm_hf import DDPMUNet2DModel
from tiny import TINY_UNET

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def run_benchmark(monkeypatch, capsys):
    """`run_benchmark(NAME, args)` runs benchmarks/NAME's `__main__` here, paper networks at toy size; returns its
    stdout."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import their sibling common.py
    paper_network = DDPMUNet2DModel.from_paper_config.__func__

    def toy_network(cls, name, **overrides):
        return paper_network(cls, name, **{**TINY_UNET, **overrides})

    monkeypatch.setattr(DDPMUNet2DModel, "from_paper_config", classmethod(toy_network))

    def run(script: str, args: list[str]) -> str:
        monkeypatch.setattr(sys, "argv", [str(BENCHMARKS / script), *map(str, args), "--device", "cpu"])
        runpy.run_path(str(BENCHMARKS / script), run_name="__main__")
        return capsys.readouterr().out

    accelerate_was_set_up = bool(AcceleratorState._shared_state)
    yield run
    sys.modules.pop("common", None)
    if not accelerate_was_set_up:  # bench_training's Accelerator(cpu=True) would bind later in-process runs to it
        AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.parametrize(
    ("script", "extra"),
    [
        ("bench_sampling.py", []),
        ("bench_training.py", ["--mixed_precision", "no"]),
    ],
)
def test_benchmark_runs(script, extra, run_benchmark, tmp_path):
    out = tmp_path / "result.json"
    args = ["--batch_size", "1", "--steps", "1", "--repeats", "1", "--json", out, *extra]
    stdout = run_benchmark(script, args)
    assert "speed-up (ours / diffusers)" in stdout
    data = json.loads(out.read_text())
    assert len(data["images_per_s"]) == 2 and all(v > 0 for v in data["images_per_s"].values())


def test_roofline_runs(run_benchmark):
    stdout = run_benchmark("roofline.py", ["--batch_size", "1", "--matmul_size", "64", "--calls", "1"])
    assert "bf16 / fp32: matmul peak" in stdout


def test_memory_runs(run_benchmark, monkeypatch):
    """memory.py measures each side in a fresh process of itself, where the network has its real size: the smallest
    preset at the smallest resolution and batch, in fp32 (CPU bf16 steps are slower), one thread per child (two
    threads on a busy 2-core machine made each step 25× slower)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    args = ["--model", "cifar10", "--resolution", "8", "--batch_size", "1", "--mixed_precision", "no"]
    stdout = run_benchmark("memory.py", args)
    assert "ours / diffusers: memory" in stdout


def test_samplers_table_runs_on_a_digits_model(run_benchmark, tmp_path):
    """benchmarks/samplers.py on a tiny 1-channel digits model: a row per sampler and step count, with the floor of
    real digits first; the paper's sampler alone gets the full chain; the plot is written."""
    from tiny import train_tiny_digits

    model = tmp_path / "model"
    train_tiny_digits(steps=5, num_train_timesteps=20).save_pretrained(model)
    out = tmp_path / "out"
    samplers = ["DDPM (paper), σ²=β", "DDIM η=0", "Heun"]
    args = [
        "--model",
        model,
        "--num_images",
        12,
        "--batch_size",
        6,
        "--steps",
        4,
        20,
        "--output_dir",
        out,
        "--samplers",
    ]
    stdout = run_benchmark("samplers.py", [*args, *samplers])
    record = json.loads((out / "results.json").read_text())
    rows = [(r["sampler"], r["steps"], r["nfe"]) for r in record["rows"]]
    assert rows == [
        ("real digits", 0, 0),
        ("DDPM (paper), σ²=β", 4, 4),
        ("DDPM (paper), σ²=β", 20, 20),  # T = 20 here: the full chain, for the paper's sampler only
        ("DDIM η=0", 4, 4),
        ("Heun", 4, 7),  # second order: 2 evaluations a step but the last
    ]
    assert all(r["distance"] > 0 and r["distance_se"] > 0 for r in record["rows"])
    assert (out / "samplers.png").stat().st_size > 0 and "| Heun | 4 | 7 |" in stdout
