"""Full names and first names: a name's parts read by their own models, and one answer combined from them.

A full name is split by :func:`nameorigin.names.parse` (or given as a first-name and a last-name column); its
family name goes to the surname model, its given name to the first-name model (a checkpoint whose metadata
says ``"name_kind": "first"``). Each part's calibrated probabilities become a likelihood ratio against its
model's own prior, and the ratios are combined under the surname model's prior:

    log p(c | parts) = softmax_c( sum_k w_k (log p_k(c | part_k) - log m_k(c)) + log m(c) ) / temperature

with weights ``w_k`` (and a temperature) fitted on validation pairs by :func:`fit_combination` and stored in the
first-name checkpoint (``combination``, tied to the surname model's SHA-256). The combined answer then goes
through the surname model's trust layer (prior, sets, abstention) like a surname's. A part that cannot be read
(an initial, no letters, out of scope while the other part is in scope, no first-name model) drops out; a name
with one readable part gets that part's own model's answer. Han characters are read twice (the Japanese and the
Chinese reader) and the reading whose language is the more likely under it is kept.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from . import checkpoint, names, text
from .errors import InputError
from .fitting import minimize

log = logging.getLogger(__name__)

#: The kinds of name ``name_type`` takes (``auto`` decides from :func:`nameorigin.names.parse`).
NAME_TYPES = names.NAME_TYPES
#: The default ``name_type`` of prediction: decided from each name's parse (a lone surname is read whole, as
#: before full names existed, and answered alike; ``surname`` skips the parse and the part columns).
DEFAULT_NAME_TYPE = "auto"
#: The parts of a name, in output order.
PARTS = ("given", "family")
#: What each part's model is called in the combination's weights.
WEIGHT_KEYS = {"given": "first", "family": "surname"}
#: The metadata key of a checkpoint's kind of name, and its values.
NAME_KIND = "name_kind"
NAME_KINDS = ("surname", "first")
#: Which reader each script's names get; Han alone is read both ways and the likelier reading kept.
_READERS = {"Han": ("japanese", "chinese"), "Kana": ("japanese",), "Hangul": ("korean",), "Latin": ("none",)}
#: The language whose probability judges a reading (``P(Japanese | the Japanese reading)``...).
_READING_LANGUAGE = {"japanese": "Japanese", "chinese": "Chinese"}
_NO_FIRST = "no first-name model"
_LONE_GIVEN = "no first-name model: read as a surname"
#: The languages of the 18 that write names in each script but Latin. A name written in one of these scripts is
#: answered among its languages only: the models read its transliteration, which has lost the script (``김`` and
#: ``이`` are read ``Kim`` and ``Lee``), while the script itself says the language (kana means Japanese, Hangul
#: Korean, Greek letters Greek). Its out-of-scope score stays the models' own (a Ukrainian or Persian name keeps
#: its chance to be marked out of scope). Scripts none of the 18 writes (Hebrew, Devanagari, ...) are left alone.
SCRIPT_LANGUAGES = {
    "Hangul": ("Korean",),
    "Kana": ("Japanese",),
    "Han": ("Chinese", "Japanese"),
    "Greek": ("Greek",),
    "Cyrillic": ("Russian",),
    "Arabic": ("Arabic",),
}


class NoFirstModel(InputError):
    """``name_type="first"`` without a first-name model; the message says how to give one."""


def check_name_type(name_type: str) -> str:
    if name_type not in NAME_TYPES:
        raise InputError(
            f"name_type {name_type!r}: expected one of {', '.join(NAME_TYPES)}",
            param="name_type",
        )
    return name_type


def name_kind(meta: dict) -> str:
    """A checkpoint's kind of name: ``first`` or ``surname`` (the key absent: a surname model)."""
    kind = meta.get(NAME_KIND) or "surname"
    if kind not in NAME_KINDS:
        raise checkpoint.CheckpointError(f"name_kind {kind!r}: expected one of {', '.join(NAME_KINDS)}")
    return kind


# ------------------------------------------------------------------------------------------- the combination


@dataclass(frozen=True)
class Combination:
    """How the parts' evidence is combined: each part's weight (``surname``, ``first``), a temperature, the
    SHA-256 of the surname model they were fitted with, and how many validation pairs fitted them."""

    weights: dict = field(default_factory=lambda: {"surname": 1.0, "first": 1.0})
    temperature: float = 1.0
    surname_sha256: str | None = None
    pairs: int = 0

    def to_dict(self) -> dict:
        return {
            "surname_sha256": self.surname_sha256,
            "weights": dict(self.weights),
            "temperature": self.temperature,
            "pairs": self.pairs,
        }

    @classmethod
    def from_meta(cls, meta: dict, source: str) -> Combination | None:
        """The block stored in a first-name checkpoint's metadata, checked; None when it has none."""
        block = meta.get("combination")
        if block is None:
            return None
        try:
            weights = {k: float(block["weights"][k]) for k in ("surname", "first")}
            temperature = float(block.get("temperature", 1.0))
            if not all(np.isfinite(w) and w >= 0 for w in weights.values()) or not temperature > 0:
                raise ValueError("weights must be finite and >= 0, the temperature > 0")
            return cls(weights, temperature, block.get("surname_sha256"), int(block.get("pairs") or 0))
        except (KeyError, TypeError, ValueError) as e:
            raise checkpoint.CheckpointError(f"{source}: its combination block is invalid ({e})") from None


def _log_ratio(trust, probs: np.ndarray) -> np.ndarray:
    """``log p(c | part) - log m(c)`` (N, C) for a model's calibrated probabilities, ``m`` its own prior."""
    base = trust.prior_base if trust.prior_base is not None else np.full(probs.shape[1], 1.0 / probs.shape[1])
    return np.log(np.maximum(probs, 1e-12)) - np.log(np.maximum(base, 1e-12))[None, :]


