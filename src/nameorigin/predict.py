"""``Predictor``: names in, ranked languages (and attention) out; streaming over files."""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from . import checkpoint, fullname
from .data import encode_names
from .errors import InputError, check_whole
from .models import batched_log_probs, with_precision
from .text import ALPHABET, MAX_NAME_CHARS, BadName, fold_checked, scheme_of
from .trust import Trust, TrustResult

log = logging.getLogger(__name__)

DEFAULT_MODEL = "default.safetensors"
#: The first-name model bundled beside the surname model (when the package ships one).
DEFAULT_FIRST_MODEL = "first.safetensors"


def default_model_path() -> Path:
    """The model bundled in the package."""
    return Path(str(resources.files("nameorigin") / "assets" / DEFAULT_MODEL))


def default_first_model_path() -> Path | None:
    """The first-name model bundled in the package, or None when this package ships none."""
    path = Path(str(resources.files("nameorigin") / "assets" / DEFAULT_FIRST_MODEL))
    return path if path.is_file() else None


class Probabilities(NamedTuple):
    """What :meth:`Predictor.probabilities` returns."""

    probs: torch.Tensor  # (N, C), each row summing to 1
    attention: list[torch.Tensor] | None  # each name's weights over its characters, or None


@dataclass
class Prediction:
    name: str
    predictions: list[dict]  # [{"language", "probability"}], most probable first
    folded: str = ""
    attention: list[float] | None = None
    error: str | None = None
    out_of_scope: float | None = None  # in [0, 1], higher = less like any of the model's languages; None: no detector
    abstained: bool = False  # the answer is unsure; ``predictions`` are still there to look at
    reason: str | None = None  # None | "low-confidence" | "out-of-scope"
    set: list[str] | None = None  # with ``coverage``: the conformal prediction set, most probable first
    # a full or first name (any name_type but surname): its kind, the reading used and each part's answer
    name_type: str | None = None
    reading: str | None = None
    parts: list[dict] | None = None
    note: str | None = None  # e.g. initials that carry no evidence

    def to_dict(self) -> dict:
        d = {
            "name": self.name,
            "predictions": self.predictions,
            "out_of_scope": self.out_of_scope,
            "abstained": self.abstained,
            "reason": self.reason,
        }
        if self.set is not None:
            d["set"] = self.set
        if self.parts is not None:
            d.update(name_type=self.name_type, reading=self.reading, parts=self.parts, note=self.note)
        if self.error:
            d["error"] = self.error
        return d


def _folded_of(parts: dict) -> str:
    """A full-name result's folded text: its parts' readings as used, family name first."""
    used = {p["part"]: p["read"] for p in parts["parts"] if p["used"]}
    return " ".join(used[p] for p in ("family", "given") if p in used)


def _one_surname(r: Prediction) -> bool:
    """Whether a result with parts is one surname answered whole (``auto`` on a lone surname): attention
    then reads it as a surname's."""
    return r.name_type == "surname" and [p["part"] for p in r.parts if p["used"]] == ["family"]


def prior_names(results: Iterable[Prediction]) -> int:
    """How many distinct names ``prior="auto"`` rested on in the one call that made ``results``: the distinct
    folded names read (names that fold alike are one name of evidence; error rows are none)."""
    return len({r.folded for r in results if not r.error})


#: Distinct folded names whose model output a predictor keeps between chunks (bounded: memory stays flat).
CACHE_SIZE = 1 << 17
#: The message of a missing (null) or non-string cell.
MISSING = "missing name (empty or null)"
NOT_STRING = "not a string"


@functools.lru_cache(maxsize=CACHE_SIZE)
def fold_or_error(name: str, scheme: int = 1) -> tuple[str | None, str | None]:
    """``(folded, None)`` or ``(None, message)``: :func:`~nameorigin.text.fold_checked` with the folding
    ``scheme``, cached, since real files repeat names heavily (the ASCII fast path of ``fold`` stays in front)."""
    if not name.strip():
        return None, MISSING
    try:
        return fold_checked(name, scheme=scheme), None
    except BadName as e:
        return None, str(e)


#: Names that are already folded (letters of the alphabet only): the ASCII fast path of ``text.fold``, for a
#: whole array at once.
_FOLDED_RE = "^[A-Za-z" + "".join("\\" + c for c in ALPHABET if not c.isalpha()) + "]*$"


