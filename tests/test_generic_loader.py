"""diffusers users' habits: `DiffusionPipeline.from_pretrained` (diffusers' custom-pipeline route) opens the
folders and repos this project writes, and every loading snippet of the model card runs as written."""

import re

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline

from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.card import render_model_card
from ddpm_hf.training import parse_args, train
from tiny import tiny_pipeline, tiny_train_args


def samples(pipe, steps: int = 5) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(0)
    return pipe(batch_size=2, generator=generator, num_inference_steps=steps, output_type="np", precision="fp32").images


def test_the_generic_loader_opens_a_saved_folder(tmp_path):
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path)
    loaded = DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(loaded) is DDPMPaperPipeline
    assert np.array_equal(samples(loaded), samples(pipe))
    with pytest.raises(ValueError, match="trust_remote_code=True"):  # diffusers names the route when it is missing
        DiffusionPipeline.from_pretrained(tmp_path)


def test_our_loader_never_runs_the_folders_code(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path)
    for code in ("pipeline.py", "unet/ddpm_hf.py", "scheduler/ddpm_hf.py"):
        (tmp_path / code).write_text("raise RuntimeError('code from the folder was executed')\n")
    assert type(DDPMPaperPipeline.from_pretrained(tmp_path)) is DDPMPaperPipeline


def test_folders_saved_before_the_loader_file_still_load():
    from test_compat import RUN  # written by 0.1.0: no pipeline.py, a plain _class_name

    assert not (RUN / "pipeline.py").exists()
    assert type(DDPMPaperPipeline.from_pretrained(RUN)) is DDPMPaperPipeline


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


def run_snippets(markdown: str) -> list[dict]:
    """Execute each ```python block of a card, as a reader would paste it; return each block's namespace."""
    namespaces = []
    for block in python_blocks(markdown):
        namespace: dict = {}
        small = block.replace("batch_size=16,", "batch_size=1, num_inference_steps=2,")  # the loading lines as written
        exec(compile(small, "<card>", "exec"), namespace)
        namespaces.append(namespace)
    return namespaces


def test_every_loading_snippet_of_a_pushed_card_runs(hub_server):
    pipe = tiny_pipeline()
    pipe.push_to_hub("user/ddpm-card-snippets")
    card = render_model_card("user/ddpm-card-snippets")
    blocks = run_snippets(card.text)
    assert len(blocks) == 3
    ours, generic, vanilla = (ns["pipe"] for ns in blocks)
    assert type(ours) is DDPMPaperPipeline and type(generic) is DDPMPaperPipeline
    assert type(vanilla).__name__ == "DDPMPipeline" and vanilla.scheduler.config.variance_type == "fixed_large"
    for loaded in (ours, generic, vanilla):
        assert torch.equal(loaded.unet.conv_in.weight, pipe.unet.conv_in.weight)
    assert blocks[0]["images"][0].size == (8, 8)


def test_the_card_a_run_writes_locally_names_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train(parse_args(tiny_train_args("runs/tiny", max_train_steps=1, checkpointing_steps=1, num_inference_steps=2)))
    card = (tmp_path / "runs" / "tiny" / "README.md").read_text()
    assert 'DDPMPaperPipeline.from_pretrained("runs/tiny")' in card
    ours, generic, _ = (ns["pipe"] for ns in run_snippets(card.split("## Training")[0]))
    assert type(ours) is DDPMPaperPipeline and type(generic) is DDPMPaperPipeline
