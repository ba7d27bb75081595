"""A full name into its parts (given, family), with ``nameparser`` underneath.

``nameparser`` reads titles, suffixes, the comma form (``Verdi, Giuseppe``), nicknames, particles (``van der``,
``de la``, ``da``, ``dos``, ``al-``, ``bin``, ``ibn``, ``Abu``) and conjunctions (Spanish ``y``). This module adds
what it lacks: family-name-first order for Chinese, Korean and Vietnamese names, decided from the name (a known
family name at the start and a given name of that language's syllables after it); names in Han or Hangul split
by their family name (``김민준`` → 김 + 민준, ``欧阳娜娜`` → 欧阳 + 娜娜); two surnames of one person
(``María José García López``) where a :class:`Lexicon` knows the given and the family names; initials kept apart
(they carry no evidence); and a guess of the kind of name (``surname``, ``first`` or ``full``) from the parse.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import unicodedata
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import text
from .errors import install_hint
from .syllables import cantonese

log = logging.getLogger(__name__)

#: Kinds of name a caller may give; ``auto`` asks :func:`parse` to decide.
NAME_TYPES = ("auto", "surname", "first", "full")
#: Most tokens a full name may have (titles and suffixes included); a longer string is an error, not a name.
MAX_TOKENS = 12
#: Languages whose names are written family name first, as their family tables are called in ``text``.
EASTERN = ("chinese", "korean", "vietnamese")
_INITIAL = re.compile(r"^(?:[^\W\d_]\.-?)+$|^[^\W\d_]$")  # J. J.R.R. J.-P. J
_NATIVE = ("Han", "Kana", "Hangul")
#: Arabic name elements that bind the next word into one given name (``Abd al-Rahman``, ``Abu Bakr``).
_BINDS_NEXT = frozenset({"abd", "abdul", "abu", "umm"})


class ParseError(ValueError):
    """A string that cannot be parsed into a name; the message names it."""


@dataclass(frozen=True)
class ParsedName:
    """How a name was split. ``given`` and ``family`` are names (a family name keeps its particles: ``van der
    Berg``; two surnames are two entries: ``García``, ``López``), most significant order as written;
    ``initials`` the given names written as initials (``J.``); ``order`` ``given-family`` or ``family-given``
    (as written); ``name_type`` the kind of name (``surname``, ``first``, ``full``); ``why`` the rules that
    decided; ``error`` set (and the parts empty) when nothing could be read."""

    raw: str
    given: tuple[str, ...] = ()
    family: tuple[str, ...] = ()
    title: tuple[str, ...] = ()
    suffix: tuple[str, ...] = ()
    initials: tuple[str, ...] = ()
    order: str = "given-family"
    name_type: str = "surname"
    why: tuple[str, ...] = ()
    error: str | None = None

    @property
    def given_name(self) -> str:
        return " ".join(self.given)

    @property
    def family_name(self) -> str:
        return " ".join(self.family)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass(frozen=True)
class Lexicon:
    """Given names and family names known to be such (lower case, folded), which decide what the token order
    alone cannot: whether ``García López`` is two surnames or a given name and a surname, whether a lone
    ``Giuseppe`` is a first name. :meth:`from_faker` builds one from Faker's lists of the 18 languages' locales;
    :func:`parse` uses it when Faker is installed (the ``[trust]`` extra), else an empty one."""

    given: frozenset[str] = field(default_factory=frozenset)
    family: frozenset[str] = field(default_factory=frozenset)

    def is_given(self, word: str) -> bool:
        return _key(word) in self.given

    def is_family(self, word: str) -> bool:
        return _key(word) in self.family

    #: Faker's locales for the 18 languages of the tutorial (Scottish and Irish names are in en_GB/en_IE).
    FAKER_LOCALES = (
        "ar_AA",
        "ar_SA",
        "cs_CZ",
        "de_DE",
        "el_GR",
        "en_GB",
        "en_IE",
        "en_US",
        "es_ES",
        "es_MX",
        "fr_FR",
        "ga_IE",
        "it_IT",
        "ja_JP",
        "ko_KR",
        "nl_NL",
        "pl_PL",
        "pt_BR",
        "pt_PT",
        "ru_RU",
        "vi_VN",
        "zh_CN",
        "zh_TW",
    )

    @classmethod
    def from_faker(cls, locales: tuple[str, ...] = FAKER_LOCALES) -> Lexicon:
        """Given and family names of Faker's person providers for ``locales`` (missing ones skipped); those of
        the default locales stored once read (:func:`_stored`)."""
        if tuple(locales) == cls.FAKER_LOCALES:
            read = functools.cache(lambda: _faker_names(locales))  # both tables from one read of the providers
            return cls(
                given=_stored("faker-given", ("faker",), lambda: read()[0]),
                family=_stored("faker-family", ("faker",), lambda: read()[1]),
            )
        given, family = _faker_names(locales)
        return cls(given=frozenset(given), family=frozenset(family))


def _faker_names(locales: tuple[str, ...]) -> tuple[set[str], set[str]]:
    """The keys of the given and the family names of Faker's person providers for ``locales``."""
    import importlib

    given: set[str] = set()
    family: set[str] = set()
    for locale in locales:
        try:
            provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        except ImportError:
            continue
        for attr, out in (
            ("first_names", given),
            ("first_names_male", given),
            ("first_names_female", given),
            ("last_names", family),
        ):
            out.update(_key(n) for n in getattr(provider, attr, ()) or ())
    return given, family