def fold_array(values: pa.Array, scheme: int = 1) -> tuple[pa.Array, pa.Array]:
    """:func:`fold_or_error` over a string array without nulls, as two arrays: the folded names (null where the
    name cannot be read) and the errors (null where it can). Names already in the alphabet (the common case)
    are checked and stripped by Arrow's vectorised kernels (they fold alike in every scheme); only the rest go
    through :func:`fold_or_error` with ``scheme``."""
    trimmed = pc.utf8_trim_whitespace(values)
    length = pc.utf8_length(trimmed)
    fast = pc.and_(
        pc.and_(pc.match_substring_regex(values, _FOLDED_RE), pc.match_substring_regex(values, "[A-Za-z]")),
        pc.and_(pc.less_equal(pc.utf8_length(values), MAX_NAME_CHARS * 4), pc.less_equal(length, MAX_NAME_CHARS)),
    )  # a letter, so never empty
    folded = pc.if_else(fast, trimmed, pa.scalar(None, pa.string()))
    errors = pa.nulls(len(values), pa.string())
    slow = pc.invert(fast)
    if pc.any(slow).as_py():
        results = [fold_or_error(v, scheme) for v in values.filter(slow).to_pylist()]
        folded = pc.replace_with_mask(folded, slow, pa.array([f for f, _ in results], pa.string()))
        errors = pc.replace_with_mask(errors, slow, pa.array([e for _, e in results], pa.string()))
    return folded, errors


def _cell_error(cell) -> str | None:
    """Why one cell of a name list cannot be read as a name (None: it can, or it is missing)."""
    if cell is None:
        return None
    if not isinstance(cell, str):
        return f"{NOT_STRING} ({type(cell).__name__})"
    try:
        cell.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"not valid Unicode (a lone surrogate {cell[e.start]!r} at character {e.start + 1})"
    return None


def as_name_array(names) -> tuple[pa.Array, list[str | None] | None]:
    """Names as an Arrow string array, and each cell's error where some cells could not be read (None where all
    could).

    Takes an Arrow (chunked) string array or any sequence of ``str``/``None``; any other cell (bytes, a number,
    a string holding a lone surrogate, which UTF-8 cannot encode) becomes a null with its own error, so that it
    gets an error row instead of failing the chunk for the names beside it."""
    if isinstance(names, pa.ChunkedArray):
        names = names.combine_chunks() if names.num_chunks != 1 else names.chunk(0)
    if isinstance(names, pa.Array):
        if pa.types.is_large_string(names.type) or pa.types.is_string_view(names.type):
            names = names.cast(pa.string())
        if not pa.types.is_string(names.type):
            raise TypeError(f"names must be strings, got an Arrow array of {names.type}")
        return names, None
    names = names if isinstance(names, list) else list(names)
    if all(n is None or type(n) is str for n in names):  # the common case: one pass, no per-cell errors
        try:
            return pa.array(names, type=pa.string()), None
        except UnicodeEncodeError:  # a lone surrogate somewhere: find it cell by cell below
            pass
    errors = [_cell_error(n) for n in names]
    return pa.array([None if e else n for n, e in zip(names, errors, strict=True)], type=pa.string()), errors


class _Chunk(NamedTuple):
    """A chunk of raw names reduced to its distinct readable folded names (what the model and trust layer see)."""

    names: pa.Array  # (N,) the raw names
    row: np.ndarray  # (N,) each row's index into ``unique``; -1: missing, non-string or unreadable
    unique: list[str]  # (U,) distinct folded names
    log_probs: np.ndarray  # (U, C) the model's output for them
    error: pa.Array  # (N,) null where the name was read


