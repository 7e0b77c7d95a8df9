"""An evaluation's stored samples (and bounds) are reused only by the sampler that made them.

`evaluate` resumes from OUTPUT_DIR: a second call with the same settings makes nothing new. Called into the same
folder with another sampler (DDIM for the paper's ancestral sampler), or with the paper's sampler under another
Analytic-DPM Γ (another variance, so other samples and another bound), it must refuse before any network call,
rather than report the old sampler's images or bounds as the new one's.
"""

import pytest
import torch
from diffusers import DDIMScheduler

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler
from ddpm_hf.evaluation import EvaluationError, StoreMismatchError, evaluate
from tiny import tiny_unet
from tiny_inception import TinyWithHead, save_tiny

T = 20
REFUSALS = (EvaluationError, StoreMismatchError)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_tiny(TinyWithHead(), tmp_path_factory.mktemp("inception"))


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def analytic(gamma: float) -> DDPMPaperScheduler:
    return DDPMPaperScheduler(num_train_timesteps=T, variance_type="analytic", analytic_gamma=[gamma] * T)


def pipeline(unet, scheduler) -> DDPMPaperPipeline:
    pipe = DDPMPaperPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample_evaluation(pipe, output_dir, weights):
    """Inception Score of 2 samples of 2 steps: the cheapest evaluation that stores samples."""
    return evaluate(
        pipe,
        metrics=["is"],
        output_dir=output_dir,
        inception_weights=str(weights),
        num_samples=2,
        batch_size=2,
        num_inference_steps=2,
        is_splits=1,
        grid_size=0,
        device="cpu",
    )


def bound_evaluation(pipe, output_dir):
    """The bound of 2 digits on the T = 20 chain: the cheapest evaluation that stores bounds."""
    return evaluate(
        pipe,
        metrics=["nll"],
        output_dir=output_dir,
        nll_dataset="sklearn-digits",
        nll_num_images=2,
        nll_batch_size=40,
        convert_images=True,
        batch_size=2,
        num_samples=1,
        grid_size=0,
        device="cpu",
    )


def network_calls(unet, run) -> int:
    calls = []
    hook = unet.register_forward_hook(lambda *args: calls.append(1))
    try:
        run()
    finally:
        hook.remove()
    return len(calls)


def stored_files(folder) -> set:
    return {p.relative_to(folder) for p in folder.rglob("*") if p.is_file() and ".progress" not in p.parts}


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (lambda: DDPMPaperScheduler(num_train_timesteps=T), lambda: DDIMScheduler.from_config(
            DDPMPaperScheduler(num_train_timesteps=T).config)),
        (lambda: analytic(0.5), lambda: analytic(0.6)),
    ],
    ids=["another sampler", "another gamma"],
)  # fmt: skip
def test_samples_of_another_sampler_are_not_reused(tmp_path, weights, unet, first, second):
    out = tmp_path / "eval"
    report = sample_evaluation(pipeline(unet, first()), out, weights)
    assert report["samples_made"] == 2
    # The same call again resumes: nothing is sampled anew.
    again = network_calls(unet, lambda: sample_evaluation(pipeline(unet, first()), out, weights))
    assert again == 0
    before = stored_files(out)
    with pytest.raises(REFUSALS):
        assert network_calls(unet, lambda: sample_evaluation(pipeline(unet, second()), out, weights)) == 0
    assert stored_files(out) == before  # refused before sampling: nothing written, nothing replaced
    # The other sampler's own folder is its own evaluation.
    assert sample_evaluation(pipeline(unet, second()), tmp_path / "other", weights)["samples_made"] == 2


def test_bounds_under_another_gamma_are_not_reused(tmp_path, unet):
    out = tmp_path / "eval"
    first = bound_evaluation(pipeline(unet, analytic(0.5)), out)
    assert first["nll_images_made"] == 2
    calls = []
    hook = unet.register_forward_hook(lambda *args: calls.append(1))
    try:
        with pytest.raises(REFUSALS):
            bound_evaluation(pipeline(unet, analytic(0.6)), out)
    finally:
        hook.remove()
    assert calls == []
    # Under the other Γ, in its own folder, the bound is another number.
    other = bound_evaluation(pipeline(unet, analytic(0.6)), tmp_path / "other")
    assert other.metrics["nll_bits_per_dim"] != first.metrics["nll_bits_per_dim"]
    assert torch.isfinite(torch.tensor(other.metrics["nll_bits_per_dim"]))


def test_a_bound_of_another_sampler_is_refused_before_any_sample(tmp_path, weights, unet):
    """evaluate(pipe holding DDIM, metrics=["is", "nll"]) used to make the samples first, then refuse the bound."""
    pipe = pipeline(unet, DDIMScheduler.from_config(DDPMPaperScheduler(num_train_timesteps=T).config))
    run = lambda: evaluate(  # noqa: E731
        pipe,
        metrics=["is", "nll"],
        output_dir=tmp_path / "eval",
        inception_weights=str(weights),
        num_samples=2,
        batch_size=2,
        num_inference_steps=2,
        is_splits=1,
        grid_size=0,
        nll_dataset="sklearn-digits",
        nll_num_images=2,
        convert_images=True,
        device="cpu",
    )
    with pytest.raises(EvaluationError, match=r"nll is the variational bound .* DDIMScheduler"):
        assert network_calls(unet, run) == 0
    assert not (tmp_path / "eval" / "samples").exists()


def test_the_bounds_report_reaches_the_card(tmp_path, unet, hub_server):
    """pipe.push_to_hub(metrics=<evaluate_bound's report>) said "No metrics have been measured"."""
    from huggingface_hub import ModelCard

    from ddpm_hf.evaluation import evaluate_bound

    pipe = pipeline(unet, DDPMPaperScheduler(num_train_timesteps=T))
    report = evaluate_bound(
        pipe, num_images=2, output_dir=tmp_path, dataset="sklearn-digits", convert_images=True, device="cpu"
    )
    assert report["bpd"] == report.metrics["nll_bits_per_dim"]  # the old keys stay beside the shared ones
    pipe.push_to_hub("user/bound", metrics=report)
    card = ModelCard(hub_server.server.files("user/bound")["README.md"].data.decode())
    assert "No metrics have been measured" not in card.text
    (row,) = [line for line in card.text.splitlines() if line.startswith("| NLL")]
    assert f"{report['bpd']:.2f}" in row and "DDPMPaperScheduler (fixed_large), 20 steps" in row


def test_a_step_count_the_sampler_cannot_take_is_refused_before_any_sample(tmp_path, weights, unet):
    """A PNDM pipeline asked for T + 1 steps returned x_T itself as samples, and evaluate wrote an FID for that
    noise."""
    from diffusers import PNDMScheduler

    pipe = pipeline(unet, PNDMScheduler.from_config(DDPMPaperScheduler(num_train_timesteps=T).config))
    run = lambda: evaluate(  # noqa: E731
        pipe, metrics=["is"], output_dir=tmp_path / "eval", inception_weights=str(weights), num_samples=2,
        batch_size=2, num_inference_steps=T + 1, is_splits=1, grid_size=0, device="cpu",
    )  # fmt: skip
    with pytest.raises(EvaluationError, match="PNDMScheduler"):
        assert network_calls(unet, run) == 0
    assert not (tmp_path / "eval" / "samples").exists()
