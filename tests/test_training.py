"""Training: presets, the step plan, a full tiny run, exact resume after SIGKILL, atomic checkpoints, divergence."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.training import TrainConfig, TrainingDiverged, parse_args, preset_config, train
from ddpm_hf.training.batches import global_batch_indices, micro_slice
from ddpm_hf.training.checkpoint import list_checkpoints, resolve_checkpoint
from ddpm_hf.training.loop import warmup_lr
from ddpm_hf.training.losses import make_optimizer

ROOT = Path(__file__).resolve().parents[1]
TINY = {  # the digits preset at toy size: a step takes a few milliseconds
    "unet_config": {
        "sample_size": 8,
        "in_channels": 1,
        "out_channels": 1,
        "block_out_channels": [16, 16],
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
        "layers_per_block": 1,
        "norm_num_groups": 8,
    },
    "train_batch_size": 8,
    "num_grid_images": 4,
    "num_inference_steps": 5,
    "save_images_steps": 0,
    "logging_steps": 1,
}


def tiny_args(output_dir, **overrides) -> list[str]:
    values = {**TINY, "output_dir": str(output_dir), **overrides}
    return ["--preset", "digits"] + [
        a for k, v in values.items() for a in (f"--{k}", json.dumps(v) if isinstance(v, dict) else str(v))
    ]


def test_presets_carry_the_papers_hyperparameters():
    c = preset_config("cifar10")
    assert (c.train_batch_size, c.learning_rate, c.lr_warmup_steps, c.max_grad_norm) == (128, 2e-4, 5000, 1.0)
    assert (c.dropout, c.random_flip, c.ema_decay, c.max_train_steps, c.model) == (
        0.1,
        True,
        0.9999,
        800_000,
        "cifar10",
    )
    assert (c.adam_beta1, c.adam_beta2, c.adam_epsilon, c.loss, c.variance_type) == (
        0.9,
        0.999,
        1e-8,
        "simple",
        "fixed_large",
    )
    for name in ("celebahq256", "lsun256"):
        c = preset_config(name, dataset_name="x")
        assert (c.train_batch_size, c.learning_rate, c.dropout, c.resolution, c.model) == (64, 2e-5, 0.0, 256, name)
    d = preset_config("digits")
    assert d.dataset_name == "sklearn-digits" and d.unet_config["in_channels"] == 1


def test_flags_override_presets_and_help_shows_effective_defaults(capsys):
    cfg = parse_args(
        ["--preset", "cifar10", "--learning_rate", "1e-4", "--random_flip", "false", "--dataset_name", "d"]
    )
    assert cfg.learning_rate == 1e-4 and cfg.random_flip is False and cfg.train_batch_size == 128
    cfg = parse_args(["--preset", "digits", "--unet_config", '{"sample_size": 8}', "--checkpoints_total_limit", "none"])
    assert cfg.unet_config == {"sample_size": 8} and cfg.checkpoints_total_limit is None
    with pytest.raises(SystemExit):
        parse_args(["--preset", "digits", "--help"])
    help_text = capsys.readouterr().out
    assert "--learning_rate LEARNING_RATE\n                        (default: 0.001)" in help_text
    with pytest.raises(ValueError, match="loss"):
        parse_args(["--preset", "digits", "--loss", "l1"])


def test_step_plan():
    seen = torch.cat([global_batch_indices(s, 10, 4, seed=0) for s in range(5)])  # 20 draws = 2 epochs of 10
    assert sorted(seen[:10].tolist()) == list(range(10)) and sorted(seen[10:].tolist()) == list(range(10))
    assert torch.equal(global_batch_indices(3, 10, 4, seed=0), seen[12:16])
    # 2 processes × 2 accumulation steps × 3 images cover the global batch of 12 exactly once.
    parts = sorted(i for m in range(2) for p in range(2) for i in range(12)[micro_slice(m, p, 2, 3)])
    assert parts == list(range(12))
    assert (
        warmup_lr(0, 2e-4, 5000) == 0.0 and warmup_lr(2500, 2e-4, 5000) == 1e-4 and warmup_lr(9999, 2e-4, 5000) == 2e-4
    )


def test_tiny_run_writes_a_loadable_pipeline(tmp_path):
    out = tmp_path / "run"
    train(parse_args(tiny_args(out, max_train_steps=4, checkpointing_steps=2, report_to="tensorboard")))
    pipe = DDPMPaperPipeline.from_pretrained(out)
    assert pipe.unet.config.in_channels == 1
    images = pipe(batch_size=2, num_inference_steps=3, output_type="np").images
    assert images.shape == (2, 8, 8, 1)
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["checkpoint-2", "checkpoint-4"]
    card = (out / "README.md").read_text()
    assert "library_name: diffusers" in card and "`learning_rate` | `0.001`" in card
    assert Image.open(out / "samples.png").size == (65, 65)  # 2 × 2 grid of 8 × 8 samples shown 4×, 1 px apart
    assert list((out / "logs").rglob("events.out.tfevents.*"))


def run_training(args, env=None, patch="") -> subprocess.CompletedProcess:
    """Train in a fresh process; `patch` is code run first (e.g. to make the process kill itself at a set point)."""
    code = "import os, signal, sys\nimport ddpm_hf.training.loop as loop\n" + textwrap.dedent(patch)
    code += "\nfrom ddpm_hf.training import parse_args\nloop.train(parse_args(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=ROOT)


KILL_AFTER_CHECKPOINT = """
_save = loop.save_checkpoint
def save_checkpoint(accelerator, folder, step, limit):
    path = _save(accelerator, folder, step, limit)
    if step == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return path