class _LogProbCache:
    """Model log-probabilities of recently seen folded names, in one preallocated (capacity, C) array."""

    def __init__(self, capacity: int, n_classes: int):
        self.capacity = capacity
        self.rows = np.empty((capacity, n_classes), dtype=np.float32)
        self.slot: dict[str, int] = {}
        self.used = 0  # rows[:used] are taken
        self.lock = threading.Lock()

    def lookup(self, folded: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the cached rows (len(folded), C) and a mask of the names not cached."""
        with self.lock:
            slots = np.fromiter((self.slot.get(f, -1) for f in folded), np.int64, len(folded))
            return self.rows[np.maximum(slots, 0)], slots < 0

    def store(self, folded: list[str], rows: np.ndarray) -> None:
        """Keep the rows of names not cached yet (one slice assignment); when full, start over rather than grow."""
        with self.lock:
            n = min(len(folded), self.capacity)
            if self.used + n > self.capacity:
                self.slot.clear()
                self.used = 0
            self.slot.update(zip(folded[:n], range(self.used, self.used + n), strict=True))
            self.rows[self.used : self.used + n] = rows[:n]
            self.used += n


class Predictor:
    """Rank languages for names with a trained model.

    Examples:
        >>> p = Predictor.load()            # the bundled model
        >>> p.predict(["Hinton"], top=3)[0].predictions[0]["language"]
    """

    def __init__(
        self,
        ckpt: checkpoint.Checkpoint,
        *,
        batch_size: int = 512,
        precision: str = "fp32",
        cache_size: int = CACHE_SIZE,
    ):
        self.checkpoint = ckpt
        self.path: Path | None = None  # the file it was loaded from, when it was (see :meth:`load`)
        self.n_parameters = sum(p.numel() for p in ckpt.model.parameters())
        self.precision = precision
        self.model = with_precision(ckpt.model.eval(), precision)
        self.labels = ckpt.labels
        self.batch_size = batch_size
        self.trust = Trust.from_checkpoint(ckpt.labels, ckpt.meta, ckpt.tensors)
        self.fold_scheme = scheme_of(ckpt.meta)  # names are folded the way the model's were in training
        self.temperature = self.trust.temperature
        self._labels = pa.array(self.labels, type=pa.string())
        self._cache = _LogProbCache(cache_size, len(self.labels)) if cache_size > 0 else None
        self.name_kind = fullname.name_kind(ckpt.meta)
        self.sha256: str | None = None  # the file's digest, when loaded from one
        self.first: Predictor | None = None  # the first-name model beside it (see :meth:`with_first`)
        self.first_columns = np.empty(0, dtype=np.int64)
        self.combination = fullname.Combination()
        self.combination_note: str | None = None  # why the stored weights are not used, when they are not

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        *,
        first: str | os.PathLike | bool | None = None,
        device: str = "cpu",
        sha256: str | None = None,
        **kwargs,
    ) -> Predictor:
        """``sha256``: the checkpoint file's digest (as ``sha256sum`` prints it), which it must have.
        ``first``: a first-name checkpoint to read given names with (None: the bundled one when the package
        ships one; False: none). ``kwargs``: ``batch_size``, ``precision`` (``fp32``, ``bf16`` or ``int8``;
        see :func:`models.with_precision`)."""
        for what, value in (("path", path), ("first", first)):
            if (
                value is not None
                and not isinstance(value, (str, os.PathLike))
                and not (what == "first" and value is False)
            ):
                raise TypeError(
                    f"Predictor.load: {what} must be a checkpoint file's path (str or os.PathLike)"
                    f"{', or False' if what == 'first' else ''}, not {type(value).__name__} {repr(value)[:40]}"
                )
        path = Path(path or default_model_path())
        predictor = cls(checkpoint.load(path, device=device, sha256=sha256), **kwargs)
        predictor.path = path
        predictor.sha256 = file_sha256(path)
        if predictor.name_kind == "first":  # a first-name model alone reads first names (e.g. to evaluate it)
            if first:
                raise checkpoint.CheckpointError(
                    f"{path}: a first-name model (name_kind first) takes no first-name model beside it; give it "
                    "as the first-name model (--first-model, Predictor.load(first=...)) beside a surname model"
                )
            return predictor
        first_path = default_first_model_path() if first is None else (None if first is False else first)
        if first_path is not None:
            other = cls(checkpoint.load(first_path, device=device), **kwargs)
            other.path, other.sha256 = Path(first_path), file_sha256(first_path)
            predictor.with_first(other)
        return predictor

    def with_first(self, first: Predictor) -> Predictor:
        """Read given names with ``first`` (a first-name model), combined with this surname model by the
        weights its checkpoint stores for this surname model's SHA-256 (else weights 1, with a warning once)."""
        source = str(first.path or "the first-name model")
        if first.name_kind != "first":
            raise checkpoint.CheckpointError(
                f"{source}: not a first-name model (its metadata has no name_kind first): a surname model "
                "cannot read given names"
            )
        self.first = first
        self.first_columns = fullname._columns_onto(first.labels, self.labels)
        stored = fullname.Combination.from_meta(first.checkpoint.meta, source)
        if stored is None:
            self.combination_note = f"{source} stores no fitted combination: weights 1"
            self.combination = fullname.Combination()
        elif stored.surname_sha256 != self.sha256:
            self.combination_note = (
                f"{source}'s combination was fitted with the surname model {str(stored.surname_sha256)[:12]}..., "
                f"not this one ({str(self.sha256)[:12]}...): weights 1 (fit them again with nameorigin combine)"
            )
            self.combination = fullname.Combination()
        else:
            self.combination, self.combination_note = stored, None
        return self  # the note is logged once, when a name first combines both parts (surnames alone: never)

    @property
    def has_attention(self) -> bool:
        return self.model.has_attention

    def probabilities(self, folded: list[str], *, with_attention: bool = False) -> Probabilities:
        """For already-folded names: ``Probabilities(probs, attention)``, ``probs`` (N, C) summing to 1 over
        the languages of :attr:`labels` (temperature applied); ``attention`` a list of each name's weights over
        its characters with ``with_attention`` on a model that has attention, else None."""
        tokens, lengths = encode_names(folded)
        lp, att = batched_log_probs(
            self.model, tokens, lengths, batch_size=self.batch_size, with_attention=with_attention
        )
        return Probabilities(torch.softmax(lp / self.temperature, dim=1), att)

    def log_probs(self, folded: list[str]) -> np.ndarray:
        """The model's log-probabilities (N, C) of distinct folded names, from the cache where it has them."""
        if self._cache is None:
            return self._run(folded)
        rows, missing = self._cache.lookup(folded)
        if missing.any():
            todo = [f for f, m in zip(folded, missing, strict=True) if m]
            rows[missing] = new = self._run(todo)
            self._cache.store(todo, new)
        return rows

    def _run(self, folded: list[str]) -> np.ndarray:
        tokens, lengths = encode_names(folded)
        lp, _ = batched_log_probs(self.model, tokens, lengths, batch_size=self.batch_size)
        return lp.float().numpy()

    def _distinct(self, names) -> _Chunk:
        """A chunk of raw names reduced to its distinct readable folded names and their model output."""
        if isinstance(names, (str, bytes)):
            raise TypeError(
                f"predict takes a list of names, not one string ({names[:20]!r}): use "
                "predict([name]) or predict_one(name)"
            )
        arr, cell_errors = as_name_array(names)
        encoded = arr.dictionary_encode()  # each distinct raw name once
        row_null = np.asarray(encoded.indices.is_null())  # (N,) missing or non-string cells
        codes = pc.fill_null(encoded.indices, 0).to_numpy().astype(np.int64)  # (N,) -> distinct raw name
        folded, errors = fold_array(encoded.dictionary, self.fold_scheme)  # (D,) each distinct raw name folded once
        distinct = folded.dictionary_encode()  # raw names that fold alike go to the model once
        to_unique = pc.fill_null(distinct.indices, -1).to_numpy().astype(np.int64)  # (D,) -1: unreadable
        unique = distinct.dictionary.to_pylist()  # (U,)
        row = np.where(row_null, -1, to_unique[codes]) if len(to_unique) else np.full(len(arr), -1)  # (N,)
        error = errors.take(pa.array(codes, mask=row_null))
        if encoded.null_count:
            fill = [e or MISSING for e in cell_errors] if cell_errors is not None else np.full(len(arr), MISSING)
            error = pc.if_else(pa.array(row_null), pa.array(fill, pa.string()), error)
        log_probs = self.log_probs(unique) if unique else np.empty((0, len(self.labels)), np.float32)  # (U, C)
        return _Chunk(names=arr, row=row, unique=unique, log_probs=log_probs, error=error)

    def predict_columns(
        self,
        names,
        top: int = 3,
        *,
        coverage: float | None = None,
        prior=None,
        min_confidence: float | None = None,
        max_out_of_scope: float | None = None,
        name_type: str = fullname.DEFAULT_NAME_TYPE,
        first_names=None,
        last_names=None,
    ) -> pa.Table:
        """The columnar path: a whole chunk of raw names in, an Arrow table out, no per-name Python objects.

        ``names``: an Arrow string array or a sequence of ``str``/``None``. Each distinct name in the chunk is
        folded once (and cached across chunks), the model runs once per distinct readable folded name, and the
        trust layer and top-K are applied to the whole chunk at once. Columns: ``name``, ``language_1,
        probability_1, ..., language_K, probability_K`` (K = min(top, languages)), ``abstained``, ``reason``,
        ``out_of_scope``, with ``coverage`` also ``set`` (a list of languages, most probable first), and
        ``error`` (null when the name was read). A missing, non-string or unreadable name gets an error and
        null predictions, never an exception. The trust options are :meth:`predict`'s; ``prior="auto"``
        estimates the mix on this chunk (each row counted): for a whole input pass :meth:`estimate_prior`'s.

        ``name_type`` (``auto``, ``surname``, ``first``, ``full``; see :mod:`nameorigin.fullname`): any but
        ``surname`` splits each name into its parts and adds the columns of
        :func:`nameorigin.fullname.part_column_names` before ``error``. ``first_names``/``last_names``: the
        parts as two sequences of the rows' length instead (either may be None; ``names`` then None, or the
        side that has no sequence of its own)."""
        return self._predict_columns(
            names,
            top,
            name_type=name_type,
            first_names=first_names,
            last_names=last_names,
            coverage=coverage,
            prior=prior,
            min_confidence=min_confidence,
            max_out_of_scope=max_out_of_scope,
        )[0]

    def _predict_columns(
        self,
        names,
        top: int,
        *,
        name_type: str = fullname.DEFAULT_NAME_TYPE,
        first_names=None,
        last_names=None,
        **trust_options,
    ) -> tuple[pa.Table, np.ndarray | None]:
        """:meth:`predict_columns`, and the prior it used (None when no name was read or none was given)."""
        fullname.check_name_type(name_type)
        check_whole(top, "top")
        if names is None and first_names is None and last_names is None:
            raise InputError("names: expected a list of names, got None", param="names")
        if self.name_kind == "first" and name_type in ("auto", "first") and first_names is None and last_names is None:
            name_type = "surname"  # a first-name model alone reads each name whole, as its own kind
        if name_type != "surname" or first_names is not None or last_names is not None:
            return self._predict_parts(names, top, name_type, first_names, last_names, trust_options)
        chunk = self._distinct(names)
        counts = np.bincount(chunk.row[chunk.row >= 0], minlength=len(chunk.unique))  # (U,) rows per name
        r = self.trust.apply(torch.from_numpy(chunk.log_probs), chunk.unique, counts=counts, **trust_options)
        columns = self._top_columns(r.probabilities, max(1, min(top, len(self.labels))))  # (U,) each
        columns.update(self._trust_columns(r, sets=trust_options.get("coverage") is not None))
        # spread every per-distinct-name column to the rows: row -> distinct folded name (-1: no prediction)
        take = pa.array(np.maximum(chunk.row, 0), mask=chunk.row < 0)
        out = {"name": chunk.names}
        for name, values in columns.items():
            out[name] = values.take(take) if len(values) else pa.nulls(len(chunk.names), values.type)
        out["abstained"] = pc.fill_null(out["abstained"], False)  # an error row: false, as in Prediction
        out["error"] = chunk.error
        return pa.table(out), (r.prior if chunk.unique else None)

    def _predict_parts(
        self, names, top: int, name_type: str, first_names, last_names, trust_options: dict
    ) -> tuple[pa.Table, np.ndarray | None]:
        """:meth:`_predict_columns` of full or first names: each distinct input (a name, or a first and a last
        cell) split and answered once (:func:`nameorigin.fullname.predict_units`), spread to the rows."""
        if name_type == "first" and self.first is None:
            raise fullname.NoFirstModel(
                "name_type first: no first-name model is available (this nameorigin ships none and none was "
                "given): give one with --first-model PATH (Predictor.load(first=PATH)), a checkpoint trained "
                "with name_kind first",
                param="name_type",
            )
        arr, row, keys, make, strings = self._part_keys(names, name_type, first_names, last_names)
        counts = np.bincount(row, minlength=len(keys))
        columns, used = fullname.predict_keys(self, keys, make, name_type, counts, top, trust_options, strings)
        take = pa.array(row)
        out = {"name": arr}
        for name, values in columns.items():
            out[name] = values.take(take) if len(values) else pa.nulls(len(arr), values.type)
        out["abstained"] = pc.fill_null(out["abstained"], False)
        return pa.table(out), used

    def _part_keys(self, names, name_type: str, first_names, last_names):
        """For :meth:`_predict_parts` and the file prior: the name column as Arrow strings, each row's index
        into the distinct keys (a name, or its first and last cells), the keys, ``make(key)`` (the key's
        :class:`fullname._Unit`) and what the whole-array path reads: the keys as Arrow strings (null for a key
        that is no name), or for cells their :class:`fullname.SplitCells`."""
        if isinstance(names, (str, bytes)):
            raise TypeError(
                f"predict takes a list of names, not one string ({names[:20]!r}): use "
                "predict([name]) or predict_one(name)"
            )
        if first_names is None and last_names is None:
            arr, cell_errors = as_name_array(names)
            encoded = arr.dictionary_encode()  # each distinct name once
            keys: list = encoded.dictionary.to_pylist()
            strings = encoded.dictionary
            row = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
            if encoded.null_count:  # a missing cell, or one that is no string, keeps its own error
                errors = cell_errors or [None] * len(arr)
                where: dict = {}
                for i in np.flatnonzero(row < 0):
                    key = ("error", errors[i] or MISSING)
                    row[i] = where.setdefault(key, len(keys) + len(where))
                keys += list(where)
                strings = pa.concat_arrays([strings, pa.nulls(len(where), pa.string())])

            def unit(k):
                return fullname._Unit(error=k[1]) if isinstance(k, tuple) else fullname.unit_of_name(k, name_type)
        else:
            columns = [None if c is None else as_name_array(c) for c in (first_names, last_names)]
            if names is not None:  # the name column fills the side that has no column of its own
                side = 0 if columns[0] is None else 1
                columns[side] = as_name_array(names)
            n = len(next(c for c in columns if c is not None)[0])
            sides = [fullname.distinct_cells(c[0] if c is not None else pa.nulls(n, pa.string())) for c in columns]
            width = len(sides[1].values) + 1
            pair = (sides[0].code + 1) * width + (sides[1].code + 1)  # (N,) each row's pair of distinct cells
            distinct, row = np.unique(pair, return_inverse=True)
            at = [distinct // width - 1, distinct % width - 1]  # (U,) each pair's cell on each side (-1: none)
            keys = [
                (sides[0].values[i] if i >= 0 else None, sides[1].values[j] if j >= 0 else None)
                for i, j in zip(at[0].tolist(), at[1].tolist(), strict=True)
            ]
            shown = [" ".join(p for p in k if p and p.strip()) or None for k in keys]  # the name column
            arr = pa.array(shown, pa.string()).take(pa.array(row))
            strings = fullname.split_cells(sides, at)

            def unit(k):
                return fullname.unit_of_cells(*k)

        if not self.first and name_type in ("auto", "full") and keys:
            self.trust._note_once(
                "no first-name model is available: given names drop out and full names rest on their "
                "surnames (give one with --first-model PATH; in Python, Predictor.load(path, first=PATH) or "
                "predictor.with_first(Predictor.load(PATH)))"
            )

        return arr, row, keys, unit, strings

    def _estimate_prior_parts(
        self, batches: Iterable, name_type: str, *, max_out_of_scope: float | None = None
    ) -> tuple[dict[str, float] | None, int]:
        """``prior="auto"`` of full (or first) names over chunks ``(names, first_names, last_names)``: EM on
        the answers in the surname model's languages (a combined answer, or a surname's), each distinct name (or
        pair of cells) answered once and weighed by its rows, as one call over all of them would; and the number
        of distinct names it rests on."""
        if self.trust.train_prior is None:
            return None, 0
        options = {"max_out_of_scope": max_out_of_scope}
        seen: dict = {}  # key -> its row in probs (-1: no answer in the surname model's languages)
        probs: list[np.ndarray] = []
        weights: list[float] = []
        for names, first_names, last_names in batches:
            _, row, keys, make, strings = self._part_keys(names, name_type, first_names, last_names)
            todo = [i for i, k in enumerate(keys) if k not in seen]
            fresh = [keys[i] for i in todo]
            answered = fullname.answer_keys(
                self, fresh, make, name_type, options, None, fullname.take_keys(strings, todo)
            )
            for k in fresh:
                seen[k] = -1
            if "family" in answered.rows:
                for r, p in zip(answered.rows["family"], answered.probs["family"], strict=True):
                    seen[fresh[r]] = len(probs)
                    probs.append(p)
                    weights.append(0.0)
            at = np.array([seen[k] for k in keys], dtype=np.int64)  # each distinct key's answer (-1: none)
            rows_of = np.bincount(row, minlength=len(keys))
            for j in np.flatnonzero(at >= 0):
                weights[at[j]] += float(rows_of[j])
        if not probs:
            return dict(zip(self.labels, self.trust.train_prior.tolist(), strict=True)), 0
        mix = self.trust.estimate_prior(np.stack(probs).astype(np.float64), weights=np.array(weights))
        return dict(zip(self.labels, mix.tolist(), strict=True)), len(probs)

    def _top_columns(self, probs: np.ndarray, k: int) -> dict[str, pa.Array]:
        """``language_k``/``probability_k`` for distinct names (U, C), by tensor top-K on the whole set."""
        values, indices = torch.from_numpy(probs).topk(k, dim=1)  # (U, K)
        columns: dict[str, pa.Array] = {}
        for j in range(k):
            columns[f"language_{j + 1}"] = self._labels.take(pa.array(indices[:, j].numpy()))
            columns[f"probability_{j + 1}"] = pa.array(values[:, j].numpy())
        return columns

    def _trust_columns(self, r: TrustResult, *, sets: bool) -> dict[str, pa.Array]:
        """``abstained``, ``reason``, ``out_of_scope`` (null without a detector) and, with ``sets``, ``set``."""
        n = len(r.abstained)
        columns = {
            "abstained": pa.array(r.abstained, pa.bool_()),
            "reason": pa.array(r.reason, pa.string()),
            "out_of_scope": (
                pa.array(r.out_of_scope, pa.float64()) if r.out_of_scope is not None else pa.nulls(n, pa.float64())
            ),
        }
        if sets:
            if r.sets is None:  # no conformal calibration in this checkpoint (the trust layer logged a note)
                columns["set"] = pa.nulls(n, pa.list_(pa.string()))
            else:
                order = np.argsort(-r.probabilities, axis=1, kind="stable")  # (U, C) most probable first
                member = np.take_along_axis(r.sets, order, axis=1)  # (U, C)
                offsets = np.concatenate([[0], np.cumsum(member.sum(1))]).astype(np.int32)  # (U + 1,)
                columns["set"] = pa.ListArray.from_arrays(pa.array(offsets), self._labels.take(pa.array(order[member])))
        return columns

    def predict(
        self,
        names: Iterable[str],
        top: int = 3,
        *,
        attention: bool = False,
        coverage: float | None = None,
        prior=None,
        min_confidence: float | None = None,
        max_out_of_scope: float | None = None,
        name_type: str = fullname.DEFAULT_NAME_TYPE,
    ) -> list[Prediction]:
        """Each name's ``top`` languages with probabilities, its out-of-scope score and whether the answer
        abstains (and why); with ``coverage`` (e.g. 0.9) its conformal prediction set. ``prior``: ``"uniform"``,
        ``"auto"`` (estimated on these names), ``{language: weight}`` or a JSON/CSV file of them. Thresholds
        left None use the checkpoint's. A name that cannot be read gets ``error`` set (and no predictions)
        instead of failing the whole batch. ``name_type``: ``auto`` (the default: decided from
        :func:`nameorigin.names.parse`; a lone surname answers as ``surname`` would), ``surname`` (the name
        read whole as a surname, no parse), ``first`` or ``full``; any but ``surname`` gives each result its
        ``parts``. Built on :meth:`predict_columns`."""
        return self.predict_with_prior(
            names,
            top,
            name_type=name_type,
            attention=attention,
            coverage=coverage,
            prior=prior,
            min_confidence=min_confidence,
            max_out_of_scope=max_out_of_scope,
        )[0]

    def predict_with_prior(
        self,
        names: Iterable[str],
        top: int = 3,
        *,
        attention: bool = False,
        coverage: float | None = None,
        prior=None,
        min_confidence: float | None = None,
        max_out_of_scope: float | None = None,
        name_type: str = fullname.DEFAULT_NAME_TYPE,
    ) -> tuple[list[Prediction], dict | None]:
        """:meth:`predict`, and the language mix it used (``prior="auto"``: the one estimated), or None.
        ``names`` is a list (or any iterable) of names: for one name use ``predict([name])`` or
        :meth:`predict_one`."""
        names = names if isinstance(names, (str, bytes)) or names is None else list(names)
        table, used = self._predict_columns(
            names,
            top,
            name_type=name_type,
            coverage=coverage,
            prior=prior,
            min_confidence=min_confidence,
            max_out_of_scope=max_out_of_scope,
        )
        k = max(1, min(top, len(self.labels)))
        rows = table.to_pydict()
        results = []
        split = "name_type" in rows  # a full-name answer: each result with its parts
        for i, n in enumerate(names):
            parts = fullname.parts_of_row(rows, i, k) if split else {}
            if rows["error"][i]:
                results.append(Prediction(name=n, predictions=[], error=rows["error"][i], **parts))
                continue
            ranked = fullname.ranked_of_row(rows, i, k)
            results.append(
                Prediction(
                    name=n,
                    predictions=ranked,
                    folded=fold_or_error(n, self.fold_scheme)[0] if not split else _folded_of(parts),
                    out_of_scope=rows["out_of_scope"][i],
                    abstained=rows["abstained"][i],
                    reason=rows["reason"][i],
                    set=rows["set"][i] if "set" in rows else None,
                    **parts,
                )
            )
        if attention:
            good = [r for r in results if not r.error and (r.parts is None or _one_surname(r))]
            if good:
                _, att = self.probabilities([r.folded for r in good], with_attention=True)
                for r, a in zip(good, att or [], strict=False):
                    r.attention = a.tolist()
        return results, (dict(zip(self.labels, used.tolist(), strict=True)) if used is not None else None)

    def estimate_prior(self, names: Iterable[str], *, chunk: int = 8192) -> dict[str, float] | None:
        """The language mix of ``names`` by EM (``prior="auto"`` over all of them, not chunk by chunk); reads
        them once. None when the checkpoint has no training prior."""
        it = iter(names)
        return self.estimate_prior_batches(iter(lambda: list(itertools.islice(it, chunk)), []))

    def estimate_prior_batches(self, batches: Iterable) -> dict[str, float] | None:
        """:meth:`estimate_prior` over chunks of names (Arrow string arrays or lists), e.g. a file's record
        batches; keeps each distinct name's probabilities once (U, C), with its row count over all chunks."""
        return self._estimate_prior_batches(batches)[0]

    def _estimate_prior_batches(self, batches: Iterable) -> tuple[dict[str, float] | None, int]:
        """:meth:`estimate_prior_batches`, and the number of distinct names EM rested on: a name that comes back
        in a later chunk adds its rows to its weight, not a second name of evidence."""
        if self.trust.train_prior is None:
            return None, 0
        seen: dict[str, int] = {}  # folded name -> its row in probs
        probs, at, counts = [], [], []
        for batch in batches:
            chunk = self._distinct(batch)
            if not chunk.unique:
                continue
            before = len(seen)
            index = np.fromiter((seen.setdefault(n, len(seen)) for n in chunk.unique), np.int64, len(chunk.unique))
            fresh = index >= before  # new names, in the order they got their rows
            if fresh.any():
                probs.append(self.trust.probabilities(chunk.log_probs[fresh]).astype(np.float32))
            at.append(index)
            counts.append(np.bincount(chunk.row[chunk.row >= 0], minlength=len(chunk.unique)))
        if not probs:
            return dict(zip(self.labels, self.trust.train_prior.tolist(), strict=True)), 0
        rows = np.concatenate(probs).astype(np.float64)
        weights = np.bincount(np.concatenate(at), weights=np.concatenate(counts), minlength=len(rows))
        mix = self.trust.estimate_prior(rows, weights=weights)
        return dict(zip(self.labels, mix.tolist(), strict=True)), len(rows)

    def predict_one(self, name: str, top: int = 3, **trust_options) -> Prediction:
        result = self.predict([name], top, **trust_options)[0]
        if result.error:
            raise BadName(result.error)
        return result

    def stream(self, names: Iterable[str], top: int = 3, *, chunk: int = 8192, **trust_options) -> Iterator[Prediction]:
        """Predict lazily over any iterable, ``chunk`` names at a time: memory stays flat. Line ends are
        stripped and blank lines skipped, so an open text file works as it is: ``stream(open("names.txt"))``.
        ``trust_options`` go to :meth:`predict`; give ``prior="auto"`` as the mix :meth:`estimate_prior` found
        over the whole input, else each chunk estimates its own."""
        it = (n.rstrip("\r\n") if isinstance(n, str) else n for n in names)
        it = (n for n in it if not isinstance(n, str) or n.strip())
        while batch := list(itertools.islice(it, chunk)):
            yield from self.predict(batch, top, **trust_options)


METRICS_DESCRIPTION = (
    "metrics.valid: figures on the validation names, which picked the best epoch and fitted the temperature "
    "(so slightly optimistic); metrics.test: figures on held-out test names that training and selection never "
    "saw; metrics.held_out (the bundled model): figures of the same preset trained on 80 % of a leak-free split "
    "and evaluated on the other 20 %, recorded because the shipped model itself trains on all names. Each has "
    "accuracy, macro_f1 and n (names). Missing when the training run had no such split."
)


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 digest of a file's bytes, in hex (read in chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_info(predictor: Predictor) -> dict:
    """What a model is: its name and sizes, languages, parameters, training data fingerprint, validation and
    held-out figures (see :data:`METRICS_DESCRIPTION`), what its training was, its trust layer, and its file
    with the file's SHA-256 digest. ``GET /api/model`` answers this (and how the server runs it);
    ``nameorigin info`` prints it."""
    ck = predictor.checkpoint
    metrics = ck.meta.get("metrics") or {}
    figures = {
        split: {k: v for k, v in (m or {}).items() if k in {"accuracy", "macro_f1", "n", "source"}}
        for split, m in metrics.items()
        if m
    }
    layer = predictor.trust
    path = predictor.path
    return {
        "model": ck.config.to_dict(),
        "has_attention": predictor.has_attention,
        "labels": ck.labels,
        "parameters": predictor.n_parameters,
        "data_fingerprint": ck.meta.get("data_fingerprint"),
        "metrics": figures,
        "metrics_description": METRICS_DESCRIPTION,
        "training": {
            k: ck.meta.get("training", {}).get(k) for k in ("mode", "preset", "n_train", "n_valid", "n_test", "split")
        },
        "trust": {
            "temperature": layer.temperature,
            "conformal": layer.conformal.method if layer.conformal is not None else None,
            "out_of_scope_detector": layer.oos is not None,
            "min_confidence": layer.min_confidence,
            "max_out_of_scope": layer.max_out_of_scope,
            "default_prior": (
                dict(zip(predictor.labels, (round(float(w), 4) for w in layer.default_prior), strict=True))
                if layer.default_prior is not None
                else None
            ),
            "out_of_scope_locales": layer.info.get("oos_locales"),
            "n_valid": layer.info.get("n_valid"),
            # what the base of Bayes' rule was fitted on (None: before it was recorded; the validation names)
            "model_prior_from": layer.info.get("model_prior_from"),
        },
        "file": {
            "path": str(path) if path else None,
            "bundled": path is not None and path in (default_model_path(), default_first_model_path()),
            "sha256": predictor.sha256 or (file_sha256(path) if path else None),
        },
        "name_kind": predictor.name_kind,
        **_first_info(predictor),
    }


def _first_info(predictor: Predictor) -> dict:
    """A surname model's first-name model (its own :func:`model_info`) and the combination in use."""
    if predictor.name_kind == "first":
        return {}
    if predictor.first is None:
        return {"first_model": None, "combination": None}
    return {
        "first_model": model_info(predictor.first),
        "combination": {**predictor.combination.to_dict(), "note": predictor.combination_note},
    }
