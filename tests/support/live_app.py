"""examples/app.py served on 127.0.0.1 as a user starts it, for the tests that reach it over HTTP or in a browser."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import processes

ROOT = Path(__file__).resolve().parents[2]
STARTUP_S = 300  # importing torch, diffusers and Gradio on a busy 2-core CPU


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """A running app: its URL and its process (to measure it)."""

    url: str
    process: subprocess.Popen

    def __str__(self) -> str:
        return self.url


@contextlib.contextmanager
def serve(model: str | Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """examples/app.py on 127.0.0.1 at a free port; yields it (`str()` of it is its URL)."""
    port = free_port()
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    command = [sys.executable, str(ROOT / "examples" / "app.py"), "--model", str(model), "--port", str(port), *extra]
    log = tempfile.TemporaryFile("w+")  # the app's output, shown if it fails to start
    process = processes.start(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"the app exited with {process.returncode}:\n{log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the app did not answer at {url} within {STARTUP_S} s")
            time.sleep(0.5)
        yield Served(url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
