"""The alphabet, folding any Unicode name into it, encoding, and the worksheet's punctuation noise."""

from __future__ import annotations

import functools
import random
import re
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from anyascii import anyascii

#: The alphabet's punctuation: the seeds' ``" .,;'"``.
PUNCTUATION = " .,;'"
#: The seeds' 57 letters: ``ascii_letters + " .,;'"``, stated here only.
ALPHABET = string.ascii_letters + PUNCTUATION
#: Characters the worksheet appends as noise: the punctuation but the space.
NOISE_CHARS = PUNCTUATION.replace(" ", "")
#: Index 0 is padding; letter ``c`` has index ``ALPHABET.index(c) + 1``.
PAD = 0
VOCAB_SIZE = len(ALPHABET) + 1
#: Longest folded name accepted; longer input is an error, never a silent truncation.
MAX_NAME_CHARS = 64

_INDEX = {c: i + 1 for i, c in enumerate(ALPHABET)}
_ALLOWED = frozenset(ALPHABET)
_PUNCTUATION = frozenset(PUNCTUATION)
_ALREADY_FOLDED = re.compile(f"[A-Za-z{re.escape(PUNCTUATION)}]*")
_HAS_LETTER = re.compile(r"[A-Za-z]")


class BadName(ValueError):
    """A name that cannot be used: it folds to nothing, or it is too long."""


def shown(name: str, most: int = 30) -> str:
    """``name`` quoted for a message, its first ``most`` characters then ``...`` when longer: an error row never
    repeats a 10,000-character cell (the row's ``name`` holds it)."""
    return repr(name) if len(name) <= most else f"{name[:most]!r}..."


def seed_fold(name: str) -> str:
    """The seeds' ``unicodeToAscii``: NFD, drop combining marks, keep the alphabet."""
    return "".join(c for c in unicodedata.normalize("NFD", name) if unicodedata.category(c) != "Mn" and c in _ALLOWED)


def _keeps_letters(category: str) -> bool:
    """Letters of any script, and the spacing marks some scripts write vowels with (Devanagari's ``ा``)."""
    return category[0] == "L" or category in ("Mc", "Me")


def fold(name: str, scheme: int = 1) -> str:
    """Fold any Unicode name into the alphabet, as the seeds do, transliterating other scripts first.

    ``scheme`` is the folding scheme (:data:`FOLD_SCHEMES`): 1, the default, is the rule below, the one every
    model before folding was versioned was trained with; 2 reads Han, kana and Hangul with their readers
    (:func:`read_native`) and writes words of scripts without case as the tutorial writes names.

    ``Ślusàrski`` → ``Slusarski`` (the seeds' rule); ``Шевченко`` → ``Shevchenko`` (transliteration by
    :mod:`anyascii`, where the seeds would drop every letter). Only letters (Unicode category ``L*``) are
    transliterated: digits, symbols, emoji and other punctuation are dropped *before* transliteration, so
    ``😀`` never becomes ``grinning``; other scripts' spaces and punctuation keep what they map to among
    ``" .,;'"`` (``’`` → ``'``). Surrounding white space is stripped.
    """
    if _ALREADY_FOLDED.fullmatch(name):  # the common case: nothing to normalise or drop (alike in every scheme)
        return name.strip()
    if scheme != 1:
        return _fold_v2(name) if scheme == 2 else _unknown_scheme(scheme)
    return _fold_letters(name)


def _fold_letters(name: str) -> str:
    """Scheme 1 of :func:`fold` (the seeds' rule, other scripts through :mod:`anyascii`)."""
    out: list[str] = []
    for c in unicodedata.normalize("NFD", name.strip()):
        if c in _ALLOWED:
            out.append(c)
            continue
        if ord(c) <= 127:
            continue
        category = unicodedata.category(c)
        if category == "Mn":
            continue
        if _keeps_letters(category):
            out.extend(t for t in anyascii(c) if t in _ALLOWED)
        elif category[0] in "PZ":  # another script's space or punctuation: only what the alphabet has
            out.extend(t for t in anyascii(c) if t in _PUNCTUATION)
    return "".join(out).strip()


