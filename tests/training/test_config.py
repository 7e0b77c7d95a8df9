"""`ddpm_hf.training.config`: the paper's presets and the command line built from the config dataclass."""

from dataclasses import fields

import pytest

from ddpm_hf.training import TrainConfig, parse_args, preset_config


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
    cfg = parse_args(
        ["--preset", "digits", "--unet_config", '{"layers_per_block": 2}', "--checkpoints_total_limit", "none"]
    )
    assert cfg.unet_config == {"layers_per_block": 2} and cfg.checkpoints_total_limit is None
    assert parse_args(["--preset", "digits"]).unet_config["block_out_channels"] == [32, 64]  # str defaults parse
    with pytest.raises(SystemExit):
        parse_args(["--preset", "digits", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare words
    assert "--learning_rate LEARNING_RATE Adam's learning rate after warm-up (default: 0.002)" in help_text
    assert "--train_batch_size TRAIN_BATCH_SIZE the GLOBAL batch" in help_text
    for f in fields(TrainConfig):  # every flag has a help line, not only a default
        assert f.metadata["help"] and f"--{f.name}" in help_text, f.name


def test_switches_are_bare_or_explicit_as_in_diffusers_scripts():
    cfg = parse_args(["--preset", "digits", "--push_to_hub", "--gradient_checkpointing", "--random_flip"])
    assert cfg.push_to_hub and cfg.gradient_checkpointing and cfg.random_flip
    cfg = parse_args(["--preset", "digits", "--hub_private_repo", "--use_ema", "false", "--random_flip", "true"])
    assert cfg.hub_private_repo and not cfg.use_ema and cfg.random_flip
    assert parse_args(["--preset", "digits", "--hub_private", "true"]).hub_private_repo  # the old spelling


def test_diffusers_spellings_are_aliases():
    cfg = parse_args(
        ["--preset", "digits", "--logger", "tensorboard", "--ddpm_num_steps", "500", "--ddpm_num_inference_steps", "50",
         "--ema_max_decay", "0.999", "--eval_batch_size", "16", "--ddpm_beta_schedule", "linear", "--local_rank", "0"]
    )  # fmt: skip
    assert (cfg.report_to, cfg.num_train_timesteps, cfg.num_inference_steps) == ("tensorboard", 500, 50)
    assert (cfg.ema_decay, cfg.num_grid_images, cfg.beta_schedule) == (0.999, 16, "linear")


# diffusers' documented command (docs/source/en/training/unconditional_training.md), script name changed.
DIFFUSERS_DOCS_COMMAND = """--dataset_name=huggan/flowers-102-categories --resolution=64 --center_crop --random_flip
--output_dir=ddpm-ema-flowers-64 --train_batch_size=16 --num_epochs=100 --gradient_accumulation_steps=1 --use_ema
--learning_rate=1e-4 --lr_warmup_steps=500 --mixed_precision=no --push_to_hub""".split()


def test_the_command_from_diffusers_docs_parses_with_the_same_meaning():
    cfg = parse_args(DIFFUSERS_DOCS_COMMAND)
    assert (cfg.dataset_name, cfg.resolution, cfg.center_crop, cfg.random_flip) == (
        "huggan/flowers-102-categories",
        64,
        True,
        True,
    )
    assert (cfg.output_dir, cfg.train_batch_size, cfg.num_epochs, cfg.gradient_accumulation_steps) == (
        "ddpm-ema-flowers-64",
        16,
        100,
        1,
    )
    assert (cfg.use_ema, cfg.learning_rate, cfg.lr_warmup_steps, cfg.mixed_precision, cfg.push_to_hub) == (
        True,
        1e-4,
        500,
        "no",
        True,
    )
    assert cfg.hub_model_id is None  # the Hub repo is then named after the output folder, as diffusers does


def test_mixed_precision_is_left_to_accelerate_unless_given():
    assert parse_args(["--preset", "digits"]).mixed_precision is None
    assert parse_args(["--preset", "digits", "--mixed_precision", "bf16"]).mixed_precision == "bf16"


def test_the_hub_token_is_never_recorded():
    cfg = parse_args(["--preset", "digits", "--hub_token", "hf_secret"])
    assert cfg.hub_token == "hf_secret" and "hub_token" not in cfg.to_dict()


def test_overwrite_output_dir_is_diffusers_flag_and_means_move_aside():
    assert parse_args(["--preset", "digits", "--overwrite_output_dir"]).overwrite_output_dir is True
    assert parse_args(["--preset", "digits"]).overwrite_output_dir is False


@pytest.mark.parametrize(
    ("flag", "match"),
    [("--enable_xformers_memory_efficient_attention", "PyTorch's fused kernels")],
)
def test_diffusers_flags_that_mean_something_else_are_refused_with_the_reason(flag, match, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--preset", "digits", flag])
    assert match in capsys.readouterr().err


def test_a_folder_of_images_replaces_the_presets_dataset():
    assert parse_args(["--preset", "digits", "--train_data_dir", "imgs"]).dataset_name is None
    with pytest.raises(ValueError, match="only one of"):
        parse_args(["--preset", "digits", "--train_data_dir", "imgs", "--dataset_name", "d"])


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--loss", "l1"], "loss"),
        (["--mixed_precision", "fp8"], "mixed_precision"),
        (["--train_batch_size", "0"], "train_batch_size"),
        (["--ema_decay", "1.0"], "ema_decay"),
        (["--learning_rate=-1e-4"], "learning_rate"),
        (["--learning_rate", "nan"], "learning_rate"),
        (["--num_train_timesteps", "0"], "num_train_timesteps"),
        (["--lr_warmup_steps=-1"], "lr_warmup_steps"),
        (["--dropout", "1.5"], "dropout"),
        (["--num_epochs", "0"], "num_epochs"),
        (["--lr_scheduler", "warmup_stable_decay"], "lr_scheduler"),
        (["--center_crop", "false"], "random crops"),
        (["--unet_config", '{"sample_size": 16}'], "sample_size=16 but --resolution is 8"),
    ],
)
def test_bad_values_are_refused_by_name(flags, match):
    with pytest.raises(ValueError, match=match):
        parse_args(["--preset", "digits", *flags])
