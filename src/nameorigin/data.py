"""Reading labelled names, the tutorial's archive, de-duplication, the leak-free split, and batches."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import random
import re
import shlex
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .text import ALPHABET, MAX_NAME_CHARS, NOISE_INDICES, encode, fold

log = logging.getLogger(__name__)

TUTORIAL_URL = "https://download.pytorch.org/tutorial/data.zip"
#: SHA-256 of each file of ``data/names`` in the tutorial's archive, as the tutorial ships them.
NAMES_SHA256 = {
    "Arabic.txt": "6f424a8dbe51cbbbabab7a57d38b617210125e4e3991f3c657cb79b8f104bafc",
    "Chinese.txt": "49263ef55a8cb1740e841d65cad8214b2f9b5b869bc534c811746422496fa91e",
    "Czech.txt": "145bbbd6d0816578f03388e92c264d39ef1c60df920b081d371fa5c5cc055a8e",
    "Dutch.txt": "924f32b635170eae561f84538632138fc07d4c8bbd70ba3fb980de1ecc4d2af3",
    "English.txt": "9cca037066d3d5989e24bc01801416162de506b5e28e15b7c092a47905d29bf2",
    "French.txt": "81e65b36c60ed5b89a17422f6edcadbb89546f38ad69e960e64e7ba682012a95",
    "German.txt": "7449cd590b97a733e18d613a4155decd77ec35dc5f8aadd7a82204dce4f051db",
    "Greek.txt": "3555b5186de7f401e6d991b088e9e644ca3099116477818c25ab5793801389e6",
    "Irish.txt": "cf8c7013256252a88d2503127b87282a11f21b2ff6db1bded68834c19a1ec058",
    "Italian.txt": "f88414c27d0606a11a678b4859277828c2565d6cc4d9ee932deef6e94f3b35e4",
    "Japanese.txt": "e0e717e114fec3e7eade4d9dabe0067c475f43147e36a22b47902ee76ad9e67f",
    "Korean.txt": "cd54221ccb362a6cba4c78828838cf3268a0e59744767a37cf6ec4b74036b136",
    "Polish.txt": "45bab898af2f60ed3a728bbf6980e28821011a7caa53227553b5785903a40826",
    "Portuguese.txt": "50a8735f41f4f73757c8ce5b16cb0275cd86b2b214bcbc8c9805f508cb131c53",
    "Russian.txt": "43b3e64ce351f77f1ac9e0cdf7566012d127f4371875fd25208845b5c9d6f7c3",
    "Scottish.txt": "78d0252711d87d948ea86fe34826c51d2d794a8e52d15b5d6f7b6244d45d62dd",
    "Spanish.txt": "1bcb462ed3316756a85781d68232bddae04498fdddd5d9219c53fd1fbdeba7a7",
    "Vietnamese.txt": "f3f9e4164ab47601178a6e45b216464a64122f49d05541f24bf18a757253281d",
}
#: Headers of a column of whole names, taken before a surname column: the default reading parses them.
FULL_HEADERS = {"full_name", "fullname", "full_names", "person", "person_name"}
NAME_HEADERS = {
    "name", "names", "surname", "surnames", "last", "last_name", "lastname", "last_names", "family",
    "family_name", "familyname", "family_names", *FULL_HEADERS,
}  # fmt: skip
#: Headers of a column of first names (``--first-column``).
FIRST_HEADERS = {"first", "first_name", "firstname", "first_names", "given", "given_name", "givenname", "forename",
                 "forenames"}  # fmt: skip
LABEL_HEADERS = {"label", "language", "lang", "origin", "category", "class", "nationality", "country"}
#: Other headers a table of people often has: a first row holding one of these is a header row too.
OTHER_HEADERS = {"id", "email", "e_mail", "mail", "phone", "city", "address", "age", "gender", "sex", "title",
                 "middle_name", "company", "row", "index"}  # fmt: skip


def header_key(cell: str) -> str:
    """A header as the header sets hold it: lowercased, spaces and hyphens as ``_`` (``Last Name``)."""
    return "_".join(cell.strip().lower().replace("-", " ").split())


Pair = tuple[str, str]  # (folded name, language)


class DataError(InputError):
    """Data that cannot be used; the message names the file or folder (or, with ``param``, the parameter)."""


# --------------------------------------------------------------------------------------------- reading


def _sniff_delimiter(path: Path, first_line: str) -> str:
    if path.suffix.lower() == ".tsv" or "\t" in first_line:
        return "\t"
    return ","


def _open_text(path: Path):
    try:
        return open(path, encoding="utf-8-sig", newline="")  # a byte-order mark is dropped
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None


_LINE_ENDS = re.compile(rb"\r\n|\r|\n")


def not_utf8(path, e: UnicodeDecodeError | None = None, *, data: bytes | None = None, line: int | None = None):
    """A text input that is not UTF-8: where (with ``data``, the bytes ``e`` was raised on, starting at line
    ``line`` (default 1): the byte and its line; a ``line`` alone: that line; else the byte offset) and how to
    convert it."""
    if data is not None:
        at = (1 if line is None else line) + len(_LINE_ENDS.findall(data[: e.start]))
        where = f"{e.reason}: byte 0x{data[e.start]:02x} on line {at}"
    elif e is None:
        where = f"on line {line}"
    else:
        where = f"{e.reason} at byte {e.start}"
    return DataError(
        f"{path}: is not UTF-8 text ({where}); save it as UTF-8 (for a Latin-1 file: iconv -f latin1 -t utf-8 "
        f"{shlex.quote(str(path))} > converted.csv)"
    )


def read_labelled(path: str | os.PathLike) -> list[Pair]:
    """(folded name, language) pairs from a folder of ``<Language>.txt`` files or a CSV/TSV of name and label.

    Names that fold to nothing are skipped with a warning. Raises :class:`DataError` naming the input when
    it is missing, unreadable, empty or lacks a label column.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.txt") if p.is_file())
        if not files:
            raise DataError(f"{path}: folder has no <Language>.txt files")
        pairs: list[Pair] = []
        empty = []
        for f in files:
            read = _read_language_file(f)
            pairs.extend(read)
            if not read:
                empty.append(f.name)
        if empty:  # a language file with no readable name holds no language: say so, not only "found only X"
            log.warning("%s: %s hold(s) no readable name; left out", path, ", ".join(empty))
    elif path.is_file():
        pairs = _read_table(path)
    else:
        raise DataError(f"{path}: no such file or folder")
    if not pairs:
        raise DataError(f"{path}: no labelled names found (is it empty?)")
    return pairs


