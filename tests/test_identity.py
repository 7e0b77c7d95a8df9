"""`ddpm_hf.identity`: what identifies a result, and the places that compare it (cards, pushes, the analytic
variance's network)."""

import json

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler
from huggingface_hub import ModelCard

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler
from ddpm_hf.analytic import GammaEstimate, with_analytic_variance
from ddpm_hf.card import render_model_card
from ddpm_hf.data import load_image_dataset
from ddpm_hf.identity import (
    IdentityMismatchError,
    ResultIdentity,
    check_metrics,
    check_same,
    data_fingerprint,
    folder_weights_sha256,
    sampler_identity,
    weights_sha256,
)
from tiny import tiny_pipeline, tiny_unet


def test_the_weights_hash_is_the_saved_folders_and_follows_the_weights(tmp_path):
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path)
    assert weights_sha256(pipe.unet) == folder_weights_sha256(tmp_path)
    before = weights_sha256(pipe.unet)
    with torch.no_grad():
        pipe.unet.conv_out.bias.add_(1.0)  # an in-place update: the cached hash must not survive it
    assert weights_sha256(pipe.unet) != before
    pipe.unet.load_state_dict(tiny_unet().state_dict())
    assert weights_sha256(pipe.unet) == before


def test_the_sampler_identity_tells_variances_samplers_and_gammas_apart():
    paper = DDPMPaperScheduler(num_train_timesteps=20)
    small = DDPMPaperScheduler(num_train_timesteps=20, variance_type="fixed_small")
    solver = DPMSolverMultistepScheduler.from_config(paper.config)
    gamma = GammaEstimate.from_samples(list(range(20)), np.full((4, 20), 0.5), np.full((4, 20), 0.5))
    analytic = with_analytic_variance(paper, gamma)
    other_gamma = with_analytic_variance(
        paper, GammaEstimate.from_samples(list(range(20)), np.full((4, 20), 0.6), np.full((4, 20), 0.5))
    )
    identities = [sampler_identity(s) for s in (paper, small, solver, analytic, other_gamma)]
    assert len({i["config_sha256"] for i in identities}) == 5
    assert [i["class"] for i in identities[:3]] == [
        "DDPMPaperScheduler",
        "DDPMPaperScheduler",
        solver.__class__.__name__,
    ]
    assert [i["variance_type"] for i in identities[:2]] == ["fixed_large", "fixed_small"]
    assert sampler_identity(DDPMPaperScheduler(num_train_timesteps=20)) == identities[0]  # stable


def test_check_same_names_every_part_that_differs():
    made = ResultIdentity("a" * 64, {"class": "DDIMScheduler", "config_sha256": "1" * 64}, 50, "fp32")
    wanted = ResultIdentity("a" * 64, {"class": "DDPMPaperScheduler", "config_sha256": "2" * 64}, 1000, "fp32")
    with pytest.raises(IdentityMismatchError) as refused:
        check_same(made, wanted, "these samples")
    message = str(refused.value)
    assert "sampler: DDIMScheduler" in message and "DDPMPaperScheduler" in message
    assert "num_inference_steps: 50 against 1000" in message and "weights" not in message and "precision" not in message
    check_same(made, ResultIdentity(weights_sha256="a" * 64), "these samples")  # parts not recorded are not compared
    assert ResultIdentity.from_dict(json.loads(json.dumps(made.to_dict()))) == made


def test_the_data_fingerprint_follows_the_images_and_their_order():
    train, column = load_image_dataset("sklearn-digits", split="train")
    test, _ = load_image_dataset("sklearn-digits", split="test")
    both, _ = load_image_dataset("sklearn-digits", split="train+test")
    prints = [data_fingerprint(ds, column) for ds in (train, test, both)]
    assert [p["num_images"] for p in prints] == [1500, 297, 1797]
    assert len({p["sha256"] for p in prints}) == 3
    assert data_fingerprint(train, column) == prints[0]
    reordered = train.select([*range(1, 1500), 0])
    assert data_fingerprint(reordered, column)["sha256"] != prints[0]["sha256"]


