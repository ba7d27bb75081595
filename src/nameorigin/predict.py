"""``Predictor``: names in, ranked languages (and attention) out; streaming over files."""
from __future__ import annotations

import functools
import itertools
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from . import checkpoint
from .data import encode_names
from .models import batched_log_probs
from .text import ALPHABET, MAX_NAME_CHARS, BadName, fold_checked

DEFAULT_MODEL = "default.safetensors"


def default_model_path() -> Path:
    """The model bundled in the package."""
    return Path(str(resources.files("nameorigin") / "assets" / DEFAULT_MODEL))


@dataclass
class Prediction:
    name: str
    predictions: list[dict]  # [{"language", "probability"}], most probable first
    folded: str = ""
    attention: list[float] | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        d = {"name": self.name, "predictions": self.predictions}
        if self.error:
            d["error"] = self.error
        return d


#: Distinct folded names whose model output a predictor keeps between chunks (bounded: memory stays flat).
CACHE_SIZE = 1 << 17
#: The message of a missing (null) or non-string cell.
MISSING = "missing name (empty or null)"
NOT_STRING = "not a string"


@functools.lru_cache(maxsize=CACHE_SIZE)
def fold_or_error(name: str) -> tuple[str | None, str | None]:
    """``(folded, None)`` or ``(None, message)``: :func:`~nameorigin.text.fold_checked`, cached, since real
    files repeat names heavily (the ASCII fast path of ``fold`` stays in front)."""
    if not name.strip():
        return None, MISSING
    try:
        return fold_checked(name), None
    except BadName as e:
        return None, str(e)


#: Names that are already folded (letters of the alphabet only): the ASCII fast path of ``text.fold``, for a
#: whole array at once.
_FOLDED_RE = "^[A-Za-z" + "".join("\\" + c for c in ALPHABET if not c.isalpha()) + "]*$"


