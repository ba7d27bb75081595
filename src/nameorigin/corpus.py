"""A weakly labelled corpus of real surnames or first names: country shares -> language shares (soft labels),
written as Parquet.

The source is ``names-dataset`` (its own data API: its surnames, or with ``kind="first"`` its first names, whose
gender shares are ignored) or any table of (name, country, count or share).
Each country's share of a name goes through one country -> language table (``assets/countries.tsv``, overridable):
to one of the 18 languages, to ``mixed`` (an immigrant population: neither in nor out of scope) or to ``out``.
See ``docs/data-card.md`` for the rules and what they cannot fix.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import math
import os
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import syllables, text
from .atomic import atomic_path, atomic_text
from .data import NAMES_SHA256, DataError
from .errors import install_hint
from .text import MAX_NAME_CHARS, fold

log = logging.getLogger(__name__)

#: The 18 languages of the tutorial data, in the order of a corpus's soft labels.
LANGUAGES = tuple(sorted(Path(f).stem for f in NAMES_SHA256))
MIXED, OUT = "mixed", "out"
FORMAT = "nameorigin-corpus/1"
KINDS = ("surname", "first")
KIND_WORDS = {"surname": "surnames", "first": "first names"}
SPLITS = ("train", "valid", "held-out")
#: Korean surnames written with two Hangul syllables (the customary compound family names); any other Hangul
#: string of more than one syllable in the surname field is a given name or a word (남성 "male", 남자 "man").
KOREAN_COMPOUND_SURNAMES = frozenset(
    ["남궁", "황보", "제갈", "선우", "독고", "사공", "서문", "동방", "어금", "망절", "소봉"]
)
COLUMNS = (
    "name",
    "soft",
    "in_scope",
    "out_of_scope",
    "mixed",
    "top_language",
    "top_share",
    "scope",
    "country",
    "countries",
    "rank",
    "script",
    "split",
    "label",
)
EXTRA_HINT = f"the corpus is built from the names-dataset package: {install_hint('corpus')}"


class CorpusError(DataError):
    """A map, a source table or a corpus file that cannot be used; the message names it."""


@dataclass
class CorpusConfig:
    """The corpus builder's rules; the single source of their defaults."""

    kind: str = "surname"  # surname (names-dataset's last names) | first (its first names)
    fold_scheme: int = 2  # text.fold's scheme: 2 reads Han, kana and Hangul names with the readers (text.readings)
    han_both: float = 0.25  # a Han name is read both ways when the smaller of its Japanese and Chinese populations
    # holds at least this share of the two together (else only the larger's reading; see _han_readings)
    per_language: int | None = None  # at most this many names a language (in scope) and a country (out of scope)
    per_capita: bool = True  # weigh each country's share by 1 / its size in the source (see docs/data-card.md)
    mirror_fix: bool = True  # names-dataset lists a copy of the Czech names under Iran (IR): give that share to CZ
    syllable_rule: bool = True  # a Latin name that is no romanized Korean (Chinese) name loses its Korean (Chinese)
    # populations' share (syllables.fits: Agus, Esmartsafe, Abrasives)
    min_scope: float = 0.5  # in-scope when the 18 languages hold at least this share of the non-mixed population
    max_mixed: float = 0.7  # left out when mixed countries hold more: the label would rest on a small remainder
    label_share: float = 0.7  # held-out names are scored when their top language holds at least this share
    valid_share: float = 0.1  # of distinct names, by a hash of the name: the same name always lands alike
    held_out_share: float = 0.1
    countries: int = 3  # main countries listed per name


# ------------------------------------------------------------------------------------------------ the map

CountryMap = dict[str, dict[str, float]]  # country -> {language | mixed | out: weight}, weights summing to 1


def _map_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            for lineno, row in enumerate(csv.reader(fh, delimiter="\t"), 1):
                if not row or row[0].startswith("#") or not any(c.strip() for c in row):
                    continue
                yield lineno, [c.strip() for c in row]
    except OSError as e:
        raise CorpusError(f"{path}: cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: is not UTF-8 text ({e.reason})") from None


def shipped_map_path() -> Path:
    return Path(str(resources.files("nameorigin") / "assets" / "countries.tsv"))


def load_map(path: str | os.PathLike | None = None) -> CountryMap:
    """The country -> language table: the shipped one, or ``path`` over it (the rows of ``path`` replace the
    shipped rows of the countries it names). Raises :class:`CorpusError` naming the file and line for an
    unknown country or target, a weight that is not a share, or a country whose weights do not sum to 1."""
    shipped = _parse_map(shipped_map_path(), known=None)
    if path is None:
        return shipped
    override = _parse_map(Path(path), known=set(shipped))
    if not override:
        raise CorpusError(f"{path}: the map has no rows (expected COUNTRY<TAB>TARGET[<TAB>WEIGHT])")
    return {**shipped, **override}


