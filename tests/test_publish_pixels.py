"""The two helpers every writer and converter goes through: publishing by rename, and the pixel conversions."""

import numpy as np
import pytest
import torch
from diffusers.utils import numpy_to_pil

from ddpm_hf.pixels import model_to_unit, scale_to_model, to_pil, uint8_to_pil, unit_to_uint8
from ddpm_hf.publish import publish, write_file


def test_publish_replaces_or_keeps_the_existing_result(tmp_path):
    final, staged = tmp_path / "checkpoint-3", tmp_path / "tmp-checkpoint-3"
    for folder, text in ((final, "old"), (staged, "new")):
        folder.mkdir()
        (folder / "state.json").write_text(text)
    assert publish(staged, final) and (final / "state.json").read_text() == "new" and not staged.exists()
    again = tmp_path / "again"
    again.mkdir()
    (again / "state.json").write_text("other")
    assert not publish(again, final, replace=False)  # another process published it first: that one stays
    assert (final / "state.json").read_text() == "new" and not again.exists()
    write_file(tmp_path / "manifest.json", b"{}")
    write_file(tmp_path / "manifest.json", b'{"a": 1}')
    assert (tmp_path / "manifest.json").read_bytes() == b'{"a": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-3", "manifest.json"]  # no temporary left


def test_pixel_conversions_round_trip_and_quantise_as_diffusers():
    pixels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    assert torch.equal(unit_to_uint8(model_to_unit(scale_to_model(pixels))), pixels)  # every 8-bit value survives
    x = torch.empty(3, 3, 5, 5).uniform_(-1.2, 1.2, generator=torch.Generator().manual_seed(0))
    ours = [np.asarray(image) for image in to_pil(x)]
    theirs = [np.asarray(image) for image in numpy_to_pil((x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy())]
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert uint8_to_pil(pixels)[0].mode == "L" and uint8_to_pil(pixels.expand(1, 3, 16, 16))[0].mode == "RGB"
    with pytest.raises(ValueError, match="expected uint8"):
        uint8_to_pil(x)