@functools.lru_cache(maxsize=1 << 16)
def _key(word: str) -> str:
    return text.fold(word).lower()


@functools.cache
def default_lexicon() -> Lexicon:
    """:meth:`Lexicon.from_faker` when Faker is installed, else an empty lexicon (logged once)."""
    try:
        import faker  # noqa: F401
    except ImportError:
        log.info(
            "Faker is not installed: names are parsed without a lexicon of given and family names (%s)",
            install_hint("trust"),
        )
        return Lexicon()
    return Lexicon.from_faker()


@functools.cache
def _eastern_latin() -> dict[str, frozenset[str]]:
    """Each Eastern language's family names as written in Latin letters (lower case, folded): the customary
    spelling of :func:`text.family_tables`, and for Chinese and Korean every Latin spelling name-variants
    gives (Wong, Cheung; Rhee, Pak); Vietnamese ones are their own written forms (Nguyễn → nguyen)."""
    nv = text.require_reader("name_variants")
    tables = text.family_tables()
    variants = {"chinese": nv.CHINESE_SURNAME_VARIANTS, "korean": nv.KOREAN_SURNAME_VARIANTS}
    out = {}
    for language in EASTERN:
        spellings = {_key(v) for v in tables[language].values()}
        if language in variants:
            spellings |= {_key(f) for e in variants[language].values() for f in e["forms"] if f.isascii()}
        else:
            spellings |= {_key(k) for k in tables[language]}
        out[language] = frozenset(spellings)
    return out


#: Bump when a stored table's content would change for the same package versions.
_TABLES_FORMAT = 1


def _stored(name: str, packages: tuple[str, ...], build) -> frozenset[str]:
    """A word table derived from installed packages (Faker's name lists, pypinyin's dictionary, a romanizer),
    ``build()``, kept as JSON in the cache folder (:func:`nameorigin.data.cache_dir`, ``tables/``) under a key
    of the packages' versions and this package's: building one reads large modules (half a second for the
    syllables), reading it back takes milliseconds. A missing, stale or unreadable file is built again; a
    folder that cannot be written only costs the time (the table is still built)."""
    from . import __version__
    from .atomic import atomic_text
    from .data import cache_dir

    versions = {p: text._package_version(p) for p in packages} | {"nameorigin": __version__, "format": _TABLES_FORMAT}
    key = hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / "tables" / f"{name}-{key}.json"
    try:
        words = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(words, list) and all(isinstance(w, str) for w in words):
            return frozenset(words)
    except (OSError, ValueError):
        pass
    table = frozenset(build())
    try:
        with atomic_text(path) as fh:
            json.dump(sorted(table), fh, ensure_ascii=False)
    except Exception as e:  # a cache that cannot be written is no error
        log.debug("%s: not stored (%s)", path, e)
    return table


@functools.cache
def _syllables(language: str) -> frozenset[str]:
    """The syllables of ``chinese`` given names (pinyin, from pypinyin's dictionary, and name-variants' spellings
    of Chinese given names) or ``korean`` ones (the Revised Romanization of every Hangul syllable by
    korean-romanizer, and name-variants' customary spellings), each language's own: a given name is spelt in
    one system (``Water`` is no name of Korean *wat* and Chinese *er*). Stored once built (:func:`_stored`)."""
    if language not in ("chinese", "korean"):
        raise ValueError(f"no syllable table for {language!r}")
    packages = ("pypinyin", "name-variants") if language == "chinese" else ("korean-romanizer", "name-variants")
    return _stored(f"syllables-{language}", packages, lambda: _build_syllables(language))