def _parse_map(path: Path, known: set[str] | None) -> CountryMap:
    targets = set(LANGUAGES) | {MIXED, OUT}
    out: CountryMap = {}
    for lineno, row in _map_rows(path):
        if row[0].lower() == "country":
            continue
        where = f"{path}:{lineno}"
        if len(row) < 2:
            raise CorpusError(f"{where}: expected COUNTRY<TAB>TARGET[<TAB>WEIGHT], got {row!r}")
        country, target = row[0].upper(), row[1]
        if known is not None and country not in known:
            raise CorpusError(f"{where}: unknown country {row[0]!r} (expected an ISO 3166-1 alpha-2 code, e.g. RU)")
        if target not in targets:
            raise CorpusError(
                f"{where}: unknown language {target!r}; expected one of {', '.join(LANGUAGES)}, {MIXED} or {OUT}"
            )
        try:
            weight = float(row[2]) if len(row) > 2 and row[2] else 1.0
        except ValueError:
            weight = math.nan
        if not 0 < weight <= 1:
            raise CorpusError(f"{where}: weight {row[2]!r} of {country} -> {target} is not a share (0 < w <= 1)")
        out.setdefault(country, {})
        out[country][target] = out[country].get(target, 0.0) + weight
    for country, weights in out.items():
        if abs(sum(weights.values()) - 1) > 1e-6:
            raise CorpusError(
                f"{path}: the weights of {country} sum to {sum(weights.values()):g}, not 1 "
                "(a country's targets are shares of its population)"
            )
    return out


