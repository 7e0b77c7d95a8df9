import importlib.util
from pathlib import Path

import pytest

import hub_client
import processes
from hub_server import HubServer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(autouse=True, scope="session")
def nothing_written_into_the_repository():
    """Scripts write into outputs/SCRIPT/ of the working directory by default: a test that forgets its
    --output_dir would leave that in the repository (checked when the repository had none to begin with)."""
    outputs = EXAMPLES.parent / "outputs"
    existed = outputs.exists()
    yield
    assert existed or not outputs.exists(), f"a test wrote into {outputs}: give its scripts an --output_dir"


@pytest.fixture
def run_example(monkeypatch):
    """`run_example(NAME, argv)` calls examples/NAME.py's `main(argv)` in this process and returns what it returns.

    The script's sibling cli.py is importable, as when it runs as `python examples/NAME.py`; `argv` items go through
    `str`, so paths and numbers can be passed as they are.
    """
    monkeypatch.syspath_prepend(str(EXAMPLES))

    def run(name: str, argv: list) -> object:
        spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.main([str(arg) for arg in argv])

    return run


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
        return hub_client.client_env(self.endpoint, self.home, self.cache_dir, self.token)


@pytest.fixture
def hub_server(request, tmp_path, monkeypatch):
    """A local Hub on 127.0.0.1 that huggingface_hub (and diffusers) in this process talk to, for one test.

    Yields a `LocalHub`: `.endpoint`, `.token` (sent by default, via HF_TOKEN), `.server` (the `HubServer`: inspect
    `.repos`/`.lfs_objects`/`.requests`, set `.require_token`/`.fail_lfs_uploads`), `.cache_dir`, `.env()`.

    huggingface_hub reads HF_ENDPOINT, HF_HOME, ... once, at import, so setting the env vars is not enough in this
    process: `hub_client.point_this_process_at` patches what the client computed from them (and restores it after the
    test). hub_client.py is where all knowledge of the client's internals lives.

    `HubServer` options go through indirect parametrization, e.g.
    `@pytest.mark.parametrize("hub_server", [{"lfs_threshold": 1024}], indirect=True)`.

    Subprocesses: pass `env=hub_server.env()` to `subprocess.run` (the variables must be set before the child imports
    huggingface_hub); add e.g. `HF_HUB_OFFLINE="1"` to that dict to test offline mode.
    """
    with HubServer(fixed_answers=hub_client.FIXED_ANSWERS, **getattr(request, "param", {})) as server:
        hub = LocalHub(server, tmp_path / "hf_home", token="hf_local_test_token")
        hub_client.point_this_process_at(hub.env(), monkeypatch)
        yield hub


@pytest.fixture(autouse=True)
def _kill_leftover_processes():
    """Children a test started through `processes` and left running (it failed, say) die with it."""
    before = processes.started()
    yield
    processes.kill_leftovers(since=before)