def _build_syllables(language: str) -> frozenset[str]:
    nv = text.require_reader("name_variants")
    if language == "chinese":
        pinyin_dict = text.require_reader("pypinyin.pinyin_dict").pinyin_dict
        out = {text.fold(r).lower() for v in pinyin_dict.values() for r in v.split(",")}
        tables = (nv.CHINESE_GIVEN_NAME_VARIANTS,)
    else:
        romanizer = text.require_reader("korean_romanizer.romanizer").Romanizer
        out = {romanizer(chr(c)).romanize() for c in range(0xAC00, 0xD7A4)}
        tables = (nv.KOREAN_GIVEN_NAME_VARIANTS, nv.KOREAN_SURNAME_VARIANTS)
    for table in tables:
        for key, entry in table.items():
            out |= {_key(f) for f in [key, *entry["forms"]] if _key(f).isalpha()}
    return frozenset(s for s in out if re.search("[aeiouy]", s))


@functools.lru_cache(maxsize=1 << 16)
def _syllabic(word: str, language: str, *, most: int = 2) -> bool:
    """Whether ``word`` (hyphens and apostrophes aside) is a given name of ``language`` (``chinese``, ``korean``
    or ``vietnamese``) by its syllables: one to ``most`` of :func:`_syllables` (``Jong-un``, ``Minjun``,
    ``Xiaoming``; not ``Basinger``: ba-sing-er is three) or, for Chinese, of Cantonese ones (``Ka``, ``Tsz-wai``);
    Vietnamese ones a word a syllable."""
    parts = [p for p in re.split(r"[-'’\s]+", _key(word)) if p]
    if language == "vietnamese":
        return bool(parts) and all(_VIETNAMESE_SYLLABLE.fullmatch(p) for p in parts)
    syllables = _syllables(language)
    if bool(parts) and sum(_fewest(p, syllables) for p in parts) <= most:
        return True
    # Hong Kong's Cantonese spellings (Ka Ho, Tsz-wai), a system of their own (syllables.cantonese)
    return language == "chinese" and 0 < len(parts) <= most and all(cantonese().fullmatch(p) for p in parts)


#: One syllable of Vietnamese as written without its marks (onset, vowels, final): ``Thi``, ``Minh``, ``Khai``.
_VIETNAMESE_SYLLABLE = re.compile(
    r"(?:ngh|ch|gh|gi|kh|ng|nh|ph|qu|th|tr|[bcdghklmnprstvx])?[aeiouy]{1,3}"
    r"(?:ch|ng|nh|[cmnpt])?"
)


def _fewest(part: str, syllables: frozenset[str]) -> float:
    """The fewest syllables ``part`` splits into (infinite when it does not split)."""
    best = [0.0] + [float("inf")] * len(part)  # best[i]: fewest syllables for part[:i]
    for i in range(1, len(part) + 1):
        best[i] = min((best[j] + 1 for j in range(max(0, i - 6), i) if part[j:i] in syllables), default=float("inf"))
    return best[-1]


def _eastern_family_first(tokens: list[str]) -> str | None:
    """The Eastern language whose order a Latin-script name follows (family name first), or None: its first
    token is one of that language's family names, each token after it a given name of one or two syllables
    (Vietnamese: one) of that language (``Kim Jong-un``, ``Nguyen Van An``, ``Ma Long``, ``Wang Wei``; not
    ``Kim Basinger``). A Western particle after the family name says the order is Western (``Mai de Jong``,
    ``Kim De Boer``, ``Sam van de Water``): for Chinese and Korean in any case, for Vietnamese when written in
    lower case (``Nguyen Van An``: *Văn*)."""
    if len(tokens) < 2 or len(tokens) > 4:
        return None
    latin = _eastern_latin()
    prefixes = _constants().prefixes

    def given_names(lang: str) -> bool:
        for t in tokens[1:]:
            if t.lower() in prefixes and (lang != "vietnamese" or t.islower()):
                return False
            if not _syllabic(t, lang):
                return False
        return True

    languages = [lang for lang in EASTERN if _key(tokens[0]) in latin[lang] and given_names(lang)]
    return " or ".join(languages) or None


