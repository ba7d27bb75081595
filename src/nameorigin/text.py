"""The alphabet, folding any Unicode name into it, encoding, and the worksheet's punctuation noise."""
from __future__ import annotations

import random
import re
import string
import unicodedata
from collections.abc import Sequence

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


def seed_fold(name: str) -> str:
    """The seeds' ``unicodeToAscii``: NFD, drop combining marks, keep the alphabet."""
    return "".join(
        c for c in unicodedata.normalize("NFD", name)
        if unicodedata.category(c) != "Mn" and c in _ALLOWED
    )


def _keeps_letters(category: str) -> bool:
    """Letters of any script, and the spacing marks some scripts write vowels with (Devanagari's ``ा``)."""
    return category[0] == "L" or category in ("Mc", "Me")


def fold(name: str) -> str:
    """Fold any Unicode name into the alphabet, as the seeds do, transliterating other scripts first.

    ``Ślusàrski`` → ``Slusarski`` (the seeds' rule); ``Шевченко`` → ``Shevchenko`` (transliteration by
    :mod:`anyascii`, where the seeds would drop every letter). Only letters (Unicode category ``L*``) are
    transliterated: digits, symbols, emoji and other punctuation are dropped *before* transliteration, so
    ``😀`` never becomes ``grinning``; other scripts' spaces and punctuation keep what they map to among
    ``" .,;'"`` (``’`` → ``'``). Surrounding white space is stripped.
    """
    if _ALREADY_FOLDED.fullmatch(name):  # the common case: nothing to normalise or drop
        return name.strip()
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


def fold_checked(name: str, *, max_chars: int = MAX_NAME_CHARS) -> str:
    """:func:`fold`, raising :class:`BadName` for a name that folds to nothing or is too long."""
    if len(name) > max_chars * 4:
        raise BadName(f"name is {len(name)} characters long; at most {max_chars} are accepted")
    folded = fold(name)
    if not _HAS_LETTER.search(folded):  # empty, or only the alphabet's punctuation
        raise BadName(f"name {name!r} has no letters that can be read (it folds to nothing)")
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
