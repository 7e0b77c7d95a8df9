import os
import sys
from pathlib import Path

import pytest

from hub_server import HubServer


class LocalHub:
    """What the `hub_server` fixture yields: a running `HubServer` plus the client settings pointing at it."""

    def __init__(self, server: HubServer, home: Path, token: str):
        self.server = server  # state and knobs: repos, lfs_objects, requests, require_token, fail_lfs_uploads...
        self.endpoint = server.endpoint
        self.token = token
        self.home = home
        self.cache_dir = home / "hub"

    def env(self) -> dict[str, str]:
        """Environment for a subprocess using this server (huggingface_hub reads it once, at import)."""
        env = {k: v for k, v in os.environ.items() if k not in _UNSET_ENV}
        env.update(
            {
                "HF_ENDPOINT": self.endpoint,
                "HF_HOME": str(self.home),
                "HF_HUB_CACHE": str(self.cache_dir),
                "HF_TOKEN": self.token,
                # With `hf_xet` installed the client uploads through Xet unconditionally (it does not ask the server),
                # and this server only speaks LFS.
                "HF_HUB_DISABLE_XET": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1",
            }
        )
        return env


# These would override the settings above (staging mode replaces HF_ENDPOINT, offline mode blocks all requests...).
_UNSET_ENV = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HUGGINGFACE_CO_STAGING",
    "HUGGING_FACE_HUB_TOKEN",
    "HUGGINGFACE_HUB_CACHE",
    "HF_TOKEN_PATH",
    "HF_XET_CACHE",
    "HF_OIDC_RESOURCE",
)


@pytest.fixture
def hub_server(request, tmp_path, monkeypatch):
    """A local Hub on 127.0.0.1 that huggingface_hub (and diffusers) in this process talk to, for one test.

    Yields a `LocalHub`: `.endpoint`, `.token` (sent by default, via HF_TOKEN), `.server` (the `HubServer`: inspect
    `.repos`/`.lfs_objects`/`.requests`, set `.require_token`/`.fail_lfs_uploads`), `.cache_dir`, `.env()`.

    huggingface_hub reads HF_ENDPOINT, HF_HOME, ... once, at import, into `huggingface_hub.constants` (and other
    modules copy some of them, e.g. diffusers' HUGGINGFACE_CO_RESOLVE_ENDPOINT), so setting the env vars is not
    enough in this process: every copy is patched too, and restored after the test.

    `HubServer` options go through indirect parametrization, e.g.
    `@pytest.mark.parametrize("hub_server", [{"lfs_threshold": 1024}], indirect=True)`.

    Subprocesses: pass `env=hub_server.env()` to `subprocess.run` (the variables must be set before the child imports
    huggingface_hub); add e.g. `HF_HUB_OFFLINE="1"` to that dict to test offline mode.
    """
    import huggingface_hub.hf_api
    import huggingface_hub.utils._http
    from huggingface_hub import constants

    with HubServer(**getattr(request, "param", {})) as server:
        hub = LocalHub(server, tmp_path / "hf_home", token="hf_local_test_token")
        for name in _UNSET_ENV:
            monkeypatch.delenv(name, raising=False)
        for name, value in hub.env().items():
            monkeypatch.setenv(name, value)

        home, cache = str(hub.home), str(hub.cache_dir)
        new = {  # what `huggingface_hub.constants` would hold had it been imported with `hub.env()`
            "ENDPOINT": hub.endpoint,
            "HUGGINGFACE_CO_URL_TEMPLATE": hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
            "HF_URL_HOSTS": constants.HF_URL_HOSTS | {"127.0.0.1"},
            "HF_HOME": home,
            "HF_HUB_CACHE": cache,
            "HUGGINGFACE_HUB_CACHE": cache,
            "HF_ASSETS_CACHE": os.path.join(home, "assets"),
            "HUGGINGFACE_ASSETS_CACHE": os.path.join(home, "assets"),
            "HF_XET_CACHE": os.path.join(home, "xet"),
            "HF_TOKEN_PATH": os.path.join(home, "token"),
            "HF_STORED_TOKENS_PATH": os.path.join(home, "stored_tokens"),
            "AGENT_HARNESSES_PATH": os.path.join(home, ".agent_harnesses.json"),
            "HF_HUB_OFFLINE": False,
            "HF_HUB_DISABLE_XET": True,  # see `LocalHub.env`
            "HF_HUB_DISABLE_TELEMETRY": True,
        }
        aliases = {"HUGGINGFACE_CO_RESOLVE_ENDPOINT": "ENDPOINT"}  # diffusers' copy of the endpoint
        old = {name: getattr(constants, name) for name in new}
        # Patch `huggingface_hub.constants` and every `from ...constants import X` copy already imported (modules
        # imported later read the env vars set above). A copy is a same-named global holding the same value.
        for module_name, module in list(sys.modules.items()):
            if module is None or module_name.split(".")[0] not in ("huggingface_hub", "diffusers", "transformers"):
                continue
            for attr, value in list(vars(module).items()):
                source = aliases.get(attr, attr)
                if source not in new:
                    continue
                if module is constants or (type(value) is type(old[source]) and value == old[source]):
                    monkeypatch.setattr(module, attr, new[source])
        # Module-level objects built at import time from the endpoint.
        monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", hub.endpoint)  # behind `huggingface_hub.<fn>`
        hub_origin = ("http", "127.0.0.1", int(hub.endpoint.rsplit(":", 1)[1]))
        monkeypatch.setattr(
            huggingface_hub.utils._http, "_HUB_ORIGINS", huggingface_hub.utils._http._HUB_ORIGINS | {hub_origin}
        )
        yield hub
