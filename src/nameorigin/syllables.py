"""Whether a name in Latin letters can be a romanized Korean or Chinese name: the corpus's syllable rule.

names-dataset's Korean and Chinese populations write many strings in Latin letters that are no Korean or
Chinese name: names of Indonesian workers in Korea, Taiwan and Hong Kong (*Agus*, *Indah*, *Setiani*), shop and
page names (*Esmartsafe*, *Abrasives*, *Gel Polish*). A Korean or Chinese name in Latin letters is made of the
syllables of its romanizations, and each of its words (a family name, a given name written as one word or as
two) holds one or two of them, spelt in one system. :func:`fits` says whether a name is so made; the corpus builder
(:func:`.corpus.build`) takes a Korean or Chinese population's share away from a name that does not fit its
language (see ``docs/data-card.md``).

- **Korean**: a syllable is an initial consonant, a glide, a vowel and a final consonant (each optional but the
  vowel) from the letters of the Revised Romanization, McCune-Reischauer without its marks, and the customary
  spellings of family names (*Lee*, *Park*, *Choi*, *Rhee*, *Ahn*, *Yoon*). No *f*, *q*, *v*, *x* or *z*, and no
  cluster such as *br*, *dr*, *sl* or *st*.
- **Chinese**: a syllable of Hanyu Pinyin or Wade-Giles (both as ``pypinyin`` spells every character it knows,
  marks and apostrophes left out), of Taiwan's Tongyong spellings (*Jhang*, *Syu*, *Liou*) or of Hong Kong's
  Cantonese romanization (*Cheung*, *Kwok*, *Tsz*).
"""

from __future__ import annotations

import functools
import re

#: Languages with a syllable rule; a population of another language is never touched.
LANGUAGES = ("Chinese", "Korean")

#: Most syllables one word of a name holds: a family name has one (a few compound ones two: *Namgung*,
#: *Ouyang*, *Szeto*), a given name two, written as one word (*Minjun*, *Zhiwei*) or two (*Min Jun*, *Ka Ho*).
MAX_SYLLABLES = 2

# Korean: (initial) (glide) vowel (final); a final consonant may stand before a vowel-initial syllable (Baekeuk).
_KO_INITIAL = r"(?:kk|gg|tt|dd|pp|bb|ss|jj|ch|sh|rh|g|k|n|d|t|r|l|m|b|p|s|j|h)"
_KO_GLIDE = r"(?:y|w)"
_KO_VOWEL = r"(?:eui|yeo|ae|ai|ao|eo|eu|ei|ee|ea|eh|ah|oh|uh|oe|oi|oo|ou|ue|ui|a|e|i|o|u)"
_KO_FINAL = r"(?:ng|kk|ck|rk|k|g|n|t|d|l|r|m|p|b)"  # rk: Park; ck: Kwack, Junhyuck
_KO_SYLLABLE = rf"{_KO_INITIAL}?{_KO_GLIDE}?{_KO_VOWEL}{_KO_FINAL}?"

# Hong Kong's Cantonese romanization (the government's spellings of names, which write no b, d, g, j or z:
# Pang, Tam, Kwok, Cheung, Tse): initial + final, or a syllabic m / ng (Ng); sz / sze / tsz (Szeto); Wah;
# Taiwan's tz (Tzeng).
_YUE_INITIAL = r"(?:ng|kw|ch|ts|tz|sh|p|m|f|t|n|l|k|h|w|s|y)"
_YUE_FINAL = (
    r"(?:aai|aau|aam|aan|aang|aap|aat|aak|aa|ai|au|am|ang|an|ap|at|ak|a|"
    r"eung|euk|eui|eun|eut|eong|eok|eoi|oei|oe|ei|eng|ek|e|ee|"
    r"oon|oong|ook|oot|oo|oi|ou|ong|on|ot|ok|oh|ow|oy|o|"
    r"uen|uet|ue|ui|ung|un|ut|uk|u|iu|im|ing|in|ip|it|ik|i|yun|yut|yu|ay|aw)"
)
_YUE_SYLLABLE = rf"(?:{_YUE_INITIAL}?{_YUE_FINAL}|(?:ts|s)ze?|wah|ng|m)"


def _word_rule(syllable: str) -> re.Pattern:
    return re.compile(rf"(?:{syllable}){{1,{MAX_SYLLABLES}}}")


@functools.cache
def cantonese() -> re.Pattern:
    """One word of Hong Kong's Cantonese romanization: one or two of its syllables (``Ka``, ``Ho``, ``Kwok``,
    ``Tsz``); the name parser's rule for Chinese given names written so."""
    return _word_rule(_YUE_SYLLABLE)


@functools.cache
def _korean() -> re.Pattern:
    return _word_rule(_KO_SYLLABLE)


def _tongyong(syllable: str) -> set[str]:
    """Taiwan's Tongyong spellings of a pinyin syllable (the common ones: zh -> jh, x -> s/sy, q -> c, iu -> iou)."""
    out = set()
    if syllable.startswith("zh"):
        out.add("jh" + syllable[2:])
    if syllable.startswith("x"):
        rest = syllable[1:]
        out.add("s" + rest)
        if rest.startswith("u"):
            out.add("sy" + rest)  # xu -> syu
    if syllable.startswith("q"):
        out.add("c" + syllable[1:])
    if syllable.endswith("iu"):
        out.add(syllable[:-2] + "iou")
    return out


@functools.cache
def _chinese() -> re.Pattern:
    """The Chinese word rule: Pinyin, Wade-Giles and Tongyong syllables (from ``pypinyin``) or Cantonese ones."""
    from . import text

    pypinyin = text.require_reader("pypinyin")
    from pypinyin.pinyin_dict import pinyin_dict

    chars = "".join(map(chr, pinyin_dict))
    syllables: set[str] = set()
    for style in (pypinyin.Style.NORMAL, pypinyin.Style.WADEGILES):
        for readings in pypinyin.pinyin(chars, style=style, heteronym=True, errors="ignore"):
            for s in readings:
                s = re.sub(r"[^a-zv]", "", s.lower().replace("ü", "v"))
                if s:
                    syllables.update({s, s.replace("v", "u"), s.replace("v", "yu")})
    syllables |= {t for s in list(syllables) for t in _tongyong(s)}
    syllables.discard("")
    alternation = "|".join(sorted(syllables, key=lambda s: (-len(s), s)))
    # a word is spelt in one system: Mandarin (Pinyin, Wade-Giles, Tongyong) or Cantonese, not half of each
    return re.compile(rf"{_word_rule(alternation).pattern}|{cantonese().pattern}")


def fits(name: str, language: str) -> bool:
    """Whether ``name`` (Latin letters; case and apostrophes aside, words split at spaces, hyphens and dots) can
    be a romanized name of ``language`` (one of :data:`LANGUAGES`): every word one or two of its syllables. A
    name with letters outside a-z does not fit. Chinese needs ``pypinyin`` (:class:`.text.ReaderMissing` when
    missing)."""
    rule = {"Korean": _korean, "Chinese": _chinese}[language]()
    words = re.split(r"[\s\-.]+", re.sub(r"['’`]", "", name.lower().strip()))
    words = [w for w in words if w]
    return bool(words) and all(rule.fullmatch(w) for w in words)  # the rule's syllables are a-z only
