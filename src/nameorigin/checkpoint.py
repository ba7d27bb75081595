"""One self-describing ``.safetensors`` file: the weights, and a JSON document in its metadata."""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .models import Classifier, ModelConfig, UnknownModel, build_model
from .text import ALPHABET

FORMAT = "nameorigin-checkpoint"
VERSION = 1
TRUST_PREFIX = "trust."  # tensors of the trust layer, kept apart from the model's weights


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file."""


@dataclass
class Checkpoint:
    model: Classifier
    labels: list[str]
    meta: dict = field(default_factory=dict)  # training settings, metrics, data fingerprint, temperature...
    tensors: dict = field(default_factory=dict)  # the trust layer's tensors ("trust.*"), beside the weights

    @property
    def config(self) -> ModelConfig:
        return self.model.config


def default_file_mode() -> int:
    """0o666 less the process's umask: what a plain ``open(..., "w")`` would give (mkstemp gives 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def save(path: str | os.PathLike, model: Classifier, labels: list[str], meta: dict | None = None, *,
         trust=None) -> Path:
    """Write atomically: a temporary file beside ``path``, then a rename. ``trust`` (a
    :class:`nameorigin.trust.Trust`) goes into the metadata as ``"trust"`` and its tensors beside the weights."""
    path = Path(path)
    doc = {"format": FORMAT, "version": VERSION, "model": model.config.to_dict(), "alphabet": ALPHABET,
           "labels": list(labels), **(meta or {})}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if trust is not None:
        doc["trust"], extra = trust.to_meta()
        tensors.update({k: v.detach().cpu().contiguous() for k, v in extra.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, default_file_mode())
    try:
        save_file(tensors, tmp, metadata={"nameorigin": json.dumps(doc)})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_meta(path: str | os.PathLike) -> dict:
    """The JSON document of a checkpoint, checked, without loading weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("nameorigin")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable .safetensors file ({e})") from None
    if raw is None:
        raise CheckpointError(f"{path}: a .safetensors file, but not a nameorigin checkpoint (no 'nameorigin' metadata)")
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: its nameorigin metadata is not valid JSON (damaged?)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a nameorigin checkpoint")
    if doc.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {doc.get('version')!r}; this nameorigin reads {VERSION}")
    if doc.get("alphabet") != ALPHABET:
        raise CheckpointError(f"{path}: made for another alphabet than this nameorigin's")
    if not isinstance(doc.get("labels"), list) or not doc["labels"] or not isinstance(doc.get("model"), dict):
        raise CheckpointError(f"{path}: checkpoint metadata lacks its labels or model settings")
    return doc


def load(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint; never unpickles. A damaged, foreign or tampered file raises :class:`CheckpointError`."""
    path = Path(path)
    doc = read_meta(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: its weights cannot be read ({e})") from None
    extra = {k: tensors.pop(k) for k in [k for k in tensors if k.startswith(TRUST_PREFIX)]}
    try:
        config = ModelConfig.from_dict(doc["model"])
        model = build_model(config, len(doc["labels"]))
        model.load_state_dict(tensors, strict=True)
    except (UnknownModel, TypeError, ValueError, RuntimeError) as e:
        first = str(e).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not match the model it describes ({first})") from None
    if not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
        raise CheckpointError(f"{path}: weights hold NaN or infinite values (damaged?)")
    model.to(device).eval()
    meta = {k: v for k, v in doc.items() if k not in {"format", "version", "model", "alphabet", "labels"}}
    return Checkpoint(model=model, labels=list(doc["labels"]), meta=meta, tensors=extra)
