"""Hub repo ids through a Hub-protocol server on 127.0.0.1 with huggingface_hub's real client."""

import sys

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError

import processes
from ddpm_hf import DDPMPaperPipeline
from tiny import tiny_pipeline


def images(pipe, seed=0):
    pipe.set_progress_bar_config(disable=True)
    return pipe(batch_size=2, generator=torch.Generator().manual_seed(seed), num_inference_steps=5, output_type="np")


def test_push_and_load_by_repo_id(hub_server):
    pipe = tiny_pipeline()
    pipe.push_to_hub("user/ddpm-tiny")
    assert hub_server.server.lfs_objects  # the weights took the large-file path
    # diffusers' generic loader runs the repo's loader files only when told to, and says so ...
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        DiffusionPipeline.download("user/ddpm-tiny")
    # ... DDPMPaperPipeline reads the weights and configs alone (tests/test_generic_loader.py: the other route).
    loaded = DDPMPaperPipeline.from_pretrained("user/ddpm-tiny")
    for key, value in pipe.unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[key], value), key
    assert np.array_equal(images(loaded).images, images(pipe).images)


def test_revision_and_offline_cache(hub_server, tmp_path):
    api = HfApi()
    api.create_repo("user/ddpm-rev")
    tiny_pipeline("fixed_small", seed=1).save_pretrained(tmp_path / "v1")
    tiny_pipeline("fixed_large", seed=2).save_pretrained(tmp_path / "v2")
    api.upload_folder(repo_id="user/ddpm-rev", folder_path=tmp_path / "v1")
    api.create_branch("user/ddpm-rev", branch="v2")
    api.upload_folder(repo_id="user/ddpm-rev", folder_path=tmp_path / "v2", revision="v2")
    assert DDPMPaperPipeline.from_pretrained("user/ddpm-rev").scheduler.config.variance_type == "fixed_small"
    assert DDPMPaperPipeline.from_pretrained("user/ddpm-rev", revision="v2").scheduler.config.variance_type == (
        "fixed_large"
    )
    # Once cached, the repo loads with HF_HUB_OFFLINE=1 and no request reaches the server.
    n_requests = len(hub_server.server.requests)
    code = "from ddpm_hf import DDPMPaperPipeline as P; print(P.from_pretrained('user/ddpm-rev').scheduler.config)"
    out = processes.run([sys.executable, "-c", code], env={**hub_server.env(), "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    assert "('variance_type', 'fixed_small')" in out.stdout
    assert len(hub_server.server.requests) == n_requests


def test_private_repo_needs_the_token(hub_server, tmp_path):
    tiny_pipeline().push_to_hub("user/ddpm-private", private=True)
    with pytest.raises(OSError, match="refused the credentials") as refused:
        DDPMPaperPipeline.from_pretrained("user/ddpm-private", token=False, cache_dir=tmp_path / "fresh")
    assert isinstance(refused.value.__cause__, RepositoryNotFoundError)  # the client's own error stays reachable
    assert DDPMPaperPipeline.from_pretrained("user/ddpm-private", cache_dir=tmp_path / "fresh2") is not None