def fold_checked(name: str, *, max_chars: int = MAX_NAME_CHARS, scheme: int = 1) -> str:
    """:func:`fold` (with ``scheme``), raising :class:`BadName` for a name that folds to nothing or is too long."""
    if len(name) > max_chars * 4:
        raise BadName(f"name is {len(name)} characters long; at most {max_chars} are accepted")
    folded = fold(name, scheme)
    if not _HAS_LETTER.search(folded):  # empty, or only the alphabet's punctuation
        raise BadName(f"name {shown(name)} has no letters that can be read (it folds to nothing)")
    if len(folded) > max_chars:
        raise BadName(f"name {name[:20]!r}... is {len(folded)} characters long; at most {max_chars} are accepted")
    return folded


def encode(folded: str) -> list[int]:
    """Indices of a folded name (every character must be in :data:`ALPHABET`)."""
    return [_INDEX[c] for c in folded]


def decode(indices: Sequence[int]) -> str:
    return "".join(ALPHABET[i - 1] for i in indices if i != PAD)


def add_noise(name: str, level: int, rng: random.Random) -> str:
    """The worksheet's noise: append ``rng.randint(0, level + 1)`` characters drawn from ``.,;'``."""
    if level <= 0:
        return name
    return name + "".join(rng.choice(NOISE_CHARS) for _ in range(rng.randint(0, level + 1)))


NOISE_INDICES = [_INDEX[c] for c in NOISE_CHARS]


# ---- folding schemes, and the readers of Han, kana and Hangul (scheme 2) ----

#: The folding schemes :func:`fold` knows: the scheme's number → what it does. A checkpoint records its scheme
#: (:func:`folding_info`) and its names are always folded with it; a checkpoint without the record used scheme 1.
FOLD_SCHEMES = {
    1: "NFD, drop combining marks, keep the alphabet; other scripts' letters through anyascii one by one "
    "(Han as capitalised Mandarin syllables: ZuoTeng; Hangul in small letters: gimminjun; Arabic: mhmd)",
    2: "scheme 1, but Han with kana read by a Japanese reader (pykakasi, Hepburn, long vowels shortened: "
    "satou -> Sato), other Han by a Chinese one (pypinyin), Hangul with its family name in the customary "
    "spelling (name-variants) and the rest in Revised Romanization (korean-romanizer); a word of a "
    "script without case is written as the tutorial writes names: a capital, then small letters "
    "(gimminjun -> Kim Minjun, ZuoTeng -> Zuoteng, mhmd -> Mhmd), and a word in capitals stays so "
    "(SHEVCHENKO, not ShEVChENKO)",
}
#: The scheme of checkpoints that record none (every model trained before the record existed).
LEGACY_FOLD_SCHEME = 1
#: The scheme new training records (the readers are for prediction and the corpus until models train on them).
DEFAULT_FOLD_SCHEME = 1
_SCHEME_PACKAGES = {1: ("anyascii",), 2: ("anyascii", "pykakasi", "pypinyin", "korean-romanizer", "name-variants")}
#: What the readers of scheme 2 need, as the error names it when one is missing.
READERS_HINT = "pip install pykakasi pypinyin korean-romanizer name-variants"


class ReaderMissing(RuntimeError):
    """A reader of Han or Hangul (scheme 2) is not installed; the message says what to install."""


def _unknown_scheme(scheme) -> str:
    raise ValueError(
        f"unknown folding scheme {scheme!r}; this nameorigin knows {sorted(FOLD_SCHEMES)}: "
        "a newer nameorigin may have made this checkpoint"
    )


def _package_version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def folding_info(scheme: int = DEFAULT_FOLD_SCHEME) -> dict:
    """How names are folded under ``scheme``, as a checkpoint records it: the scheme's number and rule, the
    alphabet, and the transliteration library and readers with their installed versions."""
    if scheme not in FOLD_SCHEMES:
        _unknown_scheme(scheme)
    return {
        "scheme": scheme,
        "rule": FOLD_SCHEMES[scheme],
        "alphabet": ALPHABET,
        "packages": {p: _package_version(p) for p in _SCHEME_PACKAGES[scheme]},
    }