def _read_language_file(f: Path) -> list[Pair]:
    language = f.stem
    out, skipped = [], 0
    with _open_text(f) as fh:
        try:
            for line in fh:
                if not line.strip():
                    continue
                name = fold(line)
                if name and len(name) <= MAX_NAME_CHARS:
                    out.append((name, language))
                else:
                    skipped += 1
        except UnicodeDecodeError as e:
            raise not_utf8(f, e) from None
    if skipped:
        log.warning("%s: skipped %d line(s) that fold to nothing or are too long", f, skipped)
    return out


def _is_header(row: Sequence[str]) -> bool:
    """Whether a first row is a header: one of its cells is a header of names, first names, labels or one of
    :data:`OTHER_HEADERS` (``id,first,last,email``)."""
    cells = {header_key(c) for c in row}
    return bool(cells & (NAME_HEADERS | FIRST_HEADERS | LABEL_HEADERS | OTHER_HEADERS))


def _read_table(path: Path) -> list[Pair]:
    try:
        return _read_table_rows(path)
    except UnicodeDecodeError as e:
        raise not_utf8(path, e) from None


def _read_table_rows(path: Path) -> list[Pair]:
    with _open_text(path) as fh:
        rows = csv.reader(fh, delimiter=_sniff_delimiter(path, fh.readline()))
        fh.seek(0)
        name_col, label_col = 0, 1
        out, skipped = [], 0
        for lineno, row in enumerate(rows, 1):
            if lineno == 1 and _is_header(row):
                header = [header_key(c) for c in row]
                name_col = next((i for i, c in enumerate(header) if c in NAME_HEADERS), 0)
                label_col = next((i for i, c in enumerate(header) if c in LABEL_HEADERS), None)
                if label_col is None:
                    raise DataError(f"{path}: header {row} has no label column (one of {sorted(LABEL_HEADERS)})")
                continue
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) <= max(name_col, label_col):
                raise DataError(f"{path}:{lineno}: expected a name and a label, got {row!r} (missing column)")
            name, label = fold(row[name_col]), row[label_col].strip()
            if name and label and len(name) <= MAX_NAME_CHARS:
                out.append((name, label))
            else:
                skipped += 1
    if skipped:
        log.warning("%s: skipped %d row(s) with no readable name or no label", path, skipped)
    return out


