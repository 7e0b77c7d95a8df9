"""The demo as a person uses it: examples/app.py started on 127.0.0.1 with a tiny model, driven in headless Chromium.

Playwright (PyPI) drives Debian's Chromium (`apt-get install chromium`; .ci/run installs it): Playwright's own
browser download is never used. Skipped, saying what is missing, where either is absent.

Also a tool, run from the repository's root (tests/support/ holds the modules it shares with the tests):

    PYTHONPATH=tests/support python tests/demo/test_app_browser.py --model runs/digits

starts the app on that model, runs Sample in the browser and saves a screenshot of the page to
docs/figures/app_demo.png (the README's; `--output` for another file).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from live_app import serve

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("DDPM_HF_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
JOB_S = 120


def missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    for module, extra in (("gradio", "demo"), ("playwright", "dev")):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e '.[{extra}]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@contextlib.contextmanager
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def image_in(page, elem_id: str) -> Image.Image:
    """The picture an image component shows, decoded from the bytes the browser fetched."""
    src = page.locator(f"#{elem_id} img").first.get_attribute("src")
    response = page.request.get(src)
    assert response.ok, f"{src}: HTTP {response.status}"
    return Image.open(io.BytesIO(response.body()))


def fill(page, elem_id: str, value) -> None:
    field = page.locator(f"#{elem_id} input").first
    field.fill(str(value))
    field.blur()


def run_sample(page, batch: int, steps: int, seed: int = 0) -> Image.Image:
    """Set the Sample tab's fields, press Sample, wait for the chain to end; the samples as shown."""
    fill(page, "batch", batch)
    fill(page, "seed", seed)
    fill(page, "steps", steps)
    page.locator("#sample").click()
    page.get_by_text(f"{batch} samples, {steps} steps").wait_for(timeout=JOB_S * 1000)
    return image_in(page, "samples")


# --- the tests ---------------------------------------------------------------------------------------------------

pytestmark = pytest.mark.skipif(missing() is not None, reason=f"browser test: {missing()}")

T = 50


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tiny import train_tiny_digits

    folder = tmp_path_factory.mktemp("browser") / "tiny-digits"
    train_tiny_digits(steps=40, num_train_timesteps=T).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def page(model_dir):
    with serve(model_dir, "--dataset_name", "sklearn-digits") as url, browser() as chromium:
        page = chromium.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(str(url), wait_until="domcontentloaded")
        page.locator("#sample").wait_for(timeout=60_000)
        yield page


def test_sample_in_the_browser(page, model_dir):
    import torch

    from ddpm_hf import DDPMPaperPipeline
    from ddpm_hf.grid import image_grid

    shown = run_sample(page, batch=4, steps=T, seed=3)
    array = np.asarray(shown.convert("L"), dtype=np.float64)
    assert shown.size == (2 * 64 + 1, 2 * 64 + 1)  # four 8×8 digits, enlarged, two by two
    cells = [array[r * 65 : r * 65 + 64, c * 65 : c * 65 + 64] for r in range(2) for c in range(2)]
    assert all(cell.std() > 10 for cell in cells)  # each a picture, not a blank square
    assert not any(np.array_equal(cells[0], cell) for cell in cells[1:])  # four different samples

    # What the page shows is the model's: DDPMPaperPipeline with the same seeds, pixel for pixel.
    pipe = DDPMPaperPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    generators = [torch.Generator().manual_seed(3 + i) for i in range(4)]
    expected = pipe(batch_size=4, generator=generators, num_inference_steps=T, output_type="pil").images
    assert np.array_equal(np.asarray(shown), np.asarray(image_grid(expected, cols=2, pad=1, scale=8)))

    # The chain's last x_t and x̂_0 stay on the page, and the samples can be downloaded.
    assert image_in(page, "live-xt").size == shown.size and image_in(page, "live-x0").size == shown.size
    links = {
        a.get_attribute("href").rsplit("/", 1)[-1]: a.get_attribute("href") for a in page.locator("#downloads a").all()
    }
    assert sorted(links) == ["samples.zip", "samples_grid.png"]
    with zipfile.ZipFile(io.BytesIO(page.request.get(links["samples.zip"]).body())) as zf:
        downloaded = [np.asarray(Image.open(io.BytesIO(zf.read(name)))) for name in sorted(zf.namelist())]
    assert len(downloaded) == 4
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(downloaded, expected, strict=True))


def test_bad_input_shows_its_message(page, tmp_path):
    fill(page, "steps", 0)
    page.locator("#sample").click()
    message = "number of steps must be a whole number from 1 to 50, got 0"
    status = page.locator("#sample-status")
    status.get_by_text(message).wait_for(timeout=JOB_S * 1000)
    # In the status line, not in a toast that vanishes after ~10 s leaving the previous run's status.
    time.sleep(12)
    assert message in status.inner_text() and "samples," not in status.inner_text()

    model_box = page.get_by_label("Model: a pipeline folder or Hub repo id")
    model_box.fill(str(tmp_path))
    page.get_by_role("button", name="Open").click()
    page.get_by_text("holds no model_index.json: it is not a saved pipeline").wait_for(timeout=JOB_S * 1000)


# --- the README's screenshot ---------------------------------------------------------------------------------------


def screenshot(model: str, output: str, batch: int, steps: int, seed: int) -> None:
    with serve(model) as url, browser() as chromium:
        page = chromium.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        page.goto(str(url), wait_until="domcontentloaded")
        page.locator("#sample").wait_for(timeout=60_000)
        shown = run_sample(page, batch, steps, seed)
        if np.asarray(shown.convert("L")).std() < 10:
            raise SystemExit("the samples look blank: no screenshot")
        page.screenshot(path=output, full_page=True)
    print(f"wrote {output}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Screenshot of examples/app.py after a Sample run, in Chromium.")
    parser.add_argument("--model", required=True)
    parser.add_argument("--output", default="docs/figures/app_demo.png")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if missing():
        raise SystemExit(missing())
    screenshot(args.model, args.output, args.batch, args.steps, args.seed)
