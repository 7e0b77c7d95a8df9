"""`ddpm_hf.training.checkpoint`: atomic checkpoints, exact resume after SIGKILL, pruning."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import processes
from ddpm_hf.training import parse_args, train
from ddpm_hf.training.checkpoint import list_checkpoints, resolve_checkpoint
from tiny import tiny_train_args

ROOT = Path(__file__).resolve().parents[2]
HOOKED = ROOT / "tests" / "support" / "hooked_training.py"


def run_training(args: list[str], *hooks: str) -> subprocess.CompletedProcess:
    """Train in a fresh process; `hooks` are hooked_training.py's flags (e.g. `--kill_after_checkpoint 3`)."""
    command = [sys.executable, str(HOOKED), *hooks, "--", *args]
    return processes.run(command, cwd=ROOT)


def final_weights(out: Path) -> tuple[dict, dict]:
    model = load_file(out / "checkpoints" / "checkpoint-6" / "model.safetensors")
    ema = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    return model, ema


def test_resume_after_sigkill_is_exact(tmp_path):
    # Dropout on, so that the restored RNG state matters too.
    common = {"max_train_steps": 6, "checkpointing_steps": 3, "dropout": 0.1, "checkpoints_total_limit": "none"}
    straight = tmp_path / "straight"
    assert run_training(tiny_train_args(straight, **common)).returncode == 0
    killed = tmp_path / "killed"
    result = run_training(tiny_train_args(killed, **common), "--kill_after_checkpoint", "3")
    assert result.returncode == -9, result.stderr
    assert [p.name for p in list_checkpoints(killed / "checkpoints")] == ["checkpoint-3"]
    resumed = run_training(tiny_train_args(killed, resume_from_checkpoint="latest", **common))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and "at step 3" in resumed.stderr
    for a, b in zip(final_weights(straight), final_weights(killed), strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_kill_while_writing_a_checkpoint_never_leaves_a_bad_latest(tmp_path):
    common = {"max_train_steps": 6, "checkpointing_steps": 3}
    out = tmp_path / "run"
    result = run_training(tiny_train_args(out, **common), "--kill_while_saving", "6")
    assert result.returncode == -9, result.stderr
    assert (out / "checkpoints" / "tmp-checkpoint-6" / "model.safetensors").read_bytes() == b"half"  # it is there ...
    assert resolve_checkpoint(out / "checkpoints", "latest").name == "checkpoint-3"  # ... and never picked
    resumed = run_training(tiny_train_args(out, resume_from_checkpoint="latest", **common))
    assert resumed.returncode == 0, resumed.stderr
    assert "at step 3" in resumed.stderr
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["checkpoint-3", "checkpoint-6"]
    assert not (out / "checkpoints" / "tmp-checkpoint-6").exists()


def test_checkpoints_are_pruned(tmp_path):
    out = tmp_path / "run"
    train(parse_args(tiny_train_args(out, max_train_steps=4, checkpointing_steps=1, checkpoints_total_limit=2)))
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["checkpoint-3", "checkpoint-4"]


def test_resolve_names_only_complete_checkpoints(tmp_path):
    folder = tmp_path / "checkpoints"
    for name in ("checkpoint-2", "checkpoint-10", "tmp-checkpoint-12", "checkpoint-x"):
        (folder / name).mkdir(parents=True)
    assert [p.name for p in list_checkpoints(folder)] == ["checkpoint-2", "checkpoint-10"]  # numeric order
    assert resolve_checkpoint(folder, "latest").name == "checkpoint-10"
    assert resolve_checkpoint(tmp_path / "none", "latest") is None
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        resolve_checkpoint(folder, str(folder / "checkpoint-10"))  # named explicitly, it needs its marker file


def weights(checkpoint: Path) -> dict:
    return load_file(checkpoint / "model.safetensors")


def test_a_rollback_keeps_its_own_checkpoints_and_latest_means_its_newest(tmp_path, capsys):
    """Resuming checkpoint-2 behind checkpoint-3 and -4 with --checkpoints_total_limit 1 used to prune the resumed
    run's own checkpoint-3 (pruning keeps the highest numbers), and `latest` then resumed the abandoned checkpoint-4."""
    out = tmp_path / "run"
    train(parse_args(tiny_train_args(out, max_train_steps=4, checkpointing_steps=1, checkpoints_total_limit="none")))
    abandoned = {n: weights(out / "checkpoints" / n) for n in ("checkpoint-3", "checkpoint-4")}
    capsys.readouterr()
    rollback = {"max_train_steps": 3, "checkpointing_steps": 1, "checkpoints_total_limit": 1, "learning_rate": 1e-2}
    train(parse_args(tiny_train_args(out, resume_from_checkpoint="checkpoint-2", **rollback)))
    said = capsys.readouterr().err
    assert "behind newer checkpoints (checkpoint-3, checkpoint-4): moved them to" in said
    own = list_checkpoints(out / "checkpoints")
    assert [p.name for p in own] == ["checkpoint-3"] and resolve_checkpoint(out / "checkpoints", "latest") == own[0]
    assert not torch.equal(*(next(iter(w.values())) for w in (weights(own[0]), abandoned["checkpoint-3"])))
    # The abandoned branch is kept whole, aside, where `latest` and pruning do not look.
    (aside,) = (out / "checkpoints").glob("abandoned-*-from-step-2")
    for name, tensors in abandoned.items():
        assert all(torch.equal(tensors[k], v) for k, v in weights(aside / name).items())
    # Resuming `latest` continues this run, at its own step 3.
    train(parse_args(tiny_train_args(out, resume_from_checkpoint="latest", **{**rollback, "max_train_steps": 4})))
    assert "at step 3" in capsys.readouterr().err


def test_resume_names_a_learning_rate_that_a_new_length_changes(tmp_path, capsys):
    out = tmp_path / "run"
    cosine = {"lr_scheduler": "cosine", "lr_warmup_steps": 0, "learning_rate": 5e-4, "checkpointing_steps": 2}
    train(parse_args(tiny_train_args(out, max_train_steps=2, **cosine)))
    capsys.readouterr()
    train(parse_args(tiny_train_args(out, max_train_steps=4, resume_from_checkpoint="latest", **cosine)))
    said = capsys.readouterr().err
    # Cosine over 2 steps ends at 0; over 4 steps, step 2 is half way: 2.5e-4.
    assert "the learning rate at step 2 becomes 0.00025 instead of the 0 " in said and "max_train_steps 2 → 4" in said
    # The paper's schedule (warm-up, then constant) is not changed by a longer run: no note.
    constant = {**cosine, "lr_scheduler": "constant_with_warmup", "lr_warmup_steps": 1}
    train(parse_args(tiny_train_args(tmp_path / "paper", max_train_steps=2, **constant)))
    train(
        parse_args(tiny_train_args(tmp_path / "paper", max_train_steps=4, resume_from_checkpoint="latest", **constant))
    )
    assert "the learning rate at step" not in capsys.readouterr().err