def _native(raw: str, tokens: list[str]) -> ParsedName | None:
    """A name in Han, kana or Hangul: family name first (unless written as two words of which only the second is
    a known family name: ``加奈 伊藤``), split by the family tables when written as one word."""
    script = text.script_of(raw)
    if script not in _NATIVE:
        return None
    tables = text.family_tables()
    table = tables["korean"] if script == "Hangul" else {**tables["chinese"], **tables["japanese"]}
    if len(tokens) >= 2:
        given_first = len(tokens) == 2 and tokens[0] not in table and tokens[1] in table
        return ParsedName(
            raw,
            given=(tokens[0],) if given_first else tuple(tokens[1:]),
            family=(tokens[-1],) if given_first else (tokens[0],),
            order="given-family" if given_first else "family-given",
            name_type="full",
            why=(
                f"{script} script written given name first: {tokens[1]} is a known family name, {tokens[0]} not"
                if given_first
                else f"{script} script: family name first",
            ),
        )
    word = tokens[0]
    if word in table:
        return ParsedName(
            raw,
            family=(word,),
            order="family-given",
            name_type="surname",
            why=(f"{script} script: a known family name alone",),
        )
    split = text.split_family(word, table, max_len=4 if script == "Hangul" else 6)  # 佐藤さくら: kana given names
    if split:
        return ParsedName(
            raw,
            given=(split[1],),
            family=(split[0],),
            order="family-given",
            name_type="full",
            why=(f"{script} script: split after the known family name {split[0]}",),
        )
    return ParsedName(
        raw,
        family=(word,),
        order="family-given",
        name_type="surname",
        why=(f"{script} script: no known family name at the start; read as a surname",),
    )


#: Particles nameparser's list lacks: Irish and Scottish (``Uí``, ``Nic``, ``Mhic``), Welsh ``ap``, Dutch ``ten``,
#: German ``zum``/``zur``, Italian ``dalla``, Hassaniya ``ould``. (``ben`` and ``lo`` are left out: they are also a
#: given name and a Chinese family name.)
EXTRA_PARTICLES = ("ui", "uí", "nic", "mhic", "ap", "ten", "zum", "zur", "dalla", "ould")


@functools.cache
def _constants():
    """nameparser's constants for this parser: its own instance, configured with :data:`EXTRA_PARTICLES`, so
    that the library's module-wide defaults (which other code in the process may use) are left as they are."""
    from nameparser.config import Constants

    constants = Constants()
    constants.prefixes.add(*EXTRA_PARTICLES)
    return constants


def _tokens(raw: str) -> list[str]:
    return raw.replace(",", " , ").split()


def _bad(raw: str, message: str) -> ParsedName:
    return ParsedName(raw, name_type="full", error=message)


def parse(raw: str, *, name_type: str = "auto", lexicon: Lexicon | None = None) -> ParsedName:
    """Split ``raw`` into its parts. ``name_type``: ``auto`` decides the kind from the parse; ``surname`` and
    ``first`` read the whole string as one family or given name; ``full`` parses it as a full name.
    ``lexicon``: the known given and family names (default: :func:`default_lexicon`). Never raises for a bad
    string: the result has ``error`` set (no readable letter, only punctuation, more than :data:`MAX_TOKENS`
    tokens); an unknown ``name_type`` is a :class:`ValueError`."""
    if name_type not in NAME_TYPES:
        raise ValueError(f"unknown name type {name_type!r}; expected one of {', '.join(NAME_TYPES)}")
    if not isinstance(raw, str):
        return _bad(str(raw), "not a string")
    return _parse(raw, name_type, default_lexicon() if lexicon is None else lexicon)


#: Distinct (name, kind, lexicon) parses kept: files repeat names, and each distinct one is parsed once.
CACHE_SIZE = 1 << 16


