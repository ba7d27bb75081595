"""One self-describing ``.safetensors`` file: the weights, and a JSON document in its metadata."""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .atomic import atomic_path
from .models import Classifier, ModelConfig, UnknownModel, build_model
from .text import ALPHABET, scheme_of

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


def jsonable(value):
    """``value`` with every NaN or infinite float replaced by None, so that it is valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the weights: each tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save(path: str | os.PathLike, model: Classifier, labels: list[str], meta: dict | None = None, *,
         trust=None) -> Path:
    """Write atomically (a hidden temporary file beside ``path``, then a rename), with a SHA-256 of the weights
    in the metadata that :func:`load` checks. ``trust`` (a :class:`nameorigin.trust.Trust`) goes into the
    metadata as ``"trust"`` and its tensors beside the weights (covered by the SHA-256 too)."""
    path = Path(path)
    if trust is None and isinstance((meta or {}).get("trust"), dict) and (meta or {})["trust"].get("out_of_scope"):
        raise ValueError("the metadata carries a trust layer whose detector tables are tensors: pass it as "
                         "trust=Trust.from_checkpoint(labels, meta, checkpoint.tensors), or the tables are lost")
    doc = {"format": FORMAT, "version": VERSION, "model": model.config.to_dict(), "alphabet": ALPHABET,
           "labels": list(labels), **(meta or {})}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if trust is not None:
        doc["trust"], extra = trust.to_meta()
        tensors.update({k: v.detach().cpu().contiguous() for k, v in extra.items()})
    doc["weights_sha256"] = tensors_digest(tensors)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"nameorigin": json.dumps(jsonable(doc), allow_nan=False)})
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
    try:
        scheme_of(doc)  # how its names were folded (none recorded: the scheme of every older checkpoint)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return doc


def load(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint; never unpickles. A damaged, foreign or tampered file raises :class:`CheckpointError`."""
    path = Path(path)
    doc = read_meta(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: its weights cannot be read ({e})") from None
    expected = doc.get("weights_sha256")
    if expected is not None and tensors_digest(tensors) != expected:
        raise CheckpointError(f"{path}: damaged: its weights do not match the SHA-256 recorded when it was saved")
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
    meta = {k: v for k, v in doc.items()
            if k not in {"format", "version", "model", "alphabet", "labels", "weights_sha256"}}
    return Checkpoint(model=model, labels=list(doc["labels"]), meta=meta, tensors=extra)
