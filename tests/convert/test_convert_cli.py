"""examples/convert_checkpoint.py, and pushing what it writes with examples/push_to_hub.py."""

import numpy as np
import pytest
from huggingface_hub import ModelCard

from convert_data import TF_DIR, TF_OUTPUTS, TF_PREFIX, TINY, eps
from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.card import card_section
from ddpm_hf.convert import RELEASED_MODELS
from example_scripts import run_push_script


@pytest.fixture
def tiny_released(monkeypatch):
    """The fixtures' network as if it were one of the released models (the script's --model choices included)."""
    monkeypatch.setitem(RELEASED_MODELS, "tiny", TINY)


def test_the_command_converts_and_refuses_with_a_message(tmp_path, run_example, tiny_released):
    out = tmp_path / "ddpm-tiny"
    # No --model: the only released model of this architecture.
    assert run_example("convert_checkpoint", ["--checkpoint", TF_DIR, "--output_dir", out]) == str(out)
    np.testing.assert_allclose(
        eps(DDPMPaperPipeline.from_pretrained(out).unet, TF_OUTPUTS), TF_OUTPUTS["eps_ema"], rtol=0, atol=1e-5
    )
    with pytest.raises(SystemExit, match=r"not converted: .* already exists"):
        run_example("convert_checkpoint", ["--checkpoint", TF_PREFIX, "--output_dir", out])
    with pytest.raises(SystemExit, match=r"not converted: .* not the cifar10 network"):
        run_example(
            "convert_checkpoint", ["--checkpoint", TF_PREFIX, "--model", "cifar10", "--output_dir", tmp_path / "c"]
        )
    raw = tmp_path / "raw"
    run_example("convert_checkpoint", ["--checkpoint", TF_PREFIX, "--model", "tiny", "--no_ema", "--output_dir", raw])
    np.testing.assert_allclose(
        eps(DDPMPaperPipeline.from_pretrained(raw).unet, TF_OUTPUTS), TF_OUTPUTS["eps_raw"], rtol=0, atol=1e-5
    )


def test_push_to_hub_keeps_the_source_and_the_papers_figures(
    tmp_path, run_example, tiny_released, hub_server, monkeypatch
):
    out = tmp_path / "ddpm-tiny"
    run_example("convert_checkpoint", ["--checkpoint", TF_PREFIX, "--model", "tiny", "--output_dir", out])
    run_push_script(["--model", out, "--repo_id", "user/ddpm-tiny-converted"], monkeypatch)
    pushed = ModelCard.load("user/ddpm-tiny-converted")
    saved = ModelCard.load(out / "README.md")
    for section in ("Source", "Training", "Reported in the paper"):
        assert card_section(pushed, section) == card_section(saved, section), section
    assert 'DDPMPaperPipeline.from_pretrained("user/ddpm-tiny-converted")' in pushed.text
    loaded = DDPMPaperPipeline.from_pretrained("user/ddpm-tiny-converted")
    np.testing.assert_allclose(eps(loaded.unet, TF_OUTPUTS), TF_OUTPUTS["eps_ema"], rtol=0, atol=1e-5)
