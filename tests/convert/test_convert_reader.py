"""The TensorFlow checkpoint reader, without TensorFlow: CRC-32C, the index table, the tensors, corruption."""

import json
import shutil

import numpy as np
import pytest

from convert_data import TF_DIR, TF_OUTPUTS, TF_PREFIX
from ddpm_hf.convert import CheckpointFormatError, ConversionError, TFCheckpoint, open_source
from ddpm_hf.convert.crc32c import crc32c
from ddpm_hf.convert.tf_checkpoint import checkpoint_prefix


def bitwise_crc32c(data: bytes) -> int:
    """CRC-32C bit by bit from its definition (reflected polynomial 0x82F63B78), without tables or chunks."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_known_values_and_lengths_around_its_chunking():
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720, B.4
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(b"") == 0
    rng = np.random.default_rng(0)
    for n in (1, 63, 64, 65, 127, 1000, 4096, 70_001):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert crc32c(data) == bitwise_crc32c(data), n


def test_reader_gives_what_tensorflow_wrote():
    checkpoint = TFCheckpoint(TF_PREFIX)
    shapes = json.loads((TF_DIR / "fixture.json").read_text())["shapes"]  # TF's own listing of the checkpoint
    assert {name: list(entry.shape) for name, entry in checkpoint.entries.items()} == shapes
    assert np.array_equal(checkpoint.read("model/conv_in/W"), TF_OUTPUTS["conv_in_W"])
    assert np.array_equal(checkpoint.read("model/conv_in/W/ExponentialMovingAverage"), TF_OUTPUTS["conv_in_W_ema"])
    assert checkpoint.read("global_step") == 3 and checkpoint.read("global_step").dtype == np.int64


def test_a_checkpoint_is_named_by_prefix_index_shard_or_folder(tmp_path):
    for name in (TF_PREFIX, TF_DIR / "model.ckpt-3.index", TF_DIR / "model.ckpt-3.data-00000-of-00001", TF_DIR):
        assert checkpoint_prefix(name) == TF_PREFIX
    shutil.copy(TF_PREFIX.with_name("model.ckpt-3.index"), tmp_path / "a.index")
    assert checkpoint_prefix(tmp_path) == tmp_path / "a"  # no state file: the one index
    shutil.copy(TF_PREFIX.with_name("model.ckpt-3.index"), tmp_path / "b.index")
    with pytest.raises(CheckpointFormatError, match=r"several checkpoints \(a, b\)"):
        checkpoint_prefix(tmp_path)
    assert checkpoint_prefix(TF_DIR / "fixture.json") is None


def test_a_state_file_naming_the_training_bucket_finds_the_checkpoint_beside_it(tmp_path):
    for f in TF_DIR.glob("model.ckpt-3.*"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "gs://bucket-us-central1/logs/run/model.ckpt-3"\n')
    assert checkpoint_prefix(tmp_path) == tmp_path / "model.ckpt-3"
    assert TFCheckpoint(checkpoint_prefix(tmp_path)).read("global_step") == 3


def corrupt(tmp_path, suffix: str, offset: int):
    """A copy of the fixture checkpoint with one byte of its `suffix` file flipped at `offset`."""
    for f in TF_DIR.glob("model.ckpt-3.*"):
        shutil.copy(f, tmp_path / f.name)
    path = tmp_path / f"model.ckpt-3{suffix}"
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(data)
    return tmp_path / "model.ckpt-3"


def test_corrupted_data_fails_its_checksum(tmp_path):
    entry = TFCheckpoint(TF_PREFIX).entries["model/conv_in/W"]
    prefix = corrupt(tmp_path, ".data-00000-of-00001", entry.offset + 5)
    with pytest.raises(CheckpointFormatError, match="model/conv_in/W fails its CRC-32C check"):
        TFCheckpoint(prefix).read("model/conv_in/W")
    unchecked = TFCheckpoint(prefix, verify=False).read("model/conv_in/W")
    assert not np.array_equal(unchecked, TF_OUTPUTS["conv_in_W"])


def test_corrupted_index_fails_its_checksum(tmp_path):
    with pytest.raises(CheckpointFormatError, match="fails its CRC-32C check"):
        TFCheckpoint(corrupt(tmp_path, ".index", 100))


def test_a_missing_data_file_is_named(tmp_path):
    shutil.copy(TF_PREFIX.with_name("model.ckpt-3.index"), tmp_path / "model.ckpt-3.index")
    with pytest.raises(ConversionError, match=r"data file is missing: .*model\.ckpt-3\.data-00000-of-00001"):
        open_source(tmp_path / "model.ckpt-3")