@functools.lru_cache(maxsize=CACHE_SIZE)
def _parse(raw: str, name_type: str, lexicon: Lexicon) -> ParsedName:
    """:func:`parse` of a string, cached (a :class:`ParsedName` is frozen, so a cached one is safe to share)."""
    cleaned = unicodedata.normalize("NFC", " ".join(raw.split()))
    tokens = _tokens(cleaned)
    if len(tokens) > MAX_TOKENS:
        return _bad(raw, f"name {raw[:30]!r}... has {len(tokens)} tokens; a full name has at most {MAX_TOKENS}")
    if not any(unicodedata.category(c)[0] == "L" for c in cleaned):
        return _bad(raw, f"name {text.shown(raw)} has no letters that can be read (it folds to nothing)")
    if name_type in ("surname", "first"):
        part = (cleaned.strip(" ,"),)
        return ParsedName(
            raw,
            given=part if name_type == "first" else (),
            family=part if name_type == "surname" else (),
            name_type=name_type,
            why=(f"read whole as a {name_type} (as asked)",),
        )
    words = [t for t in tokens if t != ","]
    try:
        native = _native(cleaned, words)
    except text.ReaderMissing as e:  # the family-name tables are not installed
        return _bad(raw, str(e))
    if native is not None:
        return native
    try:
        language = _eastern_family_first(words) if "," not in cleaned else None
    except text.ReaderMissing:  # without the tables, Latin names are read in the order nameparser reads them
        log.info("the East Asian family-name tables are not installed: family-name-first order is not looked for")
        language = None
    if language:
        return ParsedName(
            raw,
            given=tuple(words[1:]),
            family=(words[0],),
            order="family-given",
            name_type="full",
            why=(
                f"family name first: {words[0]} is a known {language} family "
                "name and the rest are given-name syllables",
            ),
        )
    parsed = _western(raw, cleaned, lexicon)
    if name_type == "full" and parsed.name_type != "full" and not parsed.error:
        parsed = _as_full(parsed)
    return parsed


def _western(raw: str, cleaned: str, lexicon: Lexicon) -> ParsedName:
    """Given name first (or ``Family, Given``), through nameparser, then the rules it lacks. Two plain words
    (the common case: letters only, neither a title, suffix, particle nor conjunction of nameparser's lists)
    are split as nameparser splits them without running it, since files hold millions of them."""
    why: list[str] = ["nameparser: comma form, family name first" if "," in cleaned else "nameparser: given name first"]
    words = cleaned.split()
    middle: list[str] = []
    if FAST_PAIRS and len(words) == 2 and all(_plain(w) for w in words):
        title, suffix, given, family_words = (), (), [words[0]], [words[1]]
    else:
        from nameparser import HumanName

        h = HumanName(cleaned, constants=_constants())
        title = tuple(h.title_list)
        suffix = tuple(h.suffix_list)
        given = _bind(" ".join(w for w in [*h.first_list, *h.middle_list] if w).split())
        family_words = " ".join(h.last_list).split()
        middle = h.middle_list
    if not family_words and given and not middle and "," not in cleaned:
        family_words, given = given, []  # one name: a surname until the lexicon says otherwise
    if len(words) == 1 and not family_words and not given and "." not in words[0]:
        family_words, title, suffix = [words[0]], (), ()  # Hon, Baron, English, Prince: a surname (not Dr.)
        why.append("one word: a surname (nameparser reads it as a title or a suffix)")
    prefixes = _prefixes()
    if given and given[0].lower() in prefixes and family_words[:1] != []:
        family_words, given = [*given, *family_words], []  # "van der Berg", "de la Cruz" alone: one surname
        why.append("a particle starts the name: all of it is the family name")
    family = _surnames(family_words, prefixes, why)
    if given and all(_surname_only(g, lexicon) for g in given) and "," not in cleaned:
        family = [*given, *family]  # García López: two surnames, no given name
        given = []
        why.append("every word a known family name, none a given name: surnames only")
    elif len(family) == 1 and len(given) >= 2 and _surname_only(given[-1], lexicon):
        family.insert(0, given.pop())  # María José García López: two surnames
        why.append(f"two surnames: {family[0]} is a known family name, not a given name")
    initials = tuple(g for g in given if is_initial(g))
    given = [g for g in given if g not in initials]
    kind = _kind(given, family, initials, lexicon, why)
    if kind == "first":
        given, family = [*given, *family], []
    if not given and not family and not initials:
        return _bad(raw, f"name {text.shown(raw)} has no part that can be read (only titles or suffixes?)")
    return ParsedName(
        raw,
        given=tuple(given),
        family=tuple(family),
        title=title,
        suffix=suffix,
        initials=initials,
        order="family-given" if "," in cleaned else "given-family",
        name_type=kind,
        why=tuple(why),
    )


@functools.cache
def _prefixes() -> frozenset[str]:
    """nameparser's particles (and :data:`EXTRA_PARTICLES`), lower case, as a set to look words up in."""
    return frozenset(w.lower() for w in _constants().prefixes)


#: Whether :func:`_western` splits two plain words itself (as nameparser would) instead of running nameparser.
FAST_PAIRS = True


