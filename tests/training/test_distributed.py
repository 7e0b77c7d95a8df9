"""One global batch split three ways — 1 process × B, 2 gloo processes × B/2, 1 process × 2 accumulated B/2 — is one
training step: the same gradient, the same logged loss and gradient norm, the same weights.

Adam and gradient clipping cancel a uniform scale of the gradient, so the weights alone cannot show a loss divided
once too often by the process count or the accumulation steps; the gradients (recorded before the optimizer step,
with clipping off) and the logged values can.
"""

import os
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import processes
from ddpm_hf.training import parse_args, train
from record_training import RecordTraining
from tiny import tiny_train_args

ROOT = Path(__file__).resolve().parents[2]
RECORDER = ROOT / "tests" / "support" / "record_training.py"
# Dropout off: each process draws its own masks. Clipping off: the recorded gradients are the raw ones.
COMMON = {"max_train_steps": 2, "checkpointing_steps": 2, "dropout": 0.0, "lr_warmup_steps": 0, "max_grad_norm": 1e9}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{name: (output folder, record of rank 0, stderr)} for the three splits of a global batch of 8."""
    tmp = tmp_path_factory.mktemp("splits")
    out = {}
    for name, accumulation in (("one", 1), ("accumulated", 2)):  # one process: train in this one
        train(
            parse_args(tiny_train_args(tmp / name, gradient_accumulation_steps=accumulation, **COMMON)),
            [RecordTraining(tmp / f"{name}-record")],
        )
        out[name] = (tmp / name, torch.load(tmp / f"{name}-record" / "rank-0.pt"), "")
    # ACCELERATE_USE_CPU + --multi_gpu starts two gloo processes on a CPU-only machine.
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no"]
    launch += ["--dynamo_backend", "no", "--main_process_port", "0", "--multi_gpu", "--num_processes", "2"]
    recorded = [*launch, str(RECORDER), str(tmp / "two-record"), "--", *tiny_train_args(tmp / "two", **COMMON)]
    two = processes.run(recorded, env=env, cwd=ROOT)
    assert two.returncode == 0, two.stderr
    ranks = [torch.load(tmp / "two-record" / f"rank-{r}.pt") for r in (0, 1)]
    for a, b in zip(ranks[0]["grads"], ranks[1]["grads"], strict=True):  # DDP gave both processes one gradient
        assert all(torch.equal(a[k], b[k]) for k in a)
    out["two"] = (tmp / "two", ranks[0], two.stderr)
    return out


def test_two_processes_update_like_one(runs):
    """2 × B/2 must train like 1 × B (same data, noise): the weights after two steps."""
    (one, _, _), (two, _, said) = runs["one"], runs["two"]
    assert "= 2 processes × 1 accumulation × 4 per device" in said
    a = load_file(one / "checkpoints" / "checkpoint-2" / "model.safetensors")
    b = load_file(two / "checkpoints" / "checkpoint-2" / "model.safetensors")
    init = load_file(one / "unet" / "diffusion_pytorch_model.safetensors")  # EMA: close to init
    moved = max((a[k] - init[k]).abs().max().item() for k in a)
    assert moved > 1e-4  # the two updates really changed the weights ...
    for key in a:  # ... and identically, up to the order of float32 sums
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=0), key


@pytest.mark.parametrize("split", ["two", "accumulated"])
def test_gradient_and_logged_loss_do_not_depend_on_the_split(runs, split):
    """The gradient of each step and the logged loss and (unclipped) gradient norm equal those of 1 process × B."""
    reference, other = runs["one"][1], runs[split][1]
    assert len(reference["grads"]) == len(other["grads"]) == COMMON["max_train_steps"]
    for step, (expected, got) in enumerate(zip(reference["grads"], other["grads"], strict=True), start=1):
        assert expected.keys() == got.keys()
        total = torch.cat([g.flatten() for g in expected.values()]).norm()
        assert total > 1e-3  # a real gradient, not zeros compared with zeros
        assert torch.cat([g.flatten() for g in got.values()]).norm().item() == pytest.approx(total.item(), rel=1e-5)
        for name in expected:  # up to the order of float32 sums, relative to the whole gradient
            where = f"step {step}, {name}"
            close = {"rtol": 1e-4, "atol": 1e-6 * total, "msg": lambda m, where=where: f"{where}: {m}"}
            torch.testing.assert_close(got[name], expected[name], **close)
    assert [log["step"] for log in other["logs"]] == [log["step"] for log in reference["logs"]] == [1, 2]
    for expected, got in zip(reference["logs"], other["logs"], strict=True):
        assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)
        assert got["grad_norm"] == pytest.approx(expected["grad_norm"], rel=1e-5)
