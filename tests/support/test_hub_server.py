"""The local Hub server (tests/support/hub_server.py) against huggingface_hub's real client code (nothing is mocked)."""

import hashlib
import os
import re
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

import processes

WEIGHTS = os.urandom(1024 * 1024)  # ~1 MB, LFS because of its *.safetensors name


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "to_upload"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("hello hub\n")
    (folder / "sub" / "model.safetensors").write_bytes(WEIGHTS)
    return folder


def test_upload_folder_goes_through_lfs_and_snapshot_download_round_trips(hub_server, tmp_path):
    api = HfApi()
    assert api.create_repo("user/roundtrip").repo_id == "user/roundtrip"
    info = api.upload_folder(repo_id="user/roundtrip", folder_path=_folder(tmp_path), commit_message="Add weights")
    assert re.fullmatch(r"[0-9a-f]{40}", info.oid)

    server = hub_server.server
    files = server.files("user/roundtrip")
    sha256 = hashlib.sha256(WEIGHTS).hexdigest()
    assert files["sub/model.safetensors"].lfs and server.lfs_objects[sha256] == WEIGHTS
    assert not files["notes.txt"].lfs
    assert ("POST", "/user/roundtrip.git/info/lfs/objects/batch") in server.requests
    assert ("PUT", f"/lfs-upload/{sha256}") in server.requests
    assert server.repos[("model", "user/roundtrip")].commits[info.oid].message == "Add weights"

    assert sorted(api.list_repo_files("user/roundtrip")) == [".gitattributes", "notes.txt", "sub/model.safetensors"]
    siblings = {s.rfilename: s for s in api.model_info("user/roundtrip", files_metadata=True).siblings}
    assert siblings["sub/model.safetensors"].lfs.sha256 == sha256
    assert api.model_info("user/roundtrip").sha == info.oid
    assert [(type(e).__name__, e.path) for e in api.list_repo_tree("user/roundtrip", path_in_repo="sub")] == [
        ("RepoFile", "sub/model.safetensors")
    ]
    assert [type(e).__name__ for e in api.get_paths_info("user/roundtrip", ["notes.txt", "sub", "nope"])] == [
        "RepoFile",
        "RepoFolder",
    ]

    local = Path(snapshot_download("user/roundtrip"))
    assert local.name == info.oid
    assert (local / "sub" / "model.safetensors").read_bytes() == WEIGHTS
    assert (local / "notes.txt").read_text() == "hello hub\n"
    assert (local / "sub" / "model.safetensors").resolve().name == sha256  # cache blobs are named after the ETag

    only = Path(snapshot_download("user/roundtrip", allow_patterns="*.txt", cache_dir=tmp_path / "other_cache"))
    assert sorted(p.name for p in only.rglob("*") if p.is_file()) == ["notes.txt"]


def test_branches_revisions_and_missing_entries(hub_server):
    api = HfApi()
    api.create_repo("user/branchy")
    api.upload_file(
        path_or_fileobj=b"on main", path_in_repo="cfg/a.txt", repo_id="user/branchy", commit_message="main version"
    )
    api.create_branch("user/branchy", branch="dev")
    dev = api.upload_file(
        path_or_fileobj=b"on dev",
        path_in_repo="cfg/a.txt",
        repo_id="user/branchy",
        revision="dev",
        commit_message="dev version",
    )

    def read(revision):
        return Path(hf_hub_download("user/branchy", "a.txt", subfolder="cfg", revision=revision)).read_bytes()

    assert read("dev") == b"on dev"
    assert read("main") == b"on main"
    assert read(dev.oid) == b"on dev"
    assert api.model_info("user/branchy", revision="dev").sha == dev.oid

    with pytest.raises(HfHubHTTPError) as error:
        api.create_branch("user/branchy", branch="dev")
    assert error.value.response.status_code == 409
    api.create_branch("user/branchy", branch="dev", exist_ok=True)
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download("user/branchy", "missing.txt")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("user/branchy", "cfg/a.txt", revision="no-such-branch")


def test_create_repo_conflict_exists_and_delete(hub_server):
    api = HfApi()
    url = api.create_repo("user/dup")
    with pytest.raises(HfHubHTTPError) as error:
        api.create_repo("user/dup")
    assert error.value.response.status_code == 409
    assert api.create_repo("user/dup", exist_ok=True) == url
    assert api.repo_exists("user/dup") and not api.repo_exists("user/nope")
    api.delete_repo("user/dup")
    assert not api.repo_exists("user/dup")