loop.save_checkpoint = save_checkpoint
"""

KILL_DURING_CHECKPOINT = """
import ddpm_hf.training.checkpoint as ckpt
def save_state(self, output_dir, **kwargs):
    if output_dir.endswith("checkpoint-" + os.environ["KILL_AT"]):
        os.makedirs(output_dir, exist_ok=True)
        open(os.path.join(output_dir, "model.safetensors"), "wb").write(b"half")
        os.kill(os.getpid(), signal.SIGKILL)
    return _save_state(self, output_dir, **kwargs)
_save_state = ckpt.Accelerator.save_state
ckpt.Accelerator.save_state = save_state
"""


def final_weights(out: Path) -> tuple[dict, dict]:
    model = load_file(out / "checkpoints" / "checkpoint-6" / "model.safetensors")
    ema = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    return model, ema


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_after_sigkill_is_exact(tmp_path):
    # Dropout on, so that the restored RNG state matters too.
    common = {"max_train_steps": 6, "checkpointing_steps": 3, "dropout": 0.1, "checkpoints_total_limit": "none"}
    straight = tmp_path / "straight"
    assert run_training(tiny_args(straight, **common)).returncode == 0
    killed = tmp_path / "killed"
    env = {**os.environ, "KILL_AT": "3"}
    result = run_training(tiny_args(killed, **common), env=env, patch=KILL_AFTER_CHECKPOINT)
    assert result.returncode == -9, result.stderr
    assert [p.name for p in list_checkpoints(killed / "checkpoints")] == ["checkpoint-3"]
    resumed = run_training(tiny_args(killed, resume_from_checkpoint="latest", **common))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout and "at step 3" in resumed.stdout
    for a, b in zip(final_weights(straight), final_weights(killed), strict=True):
        assert_same_weights(a, b)


def test_kill_while_writing_a_checkpoint_never_leaves_a_bad_latest(tmp_path):
    common = {"max_train_steps": 6, "checkpointing_steps": 3}
    out = tmp_path / "run"
    result = run_training(tiny_args(out, **common), env={**os.environ, "KILL_AT": "6"}, patch=KILL_DURING_CHECKPOINT)
    assert result.returncode == -9, result.stderr
    assert (out / "checkpoints" / "tmp-checkpoint-6").is_dir()  # the half-written one is there ...
    assert resolve_checkpoint(out / "checkpoints", "latest").name == "checkpoint-3"  # ... and never picked
    resumed = run_training(tiny_args(out, resume_from_checkpoint="latest", **common))
    assert resumed.returncode == 0, resumed.stderr
    assert "at step 3" in resumed.stdout
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["checkpoint-3", "checkpoint-6"]
    assert not (out / "checkpoints" / "tmp-checkpoint-6").exists()


def test_checkpoints_are_pruned(tmp_path):
    out = tmp_path / "run"
    train(parse_args(tiny_args(out, max_train_steps=4, checkpointing_steps=1, checkpoints_total_limit=2)))
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["checkpoint-3", "checkpoint-4"]


@pytest.mark.parametrize("logging_steps", [1, 100])  # 100: found only when checkpoint-4 is due, and not written
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, logging_steps):
    import ddpm_hf.training.losses as losses

    calls = {"n": 0}
    real = losses.training_loss

    def poisoned(*args):
        calls["n"] += 1
        loss = real(*args)
        return loss * float("nan") if calls["n"] > 3 else loss

    monkeypatch.setattr(losses, "training_loss", poisoned)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"step 3.*checkpoint-2"):
        train(parse_args(tiny_args(out, max_train_steps=10, checkpointing_steps=2, logging_steps=logging_steps)))
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["checkpoint-2"]
    assert not (out / "model_index.json").exists()


def test_bad_images_stop_the_run_or_are_counted(tmp_path, capsys):
    folder = tmp_path / "imgs" / "all"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(7):
        Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "corrupt.png").write_bytes(b"garbage")
    # --train_data_dir replaces the preset's dataset: digits' settings, the user's images.
    cfg = parse_args(tiny_args(tmp_path / "run", max_train_steps=3, train_data_dir=str(tmp_path / "imgs")))
    assert cfg.dataset_name is None
    with pytest.raises(ValueError, match=r"corrupt\.png"):
        train(cfg)
    train(TrainConfig(**{**cfg.to_dict(), "skip_bad_images": True}))
    out = capsys.readouterr().out
    assert "7 training images" not in out and "8 training images" in out
    skipped = int(out.split(" unreadable images skipped")[0].rsplit(", ", 1)[1])
    assert skipped == 3  # 3 steps × 8 images = 3 epochs of 8 files, the corrupt one drawn once per epoch


def test_vlb_loss_trains_on_the_bounds_terms(tmp_path, monkeypatch):
    import ddpm_hf.training.losses as losses
    from ddpm_hf.likelihood import vlb_terms

    seen = []

    def recording(kind, scheduler, x_0, x_t, t, noise, eps):
        loss = real(kind, scheduler, x_0, x_t, t, noise, eps)
        seen.append((loss.detach(), vlb_terms(scheduler, x_0, x_t, t, eps.detach()), t))
        return loss

    real = losses.training_loss
    monkeypatch.setattr(losses, "training_loss", recording)
    train(parse_args(tiny_args(tmp_path / "run", loss="vlb", max_train_steps=2, checkpointing_steps=2)))
    assert len(seen) == 2
    for loss, expected, _ in seen:
        assert torch.equal(loss, expected) and torch.isfinite(loss).all()
    assert {loss.dtype for loss, _, _ in seen} == {torch.float64}  # the bound's arithmetic stays float64


def test_two_processes_update_like_one(tmp_path):
    """ACCELERATE_USE_CPU + --multi_gpu starts two gloo processes; 2 × B/2 must train like 1 × B (same data, noise)."""
    common = {"max_train_steps": 2, "checkpointing_steps": 2, "dropout": 0.0, "lr_warmup_steps": 0}
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    one = run_training(tiny_args(tmp_path / "one", **common), env=env)
    assert one.returncode == 0, one.stderr
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    two = subprocess.run(
        [*launch, "examples/train_ddpm.py", *tiny_args(tmp_path / "two", **common)],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr
    assert "= 2 processes × 1 accumulation × 4 per device" in two.stdout
    a = load_file(tmp_path / "one" / "checkpoints" / "checkpoint-2" / "model.safetensors")
    b = load_file(tmp_path / "two" / "checkpoints" / "checkpoint-2" / "model.safetensors")
    init = load_file(tmp_path / "one" / "unet" / "diffusion_pytorch_model.safetensors")  # EMA: close to init
    moved = max((a[k] - init[k]).abs().max().item() for k in a)
    assert moved > 1e-4  # the two updates really changed the weights ...
    for key in a:  # ... and identically, up to the order of float32 sums
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=0), key


def test_push_to_hub_uploads_the_pipeline_not_the_checkpoints(hub_server, tmp_path):
    out = tmp_path / "run"
    args = tiny_args(out, max_train_steps=2, checkpointing_steps=1, push_to_hub="true", hub_model_id="user/digits")
    train(parse_args(args))
    files = set(hub_server.server.files("user/digits"))
    assert {"model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "README.md"} <= files
    assert "samples.png" in files and not any(f.startswith(("checkpoints", "logs")) for f in files)
    loaded = DDPMPaperPipeline.from_pretrained("user/digits")
    local = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    for key, value in loaded.unet.state_dict().items():
        assert torch.equal(value, local[key]), key


def test_failed_push_keeps_everything_local(hub_server, tmp_path):
    hub_server.server.require_token = "another-token"  # every request of ours now gets a 401
    out = tmp_path / "run"
    args = tiny_args(out, max_train_steps=2, checkpointing_steps=2, push_to_hub="true", hub_model_id="user/digits")
    with pytest.raises(RuntimeError, match=r"(?s)refused the credentials.*no new commit.*is intact"):
        train(parse_args(args))
    assert DDPMPaperPipeline.from_pretrained(out) is not None
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["checkpoint-2"]


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


CIFAR10 = ROOT.parent / "shared" / "data" / "cifar10"


@pytest.mark.skipif(not CIFAR10.is_dir(), reason="../shared/data/cifar10 is only on the developers' machines")
def test_trains_on_the_shared_cifar10_parquet(tmp_path):
    unet = {**TINY["unet_config"], "sample_size": 32, "in_channels": 3, "out_channels": 3}
    args = tiny_args(tmp_path / "run", max_train_steps=1, checkpointing_steps=1, unet_config=unet, resolution=32)
    cfg = parse_args([*args, "--dataset_name", str(CIFAR10), "--random_flip", "true"])
    train(cfg)
    pipe = DDPMPaperPipeline.from_pretrained(tmp_path / "run")
    assert pipe.unet.config.in_channels == 3 and pipe.unet.config.sample_size == 32


def test_cpu_optimizer_is_fused_and_steps_like_plain_adam():
    """The fast optimizer on CPU is one fused kernel, and its updates are the paper's Adam (no weight decay)."""
    torch.manual_seed(0)
    ours = [torch.randn(64, 32, requires_grad=True), torch.randn(32, requires_grad=True)]
    plain = [p.detach().clone().requires_grad_() for p in ours]
    fast = make_optimizer(ours, 2e-4, (0.9, 0.999), 1e-8, torch.device("cpu"))
    slow = torch.optim.Adam(plain, lr=2e-4, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    assert fast.defaults["fused"] and fast.defaults["weight_decay"] == 0
    for _ in range(3):
        grads = [torch.randn_like(p) for p in ours]
        for params, opt in ((ours, fast), (plain, slow)):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            opt.step()
    for a, b in zip(ours, plain, strict=True):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-6)