def map_fingerprint(mapping: CountryMap) -> str:
    return hashlib.sha256(json.dumps(mapping, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ sources


@dataclass
class Record:
    """One source name: its country shares (of the name's population) and its frequency rank in each country."""

    name: str
    shares: dict[str, float]
    ranks: dict[str, int] = field(default_factory=dict)


def names_dataset_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("names-dataset")
    except PackageNotFoundError:
        return None


def from_names_dataset(kind: str = "surname") -> Iterator[Record]:
    """Every surname (``kind="surname"``) or first name (``kind="first"``) of ``names-dataset`` with its country
    shares and ranks, through the package's own API: ``NameDataset(load_first_names=False).last_names`` (about
    1 GB of memory, first names never loaded) or ``NameDataset(load_last_names=False).first_names`` (about
    0.9 GB, surnames never loaded). A first name's gender shares are not read: gender is not this project's."""
    if kind not in KINDS:
        raise CorpusError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
    try:
        from names_dataset import NameDataset
    except ImportError:
        raise CorpusError(EXTRA_HINT) from None
    first = kind == "first"
    dataset = NameDataset(load_first_names=first, load_last_names=not first)
    table = dataset.first_names if first else dataset.last_names
    for name, info in table.items():
        yield Record(
            name,
            dict(info.get("country") or {}),
            {c: int(r) for c, r in (info.get("rank") or {}).items() if r is not None},
        )


_TABLE_NAME = ("name", "surname", "last_name", "family_name", "first_name", "given_name", "forename")


def from_table(path: str | os.PathLike) -> Iterator[Record]:
    """Records from a CSV, TSV or Parquet table with columns ``name``, ``country`` and ``count`` or ``share``
    (optionally ``rank``): a census or any licensed list. Counts become shares of each name's total; ranks, when
    absent, are each name's place by count (or share) within its country."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: no such file")
    try:
        if path.suffix.lower() == ".parquet":
            table = pq.read_table(path)
        else:
            from pyarrow import csv as pacsv

            delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
            table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=delimiter))
    except (pa.ArrowInvalid, OSError) as e:
        raise CorpusError(f"{path}: cannot be read as a table ({str(e).splitlines()[0]})") from None
    cols = {c.lower(): c for c in table.column_names}
    name_col = next((cols[c] for c in _TABLE_NAME if c in cols), None)
    value_col = cols.get("count") or cols.get("share")
    if name_col is None or "country" not in cols or value_col is None:
        raise CorpusError(f"{path}: expected columns name, country and count or share; it has {table.column_names}")
    names = table.column(name_col).to_pylist()
    countries = table.column(cols["country"]).to_pylist()
    try:
        values = [float(v) if v is not None else math.nan for v in table.column(value_col).to_pylist()]
    except (TypeError, ValueError):
        raise CorpusError(f"{path}: column {value_col!r} holds something other than numbers") from None
    ranks = table.column(cols["rank"]).to_pylist() if "rank" in cols else None
    per_name: dict[str, dict[str, float]] = defaultdict(dict)
    given_rank: dict[str, dict[str, int]] = defaultdict(dict)
    for i, (name, country, value) in enumerate(zip(names, countries, values, strict=True)):
        if not name or not country:
            continue
        if not math.isfinite(value) or value < 0:
            raise CorpusError(
                f"{path}: row {i + 1} ({name!r}, {country!r}): {value_col} {value!r} is not a non-negative number"
            )
        c = str(country).strip().upper()
        per_name[str(name)][c] = per_name[str(name)].get(c, 0.0) + value
        if ranks is not None and ranks[i] is not None:
            given_rank[str(name)][c] = int(ranks[i])
    if not per_name:
        raise CorpusError(f"{path}: no rows with a name and a country")
    if ranks is None:  # each name's place by value within its country
        by_country: dict[str, list[tuple[float, str]]] = defaultdict(list)
        for name, shares in per_name.items():
            for c, v in shares.items():
                by_country[c].append((-v, name))
        for c, rows in by_country.items():
            for place, (_, name) in enumerate(sorted(rows), 1):
                given_rank[name][c] = place
    for name, values_by_country in per_name.items():
        total = sum(values_by_country.values())
        if total <= 0:
            continue
        yield Record(name, {c: v / total for c, v in values_by_country.items()}, given_rank.get(name, {}))


# ------------------------------------------------------------------------------------------------ scripts

_SCRIPT_OF = re.compile(
    r"^(CJK|HANGUL|HIRAGANA|KATAKANA|CYRILLIC|GREEK|ARABIC|HEBREW|LATIN|DEVANAGARI|THAI|"
    r"GEORGIAN|ARMENIAN|BENGALI|TAMIL|ETHIOPIC)"
)
_SCRIPT_NAMES = {"CJK": "Han", "HIRAGANA": "Kana", "KATAKANA": "Kana"}


def script_of(name: str) -> str:
    """The script of a name's letters (``Latin``, ``Cyrillic``, ``Hangul``, ``Han``, ...); ``Han`` wins over any
    other script in the name (it cannot be read by transliteration), then the most frequent."""
    found: Counter = Counter()
    for c in name:
        if not unicodedata.category(c).startswith("L"):
            continue
        m = _SCRIPT_OF.match(unicodedata.name(c, ""))
        found[_SCRIPT_NAMES.get(m.group(1), m.group(1).title()) if m else "Other"] += 1
    if not found:
        return "None"
    return "Han" if "Han" in found else found.most_common(1)[0][0]


def case_form(folded: str, script: str) -> str:
    """The written form of a folded name: Latin-script names as the tutorial writes them (each word's first
    letter capital, the rest small: ``MCDONALD``, ``mcdonald`` -> ``Mcdonald``, as the tutorial's ``Mcarthur``);
    names of other scripts exactly as prediction folds them (``김민준`` -> ``GimMinJun``)."""
    if script != "Latin":
        return folded
    return " ".join(w[:1].upper() + w[1:].lower() for w in folded.split(" "))


# ------------------------------------------------------------------------------------------------ building


@dataclass
class Stats:
    """What the builder did, counted: the data card's figures."""

    source_names: int = 0
    han: int = 0  # kept out: Han names of neither a Japanese nor a Chinese population (no reading to choose)
    han_read: int = 0  # Han (or kana) names that joined through the readers (a name read both ways counts once)
    han_japanese: int = 0  # ... read with the Japanese reader only (kana, or the Japanese population's name)
    han_chinese: int = 0  # ... with the Chinese reader only
    han_both: int = 0  # ... both ways, each reading labelled by its own population (see CorpusConfig.han_both)
    hangul_read: int = 0  # Hangul names that joined through the Korean reader
    unreadable: int = 0  # fold to nothing or too long
    hangul_not_surname: int = 0  # Hangul strings that are no name of this kind (see KOREAN_COMPOUND_SURNAMES)
    excluded: int = 0
    only_mixed: int = 0  # no share outside mixed countries: nothing to label with
    mostly_mixed: int = 0  # mixed countries hold more than max_mixed (Nguyen: Macau, the US, Singapore, ...)
    mirrored: int = 0  # names whose Iran share was a copy of their Czech share
    syllable_cut: dict = field(default_factory=dict)  # language -> Latin names that lost its share (no syllables
    # of its romanizations; see syllables.py)
    syllable_gone: int = 0  # ... of which nothing else was left
    merged: int = 0  # source spellings that fold to a name already seen (Novák, Novak)
    in_scope: int = 0
    out_of_scope: int = 0
    capped: int = 0
    by_language_before: dict = field(default_factory=dict)  # top language of in-scope names, before the cap
    by_language: dict = field(default_factory=dict)  # ... and written
    by_script: dict = field(default_factory=dict)
    held_out: int = 0
    held_out_labelled: int = 0  # top language >= label_share
    held_out_unlabelled: int = 0  # held out, trained on by nobody, and not scored


@dataclass
class _Row:
    name: str
    script: str
    weights: dict[str, float]  # country -> per-capita weight, normalised to 1
    rank: int | None
    cut: frozenset = frozenset()  # languages whose part of the countries the syllable rule left out


def _country_sizes(records: list[Record]) -> dict[str, float]:
    """Each country's size in the source: how many of its names list it (a proxy for its sample)."""
    sizes: Counter = Counter()
    for r in records:
        sizes.update(r.shares.keys())
    return dict(sizes)


def _mirror_fix(shares: dict[str, float]) -> bool:
    """names-dataset lists a copy of its Czech surnames under Iran with the same share; give it back to CZ."""
    cz, ir = shares.get("CZ"), shares.get("IR")
    if cz and ir and 0.8 <= ir / cz <= 1.25:
        shares["CZ"] = cz + ir
        del shares["IR"]
        return True
    return False


def _syllable_cut(name: str, shares: dict[str, float], mapping: CountryMap, stats: Stats) -> frozenset[str] | None:
    """The languages of :data:`.syllables.LANGUAGES` whose populations lose their share of ``name`` because it is
    made of no syllables of that language's romanizations (:func:`.syllables.fits`; the labels leave those
    languages' parts of the countries out); None when nothing else is left of the name's countries."""
    cut = set()
    for language in syllables.LANGUAGES:
        if not _population(shares, mapping, language):
            continue
        try:
            fits = syllables.fits(name, language)
        except text.ReaderMissing as e:
            raise CorpusError(f"{name!r}: the syllable rule of {language} names: {e}") from None
        if not fits:
            cut.add(language)
            stats.syllable_cut[language] = stats.syllable_cut.get(language, 0) + 1
    left = sum(
        s * sum(w for target, w in mapping.get(c, {OUT: 1.0}).items() if target not in cut) for c, s in shares.items()
    )
    if left <= 1e-12:
        stats.syllable_gone += 1
        return None
    return frozenset(cut)


def _hangul_name(name: str, kind: str) -> bool:
    """Whether a Hangul string can be a name of ``kind``: a surname is one syllable or a customary compound
    family name (:data:`KOREAN_COMPOUND_SURNAMES`); a given name is one or two syllables (three or more in
    names-dataset's first-name field are full names or words)."""
    if kind == "surname":
        return len(name) == 1 or name in KOREAN_COMPOUND_SURNAMES
    return 1 <= len(name) <= 2


def _population(shares: dict[str, float], mapping: CountryMap, language: str) -> set[str]:
    return {c for c in shares if mapping.get(c, {}).get(language, 0) > 0}


def _han_readings(r: Record, *, mapping: CountryMap, config: CorpusConfig, kana: bool) -> list[tuple[bool, Record]]:
    """How a name in Han characters joins the corpus: ``(japanese, record)`` for each reading it is read with,
    each record holding the country shares (and ranks) that reading is labelled by. Kana means Japanese (one
    reading, every share). Pure Han: the countries mapped to Japanese and to Chinese are its two populations;
    the larger one's reader reads it, with every share but the smaller population's (whose holders write it in
    their own reading: ``佐藤`` in Taiwan is not the Latin ``Sato``); when the smaller population holds at least
    ``config.han_both`` of the two together, the name is also read the other way, labelled by that population
    alone (``太郎``: ``Taro`` from Japan, ``Tailang`` from Hong Kong and Taiwan, if both are large enough). A
    name of neither population gets no reading (empty)."""
    if kana:
        return [(True, r)]
    japan, china = _population(r.shares, mapping, "Japanese"), _population(r.shares, mapping, "Chinese")
    jp, cn = sum(r.shares[c] for c in japan), sum(r.shares[c] for c in china)
    if jp + cn <= 0:
        return []

    def part(keep) -> Record:
        return Record(
            r.name, {c: v for c, v in r.shares.items() if keep(c)}, {c: v for c, v in r.ranks.items() if keep(c)}
        )

    minor = china if jp >= cn else japan
    out = [(jp >= cn, part(lambda c: c not in minor))]
    if min(jp, cn) / (jp + cn) >= config.han_both:
        out.append((jp < cn, part(lambda c: c in minor)))
    return out


def _read(name: str, *, japanese: bool, config: CorpusConfig) -> str:
    """``name`` (Han, kana or Hangul) read into the alphabet as prediction reads a name of the corpus's kind
    (:func:`.text.read_part`: a surname's family name in its customary spelling; a given name whole)."""
    try:
        return text.read_part(name, japanese=japanese, family=config.kind == "surname")
    except text.ReaderMissing as e:
        raise CorpusError(f"{name!r}: {e}") from None


def _readings(
    r: Record, *, mapping: CountryMap, config: CorpusConfig, stats: Stats
) -> Iterator[tuple[str, str, Record]]:
    """``(folded, script, record)`` for each way a source name joins the corpus: folded with
    ``config.fold_scheme``; under scheme 2 names in Han or kana through the Japanese or Chinese reader (see
    :func:`_han_readings`) and Hangul through the Korean one (a string that cannot be a name of the kind left
    out); under scheme 1 Han and kana left out (a transliteration table cannot read them)."""
    name = r.name.strip()
    script = script_of(name)
    if script == "Hangul" and not _hangul_name(name, config.kind):
        stats.hangul_not_surname += 1
        return
    if config.fold_scheme < 2 or script not in {"Han", "Kana", "Hangul"}:
        if script in {"Han", "Kana"}:
            stats.han += 1
            return
        yield fold(name, config.fold_scheme), script, r
        return
    if script == "Hangul":
        stats.hangul_read += 1
        yield _read(name, japanese=False, config=config), script, r
        return
    ways = _han_readings(r, mapping=mapping, config=config, kana=text.script_of(name) == "Kana")
    if not ways:
        stats.han += 1
        return
    stats.han_read += 1
    if len(ways) == 2:
        stats.han_both += 1
    elif ways[0][0]:
        stats.han_japanese += 1
    else:
        stats.han_chinese += 1
    for japanese, part in ways:
        yield _read(name, japanese=japanese, config=config), script, part


def split_of(key: str, config: CorpusConfig) -> str:
    """``train``, ``valid`` or ``held-out`` for a distinct name, from a hash of its case-folded form: the same
    name always lands on the same side, whatever else the corpus holds."""
    u = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    return (
        "held-out"
        if u < config.held_out_share
        else "valid"
        if u < config.held_out_share + config.valid_share
        else "train"
    )


def build(
    records: Iterable[Record],
    *,
    mapping: CountryMap,
    config: CorpusConfig | None = None,
    exclude: set[str] = frozenset(),
) -> tuple[pa.Table, Stats]:
    """The corpus table (columns :data:`COLUMNS`) and its counts, from source records.

    Per name: fold it as prediction does (``config.fold_scheme``; names in Han, kana and Hangul read by the
    readers, see :func:`_readings`; Hangul strings that cannot be a name of the kind dropped),
    weigh each country's share (``config.per_capita``: by 1 / the country's size in the source, so that a
    name common in a small country is not drowned by the same name's few holders in a big one), map countries to
    languages, merge spellings that fold to one name (compared without case; weighted by 1 / rank), then keep
    in-scope names (the 18 languages hold ``min_scope`` of the non-mixed share) and out-of-scope names, capped,
    and split by name. ``exclude`` holds case-folded names (``str.lower`` of folded) that never enter.
    """
    config = CorpusConfig() if config is None else config
    if config.per_language is not None and config.per_language < 1:
        raise CorpusError(f"--per-language {config.per_language}: expected at least 1 name a language")
    stats = Stats()
    records = list(records)
    stats.source_names = len(records)
    unknown = sorted({c for r in records for c in r.shares} - mapping.keys())
    if unknown:
        log.warning("countries not in the map, counted as out of scope: %s", ", ".join(unknown[:20]))
    sizes = _country_sizes(records)
    mean_size = sum(sizes.values()) / max(1, len(sizes))
    rows: dict[str, _Row] = {}
    for r in records:
        for folded, script, part in _readings(r, mapping=mapping, config=config, stats=stats):
            if not re.search(r"[A-Za-z]", folded) or len(folded) > MAX_NAME_CHARS:
                stats.unreadable += 1
                continue
            _add(
                rows,
                part,
                folded,
                script,
                mapping=mapping,
                config=config,
                stats=stats,
                sizes=sizes,
                mean_size=mean_size,
                exclude=exclude,
            )
    table = _label(rows, mapping=mapping, config=config, stats=stats)
    return table, stats


def _add(
    rows: dict[str, _Row],
    r: Record,
    folded: str,
    script: str,
    *,
    mapping: CountryMap,
    config: CorpusConfig,
    stats: Stats,
    sizes: dict[str, float],
    mean_size: float,
    exclude: set[str],
) -> None:
    """One folded source name into ``rows``: its countries weighed per capita; a spelling that folds to a name
    already there is merged with it (weighted by 1 / rank, a frequency proxy)."""
    name = case_form(folded, script)
    key = name.lower()
    if key in exclude:
        stats.excluded += 1
        return
    shares = {c: s for c, s in r.shares.items() if s > 0}
    if config.mirror_fix and _mirror_fix(shares):
        stats.mirrored += 1
    cut = _syllable_cut(name, shares, mapping, stats) if config.syllable_rule and script == "Latin" else frozenset()
    if cut is None:
        return
    weights = {c: s * (mean_size / sizes[c] if config.per_capita else 1.0) for c, s in shares.items()}
    total = sum(weights.values())
    if total <= 0:
        return
    weights = {c: w / total for c, w in weights.items()}
    rank = min(r.ranks.values()) if r.ranks else None
    if key not in rows:
        rows[key] = _Row(name, script, weights, rank, cut)
        return
    stats.merged += 1
    old = rows[key]
    a, b = 1 / (old.rank or 10**6), 1 / (rank or 10**6)
    merged = defaultdict(float)
    for c, w in old.weights.items():
        merged[c] += w * a / (a + b)
    for c, w in weights.items():
        merged[c] += w * b / (a + b)
    best = min((x for x in (old.rank, rank) if x is not None), default=None)
    keep_name = old.name if (old.rank or 10**9) <= (rank or 10**9) else name
    rows[key] = _Row(keep_name, old.script if keep_name == old.name else script, dict(merged), best, old.cut | cut)


def _label(rows: dict[str, _Row], *, mapping: CountryMap, config: CorpusConfig, stats: Stats) -> pa.Table:
    index = {lang: i for i, lang in enumerate(LANGUAGES)}
    kept_in: dict[str, list] = defaultdict(list)
    kept_out: dict[str, list] = defaultdict(list)
    for key, row in rows.items():
        soft = [0.0] * len(LANGUAGES)
        mixed = out = 0.0
        out_by_country: Counter = Counter()
        for c, w in row.weights.items():
            for target, tw in mapping.get(c, {OUT: 1.0}).items():
                if target in row.cut:
                    continue
                if target == MIXED:
                    mixed += w * tw
                elif target == OUT:
                    out += w * tw
                    out_by_country[c] += w * tw
                else:
                    soft[index[target]] += w * tw
        if row.cut:  # the shares left make the whole
            total = sum(soft) + mixed + out
            soft, mixed, out = [x / total for x in soft], mixed / total, out / total
            out_by_country = Counter({c: w / total for c, w in out_by_country.items()})
        inside = sum(soft)
        if inside + out <= 1e-12:
            stats.only_mixed += 1
            continue
        if mixed > config.max_mixed:
            stats.mostly_mixed += 1
            continue
        scope = inside / (inside + out)
        top = max(range(len(soft)), key=soft.__getitem__)
        countries = ",".join(
            f"{c}:{w:.3f}" for c, w in sorted(row.weights.items(), key=lambda x: -x[1])[: config.countries]
        )
        entry = {
            "name": row.name,
            "soft": [s / inside for s in soft] if inside else soft,
            "in_scope": inside,
            "out_of_scope": out,
            "mixed": mixed,
            "top_language": LANGUAGES[top] if inside else None,
            "top_share": soft[top] / (inside + out),
            "country": None,
            "countries": countries,
            "rank": row.rank,
            "script": row.script,
            "key": key,
        }
        if scope >= config.min_scope:
            entry["scope"] = "in"
            kept_in[LANGUAGES[top]].append(entry)
        else:
            entry["scope"] = "out"
            entry["country"] = out_by_country.most_common(1)[0][0]
            kept_out[entry["country"]].append(entry)
    stats.by_language_before = {lang: len(kept_in[lang]) for lang in LANGUAGES}
    out_rows = []
    for groups in (kept_in, kept_out):
        for group in sorted(groups):
            entries = sorted(groups[group], key=lambda e: (e["rank"] is None, e["rank"] or 0, e["key"]))
            if config.per_language is not None and len(entries) > config.per_language:
                stats.capped += len(entries) - config.per_language
                entries = entries[: config.per_language]
            out_rows.extend(entries)
    for e in out_rows:
        e["split"] = split_of(e.pop("key"), config)
        scored = e["scope"] == "in" and e["top_share"] >= config.label_share
        e["label"] = e["top_language"] if e["split"] == "held-out" and scored else None
        if e["split"] == "held-out" and e["scope"] == "in":
            stats.held_out += 1
            stats.held_out_labelled += scored
            stats.held_out_unlabelled += not scored
    stats.in_scope = sum(e["scope"] == "in" for e in out_rows)
    stats.out_of_scope = len(out_rows) - stats.in_scope
    stats.by_language = dict(Counter(e["top_language"] for e in out_rows if e["scope"] == "in"))
    stats.by_script = dict(Counter(e["script"] for e in out_rows))
    return pa.Table.from_pylist(out_rows, schema=SCHEMA)


SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("soft", pa.list_(pa.float32(), len(LANGUAGES))),
        ("in_scope", pa.float32()),
        ("out_of_scope", pa.float32()),
        ("mixed", pa.float32()),
        ("top_language", pa.string()),
        ("top_share", pa.float32()),
        ("scope", pa.string()),
        ("country", pa.string()),
        ("countries", pa.string()),
        ("rank", pa.int64()),
        ("script", pa.string()),
        ("split", pa.string()),
        ("label", pa.string()),
    ]
)


# ------------------------------------------------------------------------------------------------ files


def write(table: pa.Table, path: str | os.PathLike, *, meta: dict) -> None:
    """The corpus as Parquet, written atomically; ``meta`` (source, map fingerprint, rules, counts) and the
    language order go into the file's metadata."""
    doc = {"format": FORMAT, "languages": list(LANGUAGES), **meta}
    table = table.replace_schema_metadata({b"nameorigin": json.dumps(doc).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


@dataclass
class Corpus:
    """A corpus file read back: its table and its metadata document."""

    table: pa.Table
    meta: dict

    @property
    def languages(self) -> list[str]:
        return list(self.meta["languages"])

    @property
    def kind(self) -> str:
        """``surname`` or ``first``: which names it holds (a corpus of before first names: surname)."""
        return self.meta.get("config", {}).get("kind", "surname")

    @property
    def fold_scheme(self) -> int:
        """The :func:`.text.fold` scheme its names were folded with (a corpus of before the record: 1)."""
        return int(self.meta.get("config", {}).get("fold_scheme", 1))

    def rows(self, *, scope: str = "in", split: str | None = None) -> pa.Table:
        import pyarrow.compute as pc

        mask = pc.equal(self.table["scope"], scope)
        if split is not None:
            mask = pc.and_(mask, pc.equal(self.table["split"], split))
        return self.table.filter(mask)

    def held_out_pairs(self) -> list[tuple[str, str]]:
        """The real-names benchmark: held-out in-scope names with a top language of at least the label share."""
        t = self.rows(split="held-out")
        return [
            (n, lab) for n, lab in zip(t["name"].to_pylist(), t["label"].to_pylist(), strict=True) if lab is not None
        ]

    def scored_pairs(self, split: str) -> list[tuple[str, str]]:
        """In-scope names of ``split`` whose top language holds at least the corpus's label share, with it (the
        held-out benchmark for ``held-out``; the corpus's own validation for ``valid``)."""
        least = self.meta.get("config", {}).get("label_share", CorpusConfig.label_share)
        t = self.rows(split=split)
        return [
            (n, lab)
            for n, lab, s in zip(
                t["name"].to_pylist(), t["top_language"].to_pylist(), t["top_share"].to_pylist(), strict=True
            )
            if lab is not None and s >= least - 1e-6
        ]

    def out_of_scope(self, *, held_out_countries: Sequence[str] = (), part: str = "fit") -> dict[str, list[str]]:
        """Real out-of-scope names by their main country: ``part`` ``fit`` gives the countries not in
        ``held_out_countries`` (for fitting the out-of-scope detector and the abstention thresholds), ``held-out``
        only those (a benchmark of whole countries the detector never saw)."""
        if part not in {"fit", "held-out"}:
            raise ValueError(f"part {part!r}: expected fit or held-out")
        held = {c.upper() for c in held_out_countries}
        t = self.rows(scope="out")
        out: dict[str, list[str]] = defaultdict(list)
        for name, country in zip(t["name"].to_pylist(), t["country"].to_pylist(), strict=True):
            if (country in held) == (part == "held-out"):
                out[country].append(name)
        return dict(out)

    def names(self, split: str, *, scope: str = "in") -> list[str]:
        return self.rows(scope=scope, split=split)["name"].to_pylist()


def read(path: str | os.PathLike) -> Corpus:
    """A corpus file; :class:`CorpusError` naming it when it is missing, not Parquet, or of another shape."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: no such corpus file")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise CorpusError(f"{path}: is not a Parquet file ({str(e).splitlines()[0]})") from None
    raw = (table.schema.metadata or {}).get(b"nameorigin")
    try:
        meta = json.loads(raw) if raw else None
    except ValueError:
        meta = None
    if not meta or meta.get("format") != FORMAT:
        raise CorpusError(
            f"{path}: is not a nameorigin corpus (no {FORMAT} metadata; build one with "
            "`nameorigin corpus --out FILE.parquet`)"
        )
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise CorpusError(f"{path}: a corpus of another shape: missing column(s) {', '.join(missing)}")
    width = table.schema.field("soft").type
    if not (pa.types.is_fixed_size_list(width) and width.list_size == len(meta.get("languages", []))):
        raise CorpusError(
            f"{path}: a corpus of another shape: its soft labels do not match its "
            f"{len(meta.get('languages', []))} languages"
        )
    return Corpus(table.select(list(COLUMNS)), meta)


def write_benchmark(corpus: Corpus, path: str | os.PathLike) -> int:
    """The held-out real names as a labelled TSV (``name``, ``language``) that ``nameorigin evaluate`` reads;
    returns how many names."""
    pairs = corpus.held_out_pairs()
    with atomic_text(path) as fh:
        fh.write("name\tlanguage\n")
        fh.writelines(f"{n}\t{lab}\n" for n, lab in pairs)
    return len(pairs)


def training_part(corpus: Corpus, labels: Sequence[str], *, split: str = "train", names: Sequence[str] | None = None):
    """The corpus's in-scope names of ``split`` as a :class:`.training.CorpusPart` over ``labels`` (a model's
    languages): each soft label keeps the shares of the languages in ``labels``, renormalised; a name with no
    share among them is left out. ``names`` (optional) keeps only those rows, by position after the split
    filter (the indices :func:`.data.leak_guard` returns)."""
    import torch

    from .training import CorpusPart

    rows = corpus.rows(split=split)
    all_names = rows["name"].to_pylist()
    soft = torch.tensor(rows["soft"].to_pylist(), dtype=torch.float32).reshape(len(all_names), len(corpus.languages))
    where = {lang: i for i, lang in enumerate(corpus.languages)}
    targets = torch.zeros(len(all_names), len(labels))
    for j, lang in enumerate(labels):
        if lang in where:
            targets[:, j] = soft[:, where[lang]]
    keep = (
        torch.ones(len(all_names), dtype=torch.bool) if names is None else torch.zeros(len(all_names), dtype=torch.bool)
    )
    if names is not None:
        keep[list(names)] = True
    total = targets.sum(1)
    keep &= total > 0
    index = keep.nonzero().squeeze(1)
    valid = [(n, lab) for n, lab in corpus.scored_pairs("valid") if lab in set(labels)] if split == "train" else []
    return CorpusPart([all_names[i] for i in index.tolist()], targets[index] / total[index].unsqueeze(1), valid)


def guarded_sources(
    corpus: Corpus,
    train: Sequence[tuple[str, str]],
    labels: Sequence[str],
    *,
    labelled_held: Iterable[str] = (),
    exclude: Iterable[str] = (),
):
    """The two training sources with the leak guard applied (see :func:`.data.leak_guard`): the labelled
    training pairs less the corpus's validation and held-out names, and the corpus's training part less the
    labelled data's validation and test names; ``exclude`` leaves both. Returns (pairs, CorpusPart, Guarded)."""
    from .data import leak_guard

    corpus_train = corpus.names("train")
    held = corpus.names("valid") + corpus.names("held-out")
    guarded = leak_guard(train, corpus_train, labelled_held=labelled_held, corpus_held=held, exclude=exclude)
    return guarded.train, training_part(corpus, labels, names=guarded.corpus_kept), guarded


def read_exclude(paths: Sequence[str | os.PathLike]) -> set[str]:
    """Names to keep out of every training source, from any file ``predict --input`` reads (text, CSV, TSV,
    JSON lines, Parquet: its name column), folded and case-folded: by scheme 1 and, for a name in Han, kana or
    Hangul, by every reading a corpus may have stored it under (:func:`excluded_forms`)."""
    from .frame import open_source

    out: set[str] = set()
    for p in paths:
        source = open_source(str(p))
        for batch in source.batches:
            for name in batch.column(source.column).to_pylist():
                if name:
                    out |= excluded_forms(name)
    out.discard("")
    return out


def excluded_forms(name: str) -> set[str]:
    """``name`` case-folded as every corpus may hold it: folded by scheme 1 and scheme 2 and, in Han, kana or
    Hangul, read by each reader as a surname and as a given name (``김민준``: ``gimminjun``, ``kim minjun``,
    ``gimminjun``...; over-excluding a reading only keeps a name out of training)."""
    forms = {fold(name).lower()}
    if text.script_of(name) in {"Han", "Kana", "Hangul"}:
        with contextlib.suppress(text.ReaderMissing):  # a corpus built without the readers holds no reading
            forms |= {
                text.read_part(name, japanese=japanese, family=family).lower()
                for japanese in (True, False)
                for family in (True, False)
            }
    else:
        forms.add(fold(name, 2).lower())
    return forms


def meta_of(*, source: str, mapping: CountryMap, map_path: str | None, config: CorpusConfig, stats: Stats) -> dict:
    return {
        "source": source,
        "names_dataset": names_dataset_version() if source == "names-dataset" else None,
        "map": map_path or "shipped",
        "map_sha256": map_fingerprint(mapping),
        "config": asdict(config),
        "folding": text.folding_info(config.fold_scheme),  # the readers' versions with the rule
        "stats": asdict(stats),
    }


# ------------------------------------------------------------------------------------------------ training

#: Whole countries whose out-of-scope names never fit the detector or the abstention thresholds: the report's
#: real out-of-scope benchmark: Bangladesh, Ethiopia, Croatia, Iceland, Cambodia (none of them a Faker locale
#: the detector is fitted on either: South Asian, East African, South Slavic, Nordic, South-East Asian names).
OOS_HELD_OUT_COUNTRIES = ("BD", "ET", "HR", "IS", "KH")
#: At most this many out-of-scope names a country (the most frequent first) join Faker's for fitting.
OOS_FIT_PER_COUNTRY = 5000


@dataclass
class ForTraining:
    """A corpus made ready for one training run (see :func:`for_training`)."""

    train: list[tuple[str, str]]  # the labelled training pairs, less the corpus's validation and held-out names
    part: object  # the corpus's training names and soft labels (a .training.CorpusPart), leak-guarded
    out_of_scope: list[str]  # real out-of-scope names to fit the detector on (held-out countries left out)
    info: dict  # what the checkpoint records: file digest, map, names-dataset version, counts


def out_of_scope_fit(
    corpus: Corpus,
    *,
    exclude: Iterable[str] = (),
    per_country: int = OOS_FIT_PER_COUNTRY,
    held_out_countries: Sequence[str] = OOS_HELD_OUT_COUNTRIES,
) -> list[str]:
    """Real out-of-scope names for fitting: the most frequent ``per_country`` of each country not held out,
    less ``exclude`` (compared without case)."""
    off = {n.lower() for n in exclude}
    out: list[str] = []
    for names in corpus.out_of_scope(held_out_countries=held_out_countries, part="fit").values():
        out.extend([n for n in names if n.lower() not in off][:per_country])
    return sorted(set(out))


def out_of_scope_held_out(corpus: Corpus, *, held_out_countries: Sequence[str] = OOS_HELD_OUT_COUNTRIES) -> list[str]:
    """The real out-of-scope benchmark: every out-of-scope name of the held-out countries."""
    return sorted(
        {
            n
            for names in corpus.out_of_scope(held_out_countries=held_out_countries, part="held-out").values()
            for n in names
        }
    )


def write_out_of_scope_benchmark(corpus: Corpus, path: str | os.PathLike) -> int:
    """The real out-of-scope benchmark (:func:`out_of_scope_held_out`) as a text file, one name a line, which
    ``nameorigin evaluate --out-of-scope`` reads; returns how many names."""
    names = out_of_scope_held_out(corpus)
    with atomic_text(path) as fh:
        fh.writelines(n + "\n" for n in names)
    return len(names)


def _file_info(corpus: Corpus, path: str | os.PathLike) -> dict:
    """What a checkpoint records of the corpus file it trained with: its digest, source, map and rules."""
    from .checkpoint import file_sha256

    return {
        "file": str(path),
        "sha256": file_sha256(Path(path)),
        "format": corpus.meta.get("format"),
        "source": corpus.meta.get("source"),
        "names_dataset": corpus.meta.get("names_dataset"),
        "map": corpus.meta.get("map"),
        "map_sha256": corpus.meta.get("map_sha256"),
        "config": corpus.meta.get("config"),
        "kind": corpus.kind,
        "fold_scheme": corpus.fold_scheme,
    }


def for_training(
    path: str | os.PathLike,
    train: Sequence[tuple[str, str]],
    labels: Sequence[str],
    *,
    labelled_held: Iterable[str] = (),
    exclude: Iterable[str] = (),
) -> ForTraining:
    """Read the corpus file at ``path`` and guard both sources (see :func:`guarded_sources`); its real
    out-of-scope names (countries of :data:`OOS_HELD_OUT_COUNTRIES` left out) for the detector, less every
    labelled and excluded name; and what the checkpoint's data fingerprint records of it."""
    corpus = read(path)
    if corpus.kind != "surname":
        raise CorpusError(
            f"{path}: a corpus of {KIND_WORDS.get(corpus.kind, corpus.kind)}; a surname model trains on a "
            "surname corpus "
            f"(a first-name model: `nameorigin train --kind first --corpus {path}`)"
        )
    exclude = {n.lower() for n in exclude}
    labelled_held = list(labelled_held)
    pairs, part, guard = guarded_sources(corpus, train, labels, labelled_held=labelled_held, exclude=exclude)
    oos = out_of_scope_fit(corpus, exclude=exclude | {n.lower() for n, _ in train} | {n.lower() for n in labelled_held})
    info = {
        **_file_info(corpus, path),
        "n_train": len(part),
        "removed_from_corpus": guard.removed_from_corpus,
        "removed_from_train": guard.removed_from_train,
        "n_out_of_scope_fit": len(oos),
        "out_of_scope_held_out_countries": list(OOS_HELD_OUT_COUNTRIES),
    }
    return ForTraining(train=pairs, part=part, out_of_scope=oos, info=info)


def first_name_sources(path: str | os.PathLike, *, exclude: Iterable[str] = ()) -> tuple[object, ForTraining]:
    """The sources of a first-name model, which has no labelled data but its corpus (``kind="first"``): the
    training names whose top language holds at least the corpus's label share train as labelled names (their
    top language), the other training names with their soft labels (the corpus part); the scored validation
    names validate (the best epoch and the trust layer); the scored held-out names are the test names (the
    held-out first names the checkpoint's test figures and ``bench/bundle.py --kind first`` report). ``exclude``
    (case-folded names) leave every training name. Returns (a :class:`.data.Split`, :class:`ForTraining`)."""
    from .data import Split, languages

    corpus = read(path)
    if corpus.kind != "first":
        raise CorpusError(
            f"{path}: a corpus of {KIND_WORDS.get(corpus.kind, corpus.kind)}; a first-name model trains on a "
            "first-name corpus "
            "(`nameorigin corpus --kind first`)"
        )
    off = {n.lower() for n in exclude}
    scored = [p for p in corpus.scored_pairs("train") if p[0].lower() not in off]
    valid, test = corpus.scored_pairs("valid"), corpus.scored_pairs("held-out")
    labels = languages(scored + valid + test)
    hard = {n for n, _ in scored}
    names = corpus.names("train")
    soft_rows = [i for i, n in enumerate(names) if n not in hard and n.lower() not in off]
    part = training_part(corpus, labels, names=soft_rows)
    in_scope = off | {n.lower() for n in names} | {n.lower() for n, _ in valid + test}
    oos = out_of_scope_fit(corpus, exclude=in_scope)
    info = {
        **_file_info(corpus, path),
        "n_train": len(part),
        "n_train_labelled": len(scored),
        "removed_from_corpus": len(names) - len(scored) - len(part),
        "removed_from_train": 0,
        "n_out_of_scope_fit": len(oos),
        "out_of_scope_held_out_countries": list(OOS_HELD_OUT_COUNTRIES),
    }
    return Split(scored, valid, test), ForTraining(train=scored, part=part, out_of_scope=oos, info=info)
