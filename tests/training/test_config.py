"""`ddpm_hf.training.config`: the paper's presets and the command line built from the config dataclass."""

import pytest

from ddpm_hf.training import parse_args, preset_config


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
    assert parse_args(["--preset", "digits"]).unet_config["block_out_channels"] == [
        64,
        128,
    ]  # argparse parses str defaults
    with pytest.raises(SystemExit):
        parse_args(["--preset", "digits", "--help"])
    help_text = capsys.readouterr().out
    assert "--learning_rate LEARNING_RATE\n                        (default: 0.001)" in help_text


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
        (["--push_to_hub", "true"], "hub_model_id"),
    ],
)
def test_bad_values_are_refused_by_name(flags, match):
    with pytest.raises(ValueError, match=match):
        parse_args(["--preset", "digits", *flags])
