"""The public demo served on 127.0.0.1 and reached over HTTP as strangers reach a Space: Gradio's client for the
jobs (two visitors at once, a crowd against the queue), plain requests for uploads and file serving.

Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import io
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("gradio", reason="gradio is not installed (the demo extra: pip install -e '.[demo]')")
from gradio_client import Client
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError

from ddpm_hf.card import render_model_card
from live_app import serve
from tiny import train_tiny_digits

T = 1000  # a chain long enough to be running while another request arrives
MAX_QUEUE = 4
JOB_S = 300


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("live") / "tiny-digits"
    train_tiny_digits(steps=2, num_train_timesteps=T).save_pretrained(folder)
    render_model_card("tiny-digits", dataset="sklearn-digits").save(folder / "README.md")
    return folder


@pytest.fixture(scope="module")
def app(model_dir):
    limits = ["--max_queue", MAX_QUEUE, "--concurrency", 2, "--max_file_size", "100kb", "--max_batch_size", 4]
    with serve(model_dir, "--public", *map(str, limits)) as served:
        yield served


def client(app) -> Client:
    """A visitor: a Gradio client has a session of its own, as a browser tab does."""
    return Client(str(app), verbose=False, download_files=False)


def rss_mib(process) -> float:
    with open(f"/proc/{process.pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def upload(app, data: bytes, name: str) -> tuple[int, str]:
    boundary = "ddpmhfboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{app}gradio_api/upload", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_uploads_over_the_limit_are_refused(app):
    """A 32 MiB junk upload used to be accepted and kept."""
    status, answer = upload(app, b"\0" * 200_000, "junk.bin")
    assert status == 413, (status, answer)
    png = io.BytesIO()
    Image.new("L", (8, 8)).save(png, format="PNG")
    assert upload(app, png.getvalue(), "digit.png")[0] == 200  # an image within the limit is taken


def test_only_what_the_app_made_is_served(app, model_dir):
    for path in ("/etc/passwd", str(model_dir / "model_index.json"), str(Path(__file__).resolve())):
        assert get(f"{app}gradio_api/file={path}") == 403, path
    result = client(app).predict(1, 0, 5, "fp32", api_name="/sample")
    downloads = result[3]
    assert len(downloads) == 2 and all(get(f"{app}gradio_api/file={f['path']}") == 200 for f in downloads)


def test_a_visitor_cannot_open_what_is_not_served(app, model_dir):
    visitor = client(app)
    with pytest.raises(AppError, match=r"not in the list of choices|does not serve"):
        visitor.predict(str(model_dir.parent), api_name="/open_model")


def test_two_visitors_at_once_see_and_stop_only_their_own_jobs(app):
    a, b = client(app), client(app)
    b_job = b.submit(1, 0, T, "fp32", api_name="/sample")
    deadline = time.monotonic() + JOB_S
    while not any(isinstance(o[4], str) and o[4].startswith("step ") for o in b_job.outputs()):
        assert time.monotonic() < deadline and not b_job.done(), "B's job never started"
        time.sleep(0.1)
    # A presses Stop with no job of their own: the line speaks of A's (absent) job, not of B's running one.
    said = a.predict(api_name="/stop_sample")
    assert said.startswith("**Stopped** after step 0:") and " of " not in said.split(":")[0]
    # A's own job runs beside B's and A cancels it; B's goes on to its end.
    a_job = a.submit(1, 1, T, "fp32", api_name="/sample")
    while not any(isinstance(o[4], str) and o[4].startswith("step ") for o in a_job.outputs()):
        assert time.monotonic() < deadline, "A's job never started"
        time.sleep(0.1)
    a_job.cancel()
    said = a.predict(api_name="/stop_sample")
    assert said.startswith("**Stopped** after step ") and f" of {T}:" in said
    final = b_job.result(timeout=JOB_S)
    assert final[4].startswith(f"1 samples, {T} steps (the full chain)"), final[4]


def test_a_crowd_is_queued_or_told_the_queue_is_full(app):
    """20 Sample requests at once from 4 visitors: each completes or is refused with the queue's message, the server
    answers afterwards, and its memory stays bounded."""
    before = rss_mib(app.process)
    visitors = [client(app) for _ in range(4)]

    def request(i: int) -> str:
        try:
            result = visitors[i % 4].predict(2, i, 100, "fp32", api_name="/sample")
        except QueueError as e:
            return f"refused: {e}"
        return result[4]

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(request, range(20)))
    done = [a for a in answers if a.startswith("2 samples, 100 steps")]
    refused = [a for a in answers if a.startswith("refused: Queue is full")]
    assert len(done) + len(refused) == 20, answers
    assert refused and len(done) >= MAX_QUEUE, answers
    assert get(str(app)) == 200
    assert client(app).predict(1, 0, 5, "fp32", api_name="/sample")[4].startswith("1 samples, 5 steps")
    after = rss_mib(app.process)
    print(f"crowd: {len(done)} done, {len(refused)} refused; server RSS {before:.0f} MiB before, {after:.0f} after")
    assert after - before < 400, (before, after)