def test_private_repos_and_tokens(hub_server, tmp_path):
    api = HfApi()
    assert api.whoami()["name"] == "user"
    api.create_repo("user/secret", private=True)
    api.upload_file(path_or_fileobj=b"s3cr3t", path_in_repo="a.txt", repo_id="user/secret", commit_message="add")
    assert Path(hf_hub_download("user/secret", "a.txt")).read_bytes() == b"s3cr3t"
    with pytest.raises(RepositoryNotFoundError):  # anonymous: the Hub hides private repos
        hf_hub_download("user/secret", "a.txt", token=False, cache_dir=tmp_path / "anonymous")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("user/secret", token=False)

    hub_server.server.require_token = hub_server.token
    for call in (
        lambda: api.whoami(token="hf_wrong"),
        lambda: api.model_info("user/secret", token="hf_wrong"),
        lambda: hf_hub_download("user/secret", "a.txt", token="hf_wrong", cache_dir=tmp_path / "wrong"),
    ):
        with pytest.raises(HfHubHTTPError) as error:
            call()
        assert type(error.value) is HfHubHTTPError and error.value.response.status_code == 401
    assert api.model_info("user/secret").private


def test_interrupted_lfs_upload_raises_and_retry_succeeds(hub_server, tmp_path):
    api, server = HfApi(), hub_server.server
    api.create_repo("user/flaky")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(WEIGHTS)
    server.fail_lfs_uploads, server.lfs_failure_status = 1, 400  # not retried by the client, like S3's timeouts
    with pytest.raises(RuntimeError, match=re.escape("Error while uploading 'model.safetensors'")) as error:
        api.upload_file(
            path_or_fileobj=weights, path_in_repo="model.safetensors", repo_id="user/flaky", commit_message="weights"
        )
    assert isinstance(error.value.__cause__, HfHubHTTPError) and error.value.__cause__.response.status_code == 400
    assert "model.safetensors" not in server.files("user/flaky") and not server.lfs_objects

    api.upload_file(
        path_or_fileobj=weights, path_in_repo="model.safetensors", repo_id="user/flaky", commit_message="weights, again"
    )
    assert server.files("user/flaky")["model.safetensors"].data == WEIGHTS


def test_dropped_connection_during_lfs_upload_is_retried_by_the_client(hub_server):
    api, server = HfApi(), hub_server.server
    api.create_repo("user/dropped")
    server.fail_lfs_uploads = 1  # lfs_failure_status=None: the connection is cut mid-body
    api.upload_file(path_or_fileobj=WEIGHTS, path_in_repo="w.bin", repo_id="user/dropped", commit_message="w")
    assert server.files("user/dropped")["w.bin"].data == WEIGHTS
    assert server.requests.count(("PUT", f"/lfs-upload/{hashlib.sha256(WEIGHTS).hexdigest()}")) == 2


def _unet_digest(unet) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(unet.state_dict().items()):
        digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


_OFFLINE_SCRIPT = """
import hashlib, huggingface_hub.constants as c
assert c.HF_HUB_OFFLINE
from diffusers import DDPMPipeline
unet = DDPMPipeline.from_pretrained("user/tiny").unet
digest = hashlib.sha256()
for name, tensor in sorted(unet.state_dict().items()):
    digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
print(digest.hexdigest())
"""


def test_diffusers_push_to_hub_then_from_pretrained_online_and_offline(hub_server):
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 32),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
    )
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).push_to_hub("user/tiny")
    files = hub_server.server.files("user/tiny")
    assert files["unet/diffusion_pytorch_model.safetensors"].lfs
    assert {"model_index.json", "scheduler/scheduler_config.json", "unet/config.json", "README.md"} <= set(files)

    loaded = DDPMPipeline.from_pretrained("user/tiny")
    assert _unet_digest(loaded.unet) == _unet_digest(unet)
    expected = unet.state_dict()
    assert all(torch.equal(tensor, expected[name]) for name, tensor in loaded.unet.state_dict().items())

    # Offline mode is read once, at import => a fresh interpreter. It must be served from the cache alone.
    seen = len(hub_server.server.requests)
    result = processes.run(
        [sys.executable, "-c", _OFFLINE_SCRIPT], env={**hub_server.env(), "HF_HUB_OFFLINE": "1"}, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == _unet_digest(unet)
    assert len(hub_server.server.requests) == seen