# ------------------------------------------------------------------------------------ the archive


def cache_dir() -> Path:
    root = os.environ.get("NAMEORIGIN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "nameorigin"
    )
    return Path(root)


def _verify_names_dir(folder: Path) -> str | None:
    """None when every file matches :data:`NAMES_SHA256`, else a description of the first mismatch."""
    for fname, digest in NAMES_SHA256.items():
        f = folder / fname
        if not f.is_file():
            return f"{fname} is missing"
        if hashlib.sha256(f.read_bytes()).hexdigest() != digest:
            return f"{fname} has the wrong SHA-256"
    return None


def download_tutorial_data(cache: Path | None = None, url: str = TUTORIAL_URL) -> Path:
    """The tutorial's ``data/names`` folder, downloaded once into the cache and checked file by file.

    The archive is fetched to a temporary file, each extracted name file's SHA-256 is checked against
    :data:`NAMES_SHA256`, and the folder is renamed into place only when all match.
    """
    cache = cache or cache_dir()
    target = cache / "names"
    if target.is_dir() and _verify_names_dir(target) is None:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s into %s", url, cache)
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            payload = r.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DataError(
            f"could not download the tutorial's names from {url} ({getattr(e, 'reason', e)}). Offline? Point "
            "nameorigin at a copy of the names folder (18 <Language>.txt files) with --data DIR or the "
            "environment variable NAMEORIGIN_DATA=DIR"
        ) from None
    log.info("archive SHA-256 %s", hashlib.sha256(payload).hexdigest())
    with tempfile.TemporaryDirectory(dir=cache, prefix=".names-") as tmp:
        staging = Path(tmp) / "names"
        staging.mkdir()
        try:
            with zipfile.ZipFile(io.BytesIO(payload)) as zf:
                for info in zf.infolist():
                    parts = Path(info.filename).parts
                    if len(parts) >= 2 and parts[-2] == "names" and parts[-1] in NAMES_SHA256:
                        (staging / parts[-1]).write_bytes(zf.read(info))
        except zipfile.BadZipFile:
            raise DataError(f"{url}: the download is not a zip archive") from None
        problem = _verify_names_dir(staging)
        if problem:
            raise DataError(f"{url}: checksum check failed ({problem}); nothing was kept")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    return target


def resolve_data(data: str | os.PathLike | None) -> Path:
    """``--data``, else ``NAMEORIGIN_DATA``, else the tutorial's archive from the cache (downloaded once)."""
    if data:
        return Path(data)
    env = os.environ.get("NAMEORIGIN_DATA")
    if env:
        return Path(env)
    return download_tutorial_data()


# ------------------------------------------------------------------------------ dedupe, split, prune


def dedupe(pairs: Sequence[Pair]) -> list[Pair]:
    """Distinct (name, language) pairs, first occurrence order."""
    return list(dict.fromkeys(pairs))