@functools.cache
def _special_words() -> frozenset[str]:
    """Every word nameparser's lists treat specially (titles, suffixes, particles, conjunctions, bound first
    names), lower case: a name with one of them goes through nameparser."""
    c = _constants()
    lists = (
        c.titles,
        c.first_name_titles,
        c.suffix_acronyms,
        c.suffix_not_acronyms,
        c.suffix_acronyms_ambiguous,
        c.prefixes,
        c.non_first_name_prefixes,
        c.conjunctions,
        c.bound_first_names,
    )
    return frozenset(w.lower() for words in lists for w in words)


@functools.lru_cache(maxsize=1 << 16)
def _plain(word: str) -> bool:
    """A word nameparser reads as a plain name: two or more letters (an apostrophe or a hyphen between two of
    them allowed), nothing it treats specially (nor a roman numeral, which it reads as a suffix: ``Vi``, ``II``;
    by nameparser's own pattern, I to X, so that ``Li``, ``Lim`` and ``Mill`` stay plain)."""
    low = word.lower()
    return (
        len(word) > 1
        and bool(_WORD.fullmatch(word))
        and low not in _special_words()
        and not _constants().regexes.roman_numeral.match(word)
    )


#: A plain word: letters, with an apostrophe or a hyphen between letters (``O'Neil``, ``Jean-Pierre``).
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


def is_initial(word: str) -> bool:
    """Whether ``word`` is written as an initial (``J.``, ``J.-P.``, ``K``): it carries no evidence. (One Han
    or Hangul character is a whole name: ``王``, ``김``.)"""
    return (
        bool(_INITIAL.match(word))
        and len(word.replace(".", "").replace("-", "")) <= 3
        and text.script_of(word) not in _NATIVE
    )


def _surname_only(word: str, lexicon: Lexicon) -> bool:
    return lexicon.is_family(word) and not lexicon.is_given(word)


def _bind(words: list[str]) -> list[str]:
    """Given-name words with ``Abd``, ``Abu``, ``Umm`` bound to the word after them (``Abd al-Rahman``)."""
    out: list[str] = []
    for w in words:
        if out and out[-1].lower() in _BINDS_NEXT:
            out[-1] = f"{out[-1]} {w}"
        else:
            out.append(w)
    return out


def _surnames(words: list[str], prefixes, why: list[str]) -> list[str]:
    """The family words as surnames: particles stay with the name they precede (``van der Berg``, ``bin
    Salman``, ``al-Saud``); a conjunction (``y``, ``e``, ``i``) separates two surnames."""
    out: list[str] = []
    pending: list[str] = []
    for w in words:
        if w.lower() in ("y", "e", "i", "-"):
            why.append(f"two surnames joined by {w!r}")
            continue
        pending.append(w)
        if w.lower() not in prefixes:
            out.append(" ".join(pending))
            pending = []
    if pending:  # particles with no name after them (a name cut short): kept as they are
        out.append(" ".join(pending))
    return out


def _kind(given: list[str], family: list[str], initials: tuple, lexicon: Lexicon, why: list[str]) -> str:
    """``surname``, ``first`` or ``full`` from the parts (and, for a name of one kind of word, the lexicon)."""
    if given or initials:
        words = [*given, *family]
        if (
            not initials
            and len(words) <= 2
            and all(lexicon.is_given(w) for w in words)
            and not any(lexicon.is_family(f) for f in family)
        ):
            why.append("every word a known given name, none a family name: given names only")
            return "first"
        return "full"
    words = [w for f in family for w in f.split()]
    if all(lexicon.is_given(w) and not lexicon.is_family(w) for w in words):
        why.append("known as a given name, not a family name")
        return "first"
    if len(family) >= 2:
        if not why[-1].endswith("surnames only") and not why[-1].startswith("two surnames"):
            why.append("family names only")
        return "surname"
    why.append("one family name")
    return "surname"


def _as_full(parsed: ParsedName) -> ParsedName:
    """A name the caller says is full but that parsed as one kind: its first word the given name."""
    words = [*parsed.given, *parsed.family]
    if len(words) < 2:
        return ParsedName(
            parsed.raw,
            given=parsed.given,
            family=parsed.family,
            title=parsed.title,
            suffix=parsed.suffix,
            initials=parsed.initials,
            order=parsed.order,
            name_type="full",
            why=(*parsed.why, "full as asked, but only one part"),
        )
    return ParsedName(
        parsed.raw,
        given=(words[0],),
        family=tuple(words[1:]),
        title=parsed.title,
        suffix=parsed.suffix,
        initials=parsed.initials,
        order=parsed.order,
        name_type="full",
        why=(*parsed.why, "full as asked: the first word is the given name"),
    )


