"""Fetching pipelines from the Hub and pushing them, for components diffusers does not know by name."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, ModelCard, constants, snapshot_download
from huggingface_hub.errors import HFValidationError

from .card import render_model_card
from .checks import error_chain
from .errors import DDPMError, HubError, InputError, MissingFileError
from .identity import check_metrics, sampler_identity, weights_sha256

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

# What a pipeline folder needs; never pickles (.bin/.pt), which `from_pretrained` refuses to read anyway.
PIPELINE_FILE_PATTERNS = [
    "model_index.json",
    "*/config.json",
    "*/scheduler_config.json",
    "*/*.safetensors",
    "*/*.safetensors.index.json",
    "README.md",
]
# A component's own files, directly inside its folder (`unet/`, `scheduler/`).
COMPONENT_FILE_SUFFIXES = ("config.json", "scheduler_config.json", ".safetensors", ".safetensors.index.json")
_SNAPSHOT_KWARGS = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision")


def download_pipeline(repo_id: str, **kwargs: Any) -> str:
    """Snapshot a pipeline repo into the Hub cache and return its local folder.

    diffusers' own `DiffusionPipeline.download` refuses a `model_index.json` that names a pip-installed
    library's module (ours: `ddpm_hf.unet`) before downloading anything; this fetches the same files with
    `huggingface_hub.snapshot_download`, which honours `revision`, `token`, `cache_dir`, `local_files_only`
    and `HF_HUB_OFFLINE` like any diffusers download.
    """
    if is_local_path(repo_id):
        raise MissingFileError(f"no pipeline folder at {repo_id}: the directory does not exist")
    snapshot_kwargs = {k: kwargs[k] for k in _SNAPSHOT_KWARGS if kwargs.get(k) is not None}
    try:
        return snapshot_download(repo_id, allow_patterns=PIPELINE_FILE_PATTERNS, **snapshot_kwargs)
    except HFValidationError:
        raise MissingFileError(f"{repo_id} is not a folder here, nor a Hub repo id (owner/name)") from None
    except Exception as e:  # not found, gated, offline without a cached copy, no network...
        raise HubError(
            f"{repo_id} is not a folder here (no such directory), and as a Hub repo it could not be fetched: "
            f"{_failure(e, constants.ENDPOINT)}"
        ) from e


def is_local_path(name: str) -> bool:
    """Whether `name` can only be a filesystem path: Hub ids are `name` or `owner/name`, without ./ or ~."""
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1 or os.path.isfile(name)


class HubUploadError(DDPMError, RuntimeError):
    """A push that did not complete; the message says why, and that the local files are intact."""


def pipeline_files(folder: str | Path, extra: tuple[str, ...] = ("README.md",)) -> list[str]:
    """The files of the pipeline saved in `folder`, by name: `model_index.json`, each component's config and
    safetensors weights (directly inside the component's folder), and those of `extra` that exist.

    A list of names, not patterns: a training output folder also holds raw training weights under `checkpoints/`,
    which a pattern such as `*/*.safetensors` would match (fnmatch's `*` crosses `/`).
    """
    folder = Path(folder)
    index = folder / "model_index.json"
    if not index.is_file():
        raise MissingFileError(f"{folder} holds no model_index.json: it is not a saved pipeline")
    files = ["model_index.json"]
    for name, value in sorted(json.loads(index.read_text()).items()):
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue  # config keys, and components saved as None
        component = folder / name
        own = [p for p in sorted(component.iterdir()) if p.is_file() and p.name.endswith(COMPONENT_FILE_SUFFIXES)]
        files += [f"{name}/{p.name}" for p in own] if component.is_dir() else []
    files += [path for path in loader_files(json.loads(index.read_text())) if (folder / path).is_file()]
    return files + [name for name in extra if (folder / name).is_file()]


def check_repo_id(repo_id: str, what: str = "repo id") -> str:
    """`repo_id` if it can name a Hub repo (`name` or `owner/name`: letters, digits, '-', '_', '.'); a ValueError
    naming it otherwise, before any request is made."""
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise InputError(f"{what} {repo_id!r} is not a valid Hub repo id (name or owner/name): {e}") from None
    return repo_id


def upload_folder(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    create_pr: bool = False,
    files: list[str] | None = None,
    source: str | None = None,
    repo_type: str = "model",
) -> CommitInfo:
    """Commit a pipeline folder to `repo_id` (created if missing) on branch `revision` (created from main if missing).

    Uploads exactly `files` (paths relative to `folder`; default: `pipeline_files(folder)`) and only reads `folder`.
    `private=True` refuses an existing public repo rather than publish into it. Failures raise
    `HubUploadError` saying what went wrong and that `source` (default: the folder) is intact; the client skips
    already-uploaded files when the push is repeated. `repo_type="space"` commits to a Space (created as a Gradio
    Space) and `"dataset"` to a dataset repo (reference statistics) instead of a model repo: pass their `files`.
    """
    if repo_type not in ("model", "space", "dataset"):
        raise InputError(f"repo_type must be 'model', 'space' or 'dataset', got {repo_type!r}")
    check_repo_id(repo_id)
    api, source = HfApi(token=token), source or str(folder)
    space = {"space_sdk": "gradio"} if repo_type == "space" else {}
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(Path(folder) / name))
        for name in (files if files is not None else pipeline_files(folder))
    ]
    try:
        # A bare name is created in the caller's namespace; the Hub answers with the full id.
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type, **space).repo_id
        if private and not api.repo_info(repo_id, repo_type=repo_type).private:
            raise HubUploadError(
                f"{repo_id} already exists and is public, and private=True does not change an existing repo's "
                f"visibility. Nothing was uploaded; {source} is intact. Make the repo private first or push elsewhere."
            )
        if revision is not None and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type=repo_type)
        return api.create_commit(
            repo_id=repo_id,
            repo_type=repo_type,
            operations=operations,
            revision=revision,
            commit_message=commit_message or "Upload DDPMPaperPipeline",
            create_pr=create_pr,
        )
    except HubUploadError:
        raise
    except Exception as e:  # the client raises HfHubHTTPError, its HTTP library's transport errors, RuntimeError...
        raise HubUploadError(f"{_failure(e, api.endpoint)} {repo_id} got no new commit; {source} is intact.") from e


def _failure(error: Exception, endpoint: str) -> str:
    """One sentence on why a Hub request failed."""
    chain = error_chain(error)  # the client wraps HTTP errors of LFS uploads, for one
    status = next((s for e in chain if (s := getattr(getattr(e, "response", None), "status_code", None))), None)
    messages = {(str(e).splitlines() or [""])[0]: type(e).__name__ for e in (chain[0], chain[-1])}  # outer, root
    detail = "; ".join(f"{name}: {message}" for message, name in messages.items())
    if status in (401, 403):
        return (
            f"The Hub at {endpoint} refused the credentials (HTTP {status}; {detail}): log in with `hf auth login`, "
            "set HF_TOKEN or pass a token with write access."
        )
    # The client's HTTP library is an implementation detail (requests, httpx...): recognise its errors by name.
    refused = {"ConnectError", "ConnectTimeout", "ConnectionRefusedError"}
    if any(c.__name__ in refused for e in chain for c in type(e).__mro__):
        return f"Could not connect to the Hub at {endpoint} ({detail}): check the network and HF_ENDPOINT."
    return f"The push to the Hub at {endpoint} did not complete ({detail}); rerun it to finish (uploads are resumed)."


def upload_pipeline(pipeline: DiffusionPipeline, repo_id: str, *, card: ModelCard, **kwargs: Any) -> CommitInfo:
    """Save `pipeline` (safetensors) and its model card to a temporary folder and `upload_folder` it."""
    with tempfile.TemporaryDirectory() as tmp:
        pipeline.save_pretrained(tmp, safe_serialization=True, variant=kwargs.pop("variant", None))
        card.save(Path(tmp) / "README.md")
        return upload_folder(tmp, repo_id, source="the local pipeline", **kwargs)


LOADER_MODULE = "pipeline"  # model_index.json names this file as the pipeline class's module
PACKAGE = "ddpm_hf"  # what model_index.json records as our components' library
_LOADER_SOURCE = '''"""Lets diffusers' generic loader open this pipeline of the `ddpm_hf` package (pip install ddpm_hf):

    DiffusionPipeline.from_pretrained(FOLDER_OR_REPO_ID, trust_remote_code=True)

It only imports the installed package. `ddpm_hf`'s own `from_pretrained` never runs it.
"""

from ddpm_hf import {name}  # noqa: F401
'''


def loader_files(index: dict[str, Any]) -> dict[str, str]:
    """The code files, by path, that diffusers' custom-pipeline route needs to load a pipeline of this package: the
    pipeline class's module, and one per component of this package (from a Hub repo diffusers imports a component of
    a library it does not know only through such a file), each mapped to the class it imports."""
    name = index["_class_name"]
    files = {f"{LOADER_MODULE}.py": name[1] if isinstance(name, list) else name}
    for component, value in index.items():
        if not component.startswith("_") and isinstance(value, list) and value[0] == PACKAGE:
            files[f"{component}/{PACKAGE}.py"] = value[1]
    return files


def write_loader(folder: str | Path) -> None:
    """Make a saved pipeline folder loadable by `DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`:
    the `loader_files`, and model_index.json's `_class_name` naming the pipeline's."""
    folder = Path(folder)
    index = json.loads((folder / "model_index.json").read_text())
    for path, class_name in loader_files(index).items():
        (folder / path).write_text(_LOADER_SOURCE.format(name=class_name))
    index["_class_name"] = [LOADER_MODULE, loader_files(index)[f"{LOADER_MODULE}.py"]]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def weights_view(folder: str | Path, view: str | Path) -> None:
    """Link into `view` the pipeline's configs and weights from `folder`, and no code: what this package's loader
    reads, so that it never runs a file from the folder (or from a Hub cache the generic loader also filled)."""
    for name in pipeline_files(folder, extra=()):
        if name.endswith(".py"):
            continue
        target = Path(view, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.symlink_to(Path(folder, name).resolve())
        except OSError:  # no symlinks here (Windows without the privilege): a copy reads the same
            shutil.copy2(Path(folder, name), target)


class PipelineHubMixin:
    """`from_pretrained` from Hub repo ids and `push_to_hub` with the project's model card, for a `DiffusionPipeline`
    whose components live in a pip-installed package (list it before `DiffusionPipeline` among the bases). Saved
    folders also open with diffusers' generic loader (`write_loader`)."""

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """diffusers' `save_pretrained`, plus the files that let `DiffusionPipeline.from_pretrained` read it."""
        super().save_pretrained(save_directory, **kwargs)
        write_loader(save_directory)

    @classmethod
    def load_config(cls, *args: Any, **kwargs: Any) -> Any:
        """diffusers' `load_config`; a `_class_name` naming the loader file is read as this class, so that this
        class's `from_pretrained` never runs code from the folder it loads."""
        loaded = super().load_config(*args, **kwargs)
        config = loaded[0] if isinstance(loaded, tuple) else loaded
        if isinstance(config.get("_class_name"), list) and config["_class_name"][0] == LOADER_MODULE:
            config["_class_name"] = config["_class_name"][1]
        return loaded

    @classmethod
    def download(cls, pretrained_model_name: str, **kwargs: Any) -> str:
        """Fetch a pipeline repo from the Hub (see `download_pipeline`)."""
        return download_pipeline(pretrained_model_name, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> DiffusionPipeline:
        """Load from a local folder or a Hub repo id; only safetensors weights are read.

        Takes diffusers' `from_pretrained` arguments (`revision`, `token`, `cache_dir`, `torch_dtype`, ...).
        """
        if kwargs.get("use_safetensors") is False:
            raise InputError(f"{cls.__name__} only loads safetensors weights; drop use_safetensors=False")
        folder = pretrained_model_name_or_path
        if not os.path.isdir(folder):
            folder = cls.download(str(folder), **kwargs)
        with tempfile.TemporaryDirectory() as view:
            weights_view(folder, view)
            pipe = super().from_pretrained(view, use_safetensors=True, **kwargs)
        pipe.register_to_config(_name_or_path=str(pretrained_model_name_or_path))
        return pipe

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        create_pr: bool = False,
        safe_serialization: bool = True,
        variant: str | None = None,
        *,
        revision: str | None = None,
        model_card: ModelCard | None = None,
        other_sampler: bool = False,
        **card_kwargs: Any,
    ) -> CommitInfo:
        """Upload the pipeline and its model card to `repo_id`, on branch `revision` (created from main if missing).

        diffusers' own `push_to_hub` writes a generic card and cannot target a branch. The card is `model_card`, or
        `ddpm_hf.card.render_model_card(repo_id, **card_kwargs)` (`dataset`, `training_details`, `metrics`...).
        `metrics` must be of these weights and, unless `other_sampler=True` publishes them as another sampler's (the
        card names each metric's sampler), of this pipeline's scheduler (`ddpm_hf.identity.check_metrics`).
        Failures raise `HubUploadError`, which says why.
        """
        if not safe_serialization:
            raise InputError(f"{type(self).__name__} only saves safetensors weights; drop safe_serialization=False")
        metrics = card_kwargs.get("metrics")
        if metrics is not None:
            record = metrics.to_dict() if hasattr(metrics, "to_dict") else metrics
            check_metrics(
                record,
                weights_sha256(self.unet),
                sampler_identity(self.scheduler),
                other_sampler=other_sampler,
                other_sampler_hint="other_sampler=True",
            )
        card = model_card or render_model_card(repo_id, revision=revision, **card_kwargs)
        return upload_pipeline(
            self,
            repo_id,
            card=card,
            revision=revision,
            private=private,
            commit_message=commit_message,
            token=token,
            create_pr=create_pr,
            variant=variant,
        )