def scheme_of(meta: dict) -> int:
    """The folding scheme a checkpoint's metadata records (``meta["folding"]["scheme"]``), or
    :data:`LEGACY_FOLD_SCHEME` for a checkpoint without the record; ValueError for one this nameorigin lacks."""
    record = meta.get("folding")
    if record is None:
        return LEGACY_FOLD_SCHEME
    scheme = record.get("scheme") if isinstance(record, dict) else None
    if scheme not in FOLD_SCHEMES:
        _unknown_scheme(scheme)
    return scheme


@dataclass(frozen=True)
class Reading:
    """One way to read a name in the alphabet: the ``text``, the ``script`` it was written in (``Latin``,
    ``Han``, ``Kana``, ``Hangul``, ``Other``) and the ``reader`` that read it (``japanese``, ``chinese``,
    ``korean``, ``transliteration``, or ``none`` for a name already in Latin letters)."""

    text: str
    script: str
    reader: str


def _is_han(c: str) -> bool:
    return "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf" or "\uf900" <= c <= "\ufaff" or c in "々〆ヶ"


def _is_kana(c: str) -> bool:
    return "\u3040" <= c <= "\u30ff" or "\u31f0" <= c <= "\u31ff" or "\uff66" <= c <= "\uff9f"


def _is_hangul(c: str) -> bool:
    return "\uac00" <= c <= "\ud7a3"


def script_of(name: str) -> str:
    """``Kana`` if the name holds kana (kana means Japanese), else ``Han``, ``Hangul``, ``Latin`` (only
    letters of the Latin script) or ``Other`` (another script), from its letters."""
    if name.isascii():  # the common case, without a look-up a character
        return "Latin" if any(c.isalpha() for c in name) else "none"
    letters = [c for c in unicodedata.normalize("NFC", name) if unicodedata.category(c)[0] == "L"]
    if any(_is_kana(c) for c in letters):
        return "Kana"
    if any(_is_han(c) for c in letters):
        return "Han"
    if any(_is_hangul(c) for c in letters):
        return "Hangul"
    if letters and all("LATIN" in unicodedata.name(c, "") for c in letters):
        return "Latin"
    return "Other" if letters else "none"


def letters_script(name: str) -> str:
    """:func:`script_of`, with ``Other`` told apart by the Unicode script its letters share (``Greek``,
    ``Cyrillic``, ``Arabic``, ``Hebrew``, ...; ``Other`` when they share none)."""
    script = script_of(name)
    if script != "Other":
        return script
    words = {unicodedata.name(c, "?").split()[0] for c in unicodedata.normalize("NFC", name) if c.isalpha()}
    return words.pop().title() if len(words) == 1 else "Other"