#: The shape of the common full name a file holds: one to three words, one space between (each distinct word is
#: then looked at: letters of the Latin script, none of nameparser's special words, normalised; :func:`_word_bits`).
_PLAIN_SHAPE = r"^(?P<a>[^ ]{2,})(?: (?P<b>[^ ]{2,}))?(?: (?P<c>[^ ]{2,}))?$"


@dataclass(frozen=True)
class PlainParse:
    """:func:`parse_plain`'s answer for an array of names: ``plain`` (N,) whether each name is of the common
    shape (only those rows of the other fields mean anything), ``given``/``family`` the parts as
    :attr:`ParsedName.given_name`/:attr:`~ParsedName.family_name` (null: none) and ``name_type`` the kind."""

    plain: np.ndarray
    given: pa.Array
    family: pa.Array
    name_type: pa.Array


#: The bits of :func:`_word_bits`, in order.
_FACTS = ("ok", "given", "family", *(f"east_{language}" for language in EASTERN))


def _word_bits(word: str, lexicon: Lexicon) -> int:
    """What the parse of a plain name asks of one word, as the bits of :data:`_FACTS`: whether it is a plain
    Latin word (:func:`_plain`, Latin letters, NFC), a known given or family name, and each Eastern language's
    family name (those bits 0 when the East Asian tables are not installed). Kept by :func:`_bits_of`: a file
    repeats its words far more than its names."""
    facts = [
        _plain(word) and text.script_of(word) == "Latin" and unicodedata.is_normalized("NFC", word),
        lexicon.is_given(word),
        lexicon.is_family(word),
    ]
    try:
        latin = _eastern_latin()
        facts += [_key(word) in latin[language] for language in EASTERN]
    except text.ReaderMissing:
        facts += [False] * len(EASTERN)
    return sum(1 << i for i, f in enumerate(facts) if f)


@functools.lru_cache(maxsize=4)
def _bits_of(lexicon: Lexicon) -> dict[str, int]:
    """Words' :func:`_word_bits` under ``lexicon`` as one dictionary, filled as words come: a chunk of a file
    looks its words up in it in one pass."""
    return {}


def _word_facts(words: list[str], lexicon: Lexicon) -> dict[str, np.ndarray]:
    """:func:`_word_bits` of distinct words as one boolean array a fact."""
    table = _bits_of(lexicon)
    if len(table) > 1 << 18:  # a long file of ever new words: start over rather than grow
        table.clear()
    known = table.get

    def bits_of(word: str) -> int:  # safe beside another thread's clear(): a word missing is computed
        bits = known(word)
        if bits is None:
            bits = table[word] = _word_bits(word, lexicon)
        return bits

    bits = np.fromiter(map(bits_of, words), np.int64, len(words))
    return {fact: (bits >> i) & 1 == 1 for i, fact in enumerate(_FACTS)}


def _syllabic_facts(words: list[str], asked: np.ndarray) -> dict[str, np.ndarray]:
    """Whether each distinct word is a given name of each Eastern language by its syllables (:func:`_syllabic`),
    looked at only where ``asked`` (a word after an Eastern family name)."""
    out = {f"syllabic_{language}": np.zeros(len(words), dtype=bool) for language in EASTERN}
    for i in np.flatnonzero(asked):
        for language in EASTERN:
            out[f"syllabic_{language}"][i] = _syllabic(words[i], language)
    return out