def report(pipe, sampler=None, steps=1000, key="fid"):
    sampler = sampler or sampler_identity(pipe.scheduler)
    return {
        "model_weights_sha256": weights_sha256(pipe.unet),
        "sampler": sampler,
        "num_inference_steps": steps,
        "seed": 0,
        "metrics": {key: 7.5},
        "measurements": {key: {"num_samples": 10, "sampler": sampler, "num_inference_steps": steps}},
    }


def test_the_card_states_each_metrics_sampler_variance_and_steps():
    pipe = tiny_pipeline()
    solver = sampler_identity(DPMSolverMultistepScheduler.from_config(pipe.scheduler.config))
    card = render_model_card("me/model", metrics=report(pipe, solver, steps=5))
    (row,) = [line for line in card.text.splitlines() if line.startswith("| FID")]
    assert "DPMSolverMultistepScheduler, 5 steps" in row
    card = render_model_card("me/model", metrics=report(pipe))
    (row,) = [line for line in card.text.splitlines() if line.startswith("| FID")]
    assert "DDPMPaperScheduler (fixed_large), 1000 steps" in row
    mixed = report(pipe)  # a metric's own sampler, not the report's, is the one its row names
    mixed["measurements"]["fid"].update(sampler=solver, num_inference_steps=5)
    (row,) = [line for line in render_model_card("me/m", metrics=mixed).text.splitlines() if line.startswith("| FID")]
    assert "DPMSolverMultistepScheduler, 5 steps" in row


def test_a_push_refuses_metrics_of_another_sampler_unless_said(hub_server):
    pipe = tiny_pipeline()
    solver = sampler_identity(DPMSolverMultistepScheduler.from_config(pipe.scheduler.config))
    with pytest.raises(IdentityMismatchError, match=r"fid measured with DPMSolverMultistepScheduler, 5 steps"):
        pipe.push_to_hub("user/m", metrics=report(pipe, solver, steps=5))
    assert ("model", "user/m") not in hub_server.server.repos
    pipe.push_to_hub("user/m", metrics=report(pipe, solver, steps=5), other_sampler=True)
    card = ModelCard(hub_server.server.files("user/m")["README.md"].data.decode())
    assert "DPMSolverMultistepScheduler, 5 steps" in card.text


def test_an_analytic_bound_is_not_published_for_the_fixed_variance_folder():
    """The Analytic-DPM folder's NLL was accepted for the σ² = β folder of the same weights."""
    pipe = tiny_pipeline()
    gamma = GammaEstimate.from_samples(list(range(1000)), np.full((4, 1000), 0.5), np.full((4, 1000), 0.5))
    analytic = sampler_identity(with_analytic_variance(pipe.scheduler, gamma))
    with pytest.raises(IdentityMismatchError, match="nll_bits_per_dim measured with DDPMPaperScheduler \\(analytic\\)"):
        check_metrics(
            report(pipe, analytic, key="nll_bits_per_dim"), weights_sha256(pipe.unet), sampler_identity(pipe.scheduler)
        )
    older = report(pipe)
    del older["sampler"], older["measurements"]["fid"]["sampler"]  # a report from before samplers were recorded
    check_metrics(older, weights_sha256(pipe.unet), sampler_identity(pipe.scheduler))
    assert "sampler not recorded" in render_model_card("me/m", metrics=older).text


def test_an_analytic_folder_refuses_another_network(tmp_path):
    pipe = tiny_pipeline()
    source = {"model_weights_sha256": weights_sha256(pipe.unet)}
    gamma = GammaEstimate.from_samples(list(range(1000)), np.full((4, 1000), 0.5), np.full((4, 1000), 0.5), source)
    pipe.scheduler = with_analytic_variance(pipe.scheduler, gamma)
    pipe.save_pretrained(tmp_path)
    assert DDPMPaperPipeline.from_pretrained(tmp_path).scheduler.config.variance_type == "analytic"
    other = tiny_unet(seed=1)
    with pytest.raises(IdentityMismatchError, match="estimated for other weights"):
        DDPMPaperPipeline.from_pretrained(tmp_path, unet=other)
    loaded = DDPMPaperPipeline.from_pretrained(tmp_path)
    loaded.unet = other
    with pytest.raises(IdentityMismatchError, match="estimated for other weights"):
        loaded(1, num_inference_steps=2)
