"""Pushing pipelines with their model card to a Hub-protocol server on 127.0.0.1, and how pushes fail."""

import hashlib
import json
import re

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard, hf_hub_download

from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.card import card_section, render_model_card
from ddpm_hf.hub import HubUploadError
from ddpm_hf.identity import files_sha256
from example_scripts import run_push_script
from tiny import PUSHED_PIPELINE_FILES, tiny_pipeline

METRICS = {  # what examples/evaluate.py writes (abridged)
    "model_revision": None,
    "metrics": {"fid": 12.345678, "inception_score": 7.5, "inception_score_std": 0.25},
    "num_samples": 1000,
    "num_inference_steps": 1000,
    "seed": 0,
    "reference": {"dataset": "uoft-cs/cifar10", "split": "train", "num_images": 50000},
}


def samples(pipe):
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(0)
    return pipe(batch_size=2, generator=generator, num_inference_steps=3, output_type="np").images


def folder_digest(folder):
    """Names and contents of every file under a folder."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_push_round_trip_with_card(hub_server):
    from ddpm_hf.identity import weights_sha256

    pipe = tiny_pipeline()
    # Metrics of other weights, or of unrecorded ones, never enter the card.
    for other in ({**METRICS, "model_weights_sha256": "ab" * 32}, METRICS):
        with pytest.raises(ValueError, match=r"measured other weights than .*\(weights sha256 (abab|not recorded)"):
            pipe.push_to_hub("user/ddpm-card", metrics=other)
    assert ("model", "user/ddpm-card") not in hub_server.server.repos
    measured = {**METRICS, "model_weights_sha256": weights_sha256(pipe.unet)}
    pipe.push_to_hub("user/ddpm-card", dataset="uoft-cs/cifar10", training_details="| lr | 2e-4 |", metrics=measured)
    assert hub_server.server.lfs_objects  # the weights took the large-file path
    loaded = DDPMPaperPipeline.from_pretrained("user/ddpm-card")
    for key, value in pipe.unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[key], value), key
    assert np.array_equal(samples(loaded), samples(pipe))

    card = ModelCard.load("user/ddpm-card")  # downloaded and parsed back
    assert card.data.library_name == "diffusers" and card.data.license == "apache-2.0"
    assert {"pytorch", "diffusers", "ddpm", "unconditional-image-generation"} <= set(card.data.tags)
    assert card.data.datasets == ["uoft-cs/cifar10"]
    fid = next(r for r in card.data.eval_results if r.metric_type == "fid")
    assert (fid.metric_value, fid.dataset_type, fid.dataset_split) == (12.345678, "uoft-cs/cifar10", "train")
    assert {r.metric_type for r in card.data.eval_results} == {"fid", "inception_score"}
    assert 'DDPMPaperPipeline.from_pretrained("user/ddpm-card")' in card.text
    assert 'UNet2DModel.from_pretrained("user/ddpm-card", subfolder="unet")' in card.text
    assert "| FID | 12.35 | uoft-cs/cifar10 (train) |" in card.text and "7.50 ± 0.25" in card.text
    assert card_section(card, "Training") == "| lr | 2e-4 |" and "@inproceedings{ho2020denoising" in card.text


def test_card_without_metrics_claims_none():
    card = render_model_card("user/fresh")
    assert card.data.eval_results is None
    assert card_section(card, "Results") == "No metrics have been measured for this checkpoint yet."


def test_push_to_a_branch_with_a_message_keeps_main(hub_server):
    tiny_pipeline("fixed_small", seed=1).push_to_hub("user/ddpm-branch", commit_message="first")
    tiny_pipeline("fixed_large", seed=2).push_to_hub("user/ddpm-branch", revision="v2", commit_message="second")
    repo = hub_server.server.repos[("model", "user/ddpm-branch")]
    assert repo.commits[repo.branches["v2"]].message == "second"
    assert repo.commits[repo.branches["main"]].message == "first"
    assert DDPMPaperPipeline.from_pretrained("user/ddpm-branch").scheduler.config.variance_type == "fixed_small"
    v2 = DDPMPaperPipeline.from_pretrained("user/ddpm-branch", revision="v2")
    assert v2.scheduler.config.variance_type == "fixed_large"
    card = ModelCard.load(hf_hub_download("user/ddpm-branch", "README.md", revision="v2"))
    assert 'from_pretrained("user/ddpm-branch", revision="v2")' in card.text
    with pytest.raises(ValueError, match="safetensors"):
        tiny_pipeline().push_to_hub("user/ddpm-branch", safe_serialization=False)


def test_push_script_folds_metrics_into_the_training_card(hub_server, tmp_path, monkeypatch, capsys):
    model = tmp_path / "run"
    tiny_pipeline().save_pretrained(model)
    training_card = render_model_card("run", dataset="../data/cifar10", training_details="| `lr` | `0.0002` |")
    training_card.save(model / "README.md")  # as the training script leaves it
    (model / "samples.png").write_bytes(b"\x89PNG fake")
    (model / "checkpoint-100").mkdir()  # training state: never uploaded
    (model / "checkpoint-100" / "optimizer.bin").write_bytes(b"state")
    unet_weights = sorted((model / "unet").glob("*.safetensors"))
    measured = {**METRICS, "model_weights_sha256": files_sha256(unet_weights)}  # as evaluate.py records it
    (tmp_path / "metrics.json").write_text(json.dumps(measured))
    # Metrics of other weights (another run's metrics.json) were folded into the card: refused, naming both hashes.
    (tmp_path / "other.json").write_text(json.dumps({**METRICS, "model_weights_sha256": "ab" * 32}))
    with pytest.raises(SystemExit):
        run_push_script(
            ["--model", model, "--repo_id", "user/ddpm-script", "--metrics", tmp_path / "other.json"], monkeypatch
        )
    said = capsys.readouterr().err
    hashes = f"(weights sha256 {'ab' * 32} there, {measured['model_weights_sha256']} here)"
    assert f"measured other weights than {model}'s {hashes}" in said
    assert ("model", "user/ddpm-script") not in hub_server.server.repos  # nothing was pushed
    before = folder_digest(model)

    argv = ["--model", model, "--repo_id", "user/ddpm-script", "--metrics", tmp_path / "metrics.json"]
    run_push_script([*argv, "--private", "--commit_message", "EMA at 800k"], monkeypatch)
    assert folder_digest(model) == before  # the folder is only read
    repo = hub_server.server.repos[("model", "user/ddpm-script")]
    assert repo.private and repo.commits[repo.branches["main"]].message == "EMA at 800k"
    files = hub_server.server.files("user/ddpm-script")
    assert "samples.png" in files and not any(p.startswith("checkpoint") for p in files)
    card = ModelCard(files["README.md"].data.decode())
    assert card_section(card, "Training") == "| `lr` | `0.0002` |"  # kept from the training card
    assert card.data.datasets == ["cifar10"]  # a local path is named by its folder
    assert next(r for r in card.data.eval_results if r.metric_type == "fid").metric_value == 12.345678
    assert 'from_pretrained("user/ddpm-script")' in card.text


def test_push_into_an_existing_repo(hub_server):
    tiny_pipeline(seed=1).push_to_hub("user/ddpm-again")
    tiny_pipeline(seed=2).push_to_hub("user/ddpm-again", commit_message="retrained")  # a new commit on top
    repo = hub_server.server.repos[("model", "user/ddpm-again")]
    head = repo.commits[repo.branches["main"]]
    assert head.message == "retrained" and repo.commits[head.parent].message != "initial commit"
    loaded = DDPMPaperPipeline.from_pretrained("user/ddpm-again")
    assert torch.equal(loaded.unet.conv_in.weight, tiny_pipeline(seed=2).unet.conv_in.weight)
    # private=True never publishes into an existing public repo.
    with pytest.raises(HubUploadError, match="already exists and is public"):
        tiny_pipeline().push_to_hub("user/ddpm-again", private=True)
    assert repo.branches["main"] == head.sha


def test_push_fails_clearly_when_the_hub_is_down(hub_server, tmp_path, monkeypatch):
    model = tmp_path / "run"
    tiny_pipeline().save_pretrained(model)
    before = folder_digest(model)
    hub_server.server.stop()  # nothing listens on the endpoint's port any more
    with pytest.raises(HubUploadError, match="Could not connect to the Hub"):
        tiny_pipeline().push_to_hub("user/ddpm-down")
    with pytest.raises(SystemExit, match=rf"push failed: .*{re.escape(str(model))} is intact"):
        run_push_script(["--model", model, "--repo_id", "user/ddpm-down"], monkeypatch)
    assert folder_digest(model) == before


def test_push_fails_clearly_on_bad_credentials(hub_server):
    hub_server.server.require_token = "hf_the_right_token"  # ours is refused: 401
    with pytest.raises(HubUploadError, match=r"refused the credentials \(HTTP 401"):
        tiny_pipeline().push_to_hub("user/ddpm-401")
    assert ("model", "user/ddpm-401") not in hub_server.server.repos


def test_interrupted_upload_commits_nothing_and_can_be_rerun(hub_server, tmp_path, monkeypatch):
    model = tmp_path / "run"
    tiny_pipeline().save_pretrained(model)
    before = folder_digest(model)
    hub_server.server.fail_lfs_uploads, hub_server.server.lfs_failure_status = 1, 400  # S3 drops the weights' upload
    argv = ["--model", model, "--repo_id", "user/ddpm-cut"]
    with pytest.raises(SystemExit, match="user/ddpm-cut got no new commit"):
        run_push_script(argv, monkeypatch)
    repo = hub_server.server.repos[("model", "user/ddpm-cut")]
    assert repo.commits[repo.branches["main"]].message == "initial commit"  # nothing half-committed
    assert folder_digest(model) == before
    run_push_script(argv, monkeypatch)  # the same command again completes the push
    loaded = DDPMPaperPipeline.from_pretrained("user/ddpm-cut")
    assert torch.equal(loaded.unet.conv_in.weight, tiny_pipeline().unet.conv_in.weight)


def test_push_script_uploads_exactly_the_pipeline_from_a_training_folder(hub_server, tmp_path, monkeypatch):
    """A training output folder holds raw training weights under checkpoints/ (and logs, grids): none leave."""
    model = tmp_path / "run"
    tiny_pipeline().save_pretrained(model)
    (model / "samples.png").write_bytes(b"\x89PNG fake")
    planted = [
        "checkpoints/checkpoint-2/model.safetensors",  # the raw (non-EMA) weights: `*/*.safetensors` matched this
        "checkpoints/checkpoint-2/optimizer.bin",
        "samples/step-0001000.png",
        "logs/ddpm/events.out.tfevents.1",
        "unet/old/diffusion_pytorch_model.safetensors",  # not the component's own file either
        "train_config.json",
    ]
    for relative in planted:
        (model / relative).parent.mkdir(parents=True, exist_ok=True)
        (model / relative).write_bytes(b"not for the Hub")
    run_push_script(["--model", model, "--repo_id", "user/ddpm-run"], monkeypatch)
    assert set(hub_server.server.files("user/ddpm-run")) == PUSHED_PIPELINE_FILES


@pytest.mark.parametrize("flag", ["--repo_id", "--space"])
def test_an_invalid_repo_id_is_refused_before_anything_is_pushed(flag, hub_server, tmp_path, monkeypatch, capsys):
    """`user/my model!` was named only after a request, with advice to rerun; an invalid --space only after the
    model was pushed."""
    model = tmp_path / "run"
    tiny_pipeline().save_pretrained(model)
    ids = {"--repo_id": "user/ddpm-ok", "--space": "user/ddpm-ok-demo", flag: "user/my model!"}
    with pytest.raises(SystemExit):
        run_push_script(["--model", model, *(a for item in ids.items() for a in item)], monkeypatch)
    err = capsys.readouterr().err
    assert f"{flag} 'user/my model!' is not a valid Hub repo id" in err and "rerun" not in err
    assert not hub_server.server.repos.keys() & {("model", "user/ddpm-ok"), ("space", "user/ddpm-ok-demo")}
    with pytest.raises(ValueError, match="'user/my model!' is not a valid Hub repo id"):
        tiny_pipeline().push_to_hub("user/my model!")
