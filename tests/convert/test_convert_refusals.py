"""What a conversion refuses, and how it says so: another model, missing or extra variables, EMA where none is
stored, an existing output folder, files that are no checkpoint."""

from pathlib import Path

import pytest
import torch

from convert_data import TF_PREFIX, TINY, TORCH_FILE
from ddpm_hf.convert import Architecture, ConversionError, TFCheckpoint, convert_checkpoint
from ddpm_hf.convert.identify import identify_model
from ddpm_hf.unet import PAPER_CONFIGS


def test_another_models_checkpoint_is_refused_with_its_differences(tmp_path):
    with pytest.raises(ConversionError, match=r"not the cifar10 network: block_out_channels: \(32, 32\) vs \(128, 256"):
        convert_checkpoint(TF_PREFIX, tmp_path / "out", model="cifar10")
    assert not (tmp_path / "out").exists()


def test_a_network_of_no_released_architecture_is_refused(tmp_path):
    with pytest.raises(ConversionError, match=r"none of the released models' architectures \(channels \(32, 32\)"):
        convert_checkpoint(TF_PREFIX, tmp_path / "out")


def test_the_256_models_are_told_apart_by_name_only():
    arch = Architecture.from_unet_config(PAPER_CONFIGS["lsun256"])
    with pytest.raises(ConversionError, match=r"celeba_hq, lsun_church, lsun_bedroom, lsun_cat.*--model"):
        identify_model(arch, Path("release/model.ckpt-1"))
    assert identify_model(arch, Path("release/diffusion_lsun_cat_model/model.ckpt-1")).name == "lsun_cat"
    assert identify_model(arch, Path("ema_diffusion_lsun_cat_model/model-1.ckpt")).name == "lsun_cat"  # the port's
    assert identify_model(arch, Path("x/model.ckpt-1"), "lsun_church").variance_type == "fixed_small"
    with pytest.raises(ConversionError, match=r"folder of the lsun_cat release .* 'lsun_church' was named"):
        identify_model(arch, Path("diffusion_lsun_cat_model/model.ckpt-1"), "lsun_church")
    with pytest.raises(ConversionError, match=r"unknown model 'church'"):
        identify_model(arch, Path("x"), "church")
    cifar = Architecture.from_unet_config(PAPER_CONFIGS["cifar10"])
    assert identify_model(cifar, Path("weights/model.ckpt-790000")).variance_type == "fixed_large"  # the only one


def dropping(monkeypatch, drop):
    """TF checkpoints read as if the variables for which `drop(name)` is true were not stored."""
    original = TFCheckpoint.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.entries = {name: entry for name, entry in self.entries.items() if not drop(name)}

    monkeypatch.setattr(TFCheckpoint, "__init__", init)


def test_missing_tf_variables_are_named(tmp_path, monkeypatch):
    gone = "model/up_1/attn_1/k/W/ExponentialMovingAverage"
    dropping(monkeypatch, lambda name: name == gone)
    with pytest.raises(ConversionError, match=rf"lacks 1 of the network's variables: {gone}$"):
        convert_checkpoint(TF_PREFIX, tmp_path / "out", model=TINY)
    convert_checkpoint(TF_PREFIX, tmp_path / "raw", model=TINY, ema=False)  # the raw k is there


def test_ema_asked_where_none_is_stored(tmp_path, monkeypatch):
    dropping(monkeypatch, lambda name: name.endswith("/ExponentialMovingAverage"))
    with pytest.raises(ConversionError, match=r"stores no ExponentialMovingAverage variables.*ema=False \(--no_ema\)"):
        convert_checkpoint(TF_PREFIX, tmp_path / "out", model=TINY)
    assert convert_checkpoint(TF_PREFIX, tmp_path / "raw", model=TINY, ema=False).is_dir()


def edited_state_dict(tmp_path, edit) -> Path:
    """A copy of the port's fixture with its state dict edited in place by `edit`."""
    state = torch.load(TORCH_FILE, weights_only=True)
    edit(state)
    path = tmp_path / "ema_diffusion_tiny_model" / "model-3.ckpt"
    path.parent.mkdir()
    torch.save(state, path)
    return path


def test_missing_port_variables_are_named(tmp_path):
    path = edited_state_dict(tmp_path, lambda s: [s.pop("up.1.attn.0.q.weight"), s.pop("mid.block_2.norm2.bias")])
    with pytest.raises(ConversionError, match=r"lacks 2 of the network's variables: mid\.block_2\.norm2\.bias, up\.1"):
        convert_checkpoint(path, tmp_path / "out", model=TINY)


def test_variables_the_network_has_no_place_for_are_refused(tmp_path):
    path = edited_state_dict(tmp_path, lambda s: s.update({"down.0.block.0.conv_shortcut.weight": torch.zeros(1)}))
    with pytest.raises(ConversionError, match=r"1 variables the network has no place for \(down\.0\.block\.0\.conv_sh"):
        convert_checkpoint(path, tmp_path / "out", model=TINY)


def test_tensors_of_other_shapes_are_refused(tmp_path):
    path = edited_state_dict(tmp_path, lambda s: s.update({"temb.dense.1.bias": torch.zeros(7)}))
    with pytest.raises(
        ConversionError, match=r"other shapes .* time_embedding\.linear_2\.bias \(7,\) \(needs \(128,\)\)"
    ):
        convert_checkpoint(path, tmp_path / "out", model=TINY)


def test_an_existing_output_folder_is_refused_before_any_reading(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists: a conversion never overwrites"):
        convert_checkpoint(TF_PREFIX, out, model=TINY)
    with pytest.raises(FileExistsError):  # not FileNotFoundError: the folder is checked first
        convert_checkpoint(tmp_path / "nothing-here", out, model=TINY)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


def test_files_that_are_no_checkpoint_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        convert_checkpoint(tmp_path / "missing.ckpt", tmp_path / "out")
    junk = tmp_path / "ema_junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConversionError, match="not a PyTorch state dict"):
        convert_checkpoint(junk, tmp_path / "out")
    tensors = tmp_path / "ema_list.pt"
    torch.save([torch.zeros(1)], tensors)
    with pytest.raises(ConversionError, match="holds a list, not a state dict"):
        convert_checkpoint(tensors, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
