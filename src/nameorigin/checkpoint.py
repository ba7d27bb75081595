"""One self-describing ``.safetensors`` file: the weights, and a JSON document in its metadata."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .atomic import atomic_path, special_kind
from .models import Classifier, ModelConfig, UnknownModel, build_model, restored_tensors, stored_tensors
from .text import ALPHABET, scheme_of

FORMAT = "nameorigin-checkpoint"
VERSION = 2  # 2: one SHA-256 over the tensors and the whole metadata document; 1: over the tensors only
READS = (1, 2)  # the versions this nameorigin loads (1 with a warning: its metadata cannot be verified)
TRUST_PREFIX = "trust."  # tensors of the trust layer, kept apart from the model's weights
DOC_KEY = "nameorigin"  # the .safetensors metadata key of the JSON document
DIGEST_KEY = "nameorigin.sha256"  # ...and of the SHA-256 over the tensors and that document's exact text
MAX_DEPTH = 32  # the deepest nesting of the document; nameorigin writes 6
MAX_LABELS = 10_000
SIZE_LIMITS = {
    "hidden": (1, 1 << 16),
    "layers": (1, 256),
    "embed": (0, 1 << 16),
    "members": (1, 1024),
    "heads": (1, 1024),
    "vocab": (0, 1 << 26),
}  # a model's integer settings: their sane ranges

log = logging.getLogger(__name__)


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


def full_digest(tensors: dict[str, torch.Tensor], text: str) -> str:
    """SHA-256 of a version-2 checkpoint: its tensors (:func:`tensors_digest`) and the exact text of its
    metadata document, so that neither a weight nor a label, temperature or setting can change unnoticed."""
    return hashlib.sha256(f"{FORMAT}|{tensors_digest(tensors)}|".encode() + text.encode()).hexdigest()


def write(path: str | os.PathLike, tensors: dict[str, torch.Tensor], doc: dict) -> Path:
    """Write ``tensors`` and the document ``doc`` (its ``version`` set to this format's) atomically, with the
    SHA-256 over both that :func:`load` checks."""
    doc = {k: v for k, v in doc.items() if k != "weights_sha256"}  # version 1's tensor-only hash
    doc["version"] = VERSION
    text = json.dumps(jsonable(doc), allow_nan=False)
    with atomic_path(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata={DOC_KEY: text, DIGEST_KEY: full_digest(tensors, text)})
    return Path(path)


def save(
    path: str | os.PathLike, model: Classifier, labels: list[str], meta: dict | None = None, *, trust=None
) -> Path:
    """Write atomically (a hidden temporary file beside ``path``, then a rename), with a SHA-256 over the
    weights and the whole metadata document that :func:`load` checks. ``trust`` (a
    :class:`nameorigin.trust.Trust`) goes into the metadata as ``"trust"`` and its tensors beside the weights
    (covered by the SHA-256 too)."""
    path = Path(path)
    if trust is None and isinstance((meta or {}).get("trust"), dict) and (meta or {})["trust"].get("out_of_scope"):
        raise ValueError(
            "the metadata carries a trust layer whose detector tables are tensors: pass it as "
            "trust=Trust.from_checkpoint(labels, meta, checkpoint.tensors), or the tables are lost"
        )
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "model": model.config.to_dict(),
        "alphabet": ALPHABET,
        "labels": list(labels),
        **(meta or {}),
    }
    tensors = stored_tensors(model)
    if trust is not None:
        doc["trust"], extra = trust.to_meta()
        tensors.update({k: v.detach().cpu().contiguous() for k, v in extra.items()})
    return write(path, tensors, doc)


def rewrite(path: str | os.PathLike, edit, out: str | os.PathLike | None = None) -> Path:
    """The checkpoint at ``path`` written again (to ``out``, default ``path``) after ``edit(meta, layer)``
    changed its metadata (without its ``trust`` document) or its trust layer (None when it has none), through
    :func:`save`: the trust layer's tensors go back beside the weights and the SHA-256 covers the change."""
    from .trust import Trust

    ck = load(path)
    layer = Trust.from_checkpoint(ck.labels, ck.meta, ck.tensors, source=str(path)) if ck.meta.get("trust") else None
    meta = {k: v for k, v in ck.meta.items() if k != "trust"}
    edit(meta, layer)
    return save(out if out is not None else path, ck.model, ck.labels, meta, trust=layer)


def file_sha256(path: Path) -> str:
    """The SHA-256 of the file's bytes, as ``sha256sum`` prints it."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_file(path: Path, sha256: str | None = None) -> None:
    """``path`` is a regular file (and, with ``sha256``, has that digest), else :class:`CheckpointError`."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror})") from None
    what = special_kind(mode, folder="a directory")
    if what:
        raise CheckpointError(f"{path}: {what}, not a checkpoint file")
    if sha256 is not None:
        wanted = sha256.strip().lower()
        if len(wanted) != 64 or any(c not in "0123456789abcdef" for c in wanted):
            raise CheckpointError(
                f"--model-sha256 {sha256!r}: expected a SHA-256, 64 hexadecimal digits (as sha256sum prints it)"
            )
        actual = file_sha256(path)
        if actual != wanted:
            raise CheckpointError(
                f"{path}: its SHA-256 is {actual}, not the {wanted} asked for "
                "(--model-sha256): another file, or changed since"
            )


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _depth(value, limit: int) -> int:
    """The nesting depth of a parsed JSON value (without recursion), stopping past ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def _number(
    value,
    what: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    integer: bool = False,
) -> None:
    """``value`` is a finite number (an int with ``integer``) within [low, high] (low excluded with
    ``low_open``), else ValueError naming ``what``."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        raise ValueError(f"{what} is {value!r}, not {'an integer' if integer else 'a finite number'}")
    if (low is not None and (value <= low if low_open else value < low)) or (high is not None and value > high):
        raise ValueError(f"{what} is {value!r}, outside {'(' if low_open else '['}{low:g}, {high:g}]")


