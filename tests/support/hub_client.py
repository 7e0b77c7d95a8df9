"""Pointing huggingface_hub's client at the test Hub: the one place that knows the client's internals.

`hub_server.py` speaks the Hub's HTTP protocol and nothing else. Everything here depends instead on how one version
of the client configures itself, and was written against **huggingface_hub 2.4.0** (with diffusers 0.42.1): when an
upgrade moves any of it, the `hub_server` fixture breaks here (an AttributeError naming the missing thing), not in
the tests that use it. What is touched, and why:

- Environment variables (`client_env`; a subprocess needs nothing else, as the client reads them once, at import):
  HF_ENDPOINT, HF_HOME, HF_HUB_CACHE and HF_TOKEN point at the server, a private home and cache, and the test token.
  HF_HUB_DISABLE_XET=1: with `hf_xet` installed the client uploads through Xet without asking the server, and the
  server offers only LFS. HF_HUB_DISABLE_TELEMETRY=1. `UNSET_ENV` are removed: they would override these.
- `huggingface_hub.constants` (`point_this_process_at`, for the client already imported in this process): the values
  in `_constants` are what the module computes at import from those variables, restated here: ENDPOINT and what is
  built from it (HUGGINGFACE_CO_URL_TEMPLATE, HF_URL_HOSTS), and every path under HF_HOME, including the files of
  newer clients (HF_STORED_TOKENS_PATH, HF_XET_CACHE, AGENT_HARNESSES_PATH).
- Copies of those constants, made by `from huggingface_hub.constants import X` in the modules of huggingface_hub,
  diffusers and transformers already imported: found as a same-named global holding the same value, plus diffusers'
  alias of the endpoint, `HUGGINGFACE_CO_RESOLVE_ENDPOINT`.
- `huggingface_hub.hf_api.api`: the module-level `HfApi()` behind `huggingface_hub.create_repo`, `whoami`, ...,
  which keeps the endpoint it was built with.
- `huggingface_hub.utils._http._HUB_ORIGINS` (private): the origins the client forwards the Authorization header to
  when it follows a redirect or downloads from a redirected location, frozen at import from ENDPOINT as
  (scheme, host, port) tuples. The server's origin is added, as an import with HF_ENDPOINT set would have done
  (the server never redirects elsewhere, so for now this only keeps the client's state what a fresh import gives).
- `FIXED_ANSWERS`: routes the client calls on its own rather than for a test, answered with constant JSON:
  `/api/agent-harnesses`, the registry `huggingface_hub.utils._detect_agent` fetches (once a day, cached in
  AGENT_HARNESSES_PATH) to build its user-agent. Unanswered, the client only logs it at debug level.
"""

from __future__ import annotations

import os
import sys

import pytest

# These would override `client_env` (staging mode replaces HF_ENDPOINT, offline mode blocks all requests...).
UNSET_ENV = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HUGGINGFACE_CO_STAGING",
    "HUGGING_FACE_HUB_TOKEN",
    "HUGGINGFACE_HUB_CACHE",
    "HF_TOKEN_PATH",
    "HF_XET_CACHE",
    "HF_OIDC_RESOURCE",
)

FIXED_ANSWERS = {"/api/agent-harnesses": {"standardEnvVars": [], "harnesses": {}}}  # an empty registry

# diffusers' copy of huggingface_hub.constants.ENDPOINT, under another name
_ALIASES = {"HUGGINGFACE_CO_RESOLVE_ENDPOINT": "ENDPOINT"}
_PATCHED_PACKAGES = ("huggingface_hub", "diffusers", "transformers")


def client_env(endpoint: str, home: str | os.PathLike, cache_dir: str | os.PathLike, token: str) -> dict[str, str]:
    """This process's environment, less `UNSET_ENV`, plus what points a freshly imported client at `endpoint`."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET_ENV}
    env.update(
        {
            "HF_ENDPOINT": endpoint,
            "HF_HOME": str(home),
            "HF_HUB_CACHE": str(cache_dir),
            "HF_TOKEN": token,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
    )
    return env


def _constants(env: dict[str, str]) -> dict[str, object]:
    """What `huggingface_hub.constants` would hold had it been imported with `env` (see `client_env`)."""
    from huggingface_hub import constants

    endpoint, home, cache = env["HF_ENDPOINT"], env["HF_HOME"], env["HF_HUB_CACHE"]
    return {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
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
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
    }


def point_this_process_at(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the client in this process (imported or not) behave as if imported with `env`, until the test ends.

    `env` comes from `client_env`. Modules imported later read the environment variables set here.
    """
    import huggingface_hub.hf_api
    import huggingface_hub.utils._http
    from huggingface_hub import constants

    for name in UNSET_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    new = _constants(env)
    old = {name: getattr(constants, name) for name in new}
    # Patch `huggingface_hub.constants` and every `from ...constants import X` copy already imported.
    for module_name, module in list(sys.modules.items()):
        if module is None or module_name.split(".")[0] not in _PATCHED_PACKAGES:
            continue
        for attr, value in list(vars(module).items()):
            source = _ALIASES.get(attr, attr)
            if source not in new:
                continue
            if module is constants or (type(value) is type(old[source]) and value == old[source]):
                monkeypatch.setattr(module, attr, new[source])
    # Module-level objects built at import time from the endpoint.
    endpoint = env["HF_ENDPOINT"]
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", endpoint)
    origin = ("http", "127.0.0.1", int(endpoint.rsplit(":", 1)[1]))  # (scheme, host, port), as _url_origin gives
    monkeypatch.setattr(
        huggingface_hub.utils._http, "_HUB_ORIGINS", huggingface_hub.utils._http._HUB_ORIGINS | {origin}
    )
