"""Folders written by an earlier version (tests/data/run_v0_1: a tiny digits run saved by ddpm_hf 0.1.0 at commit
b791056, after 2 of 4 steps) still load, sample the same images and resume to the same weights."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.training import parse_args, train

DATA = Path(__file__).parent / "data"
RUN, EXPECTED = DATA / "run_v0_1", DATA / "run_v0_1_expected"


def test_saved_pipeline_loads_and_samples_as_before():
    pipe = DDPMPaperPipeline.from_pretrained(RUN)
    pipe.set_progress_bar_config(disable=True)
    generators = [torch.Generator().manual_seed(i) for i in range(2)]
    images = pipe(batch_size=2, generator=generators, num_inference_steps=5, output_type="np", precision="fp32").images
    np.testing.assert_allclose(images, np.load(EXPECTED / "samples_5_steps.npy"), atol=1e-5, rtol=0)


def test_saved_checkpoint_resumes_to_the_same_weights(tmp_path):
    out = tmp_path / "run"
    shutil.copytree(RUN, out)
    saved = json.loads((RUN / "train_config.json").read_text())
    flags = {"unet_config": json.dumps(saved["unet_config"]), "train_batch_size": 8, "dropout": 0.1, "logging_steps": 1}
    # The run's own optimisation settings (0.1.0's digits preset; 0.1.0 had only the paper's constant schedule).
    flags |= {k: saved[k] for k in ("learning_rate", "lr_warmup_steps", "ema_decay")}
    flags |= {"lr_scheduler": "constant_with_warmup"}
    flags |= {"max_train_steps": 4, "checkpointing_steps": 2, "save_images_steps": 0, "num_grid_images": 4}
    flags |= {"num_inference_steps": 5, "output_dir": out, "resume_from_checkpoint": "latest"}
    flags |= {"dataset_split": "train+test"}  # 0.1.0's sklearn-digits "train" was all 1,797 digits
    train(parse_args(["--preset", "digits", *(a for k, v in flags.items() for a in (f"--{k}", str(v)))]))
    expected = load_file(EXPECTED / "checkpoint-4-model.safetensors")
    resumed = load_file(out / "checkpoints" / "checkpoint-4" / "model.safetensors")
    assert expected.keys() == resumed.keys()
    moved = max(
        (expected[k] - load_file(RUN / "checkpoints" / "checkpoint-2" / "model.safetensors")[k]).abs().max()
        for k in expected
    )
    assert moved > 2e-5  # the two resumed steps (lr still warming up) moved the weights by more than the tolerance
    for key in expected:
        torch.testing.assert_close(resumed[key], expected[key], atol=1e-7, rtol=1e-6, msg=key)


def test_the_old_run_is_not_resumed_on_the_redefined_split(tmp_path):
    """0.3 redefined sklearn-digits' 'train' (1,797 → 1,500 images): resuming the 0.1.0 run with its recorded
    split trained on the 1,500 without a word, so its checkpoint-4 was not the run's continuation."""
    from ddpm_hf.identity import IdentityMismatchError

    out = tmp_path / "run"
    shutil.copytree(RUN, out)
    saved = json.loads((RUN / "train_config.json").read_text())
    flags = {"unet_config": json.dumps(saved["unet_config"]), "train_batch_size": 8, "dropout": 0.1}
    flags |= {"max_train_steps": 4, "checkpointing_steps": 2, "save_images_steps": 0, "num_grid_images": 4}
    flags |= {"num_inference_steps": 5, "output_dir": out, "resume_from_checkpoint": "latest"}
    argv = ["--preset", "digits", *(a for k, v in flags.items() for a in (f"--{k}", str(v)))]
    with pytest.raises(IdentityMismatchError) as refused:
        train(parse_args([*argv, "--dataset_split", "train"]))
    message = str(refused.value)
    assert "1,797 images before, 1,500 now" in message and "--dataset_split train+test" in message
    assert not (out / "checkpoints" / "checkpoint-4").exists()  # nothing trained