def parse_plain(values: pa.Array, name_type: str = "auto", *, lexicon: Lexicon | None = None) -> PlainParse:
    """:func:`parse` of a whole array at once for names of the common shape (one to three plain Latin words, one
    space between: ``Smith``, ``Giuseppe Verdi``, ``García López``, ``Kim Minjun``, ``John Fitzgerald
    Kennedy``), each distinct word looked at once (:func:`_word_bits`); every other name (``plain`` False) is
    left to :func:`parse`. The parts and kinds are exactly :func:`parse`'s (the tests hold them side by side):
    files hold millions of such names."""
    if name_type not in NAME_TYPES:
        raise ValueError(f"unknown name type {name_type!r}; expected one of {', '.join(NAME_TYPES)}")
    lexicon = default_lexicon() if lexicon is None else lexicon
    n = len(values)
    # white space as parse cleans it (a character Python splits on that this does not stays inside a word,
    # which is then no plain word)
    values = pc.utf8_trim(pc.replace_substring_regex(pc.fill_null(values, ""), r"[ \t\n\r\f\v]+", " "), " ")
    groups = pc.extract_regex(values, _PLAIN_SHAPE)
    matched = np.asarray(pc.fill_null(pc.is_valid(groups), False))
    words = [pc.fill_null(pc.struct_field(groups, [i]), "") for i in range(3)]
    encoded = pa.concat_arrays(words).dictionary_encode()
    distinct = encoded.dictionary.to_pylist()
    facts = _word_facts(distinct, lexicon)
    code = encoded.indices.to_numpy()
    a, b, c = code[:n], code[n : 2 * n], code[2 * n :]
    has_b = np.asarray(pc.utf8_length(words[1])) > 0
    has_c = np.asarray(pc.utf8_length(words[2])) > 0
    binds = np.array([w.lower() in _BINDS_NEXT for w in distinct], dtype=bool)
    eastern_first = np.logical_or.reduce([facts[f"east_{language}"] for language in EASTERN])[a] & has_b
    asked = np.zeros(len(distinct), dtype=bool)
    asked[b[eastern_first]] = True
    asked[c[eastern_first & has_c]] = True
    facts.update(_syllabic_facts(distinct, asked))
    one, two, three = matched & ~has_b, matched & has_b & ~has_c, matched & has_c
    ok = facts["ok"]
    plain = one & ok[a] | two & ok[a] & ok[b] | three & ok[a] & ok[b] & ok[c] & ~binds[a] & ~binds[b]
    if not FAST_PAIRS:
        plain &= one
    # the parts as codes into `choices`: 0 none, 1 a, 2 b, 3 c, 4 "a b", 5 "b c", 6 "a b c", 7 the whole name
    choices = [
        pa.nulls(n, pa.string()),
        *words,
        pc.binary_join_element_wise(words[0], words[1], " "),
        pc.binary_join_element_wise(words[1], words[2], " "),
        pc.binary_join_element_wise(words[0], words[1], words[2], " "),
        values,
    ]
    given, family = np.zeros(n, np.int8), np.zeros(n, np.int8)
    kind = np.full(n, "full", dtype=object)
    if name_type in ("surname", "first"):
        (given if name_type == "first" else family)[:] = 7
        kind[:] = name_type
    else:
        surname_only = facts["family"] & ~facts["given"]
        east = np.zeros(n, dtype=bool)
        for language in EASTERN:
            syllabic = facts[f"syllabic_{language}"]
            east |= facts[f"east_{language}"][a] & syllabic[b] & (syllabic[c] | ~three)
        east &= two | three
        full = name_type == "full"
        # one word: a surname unless only known as a given name
        alone_first = one & facts["given"][a] & ~facts["family"][a]
        given[alone_first], family[one & ~alone_first] = 1, 1
        if not full:
            kind[one] = np.where(alone_first[one], "first", "surname")
        # two words, given name first: both surnames (García López), both given names (Anna Maria), or a full name
        two_west = two & ~east
        surnames = two_west & surname_only[a]
        firsts = two_west & ~surnames & facts["given"][a] & facts["given"][b] & ~facts["family"][b]
        given[two_west], family[two_west] = 1, 2
        if not full:
            family[surnames], given[surnames], kind[surnames] = 4, 0, "surname"
            given[firsts], family[firsts], kind[firsts] = 4, 0, "first"
        # three words: all surnames, a given name and two surnames, or two given names and a surname
        three_west = three & ~east
        all_surnames = three_west & surname_only[a] & surname_only[b]
        two_surnames = three_west & ~all_surnames & surname_only[b]
        given[three_west], family[three_west] = 4, 3
        given[two_surnames], family[two_surnames] = 1, 5
        given[all_surnames], family[all_surnames] = (0, 6) if not full else (1, 5)
        if not full:
            kind[all_surnames] = "surname"
        # family name first (Kim Jong-un, Nguyen Van An)
        family[east], given[east] = 1, np.where(three, 5, 2)[east]
    kind[~plain] = None
    given[~plain], family[~plain] = 0, 0
    return PlainParse(
        plain,
        pc.choose(pa.array(given), *choices),
        pc.choose(pa.array(family), *choices),
        pa.array(kind, pa.string()),
    )


def parse_checked(raw: str, **kwargs) -> ParsedName:
    """:func:`parse`, raising :class:`ParseError` for a string that is no name."""
    parsed = parse(raw, **kwargs)
    if parsed.error:
        raise ParseError(parsed.error)
    return parsed