def require_reader(module: str):
    """``module`` (a reader or the family-name tables) imported, or :class:`ReaderMissing` naming what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ReaderMissing(
            f"reading Han, kana or Hangul needs the readers ({module} is missing): {READERS_HINT}"
        ) from None


@functools.cache
def family_tables() -> dict[str, dict[str, str]]:
    """Family names of East Asian languages from ``name-variants``' tables (its sources: Statistics Korea's
    2015 census, the NIKL guidelines, frequency tables of China, Japan and Vietnam), as ``{language: {written
    form: customary Latin spelling}}``: ``chinese`` (simplified and traditional Han → the Mandarin pinyin
    form), ``japanese`` (kanji → Hepburn), ``korean`` (Hangul → the customary spelling, its first form: 김 →
    Kim, 이 → Lee, 박 → Park), ``vietnamese`` (the names it gives a population count for: its table also
    holds given names)."""
    nv = require_reader("name_variants")
    chinese: dict[str, str] = {}
    for key, entry in nv.CHINESE_SURNAME_VARIANTS.items():
        latin = [f for f in entry["forms"] if f.isascii()]
        pinyin = next(
            (f for f, d in entry.get("dialects", {}).items() if d == "mandarin_pinyin"), latin[0] if latin else None
        )
        for form in [key, *entry["forms"]]:
            if pinyin and all(_is_han(c) for c in form):
                chinese.setdefault(form, pinyin.capitalize())
    return {
        "chinese": chinese,
        "japanese": {k: v["forms"][0].capitalize() for k, v in nv.JAPANESE_SURNAME_VARIANTS.items()},
        "korean": {k: v["forms"][0].capitalize() for k, v in nv.KOREAN_SURNAME_VARIANTS.items()},
        "vietnamese": {
            k: v["forms"][0].capitalize() for k, v in nv.VIETNAMESE_SURNAME_VARIANTS.items() if v.get("frequency")
        },
    }


def split_family(word: str, table: dict[str, str], *, max_len: int = 4) -> tuple[str, str] | None:
    """``(family, given)`` of a name in Han or Hangul written without a space (``张伟`` → ``张``, ``伟``;
    ``欧阳娜娜`` → ``欧阳``, ``娜娜``): the longest family name of ``table`` it starts with, when what is
    left is one to ``max_len - 1`` characters long; None when it starts with none (or is a family name alone)."""
    for n in (2, 1):
        if table.get(word[:n]) and 1 <= len(word) - n <= max_len - n:
            return word[:n], word[n:]
    return None


def _shorten_long_vowels(romaji: str) -> str:
    """Hepburn's long vowels written as most Japanese names are in Latin letters: ``ou``, ``oo`` → ``o``,
    ``uu`` → ``u`` (not before another vowel: ``inoue`` stays)."""
    return re.sub(r"(?<=o)[ou](?![aeiou])|(?<=u)u(?![aeiou])", "", romaji)


@functools.cache
def _kakasi():
    return require_reader("pykakasi").kakasi()


def read_japanese(text: str) -> str:
    """Han and kana read by pykakasi (Hepburn), each word capitalised, long vowels shortened:
    ``佐藤`` → ``Sato``, ``田中太郎`` → ``Tanaka Taro``, ``さとう`` → ``Sato``."""
    words = [_shorten_long_vowels(w["hepburn"]) for w in _kakasi().convert(text) if w["hepburn"].strip()]
    return " ".join(w.capitalize() for w in words if w)


def read_chinese(text: str, *, family: bool = True) -> str:
    """Han read by pypinyin as Mandarin without tones, written as Chinese names are: a known family name
    apart, the given name as one word (``张伟`` → ``Zhang Wei``, ``欧阳娜娜`` → ``Ouyang Nana``, ``王`` →
    ``Wang``). ``family``: whether the text starts the name (a given name alone is not searched for one)."""
    lazy_pinyin = require_reader("pypinyin").lazy_pinyin
    split = split_family(text, family_tables()["chinese"]) if family else None
    parts = split if split else (text,)
    return " ".join("".join(lazy_pinyin(p, errors="ignore")).capitalize() for p in parts if p)


def read_korean(text: str, *, family: bool = True) -> str:
    """Hangul: a known family name at the start in its customary spelling (김 → Kim, 이 → Lee), the rest in
    Revised Romanization by korean-romanizer (``김민준`` → ``Kim Minjun``). ``family``: as :func:`read_chinese`."""
    romanizer = require_reader("korean_romanizer.romanizer").Romanizer
    table = family_tables()["korean"] if family else {}
    if text in table:
        return table[text]
    split = split_family(text, table)
    if split:
        return f"{table[split[0]]} {romanizer(split[1]).romanize().capitalize()}"
    return romanizer(text).romanize().capitalize()


_RUN_KIND = (("cjk", lambda c: _is_han(c) or _is_kana(c) or c == "ー"), ("hangul", _is_hangul))


def _runs(name: str) -> list[tuple[str, str]]:
    """``name`` as maximal runs of ``(kind, text)``: ``cjk`` (Han and kana), ``hangul``, ``other``."""
    out: list[tuple[str, str]] = []
    for c in name:
        kind = next((k for k, test in _RUN_KIND if test(c)), "other")
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + c)
        else:
            out.append((kind, c))
    return out


def _caseless_words(name: str) -> str:
    """Scheme 1's fold of ``name`` where each word transliterated from a script without case (Arabic, Hebrew,
    Thai...) starts with a capital and goes on in small letters, as the tutorial's names do, and a word written
    in capitals stays in capitals (one letter may transliterate to two: Ш → Sh)."""
    words = []
    for word in re.split(r"(\s+)", name):
        folded = _fold_letters(word)
        letters = [c for c in word if unicodedata.category(c)[0] == "L"]
        if letters and all(unicodedata.category(c) == "Lo" for c in letters):
            folded = folded.capitalize()
        elif len(letters) > 1 and all(c.isupper() for c in letters):  # ШЕВЧЕНКО: SHEVCHENKO, not ShEVChENKO
            folded = folded.upper()
        words.append(folded if word.strip() else " ")
    return "".join(words)


def _read_run(kind: str, text: str, *, japanese: bool, first: bool) -> str:
    """A run of Han/kana or Hangul read; a family name is looked for only in the ``first`` run of a name. Only
    letters and spaces of what the reader writes are kept (pykakasi writes ``(kurikaesi)`` for a lone ``々``)."""
    if kind == "hangul":
        read = read_korean(text, family=first)
    else:
        read = read_japanese(text) if japanese else read_chinese(text, family=first)
    return " ".join(
        w.capitalize() if w.islower() else w for w in re.sub(r"[^A-Za-z ]", "", re.sub(r"\(\w*\)", "", read)).split()
    )


def _fold_v2(name: str) -> str:
    """Scheme 2 of :func:`fold`: Han read as Japanese when the name holds kana, else as Chinese."""
    return _fold_with(name, japanese=script_of(name) == "Kana")


def readings(name: str) -> list[Reading]:
    """The candidate readings of a name, most customary first: a name in Han characters has two, its Japanese
    and its Chinese one (``佐藤``: ``Sato`` by the Japanese reader, ``Zuoteng`` by the Chinese), so that a
    predictor can compare P(Japanese | the Japanese reading) with P(Chinese | the Chinese one); kana means
    Japanese (one reading); Hangul has the Korean one; other scripts their transliteration (scheme 2's fold);
    a name in Latin letters itself. Empty when nothing in the name can be read. Raises
    :class:`ReaderMissing` when a reader the name needs is not installed."""
    script = script_of(name)
    if script == "none":
        return []
    if script == "Han":
        candidates = [
            Reading(_fold_with(name, japanese=True), "Han", "japanese"),
            Reading(fold(name, 2), "Han", "chinese"),
        ]
        return [r for r in candidates if _HAS_LETTER.search(r.text)]
    reader = {"Kana": "japanese", "Hangul": "korean", "Latin": "none"}.get(script, "transliteration")
    text = fold(name, 2)
    return [Reading(text, script, reader)] if _HAS_LETTER.search(text) else []


def read_part(name: str, *, japanese: bool, family: bool = True) -> str:
    """One part of a name (a family or a given name) in Han, kana or Hangul read into the alphabet: Han by the
    Japanese reader (``japanese``) or the Chinese one, Hangul by the Korean one; ``family``: whether the part
    is a family name (the customary spelling of a family name is looked for only then: a given name ``민준``
    is not searched for the family name ``민``). Raises :class:`ReaderMissing` without the readers."""
    return _fold_with(name, japanese=japanese, family=family)


def _fold_with(name: str, *, japanese: bool, family: bool = True) -> str:
    """Scheme 2's fold with the Han runs read by the Japanese (or Chinese) reader whatever the name holds."""
    name = unicodedata.normalize("NFC", name.strip())
    runs = _runs(name)
    out = [
        _caseless_words(t) if kind == "other" else f" {_read_run(kind, t, japanese=japanese, first=family and i == 0)} "
        for i, (kind, t) in enumerate(runs)
    ]
    return re.sub(r" {2,}", " ", "".join(out)).strip()