def parse_split(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` -> (0.8, 0.1, 0.1), checked by :func:`check_fractions`."""
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    return check_fractions(parts, shown=repr(text))


def check_fractions(
    fractions: Sequence[float], *, param: str = "split", shown: str | None = None
) -> tuple[float, float, float]:
    """Three fractions (train, valid, test) of distinct names, each from 0 to 1, summing to 1, with a training
    part above 0; else a :class:`DataError` for ``param`` saying which of these a bad value breaks."""
    try:
        parts = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        parts = ()
    head = f"{param} {shown if shown is not None else repr(tuple(fractions))}"
    example = "e.g. 0.8,0.1,0.1"
    if len(parts) != 3 or not all(math.isfinite(p) for p in parts):
        raise DataError(f"{head}: expected three fractions TRAIN,VALID,TEST, {example}", param=param)
    if any(p < 0 for p in parts):
        raise DataError(f"{head}: fractions cannot be negative, {example}", param=param)
    if abs(sum(parts) - 1) > 1e-6:
        raise DataError(f"{head}: the fractions sum to {sum(parts):g}, not 1, {example}", param=param)
    if parts[0] <= 0:
        raise DataError(f"{head}: the training fraction is 0, so nothing would be trained on, {example}", param=param)
    return parts  # type: ignore[return-value]


def require_languages(pairs: Sequence[Pair], source: str, *, least: int = 2) -> list[str]:
    """The sorted languages of ``pairs``; a :class:`DataError` naming ``source`` when there are fewer than
    ``least`` (one language cannot be classified)."""
    langs = languages(pairs)
    if len(langs) < least:
        found = f"only {langs[0]!r}" if langs else "none"
        raise DataError(
            f"{source}: names of at least {least} languages are needed to train or split a classifier; found {found}"
        )
    return langs


@dataclass
class Split:
    train: list[Pair]
    valid: list[Pair]
    test: list[Pair]


def split(pairs: Sequence[Pair], fractions: Sequence[float] = (0.8, 0.1, 0.1), *, seed: int = 0) -> Split:
    """Leak-free split: by distinct name (all of a name's pairs go to one side), stratified by language.

    A name under several languages is stratified under the first it appears with. Seeded and repeatable.
    """
    pairs = dedupe(pairs)
    langs_of: dict[str, list[str]] = defaultdict(list)
    for name, lang in pairs:
        langs_of[name].append(lang)
    strata: dict[str, list[str]] = defaultdict(list)
    for name, langs in langs_of.items():
        strata[langs[0]].append(name)
    rng = random.Random(seed)
    side: dict[str, int] = {}
    _, f_valid, f_test = fractions
    for lang in sorted(strata):
        names = strata[lang]
        rng.shuffle(names)
        n_test, n_valid = round(len(names) * f_test), round(len(names) * f_valid)
        for i, name in enumerate(names):
            side[name] = 2 if i < n_test else 1 if i < n_test + n_valid else 0
    out: tuple[list[Pair], list[Pair], list[Pair]] = ([], [], [])
    for pair in pairs:
        out[side[pair[0]]].append(pair)
    return Split(*out)


def prune(pairs: Sequence[Pair], n: int, rng: random.Random) -> list[Pair]:
    """At most ``n`` names a language, as seed 000 prunes: shuffle each language's names, keep the first n."""
    by_lang: dict[str, list[Pair]] = defaultdict(list)
    for p in pairs:
        by_lang[p[1]].append(p)
    out: list[Pair] = []
    for lang in sorted(by_lang):
        lines = by_lang[lang]
        rng.shuffle(lines)
        out.extend(lines[:n])
    return out


def languages(pairs: Sequence[Pair]) -> list[str]:
    return sorted({lang for _, lang in pairs})


def counts(pairs: Sequence[Pair]) -> Counter:
    return Counter(lang for _, lang in pairs)


def fingerprint(pairs: Sequence[Pair]) -> str:
    """SHA-256 of the sorted distinct pairs: identifies the data a model was trained on."""
    h = hashlib.sha256()
    for name, lang in sorted(set(pairs)):
        h.update(f"{name}\t{lang}\n".encode())
    return h.hexdigest()


def fingerprint_with(pairs_fingerprint: str, source: dict) -> str:
    """SHA-256 of a labelled data fingerprint and a further source's record (e.g. a corpus file's digest, its
    map's and its package's version): identifies all the data a model was trained on."""
    return hashlib.sha256((pairs_fingerprint + json.dumps(source, sort_keys=True, default=str)).encode()).hexdigest()


@dataclass
class Guarded:
    """What :func:`leak_guard` kept: the labelled training pairs, the indices of the corpus names kept, and how
    many of each it removed."""

    train: list[Pair]
    corpus_kept: list[int]
    removed_from_train: int
    removed_from_corpus: int


def leak_guard(
    train: Sequence[Pair],
    corpus_names: Sequence[str],
    *,
    labelled_held: Iterable[str] = (),
    corpus_held: Iterable[str] = (),
    exclude: Iterable[str] = (),
) -> Guarded:
    """Keep every evaluated name on one side of training, across both sources, comparing folded names without
    case: the labelled data's validation and test names (``labelled_held``) and every excluded name leave the
    corpus; the corpus's validation and held-out names (``corpus_held``) and every excluded name leave the
    labelled training pairs (``Smith`` stands in both)."""
    excluded = {n.lower() for n in exclude}
    off_corpus = excluded | {n.lower() for n in labelled_held}
    off_train = excluded | {n.lower() for n in corpus_held}
    kept_train = [p for p in train if p[0].lower() not in off_train]
    kept_corpus = [i for i, n in enumerate(corpus_names) if n.lower() not in off_corpus]
    guarded = Guarded(kept_train, kept_corpus, len(train) - len(kept_train), len(corpus_names) - len(kept_corpus))
    if guarded.removed_from_train or guarded.removed_from_corpus:
        log.info(
            "leak guard: %d labelled training name(s) and %d corpus name(s) removed",
            guarded.removed_from_train,
            guarded.removed_from_corpus,
        )
    return guarded


# ---------------------------------------------------------------------------------------- tensors


@dataclass
class Encoded:
    """A set of names as one padded tensor, built once: tokens (N, T), lengths (N,), labels (N,)."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.tokens.size(0)


_BYTE_TO_INDEX = np.zeros(256, dtype=np.int64)
for _c in ALPHABET:
    _BYTE_TO_INDEX[ord(_c)] = encode(_c)[0]


def encode_names(names: Sequence[str], extra: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Folded names -> right-padded tokens (N, max_len + extra) and lengths (N,), built without a
    per-character Python loop: the names' bytes go through a lookup table in one step."""
    if not names:
        return torch.zeros((0, 1 + extra), dtype=torch.long), torch.zeros(0, dtype=torch.long)
    lengths = np.fromiter(map(len, names), dtype=np.int64, count=len(names))
    flat = _BYTE_TO_INDEX[np.frombuffer("".join(names).encode("ascii"), dtype=np.uint8)]
    width = int(lengths.max()) + extra
    tokens = np.zeros((len(names), width), dtype=np.int64)
    tokens[np.arange(width)[None, :] < lengths[:, None]] = flat
    return torch.from_numpy(tokens), torch.from_numpy(lengths)


def encode_pairs(pairs: Sequence[Pair], labels: Sequence[str], *, noise_room: int = 0) -> Encoded:
    index = {lang: i for i, lang in enumerate(labels)}
    unknown = {lang for _, lang in pairs} - index.keys()
    if unknown:
        raise DataError(f"languages not known to the model: {', '.join(sorted(unknown))}")
    tokens, lengths = encode_names([n for n, _ in pairs], extra=noise_room)
    return Encoded(tokens, lengths, torch.tensor([index[lang] for _, lang in pairs], dtype=torch.long))


def add_noise_batch(
    tokens: torch.Tensor, lengths: torch.Tensor, level: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The worksheet's noise for a whole padded set at once: append 0..level+1 noise characters to each.

    ``tokens`` must have at least ``level + 1`` columns of room after the longest name.
    """
    if level <= 0:
        return tokens, lengths
    n, width = tokens.shape
    extra = torch.randint(0, level + 2, (n,), generator=generator)
    new_lengths = lengths + extra
    if int(new_lengths.max()) > width:
        raise ValueError("no room for noise: encode with noise_room >= level + 1")
    pos = torch.arange(width).unsqueeze(0)
    fill = (pos >= lengths.unsqueeze(1)) & (pos < new_lengths.unsqueeze(1))
    chars = torch.tensor(NOISE_INDICES)[torch.randint(0, len(NOISE_INDICES), (n, width), generator=generator)]
    return torch.where(fill, chars, tokens), new_lengths


def length_batches(
    lengths: torch.Tensor,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    order: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Index batches of names of similar length: ``order`` (default: all, shuffled when a generator is
    given) is sorted by length, cut into batches, and the batches shuffled."""
    if order is None:
        order = (
            torch.randperm(len(lengths), generator=generator) if generator is not None else torch.arange(len(lengths))
        )
    order = order[torch.sort(lengths[order], stable=True).indices]
    batches = list(torch.split(order, batch_size))
    if generator is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def noisy_copy(enc: Encoded, level: int, seed: int) -> Encoded:
    """The held-out names with the worksheet's noise appended (same as ``enc`` at level 0)."""
    if level <= 0:
        return enc
    width = enc.tokens.size(1) + level + 1
    tokens = torch.zeros(len(enc), width, dtype=torch.long)
    tokens[:, : enc.tokens.size(1)] = enc.tokens
    noisy, lengths = add_noise_batch(tokens, enc.lengths, level, torch.Generator().manual_seed(seed))
    return Encoded(noisy, lengths, enc.labels)