def test_gradient_checkpointing_recomputes_and_trains_identically(tmp_path, monkeypatch):
    """--gradient_checkpointing re-runs the residual blocks in the backward, and, dropout included (its RNG state
    is replayed), the weights after two steps are the ones a plain run reaches."""
    import ddpm_hf.blocks

    calls = []
    forward = ddpm_hf.blocks.ResnetBlock.forward

    def counting(self, *args, **kwargs):
        calls[-1] += torch.is_grad_enabled()
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(ddpm_hf.blocks.ResnetBlock, "forward", counting)
    common = {"max_train_steps": 2, "checkpointing_steps": 2, "dropout": 0.3, "lr_warmup_steps": 0}
    for name, flag, seed in (("plain", False, 0), ("recompute", True, 0), ("other_seed", True, 1)):
        calls.append(0)
        train(parse_args(tiny_args(tmp_path / name, gradient_checkpointing=flag, seed=seed, **common)))
    assert 0 < calls[0] < calls[1] <= 2 * calls[0]  # blocks ran again in the backward (diffusers skips a few)
    runs = ("plain", "recompute", "other_seed")
    a, b, c = (load_file(tmp_path / n / "checkpoints" / "checkpoint-2" / "model.safetensors") for n in runs)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5, msg=key)
    assert max((a[k] - c[k]).abs().max().item() for k in a) > 1e-4  # other dropout masks and data: other weights