def _columns_onto(first_labels: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """For each of ``labels``, its column among ``first_labels`` (-1: the first-name model lacks it)."""
    where = {label: i for i, label in enumerate(first_labels)}
    return np.array([where.get(label, -1) for label in labels], dtype=np.int64)


def _onto(ratio: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """A first-name model's log ratios (N, Cf) on the surname model's languages (N, C): 0 (no evidence) for a
    language the first-name model lacks."""
    out = np.zeros((len(ratio), len(columns)), dtype=np.float64)
    have = columns >= 0
    out[:, have] = ratio[:, columns[have]]
    return out


# ------------------------------------------------------------------------------------------- reading the parts


@dataclass
class _Unit:
    """One distinct input (a raw name, or a first and a last cell) and how it was split."""

    given: str | None = None
    family: str | None = None
    name_type: str = "full"
    error: str | None = None
    notes: list[str] = field(default_factory=list)


class Cells(NamedTuple):
    """One side's cells (a first-name or a last-name column) reduced to their distinct values: ``values`` (D,)
    and each row's ``code`` into them (N,; -1: null)."""

    values: list
    code: np.ndarray


class SplitCells(NamedTuple):
    """Distinct (first, last) pairs as the whole-array path reads them: each pair's cleaned ``given`` and
    ``family`` (null: none), its ``kind`` and whether it is ``plain`` (both cells missing or blank, or Latin
    letters that are no initial: read without the name-by-name path)."""

    given: pa.Array
    family: pa.Array
    kind: pa.Array
    plain: np.ndarray


def distinct_cells(cells: pa.Array) -> Cells:
    encoded = cells.dictionary_encode()
    code = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return Cells(encoded.dictionary.to_pylist(), code)


#: A cell the whole-array path reads as it is: words of letters, an apostrophe, a hyphen or a space between.
_PLAIN_CELL = re.compile(r"[^\W\d_]+(?:[ '’-][^\W\d_]+)*")


def _plain_cell(value, role: str = "given") -> tuple[bool, str | None]:
    """``(plain, cleaned)`` of one cell: cleaned as :func:`unit_of_cells` cleans it; plain when missing or in
    Latin letters and no initial (two letters at least, no dot), so that its reader is ``none``, and with no
    title (a first cell) or suffix (a last cell) for :func:`unit_of_cells` to take off."""
    cleaned = _clean(value)
    if cleaned is None:
        return True, None
    ok = len(cleaned) > 1 and bool(_PLAIN_CELL.fullmatch(cleaned)) and text.script_of(cleaned) == "Latin"
    return ok and _off_cell(cleaned, role)[1] is None, cleaned


def _off_cell(cell: str, role: str) -> tuple[str | None, str | None]:
    """A cell with what nameparser reads as a title taken off the start of a first-name cell (``Mr``, ``Dr.``,
    ``Prof.``) or as a suffix off the end of a last-name cell (``Jr.``, ``III``), as it takes them off a whole
    name; and what was taken off (None: nothing)."""
    constants = names._constants()
    words = cell.split()
    key = [w.lower().rstrip(".") for w in words]
    if role == "given":
        n = next((i for i, k in enumerate(key) if k not in constants.titles), len(words))
        rest, off = words[n:], words[:n]
    else:
        suffixes = constants.suffix_acronyms | constants.suffix_not_acronyms
        n = next((i for i in range(len(key), 0, -1) if key[i - 1] not in suffixes), 0)
        rest, off = words[:n], words[n:]
    return (" ".join(rest) or None), (" ".join(off) or None)


def split_cells(sides: Sequence[Cells], at: Sequence[np.ndarray]) -> SplitCells:
    """:class:`SplitCells` of the distinct pairs whose cells are rows ``at`` (each (U,), -1: none) of ``sides``."""
    parts, plain = [], np.ones(len(at[0]), dtype=bool)
    for side, where, role in zip(sides, at, ("given", "family"), strict=True):
        facts = [_plain_cell(v, role) for v in side.values]
        ok = np.array([f for f, _ in facts] + [True], dtype=bool)  # the last: no cell
        cleaned = pa.array([c for _, c in facts] + [None], pa.string())
        index = np.where(where >= 0, where, len(side.values))
        plain &= ok[index]
        parts.append(cleaned.take(pa.array(index)))
    given, family = parts
    has_given, has_family = np.asarray(pc.is_valid(given)), np.asarray(pc.is_valid(family))
    plain &= has_given | has_family  # both missing: an error, the name-by-name path says it
    kind = np.where(has_given & has_family, "full", np.where(has_given, "first", "surname")).astype(object)
    return SplitCells(given, family, pa.array(kind, pa.string()), plain)


def take_keys(strings, rows: Sequence[int]):
    """The whole-array path's input (:meth:`Predictor._part_keys`' last) for some of the keys only."""
    index = pa.array(np.asarray(rows, dtype=np.int64))
    if isinstance(strings, SplitCells):
        return SplitCells(*(x.take(index) for x in strings[:3]), strings.plain[np.asarray(rows, dtype=np.int64)])
    return None if strings is None else strings.take(index)


def _clean(cell) -> str | None:
    return cell.strip() if isinstance(cell, str) and cell.strip() else None


def unit_of_name(raw, name_type: str) -> _Unit:
    """A raw name split by :func:`names.parse` under ``name_type``."""
    if raw is None:
        return _Unit(error="missing name (empty or null)")
    if not isinstance(raw, str):
        return _Unit(error=f"not a string ({type(raw).__name__})")
    if not raw.strip():
        return _Unit(error="missing name (empty or null)")
    parsed = names.parse(raw, name_type=name_type)
    if parsed.error:
        return _Unit(error=parsed.error)
    unit = _Unit(given=parsed.given_name or None, family=parsed.family_name or None, name_type=parsed.name_type)
    if parsed.initials:
        unit.notes.append(f"initials {' '.join(parsed.initials)} carry no evidence")
    if unit.given is None and unit.family is None:
        unit.error = f"name {text.shown(raw)} has no part that can be read (only initials?)"
    return unit


def unit_of_cells(first, last) -> _Unit:
    """A first-name and a last-name cell (either may be missing or None)."""
    given, family = _clean(first), _clean(last)
    if given is None and family is None:
        return _Unit(error="missing name (empty or null first and last name)")
    notes = []
    if given is not None:
        given, title = _off_cell(given, "given")
        notes += [f"title {title} left out"] if title else []
    if family is not None:
        family, suffix = _off_cell(family, "family")
        notes += [f"suffix {suffix} left out"] if suffix else []
    if given is None and family is None:
        return _Unit(error=f"no name in the cells ({'; '.join(notes)})")
    kind = "full" if given and family else "first" if given else "surname"
    return _Unit(given=given, family=family, name_type=kind, notes=notes)


def _readers(unit: _Unit) -> tuple[str, ...]:
    script = text.script_of(" ".join(p for p in (unit.family, unit.given) if p))
    return _READERS.get(script, ("transliteration",))


def read_part(part: str, role: str, reader: str, scheme: int) -> tuple[str | None, str | None]:
    """``(folded, None)`` or ``(None, why)``: one part read into the alphabet. Han, kana and Hangul go through
    the ``reader`` (:func:`text.read_part`; the model's own fold when the readers are not installed) when the
    part's model folds with the readers (``scheme`` 2), other parts (and every part for a model of scheme 1,
    trained before the readers) through the model's folding ``scheme``."""
    from .predict import fold_or_error

    if (
        scheme >= 2
        and reader in ("japanese", "chinese", "korean")
        and text.script_of(part) in ("Han", "Kana", "Hangul")
    ):
        written = part
        try:
            part = text.read_part(part, japanese=reader == "japanese", family=role == "family")
        except text.ReaderMissing as e:
            log.warning("%s; read as the model's folding reads it", e)
        else:
            if not part.strip():  # 纪 is a simplified Chinese character: no Japanese reading
                return None, f"{written} has no {reader} reading"
    return fold_or_error(part, scheme)


# ------------------------------------------------------------------------------------------- a chunk


@dataclass
class _Candidate:
    unit: int
    reader: str
    folded: dict  # part -> folded text (absent: not read)
    index: dict = field(default_factory=dict)  # part -> row in that part's distinct folded names (parts read)
    dropped: dict = field(default_factory=dict)  # part -> why it dropped out
    used: set = field(default_factory=set)  # the parts the answer rests on (read, and not dropped out)


def _part_outputs(model, folded: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """A model's calibrated probabilities (U, C) and out-of-scope scores (U,) or None for distinct folded parts."""
    if not folded:
        return np.empty((0, len(model.labels))), None
    probs = model.trust.probabilities(model.log_probs(folded))
    oos = model.trust.oos.score(probs, folded) if model.trust.oos is not None else None
    return probs, oos


@dataclass
class _Answered:
    """Distinct units' answers as arrays: ``columns``, the part columns of :func:`part_column_names` and
    ``error`` (empty when not asked for); and for each answer space (``family``: the surname model's languages,
    also for a combined answer; ``given``: the first-name model's) the units answered in it (``rows``), their
    calibrated probabilities (``probs``) and out-of-scope scores (``oos``; None without a detector)."""

    n: int
    columns: dict = field(default_factory=dict)
    rows: dict = field(default_factory=dict)
    probs: dict = field(default_factory=dict)
    oos: dict = field(default_factory=dict)


def predict_keys(
    predictor,
    keys: list,
    make,
    name_type: str,
    counts: np.ndarray,
    top: int,
    trust_options: dict,
    strings=None,
) -> tuple[dict[str, pa.Array], np.ndarray | None]:
    """The output columns (one row a distinct key: a raw name, or a first and a last cell) and the prior used
    (or None). ``make(key)`` is the key's :class:`_Unit` (the parse); names of the common shape skip it
    (:func:`answer_keys`)."""
    k = max(1, min(top, len(predictor.labels)))
    answered = answer_keys(predictor, keys, make, name_type, trust_options, k, strings)
    return _decided(predictor, answered, counts, k, trust_options)


def answer_keys(
    predictor, keys: list, make, name_type: str, trust_options: dict, k: int | None, strings=None
) -> _Answered:
    """Each distinct key's answer (:class:`_Answered`; its part columns with ``k`` languages a part, none when
    ``k`` is None); ``make(key)`` parses one key into its :class:`_Unit`. Names of one to three plain Latin words
    (:func:`names.parse_plain`, the common case) and pairs of cells in Latin letters are parsed and answered a
    whole array at once (:func:`_answered_plain`); the rest one by one (:func:`unit_answers`). Both give the
    same answers, which the tests hold side by side. ``strings``: the keys as an Arrow array (null where a key
    is no name), when the caller has it, or for pairs of cells their :class:`SplitCells` (plain pairs: Latin
    letters, no initials)."""
    if isinstance(strings, SplitCells):  # a first and a last cell: already apart
        plain = names.PlainParse(strings.plain, strings.given, strings.family, strings.kind)
    else:
        strings = (
            pa.array([key if type(key) is str else None for key in keys], pa.string()) if strings is None else strings
        )
        plain = names.parse_plain(strings, name_type)
    fast = np.flatnonzero(plain.plain)
    slow = np.flatnonzero(~plain.plain)
    # without a first-name model, auto reads a lone given name as a surname (as before full names), on both paths
    lone_given_as_surname = predictor.first is None and name_type == "auto"
    pieces = []
    if len(fast) or not len(slow):  # (no keys at all: the empty columns)
        take = pa.array(fast)
        given, family, kinds = plain.given.take(take), plain.family.take(take), plain.name_type.take(take)
        notes = pa.nulls(len(fast), pa.string())
        if lone_given_as_surname:
            alone = pc.and_(pc.is_valid(given), pc.is_null(family))
            family = pc.if_else(alone, given, family)
            given = pc.if_else(alone, pa.scalar(None, pa.string()), given)
            kinds = pc.if_else(alone, "surname", kinds)
            notes = pc.if_else(alone, _LONE_GIVEN, notes)
        pieces.append((fast, _answered_plain(predictor, given, family, kinds, notes, trust_options, k)))
    if len(slow):
        units = [make(keys[i]) for i in slow]
        for unit in units if lone_given_as_surname else ():
            if unit.given and not unit.family:
                unit.given, unit.family, unit.name_type = None, unit.given, "surname"
                unit.notes.append(_LONE_GIVEN)
        pieces.append((slow, _answered_units(predictor, units, trust_options, k)))
    return _merged(pieces, len(keys))


def _merged(pieces: list, n: int) -> _Answered:
    """:class:`_Answered` pieces (each with the keys it answers) as one, in key order."""
    if len(pieces) == 1 and np.array_equal(pieces[0][0], np.arange(n)):
        return pieces[0][1]
    out = _Answered(n)
    order = np.concatenate([at for at, _ in pieces]) if pieces else np.empty(0, np.int64)
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    if pieces and pieces[0][1].columns:
        for name in pieces[0][1].columns:
            column = pa.concat_arrays([a.columns[name] for _, a in pieces])
            out.columns[name] = column.take(pa.array(inverse))
    for space in ("family", "given"):
        have = [(at, a) for at, a in pieces if space in a.rows]
        if not have:
            continue
        scores = [a.oos[space] for _, a in have]
        _set_space(
            out,
            space,
            np.concatenate([at[a.rows[space]] for at, a in have]),
            np.concatenate([a.probs[space] for _, a in have]),
            None if any(x is None for x in scores) else np.concatenate(scores),
        )
    return out


def _set_space(out: _Answered, space: str, rows: np.ndarray, probs: np.ndarray, oos: np.ndarray | None) -> None:
    """An answer space's units in key order (the trust layer then sees them as one call over the keys would)."""
    order = np.argsort(rows, kind="stable")
    out.rows[space], out.probs[space] = rows[order], probs[order]
    out.oos[space] = None if oos is None else oos[order]


def _answered_units(predictor, units: list[_Unit], trust_options: dict, k: int | None) -> _Answered:
    """:class:`_Answered` of units parsed one by one (:func:`unit_answers`)."""
    chosen, outputs = unit_answers(predictor, units, trust_options)
    out = _Answered(len(units))
    for space in ("family", "given"):
        rows = [u for u, c in enumerate(chosen) if c is not None and c[1] is not None and c[1][0] == space]
        if not rows:
            continue
        out.rows[space] = np.array(rows, dtype=np.int64)
        out.probs[space] = np.stack([chosen[u][1][1] for u in rows])
        scores = [chosen[u][1][2] for u in rows]
        out.oos[space] = np.array(scores, dtype=np.float64) if all(x is not None for x in scores) else None
    _answer_in_script(predictor, units, out)
    if k is not None:
        out.columns = _part_columns(predictor, units, chosen, outputs, k)
        out.columns["error"] = pa.array(
            [
                None if c is not None and c[1] is not None else unreadable(u, c and c[0])
                for u, c in zip(units, chosen, strict=True)
            ],
            pa.string(),
        )
    return out


def _answer_in_script(predictor, units: list[_Unit], out: _Answered) -> None:
    """Answers of names written in a script of :data:`SCRIPT_LANGUAGES` put among its languages (renormalised),
    with a note on the unit; a model that has none of them keeps its answer."""
    for space, rows in out.rows.items():
        labels = (predictor if space == "family" else predictor.first).labels
        for j, u in enumerate(rows):
            unit = units[u]
            script = text.letters_script(" ".join(p for p in (unit.family, unit.given) if p))
            languages = [lang for lang in SCRIPT_LANGUAGES.get(script, ()) if lang in labels]
            if not languages or len(languages) == len(labels):
                continue
            mask = np.array([lang in languages for lang in labels], dtype=np.float64)
            kept = out.probs[space][j] * mask
            out.probs[space][j] = kept / kept.sum() if kept.sum() > 0 else mask / mask.sum()
            unit.notes.append(f"written in {script}: answered among {' and '.join(languages)} only")


def _answered_plain(
    predictor, given: pa.Array, family: pa.Array, kinds: pa.Array, notes: pa.Array, trust_options: dict, k: int | None
) -> _Answered:
    """:class:`_Answered` of units already split (``given``, ``family``: null where absent), all in Latin
    letters and none an initial, as :func:`unit_answers` answers them but a whole array at once: each part
    folded (:func:`~nameorigin.predict.fold_array`) and each distinct folded part given to its model once; a
    part out of scope drops out when the other is read and in scope; two parts are combined."""
    from .predict import fold_array

    n = len(given)
    first = predictor.first
    models = {"family": predictor, "given": first}
    folded, dropped, index, outputs = {}, {}, {}, {}
    none = pa.nulls(n, pa.string())
    for part, raw in (("given", given), ("family", family)):
        present = np.asarray(pc.is_valid(raw))
        index[part] = np.full(n, -1, dtype=np.int64)
        folded[part] = none
        if part == "given" and first is None:
            dropped[part] = pc.if_else(pa.array(present), _NO_FIRST, none)
            continue
        at = np.flatnonzero(present)
        raws = raw.filter(pa.array(present)).dictionary_encode()  # each distinct raw part folded once
        values, errors = fold_array(raws.dictionary, models[part].fold_scheme)
        values, errors = values.take(raws.indices), errors.take(raws.indices)
        mask = pa.array(present)
        folded[part] = pc.replace_with_mask(none, mask, values) if len(at) else none
        dropped[part] = pc.replace_with_mask(none, mask, errors) if len(at) else none
        distinct = values.dictionary_encode()
        index[part][at] = pc.fill_null(distinct.indices, -1).to_numpy(zero_copy_only=False)
        outputs[part] = _part_outputs(models[part], distinct.dictionary.to_pylist())
    read = {part: index[part] >= 0 for part in PARTS}
    far = {}
    for part in PARTS:
        oos = outputs[part][1] if part in outputs else None
        limit = _threshold(models[part], trust_options) if models[part] is not None else None
        far[part] = np.zeros(n, dtype=bool)
        if oos is not None and limit is not None:
            far[part][read[part]] = oos[index[part][read[part]]] > limit
    one_far = read["given"] & read["family"] & (far["given"] ^ far["family"])
    used = {}
    for part in PARTS:
        drop = one_far & far[part]
        used[part] = read[part] & ~drop
        if drop.any():
            dropped[part] = pc.if_else(pa.array(drop), "out of scope", dropped[part])
    out = _Answered(n)
    both = used["given"] & used["family"]
    groups = {"both": both, "family": used["family"] & ~both, "given": used["given"] & ~both}
    family_rows, family_probs, family_oos = [], [], []
    for kind, mask in groups.items():
        rows = np.flatnonzero(mask)
        if not len(rows):
            continue
        at = {p: index[p][rows] for p in PARTS}
        oos = {p: outputs[p][1][at[p]] if p in outputs and outputs[p][1] is not None else None for p in PARTS}
        if kind == "both":
            probs, score = _combined(predictor, outputs, at, oos)
        else:
            probs, score = outputs[kind][0][at[kind]], oos[kind]
        if kind == "given":
            _set_space(out, "given", rows, probs, score)
        else:
            family_rows.append(rows)
            family_probs.append(probs)
            family_oos.append(score)
    if family_rows:
        scores = None if any(x is None for x in family_oos) else np.concatenate(family_oos)
        _set_space(out, "family", np.concatenate(family_rows), np.concatenate(family_probs), scores)
    if k is None:
        return out
    parts_used = np.where(
        both, "given+family", np.where(used["given"], "given", np.where(used["family"], "family", None))
    )
    cols: dict[str, pa.Array] = {
        "name_type": kinds,
        "reading": pa.array(np.full(n, "none", dtype=object), pa.string()),
        "parts_used": pa.array(parts_used.astype(object), pa.string()),
    }
    raws = {"given": given, "family": family}
    for part in PARTS:
        cols[part] = raws[part]
        cols[f"{part}_read"] = folded[part]
        cols[f"{part}_dropped"] = dropped[part]
        cols.update(_part_topk(outputs.get(part), models[part], index[part], part, k))
    cols["note"] = notes
    cols = {c: cols[c] for c in part_column_names(k)}
    errors = [None] * n
    for i in np.flatnonzero(~(used["given"] | used["family"])):
        why = "; ".join(
            f"{p} name {text.shown(raws[p][int(i)].as_py())}: {dropped[p][int(i)].as_py()}"
            for p in PARTS
            if dropped[p][int(i)].is_valid
        )
        errors[i] = f"no part of the name can be read ({why})" if why else "no part of the name can be read"
    cols["error"] = pa.array(errors, pa.string())
    out.columns = cols
    return out


def unit_answers(predictor, units: list[_Unit], trust_options: dict) -> tuple[list, dict]:
    """Each distinct unit's chosen reading and its answer (:func:`_choose_readings`), and the parts' outputs."""
    first = predictor.first
    scheme = {"family": predictor.fold_scheme, "given": first.fold_scheme if first is not None else 1}
    cache: dict[tuple, tuple[str | None, str | None]] = {}
    distinct: dict[str, dict[str, int]] = {"given": {}, "family": {}}
    candidates: list[_Candidate] = []
    for u, unit in enumerate(units):
        if unit.error:
            continue
        for reader in _readers(unit):
            cand = _Candidate(u, reader, {})
            for part in PARTS:
                raw = getattr(unit, part)
                if raw is None:
                    continue
                if part == "given" and first is None:
                    cand.dropped[part] = _NO_FIRST
                    continue
                if names.is_initial(raw):
                    cand.dropped[part] = "an initial carries no evidence"
                    continue
                key = (raw, part, reader)
                if key not in cache:
                    cache[key] = read_part(raw, part, reader, scheme[part])
                folded, why = cache[key]
                if folded is None:
                    cand.dropped[part] = why
                    continue
                cand.folded[part] = folded
                cand.index[part] = distinct[part].setdefault(folded, len(distinct[part]))
            cand.used = set(cand.index)
            candidates.append(cand)
    models = {"family": predictor, "given": first}
    outputs = {p: _part_outputs(models[p], list(distinct[p])) for p in PARTS if models[p] is not None}
    _drop_out_of_scope(predictor, candidates, outputs, trust_options)
    return _choose_readings(predictor, candidates, outputs, units), outputs


def _threshold(model, trust_options: dict) -> float | None:
    given = trust_options.get("max_out_of_scope")
    return model.trust.max_out_of_scope if given is None else given


def _drop_out_of_scope(predictor, candidates: list[_Candidate], outputs: dict, trust_options: dict) -> None:
    """A part out of scope drops out when the other part is read and in scope (the name's answer rests on it)."""
    models = {"family": predictor, "given": predictor.first}
    for cand in candidates:
        if len(cand.used) < 2:
            continue
        far = {}
        for part, i in cand.index.items():
            oos, limit = outputs[part][1], _threshold(models[part], trust_options)
            far[part] = oos is not None and limit is not None and oos[i] > limit
        if sum(far.values()) == 1:
            part = next(p for p, f in far.items() if f)
            cand.dropped[part] = "out of scope"
            cand.used.discard(part)


def _answers(predictor, cands: list, outputs: dict) -> list:
    """Each chosen candidate's calibrated answer, or None (no usable part): which model's languages it is on
    (``family``: the surname model's, also for a combined answer; ``given``: the first-name model's), its
    probabilities, its out-of-scope score (a combined name is as far as its nearest part). Computed for all
    candidates of a kind at once."""
    out: list = [None] * len(cands)
    groups: dict[tuple, list[int]] = {}
    for i, cand in enumerate(cands):
        if cand is not None and cand.used:
            groups.setdefault(tuple(p for p in PARTS if p in cand.used), []).append(i)
    for kind, rows in groups.items():
        at = {p: np.array([cands[i].index[p] for i in rows], dtype=np.int64) for p in kind}
        oos = {p: outputs[p][1][at[p]] if outputs[p][1] is not None else None for p in kind}
        if kind == PARTS:  # both parts
            probs, score = _combined(predictor, outputs, at, oos)
            space = "family"
        else:
            (space,) = kind
            probs, score = outputs[space][0][at[space]], oos[space]
        for j, i in enumerate(rows):
            out[i] = (space, probs[j], None if score is None else float(score[j]))
    return out


def _combined(predictor, outputs: dict, at: dict, oos: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """The combined answers (N, C) of names with both parts read, for both ways of answering (the whole array
    and name by name): ``at[part]`` each name's row among its part's distinct ``outputs``, ``oos[part]`` their
    out-of-scope scores (None: no detector); a name is as far out of scope as its nearer part. The answer: the
    parts' log ratios (each on the surname model's languages) weighted and summed under the surname model's
    prior, over the temperature, through softmax."""
    if predictor.combination_note:
        predictor.trust._note_once(predictor.combination_note)
    # each distinct part's weighted log ratio computed once, then taken to the names (files repeat parts)
    c = predictor.combination
    surname = c.weights["surname"] * _log_ratio(predictor.trust, outputs["family"][0])
    surname += np.log(np.maximum(_base(predictor.trust), 1e-12))[None, :]
    first = c.weights["first"] * _onto(_log_ratio(predictor.first.trust, outputs["given"][0]), predictor.first_columns)
    z = (surname[at["family"]] + first[at["given"]]) / c.temperature
    probs = torch.softmax(torch.from_numpy(z), dim=1).numpy()
    known = [o for o in oos.values() if o is not None]
    return probs, np.minimum.reduce(known) if known else None


def _base(trust) -> np.ndarray:
    n = len(trust.labels)
    return trust.prior_base if trust.prior_base is not None else np.full(n, 1.0 / n)


def _table_says(reader: str, family: str | None) -> float:
    """1 when the family-name tables (:func:`text.family_tables`, from name-variants) know ``family`` as a
    family name of the reader's language and not of the other one (``藤井`` is Japanese only, ``张`` Chinese
    only): a maintained source decides before the models' probabilities do; else 0."""
    if reader not in ("japanese", "chinese") or not family:
        return 0.0
    try:
        tables = text.family_tables()
    except text.ReaderMissing:
        return 0.0
    other = "chinese" if reader == "japanese" else "japanese"
    return float(family in tables[reader] and family not in tables[other])


def _choose_readings(predictor, candidates: list[_Candidate], outputs: dict, units: list[_Unit]) -> list:
    """Each unit's candidate (None: nothing readable) and its answer: of a name's readings, the one whose own
    language is the more probable under it (``P(Japanese | the Japanese reading)`` against ``P(Chinese | the
    Chinese reading)``, by :func:`_reading_score`), the family-name tables first where they know the family
    name as one language's only (:func:`_table_says`); before both, a reading that reads more of the name's
    parts wins (``纪`` has no Japanese reading: ``桂兰 纪`` is read the Chinese way), and one that reads none
    loses."""
    chosen: list = [None] * len(units)
    best: list[float] = [-1.0] * len(units)
    for cand in candidates:
        if not cand.used:
            if chosen[cand.unit] is None:
                chosen[cand.unit] = cand
            continue
        score = _reading_score(predictor, cand, outputs)
        if cand.reader in _READING_LANGUAGE:
            score += _table_says(cand.reader, units[cand.unit].family)
        score += 10.0 * len(cand.index)  # a reading that reads more of the name's parts wins first (whether or
        # not a part then drops out as out of scope: that is the model's answer, not the reading's)
        if chosen[cand.unit] is None or not chosen[cand.unit].used or score > best[cand.unit]:
            chosen[cand.unit], best[cand.unit] = cand, score
    return list(zip(chosen, _answers(predictor, chosen, outputs), strict=True))


def _reading_score(predictor, cand: _Candidate, outputs: dict) -> float:
    """How well a reading reads as its language: the mean over the parts read of ``P(language | the part
    so read)`` (each part by its own model: a combined answer saturates near 1 under either reading, a
    part's own answer does not); 0 for a reader without a language (Hangul, Latin letters: one reading)."""
    language = _READING_LANGUAGE.get(cand.reader)
    models = {"family": predictor, "given": predictor.first}
    scores = [
        float(outputs[part][0][i][models[part].labels.index(language)])
        for part, i in cand.index.items()
        if part in cand.used and language in models[part].labels
    ]
    return sum(scores) / len(scores) if scores else 0.0


def _prior_for(first, labels: Sequence[str], prior):
    """The caller's prior for first-name-only answers, on the first-name model's languages."""
    from .trust import TRAINING

    if prior is None or prior is TRAINING or isinstance(prior, str) or list(first.labels) == list(labels):
        return prior
    weights = (
        dict(zip(labels, np.asarray(prior, dtype=np.float64).tolist(), strict=True))
        if not isinstance(prior, dict)
        else prior
    )
    return {label: max(float(weights.get(label, 0.0)), 1e-6) for label in first.labels}


def _decided(predictor, answered: _Answered, counts: np.ndarray, k: int, trust_options: dict):
    """The distinct units' columns: the answer (top-K, trust: each answer space's units decided at once, so that
    ``prior="auto"`` rests on all of them), then the parts, then ``error``; and the prior used (or None)."""
    sets = trust_options.get("coverage") is not None
    pieces, used_prior = [], None
    for space in ("family", "given"):
        if space not in answered.rows:
            continue
        rows = answered.rows[space]
        model = predictor if space == "family" else predictor.first
        options = dict(trust_options)
        if space == "given":
            options["prior"] = _prior_for(model, predictor.labels, options.get("prior"))
        r = model.trust.decide(answered.probs[space], answered.oos[space], counts=counts[rows], **options)
        if space == "family":
            used_prior = r.prior
        cols = model._top_columns(r.probabilities, min(k, len(model.labels)))
        for j in range(len(model.labels), k):  # a first-name model of fewer languages: pad its columns
            cols[f"language_{j + 1}"] = pa.nulls(len(rows), pa.string())
            cols[f"probability_{j + 1}"] = pa.nulls(len(rows), pa.float64())
        cols.update(model._trust_columns(r, sets=sets))
        pieces.append((rows, cols))
    out = _spread(pieces, answered.n, k, sets)
    out.update(answered.columns)
    return out, used_prior


def _spread(pieces, n: int, k: int, sets: bool) -> dict[str, pa.Array]:
    """The groups' columns put back in unit order (null for units without an answer)."""
    names_ = [c for j in range(1, k + 1) for c in (f"language_{j}", f"probability_{j}")]
    names_ += ["abstained", "reason", "out_of_scope"] + (["set"] if sets else [])
    types = {"abstained": pa.bool_(), "reason": pa.string(), "out_of_scope": pa.float64(), "set": pa.list_(pa.string())}
    position = np.full(n, -1, dtype=np.int64)
    at = 0
    for rows, _ in pieces:
        position[rows] = np.arange(at, at + len(rows))
        at += len(rows)
    take = pa.array(np.maximum(position, 0), mask=position < 0)
    out = {}
    for name in names_:
        kind = types.get(name, pa.string() if name.startswith("language_") else pa.float64())
        arrays = [cols[name].cast(kind) for _, cols in pieces]
        values = pa.concat_arrays(arrays) if arrays else pa.array([], kind)
        out[name] = values.take(take) if len(values) else pa.nulls(n, kind)
    return out


def part_column_names(k: int) -> list[str]:
    """The columns a full-name answer adds after the answer's own, in order."""
    cols = ["name_type", "reading", "parts_used"]
    for part in PARTS:
        cols += [part, f"{part}_read", f"{part}_dropped"]
        cols += [c for j in range(1, k + 1) for c in (f"{part}_language_{j}", f"{part}_probability_{j}")]
    return [*cols, "note"]


def _part_columns(predictor, units, chosen, outputs, k: int) -> dict[str, pa.Array]:
    """The parts' columns of the unit rows: what was read as each part, how, its own top-K (each distinct
    part's top-K found once, by tensor top-K, and taken to the units), and why a part dropped out."""
    models = {"family": predictor, "given": predictor.first}
    cands = [c[0] if c is not None else None for c in chosen]
    out: dict[str, pa.Array] = {
        "name_type": pa.array([None if u.error else u.name_type for u in units], pa.string()),
        "reading": pa.array([c.reader if c is not None else None for c in cands], pa.string()),
        "parts_used": pa.array(
            ["+".join(p for p in PARTS if p in c.used) or None if c is not None else None for c in cands],
            pa.string(),
        ),
    }
    for part in PARTS:
        out[part] = pa.array([getattr(u, part) for u in units], pa.string())
        out[f"{part}_read"] = pa.array([c.folded.get(part) if c is not None else None for c in cands], pa.string())
        out[f"{part}_dropped"] = pa.array([c.dropped.get(part) if c is not None else None for c in cands], pa.string())
        index = np.array([c.index.get(part, -1) if c is not None else -1 for c in cands], dtype=np.int64)
        out.update(_part_topk(outputs.get(part), models[part], index, part, k))
    out["note"] = pa.array(["; ".join(u.notes) or None for u in units], pa.string())
    return {c: out[c] for c in part_column_names(k)}


def _part_topk(output, model, index: np.ndarray, part: str, k: int) -> dict[str, pa.Array]:
    """A part's own top-K columns for units whose part is row ``index`` (-1: not read) of the distinct parts'
    ``output`` (probabilities, scores; None: that part has no model): each distinct part's top-K found once,
    by tensor top-K, and taken to the units."""
    n = len(index)
    take = pa.array(np.maximum(index, 0), mask=index < 0)
    probs = output[0] if output is not None else np.empty((0, 1))
    labels = pa.array(model.labels if model is not None else [], pa.string())
    kk = min(k, probs.shape[1]) if len(probs) else 0
    values, order = torch.from_numpy(probs).topk(kk, dim=1) if kk else (None, None)
    out = {}
    for j in range(k):
        if j < kk:
            language = labels.take(pa.array(order[:, j].numpy())).take(take)
            probability = pa.array(values[:, j].numpy().astype(np.float64)).take(take)
        else:
            language, probability = pa.nulls(n, pa.string()), pa.nulls(n, pa.float64())
        out[f"{part}_language_{j + 1}"] = language
        out[f"{part}_probability_{j + 1}"] = probability
    return out


def unreadable(unit: _Unit, cand) -> str:
    """The error of a unit none of whose parts could be read."""
    if unit.error:
        return unit.error
    why = "; ".join(f"{p} name {text.shown(getattr(unit, p))}: {w}" for p, w in (cand.dropped.items() if cand else ()))
    return f"no part of the name can be read ({why})" if why else "no part of the name can be read"


# ------------------------------------------------------------------------------------------- fitting the weights


def pair_parts(pair) -> tuple[str | None, str | None]:
    """``(given, family)`` of a validation pair's name: a full name (parsed) or a (first, last) tuple."""
    if isinstance(pair, (tuple, list)):
        return _clean(pair[0]), _clean(pair[1])
    unit = unit_of_name(pair, "full")
    return unit.given, unit.family


def fit_combination(predictor, pairs: Sequence, *, l2: float = 1e-3) -> dict:
    """The combination's weights fitted on validation ``pairs`` ``(name, language)`` (``name``: a full name or
    a ``(first, last)`` tuple; languages the surname model lacks are skipped) by minimising the log-loss of
    the combined answer (L-BFGS, :func:`nameorigin.fitting.minimize`; a small ridge pulls the weights to 1).
    Returns the ``combination`` block for the first-name checkpoint (:func:`save_combination`), with the
    validation log-loss at weights 1 and at the fitted weights. Needs both parts readable in a pair; the
    others are skipped."""
    if predictor.first is None:
        raise NoFirstModel(
            "pairs: fitting the combination needs a first-name model (Predictor.load(first=PATH))", param="pairs"
        )
    given_folded, family_folded, truth = [], [], []
    for name, language in pairs:
        if language not in predictor.labels:
            continue
        given, family = pair_parts(name)
        if not given or not family:
            continue
        g = read_part(given, "given", "none", predictor.first.fold_scheme)[0]
        f = read_part(family, "family", "none", predictor.fold_scheme)[0]
        if g and f:
            given_folded.append(g)
            family_folded.append(f)
            truth.append(predictor.labels.index(language))
    if len(truth) < 2:
        raise InputError(
            f"pairs: {len(truth)} usable pair(s) (a full name with a readable first and last name, and a "
            "language of the surname model); at least 2 are needed",
            param="pairs",
        )
    surname = _log_ratio(predictor.trust, predictor.trust.probabilities(predictor.log_probs(family_folded)))
    first = _onto(
        _log_ratio(predictor.first.trust, predictor.first.trust.probabilities(predictor.first.log_probs(given_folded))),
        predictor.first_columns,
    )
    s, f = torch.from_numpy(surname), torch.from_numpy(first)
    base = torch.log(torch.from_numpy(np.maximum(_base(predictor.trust), 1e-12)))
    y = torch.tensor(truth)
    w = torch.ones(2, dtype=torch.float64, requires_grad=True)

    def loss_at(weights: torch.Tensor) -> torch.Tensor:
        z = weights[0] * s + weights[1] * f + base
        return torch.nn.functional.cross_entropy(z, y)

    def loss() -> torch.Tensor:
        return loss_at(w) + l2 * ((w - 1) ** 2).sum()

    minimize(loss, [w], max_iter=200)
    fitted = w.detach().clamp(min=0)
    with torch.no_grad():
        before, after = float(loss_at(torch.ones(2, dtype=torch.float64))), float(loss_at(fitted))
    block = Combination(
        {"surname": float(fitted[0]), "first": float(fitted[1])}, 1.0, predictor.sha256, len(truth)
    ).to_dict()
    block["valid_log_loss"] = {"weights_1": round(before, 6), "fitted": round(after, 6)}
    return block


def save_combination(first_path, block: dict, out) -> None:
    """The first-name checkpoint at ``first_path`` written to ``out`` with ``block`` as its ``combination``
    (through :func:`nameorigin.checkpoint.save`, so that its SHA-256 covers the block)."""
    if name_kind(checkpoint.read_meta(first_path)) != "first":
        raise checkpoint.CheckpointError(f"{first_path}: not a first-name model (its name_kind is surname)")
    checkpoint.rewrite(first_path, lambda meta, _layer: meta.update(combination=block), out)


def ranked_of_row(rows: dict, i: int, k: int, prefix: str = "") -> list[dict]:
    """Row ``i``'s ``[{"language", "probability"}]`` from its ``{prefix}language_j``/``probability_j`` columns."""
    return [
        {"language": rows[f"{prefix}language_{j}"][i], "probability": rows[f"{prefix}probability_{j}"][i]}
        for j in range(1, k + 1)
        if rows[f"{prefix}language_{j}"][i] is not None
    ]


def parts_of_row(rows: dict, i: int, k: int) -> dict:
    """A full-name output row (``rows``: the table's columns as lists) as a :class:`Prediction`'s fields
    ``name_type``, ``reading`` and ``parts``: each part's text, its reading, whether the answer used it, its
    own top languages, and why it dropped out."""
    used = (rows["parts_used"][i] or "").split("+")
    parts = []
    for part in PARTS:
        if rows[part][i] is None:
            continue
        ranked = ranked_of_row(rows, i, k, f"{part}_")
        parts.append(
            {
                "part": part,
                "text": rows[part][i],
                "read": rows[f"{part}_read"][i],
                "used": part in used,
                "predictions": ranked,
                "dropped": rows[f"{part}_dropped"][i],
            }
        )
    return {"name_type": rows["name_type"][i], "reading": rows["reading"][i], "parts": parts, "note": rows["note"][i]}


def read_pairs(path) -> list[tuple]:
    """Labelled full (or first) names as written, not folded (the parser needs their script and spaces): a
    CSV/TSV of ``name,language`` gives ``(name, language)``, of ``first,last,language`` ``((first, last),
    language)`` (a header row allowed, detected by its last cell: language, label or lang; a wider table with
    a header, e.g. bench/fullnames.py's, by its first/last or name and language columns); a folder of
    ``<Language>.txt`` files one name a line."""
    import csv
    from pathlib import Path

    from .data import DataError

    p = Path(path)
    if p.is_dir():
        out = [
            (line.strip(), f.stem)
            for f in sorted(p.glob("*.txt"))
            for line in f.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    elif p.is_file():
        with open(p, encoding="utf-8-sig", newline="") as fh:
            rows = [r for r in csv.reader(fh, delimiter="\t" if p.suffix.lower() == ".tsv" else ",") if r]
        header = [c.strip().lower() for c in rows[0]] if rows else []
        language = next((c for c in ("language", "label", "lang") if c in header), None)
        if language and len(header) > 3:  # a wider table: its columns by name (first,last or name, and language)
            cols = [header.index(c) for c in ("first", "last") if c in header]
            cols = cols if len(cols) == 2 else [header.index("name")] if "name" in header else []
            if not cols:
                raise DataError(f"{path}: a header with {language} needs first and last, or name, columns")
            rows = [[r[i] if i < len(r) else "" for i in [*cols, header.index(language)]] for r in rows[1:]]
        elif rows and rows[0][-1].strip().lower() in ("language", "label", "lang"):
            rows = rows[1:]
        bad = next((i for i, r in enumerate(rows) if len(r) not in (2, 3) or not r[-1].strip()), None)
        if bad is not None:
            raise DataError(f"{path}: row {bad + 1} is not name,language or first,last,language")
        out = [((r[0], r[1]) if len(r) == 3 else r[0], r[-1].strip()) for r in rows]
    else:
        raise DataError(f"{path}: no such file or folder")
    if not out:
        raise DataError(f"{path}: has no names")
    return out