def fold_array(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    """:func:`fold_or_error` over a string array without nulls, as two arrays: the folded names (null where the
    name cannot be read) and the errors (null where it can). Names already in the alphabet (the common case)
    are checked and stripped by Arrow's vectorised kernels; only the rest go through :func:`fold_or_error`."""
    trimmed = pc.utf8_trim_whitespace(values)
    length = pc.utf8_length(trimmed)
    fast = pc.and_(pc.and_(pc.match_substring_regex(values, _FOLDED_RE), pc.match_substring_regex(values, "[A-Za-z]")),
                   pc.and_(pc.less_equal(pc.utf8_length(values), MAX_NAME_CHARS * 4),
                           pc.less_equal(length, MAX_NAME_CHARS)))  # a letter, so never empty
    folded = pc.if_else(fast, trimmed, pa.scalar(None, pa.string()))
    errors = pa.nulls(len(values), pa.string())
    slow = pc.invert(fast)
    if pc.any(slow).as_py():
        results = [fold_or_error(v) for v in values.filter(slow).to_pylist()]
        folded = pc.replace_with_mask(folded, slow, pa.array([f for f, _ in results], pa.string()))
        errors = pc.replace_with_mask(errors, slow, pa.array([e for _, e in results], pa.string()))
    return folded, errors


def as_name_array(names) -> tuple[pa.Array, np.ndarray | None]:
    """Names as an Arrow string array, and a mask of the cells that were not strings (None where all were).

    Takes an Arrow (chunked) string array or any sequence of ``str``/``None``; other cells become nulls
    flagged in the mask, so they get an error instead of failing the chunk."""
    if isinstance(names, pa.ChunkedArray):
        names = names.combine_chunks() if names.num_chunks != 1 else names.chunk(0)
    if isinstance(names, pa.Array):
        if pa.types.is_large_string(names.type) or pa.types.is_string_view(names.type):
            names = names.cast(pa.string())
        if not pa.types.is_string(names.type):
            raise TypeError(f"names must be strings, got an Arrow array of {names.type}")
        return names, None
    names = names if isinstance(names, list) else list(names)
    try:
        return pa.array(names, type=pa.string()), None
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        not_str = np.fromiter((n is not None and not isinstance(n, str) for n in names), bool, len(names))
        return pa.array([None if bad else n for n, bad in zip(names, not_str)], type=pa.string()), not_str


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
            self.slot.update(zip(folded[:n], range(self.used, self.used + n)))
            self.rows[self.used:self.used + n] = rows[:n]
            self.used += n


class Predictor:
    """Rank languages for names with a trained model.

    >>> p = Predictor.load()            # the bundled model
    >>> p.predict(["Hinton"], top=3)[0].predictions[0]["language"]
    """

    def __init__(self, ckpt: checkpoint.Checkpoint, *, batch_size: int = 512, cache_size: int = CACHE_SIZE):
        self.checkpoint = ckpt
        self.model = ckpt.model.eval()
        self.labels = ckpt.labels
        self.batch_size = batch_size
        self.temperature = float(ckpt.meta.get("temperature", 1.0) or 1.0)
        self._labels = pa.array(self.labels, type=pa.string())
        self._cache = _LogProbCache(cache_size, len(self.labels)) if cache_size > 0 else None

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, device: str = "cpu", **kwargs) -> "Predictor":
        return cls(checkpoint.load(path or default_model_path(), device=device), **kwargs)

    @property
    def has_attention(self) -> bool:
        return self.model.has_attention

    def probabilities(self, folded: list[str], *, with_attention: bool = False):
        """Probabilities (N, C) for already-folded names, summing to 1 over all languages."""
        tokens, lengths = encode_names(folded)
        lp, att = batched_log_probs(self.model, tokens, lengths, batch_size=self.batch_size,
                                    with_attention=with_attention)
        return torch.softmax(lp / self.temperature, dim=1), att

    def log_probs(self, folded: list[str]) -> np.ndarray:
        """The model's log-probabilities (N, C) of distinct folded names, from the cache where it has them."""
        if self._cache is None:
            return self._run(folded)
        rows, missing = self._cache.lookup(folded)
        if missing.any():
            todo = [f for f, m in zip(folded, missing) if m]
            rows[missing] = new = self._run(todo)
            self._cache.store(todo, new)
        return rows

    def _run(self, folded: list[str]) -> np.ndarray:
        tokens, lengths = encode_names(folded)
        lp, _ = batched_log_probs(self.model, tokens, lengths, batch_size=self.batch_size)
        return lp.numpy()

    def predict_columns(self, names, top: int = 3) -> pa.Table:
        """The columnar path: a whole chunk of raw names in, an Arrow table out, no per-name Python objects.

        ``names``: an Arrow string array or a sequence of ``str``/``None``. Each distinct name in the chunk is
        folded once (and cached across chunks), the model runs once per distinct readable folded name, and
        top-K is taken for the whole chunk at once. Columns: ``name``, ``language_1, probability_1, ...,
        language_K, probability_K`` (K = min(top, languages)) and ``error`` (null when the name was read).
        A missing, non-string or unreadable name gets an error and null predictions, never an exception.
        """
        if isinstance(names, (str, bytes)):
            raise TypeError(f"predict_columns takes names, not one string ({names[:20]!r}): use [name]")
        arr, not_str = as_name_array(names)
        k = max(1, min(top, len(self.labels)))
        encoded = arr.dictionary_encode()  # each distinct raw name once
        row_null = np.asarray(encoded.indices.is_null())  # (N,) missing or non-string cells
        codes = pc.fill_null(encoded.indices, 0).to_numpy().astype(np.int64)  # (N,) -> distinct raw name
        folded, errors = fold_array(encoded.dictionary)  # (D,) each distinct raw name folded once
        distinct = folded.dictionary_encode()  # raw names that fold alike go to the model once
        to_unique = pc.fill_null(distinct.indices, -1).to_numpy().astype(np.int64)  # (D,) -1: unreadable
        unique = distinct.dictionary.to_pylist()  # (U,)
        log_probs = self.log_probs(unique) if unique else np.empty((0, len(self.labels)), np.float32)  # (U, C)

        # ---- per distinct folded name -> columns (U rows). THE TRUST LAYER GOES HERE: replace the next line by
        # `r = self.trust.apply(torch.from_numpy(log_probs), unique, coverage=..., prior=..., ...)`, take
        # `probs = r.probabilities`, and add its columns (abstained, reason, out_of_scope, set) of U rows to
        # `columns`: every column in `columns` is spread to the chunk's rows below, whatever its Arrow type.
        probs = torch.softmax(torch.from_numpy(log_probs) / self.temperature, dim=1).numpy()  # (U, C)
        columns = self._top_columns(probs, k)

        # ---- spread to rows: row -> distinct raw name -> distinct folded name
        row_unique = to_unique[codes] if len(to_unique) else np.full(len(arr), -1)  # (N,)
        bad = row_null | (row_unique < 0)
        take = pa.array(np.maximum(row_unique, 0), mask=bad)
        out = {"name": arr}
        for name, values in columns.items():
            values = values if isinstance(values, pa.Array) else pa.array(values)
            out[name] = values.take(take) if len(values) else pa.nulls(len(arr), values.type)
        error = errors.take(pa.array(codes, mask=row_null))
        if encoded.null_count:
            fill = np.where(not_str, NOT_STRING, MISSING) if not_str is not None else np.full(len(arr), MISSING)
            error = pc.if_else(pa.array(row_null), pa.array(fill, pa.string()), error)
        out["error"] = error
        return pa.table(out)

    def _top_columns(self, probs: np.ndarray, k: int) -> dict[str, pa.Array]:
        """``language_k``/``probability_k`` for distinct names (U, C), by tensor top-K on the whole set."""
        values, indices = torch.from_numpy(probs).topk(k, dim=1)  # (U, K)
        columns: dict[str, pa.Array] = {}
        for j in range(k):
            columns[f"language_{j + 1}"] = self._labels.take(pa.array(indices[:, j].numpy()))
            columns[f"probability_{j + 1}"] = pa.array(values[:, j].numpy())
        return columns

    def predict(self, names: Iterable[str], top: int = 3, *, attention: bool = False) -> list[Prediction]:
        """Each name's ``top`` languages with probabilities, as :class:`Prediction` objects (built on
        :meth:`predict_columns`). A name that cannot be read gets ``error`` set (and no predictions) instead
        of failing the whole batch."""
        names = list(names)
        table = self.predict_columns(names, top)
        k = max(1, min(top, len(self.labels)))
        langs = [table.column(f"language_{j}").to_pylist() for j in range(1, k + 1)]
        probs = [table.column(f"probability_{j}").to_pylist() for j in range(1, k + 1)]
        results = []
        for i, (n, error) in enumerate(zip(names, table.column("error").to_pylist())):
            ranked = [] if error else [{"language": langs[j][i], "probability": probs[j][i]} for j in range(k)]
            folded = "" if error else fold_or_error(n)[0]
            results.append(Prediction(name=n, predictions=ranked, folded=folded, error=error))
        if attention:
            good = [r for r in results if not r.error]
            if good:
                _, att = self.probabilities([r.folded for r in good], with_attention=True)
                for r, a in zip(good, att or []):
                    r.attention = a.tolist()
        return results

    def predict_one(self, name: str, top: int = 3) -> Prediction:
        result = self.predict([name], top)[0]
        if result.error:
            raise BadName(result.error)
        return result

    def stream(self, names: Iterable[str], top: int = 3, *, chunk: int = 8192) -> Iterator[Prediction]:
        """Predict lazily over any iterable, ``chunk`` names at a time: memory stays flat. Line ends are
        stripped and blank lines skipped, so ``stream(open("names.txt"))`` works."""
        it = (n.rstrip("\r\n") if isinstance(n, str) else n for n in names)
        it = (n for n in it if not isinstance(n, str) or n.strip())
        while batch := list(itertools.islice(it, chunk)):
            yield from self.predict(batch, top)