def _check_model(m, what: str = "model", nested: bool = False) -> None:
    if not isinstance(m, dict):
        raise ValueError(f"{what} is {type(m).__name__}, not an object of model settings")
    if not isinstance(m.get("name"), str) or not m["name"]:
        raise ValueError(f"{what}.name is {m.get('name')!r}, not a model name")
    for key, (low, high) in SIZE_LIMITS.items():
        if key in m:
            _number(m[key], f"{what}.{key}", low=low, high=high, integer=True)
    if "dropout" in m:
        _number(m["dropout"], f"{what}.dropout", low=0, high=1)
    if "bidirectional" in m and not isinstance(m["bidirectional"], bool):
        raise ValueError(f"{what}.bidirectional is {m['bidirectional']!r}, not true or false")
    mix = m.get("mix", [])
    if not isinstance(mix, list) or (nested and mix):
        raise ValueError(f"{what}.mix is {mix!r}, not a list of member settings")
    for i, member in enumerate(mix):
        _check_model(member, f"{what}.mix[{i}]", nested=True)


def validate(doc: dict) -> None:
    """Every field nameorigin reads from a checkpoint's document, checked (types, ranges, finiteness, depth);
    ValueError names the first bad one. The trust layer is checked where it is read (:mod:`nameorigin.trust`)."""
    if _depth(doc, MAX_DEPTH) > MAX_DEPTH:
        raise ValueError(f"the document nests deeper than {MAX_DEPTH} levels")
    labels = doc.get("labels")
    if not isinstance(labels, list) or not labels or len(labels) > MAX_LABELS:
        raise ValueError(f"labels is not a list of 1 to {MAX_LABELS:,} languages")
    if not all(isinstance(x, str) and x.strip() for x in labels) or len(set(labels)) != len(labels):
        raise ValueError("labels must be distinct, non-empty strings")
    _check_model(doc.get("model"))
    if doc.get("temperature") is not None:
        _number(doc["temperature"], "temperature", low=0, high=1e6, low_open=True)
    for key in ("training", "metrics", "history", "calibration"):
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            raise ValueError(f"{key} is {type(doc[key]).__name__}, not an object")
    if doc.get("trust") is not None and not isinstance(doc["trust"], dict):
        raise ValueError(f"trust is {type(doc['trust']).__name__}, not an object")
    if doc.get("data_fingerprint") is not None and not isinstance(doc["data_fingerprint"], str):
        raise ValueError("data_fingerprint is not a string")


def _read_header(path: Path) -> tuple[dict, list[str]]:
    """The checkpoint's metadata (the safetensors header's) and its tensors' names, without reading weights."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, list(f.keys())
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable .safetensors file ({e})") from None


def read_meta(path: str | os.PathLike, *, sha256: str | None = None) -> dict:
    """The JSON document of a checkpoint, checked, without loading weights (so not its SHA-256 over them:
    :func:`load` checks that). ``sha256``: the file's digest, which it must have."""
    path = Path(path)
    check_file(path, sha256)
    doc, _ = _document(path, _read_header(path)[0])
    return doc


