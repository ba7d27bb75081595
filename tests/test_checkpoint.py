import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from nameorigin import checkpoint
from nameorigin.checkpoint import CheckpointError
from nameorigin.data import encode_names
from nameorigin.models import ModelConfig, build_model

LABELS = ["Alpha", "Beta", "Gamma"]


@pytest.fixture
def saved(tmp_path):
    model = build_model(ModelConfig(name="gru-attention", hidden=8), len(LABELS))
    path = checkpoint.save(tmp_path / "m.safetensors", model, LABELS, {"metrics": {"test": {"accuracy": 0.5}}})
    return model, path


def test_round_trip_gives_the_same_outputs(saved):
    model, path = saved
    ck = checkpoint.load(path)
    assert ck.labels == LABELS and ck.config == model.config and ck.meta["metrics"]["test"]["accuracy"] == 0.5
    tokens, lengths = encode_names(["Abel", "Zhou"])
    model.eval()
    torch.testing.assert_close(ck.model(tokens, lengths)[0], model(tokens, lengths)[0])
    assert [p.name for p in path.parent.iterdir()] == ["m.safetensors"]  # no temporary file left


def test_truncated_file(saved):
    _, path = saved
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CheckpointError, match="m.safetensors"):
        checkpoint.load(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="junk.safetensors: not a readable .safetensors file"):
        checkpoint.load(path)


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"x": "y"})
    with pytest.raises(CheckpointError, match="not a nameorigin checkpoint"):
        checkpoint.load(path)


def _rewrite_metadata(path, edit):
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    doc = json.loads(header["__metadata__"]["nameorigin"])
    header["__metadata__"]["nameorigin"] = json.dumps(edit(doc))
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n:])


def test_tampered_model_settings(saved):
    _, path = saved
    _rewrite_metadata(path, lambda d: {**d, "model": {**d["model"], "hidden": 16}})
    with pytest.raises(CheckpointError, match="weights do not match the model it describes"):
        checkpoint.load(path)


def test_tampered_labels(saved):
    _, path = saved
    _rewrite_metadata(path, lambda d: {**d, "labels": LABELS + ["Delta"]})
    with pytest.raises(CheckpointError, match="weights do not match"):
        checkpoint.load(path)


def test_unknown_model_in_checkpoint(saved):
    _, path = saved
    _rewrite_metadata(path, lambda d: {**d, "model": {**d["model"], "name": "perceiver"}})
    with pytest.raises(CheckpointError, match="unknown model 'perceiver'"):
        checkpoint.load(path)


def test_other_version_and_alphabet(saved):
    _, path = saved
    _rewrite_metadata(path, lambda d: {**d, "version": 99})
    with pytest.raises(CheckpointError, match="version 99"):
        checkpoint.load(path)


def test_nan_weights(tmp_path):
    model = build_model(ModelConfig(name="gru", hidden=4), 2)
    with torch.no_grad():
        model.h2o.weight.fill_(float("nan"))
    path = checkpoint.save(tmp_path / "nan.safetensors", model, ["a", "b"])
    with pytest.raises(CheckpointError, match="NaN"):
        checkpoint.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoint.load(tmp_path / "none.safetensors")


def test_failed_write_leaves_the_old_file_and_no_temporary(saved, monkeypatch):
    model, path = saved
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(checkpoint, "save_file", boom)
    with pytest.raises(OSError):
        checkpoint.save(path, model, LABELS)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["m.safetensors"]