def _document(path: Path, metadata: dict) -> tuple[dict, str]:
    """The parsed, validated document and its exact text."""
    raw = metadata.get(DOC_KEY)
    if raw is None:
        raise CheckpointError(
            f"{path}: a .safetensors file, but not a nameorigin checkpoint (no 'nameorigin' metadata)"
        )
    try:
        doc = json.loads(raw, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as e:
        why = "nests too deep" if isinstance(e, RecursionError) else f"is not valid JSON ({str(e)[:80]})"
        raise CheckpointError(f"{path}: its nameorigin metadata {why} (damaged?)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a nameorigin checkpoint")
    if doc.get("version") not in READS:
        raise CheckpointError(
            f"{path}: checkpoint format version {doc.get('version')!r}; this nameorigin reads "
            f"{', '.join(map(str, READS))}"
        )
    if doc.get("alphabet") != ALPHABET:
        raise CheckpointError(f"{path}: made for another alphabet than this nameorigin's")
    try:
        validate(doc)
    except ValueError as e:
        raise CheckpointError(f"{path}: invalid metadata: {e}") from None
    try:
        scheme_of(doc)  # how its names were folded (none recorded: the scheme of every older checkpoint)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return doc, raw


def _verify(path: Path, doc: dict, text: str, metadata: dict, tensors: dict[str, torch.Tensor]) -> None:
    """The SHA-256 of a version-2 file over tensors and document; a version-1 file's over its tensors only
    (with a warning that its metadata cannot be verified), or none (with a warning)."""
    if doc["version"] >= 2:
        expected = metadata.get(DIGEST_KEY)
        if expected is None:
            raise CheckpointError(f"{path}: damaged: its SHA-256 is missing")
        if full_digest(tensors, text) != expected:
            raise CheckpointError(
                f"{path}: damaged: its weights or metadata do not match the SHA-256 recorded when it was saved"
            )
        return
    expected = doc.get("weights_sha256")
    if expected is not None and tensors_digest(tensors) != expected:
        raise CheckpointError(f"{path}: damaged: its weights do not match the SHA-256 recorded when it was saved")
    log.warning(
        "%s: written by an older nameorigin (checkpoint format 1), whose SHA-256 covers %s: its labels, "
        "temperature and settings cannot be verified; load and save it again to protect them",
        path,
        "only the weights" if expected is not None else "nothing",
    )


class _NoInitOnMeta(torch.overrides.TorchFunctionMode):
    """Skips the in-place initialisation of ``meta`` tensors (``normal_``, ``uniform_``, ``zero_``, ``copy_``...):
    building a model on the meta device then takes milliseconds rather than the second or more that torch
    spends loading its Python meta kernels (and sympy) for them, and the shapes are the same."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor")  # torch.nn.init passes it by keyword
        name = getattr(func, "__name__", "")
        if isinstance(target, torch.Tensor) and target.is_meta and name.endswith("_") and not name.startswith("__"):
            return target
        return func(*args, **kwargs)


def _check_shapes(path: Path, config: ModelConfig, n_classes: int, tensors: dict[str, torch.Tensor]) -> None:
    """The model the document describes has exactly the file's tensors, by name and shape: found on the
    ``meta`` device (no memory for weights), after bounding its members and layers by the tensors present,
    so that a small file cannot make nameorigin build a huge model."""
    n = len(tensors)
    parts = max(config.members, len(config.mix), 1) * max(config.layers, 1)
    if parts > n:
        raise CheckpointError(
            f"{path}: weights do not match the model it describes ({config.members} member(s) "
            f"of {config.layers} layer(s), but the file holds {n} tensors)"
        )
    with torch.device("meta"), _NoInitOnMeta():
        shapes = {k: tuple(v.shape) for k, v in build_model(config, n_classes).state_dict().items()}
    present = {k: tuple(v.shape) for k, v in tensors.items()}
    if shapes != present:
        missing, unexpected = sorted(shapes.keys() - present.keys()), sorted(present.keys() - shapes.keys())
        differ = [k for k in shapes.keys() & present.keys() if shapes[k] != present[k]]
        first = (
            f"missing {missing[0]}"
            if missing
            else f"unexpected {unexpected[0]}"
            if unexpected
            else f"{differ[0]} is {list(present[differ[0]])}, the settings make it {list(shapes[differ[0]])}"
        )
        raise CheckpointError(f"{path}: weights do not match the model it describes ({first})")


def load(path: str | os.PathLike, *, device: str | torch.device = "cpu", sha256: str | None = None) -> Checkpoint:
    """Load a checkpoint; never unpickles. A damaged, foreign or invalid file raises :class:`CheckpointError`.
    ``sha256``: the digest of the file (``sha256sum``) it must have: the recorded hash finds damage, not
    tampering, since anyone can recompute it; a digest the user knows from elsewhere finds both."""
    path = Path(path)
    check_file(path, sha256)
    metadata, _ = _read_header(path)
    doc, text = _document(path, metadata)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: its weights cannot be read ({e})") from None
    _verify(path, doc, text, metadata, tensors)
    extra = {k: tensors.pop(k) for k in [k for k in tensors if k.startswith(TRUST_PREFIX)]}
    try:
        config = ModelConfig.from_dict(doc["model"])
        tensors = restored_tensors(tensors)  # int8 weights times their scales
        _check_shapes(path, config, len(doc["labels"]), tensors)
        model = build_model(config, len(doc["labels"]))
        model.load_state_dict(tensors, strict=True)
    except (UnknownModel, TypeError, ValueError, RuntimeError) as e:
        if isinstance(e, CheckpointError):
            raise
        first = str(e).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not match the model it describes ({first})") from None
    if not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
        raise CheckpointError(f"{path}: weights hold NaN or infinite values (damaged?)")
    model.to(device).eval()
    meta = {
        k: v for k, v in doc.items() if k not in {"format", "version", "model", "alphabet", "labels", "weights_sha256"}
    }
    ck = Checkpoint(model=model, labels=list(doc["labels"]), meta=meta, tensors=extra)
    from .trust import Trust, TrustError  # the trust layer, present but invalid, is refused, not skipped

    try:
        Trust.from_checkpoint(ck.labels, meta, extra, source=str(path))
    except TrustError as e:
        raise CheckpointError(str(e)) from None
    return ck
