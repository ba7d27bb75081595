"""Folding schemes and the readers of Han, kana and Hangul (text.readings, text.fold(scheme=2))."""

import pytest

from nameorigin import text
from nameorigin.text import Reading, fold, folding_info, readings, scheme_of


@pytest.mark.parametrize(
    "raw, folded",
    [
        ("佐藤", "ZuoTeng"),
        ("김민준", "gimminjun"),
        ("محمد", "mhmd"),
        ("Шевченко", "Shevchenko"),
        ("Smith", "Smith"),
    ],
)
def test_scheme_1_is_the_default_and_unchanged(raw, folded):
    assert fold(raw) == fold(raw, 1) == folded


@pytest.mark.parametrize(
    "raw, folded",
    [
        ("さとう", "Sato"),  # kana: Japanese, long vowel shortened
        ("サトウ", "Sato"),
        ("佐藤さん", "Sato San"),
        ("张伟", "Zhang Wei"),  # pure Han: the Chinese reading, family name apart
        ("欧阳娜娜", "Ouyang Nana"),  # a two-character family name
        ("王", "Wang"),
        ("김", "Kim"),
        ("이", "Lee"),
        ("박", "Park"),
        ("최", "Choi"),
        ("정", "Jung"),  # customary spellings
        ("김민준", "Kim Minjun"),  # the given name in Revised Romanization
        ("이서연", "Lee Seoyeon"),
        ("김 민준", "Kim Minjun"),  # a family name is looked for only at the start
        ("محمد", "Mhmd"),  # a script without case: a capital, then small letters
        ("Шевченко", "Shevchenko"),
        ("ШЕВЧЕНКО", "SHEVCHENKO"),  # a cased script keeps its case
        ("Ślusàrski", "Slusarski"),
        ("Satō", "Sato"),
        ("😀", ""),
    ],
)
def test_scheme_2(raw, folded):
    assert fold(raw, 2) == folded


def test_scheme_2_leaves_no_capitals_inside_a_word():
    for raw in ["김민준", "佐藤", "欧阳娜娜", "田中太郎", "محمد علي", "박지성"]:
        for word in fold(raw, 2).split():
            assert word[0].isupper() and (word[1:].islower() or len(word) == 1), (raw, word)


@pytest.mark.parametrize(
    "romaji, short",
    [
        ("satou", "sato"),
        ("tarou", "taro"),
        ("oono", "ono"),
        ("yuuko", "yuko"),
        ("inoue", "inoue"),
        ("itou", "ito"),
    ],
)
def test_long_vowels(romaji, short):
    assert text._shorten_long_vowels(romaji) == short


def test_readings_of_han_give_both_readers():
    r = readings("佐藤")
    assert r[0] == Reading("Sato", "Han", "japanese") and Reading("Zuoteng", "Han", "chinese") in r
    assert next(x.text for x in readings("鈴木")) == "Suzuki"
    assert readings("田中")[0] == Reading("Tanaka", "Han", "japanese")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("さとう", [Reading("Sato", "Kana", "japanese")]),
        ("김민준", [Reading("Kim Minjun", "Hangul", "korean")]),
        ("Hinton", [Reading("Hinton", "Latin", "none")]),
        ("Шевченко", [Reading("Shevchenko", "Other", "transliteration")]),
        ("", []),
        ("😀", []),
        ("123", []),
    ],
)
def test_readings(raw, expected):
    assert readings(raw) == expected


def test_script_of():
    assert [text.script_of(s) for s in ["佐藤", "佐藤さん", "김", "Smith", "Шевченко", "42"]] == [
        "Han",
        "Kana",
        "Hangul",
        "Latin",
        "Other",
        "none",
    ]


def test_folding_info_records_the_scheme_and_the_readers_versions():
    from importlib.metadata import version

    one, two = folding_info(1), folding_info(2)
    assert one["scheme"] == 1 and one["packages"] == {"anyascii": version("anyascii")}
    assert two["packages"]["pykakasi"] == version("pykakasi") and two["alphabet"] == text.ALPHABET
    with pytest.raises(ValueError, match="unknown folding scheme 7"):
        folding_info(7)


def test_scheme_of_a_checkpoint():
    assert scheme_of({}) == text.LEGACY_FOLD_SCHEME == 1  # checkpoints without the record: today's scheme
    assert scheme_of({"folding": folding_info(2)}) == 2
    for bad in [{"folding": {"scheme": 9}}, {"folding": "x"}]:
        with pytest.raises(ValueError, match="unknown folding scheme"):
            scheme_of(bad)


def test_fold_with_an_unknown_scheme_is_an_error():
    with pytest.raises(ValueError, match="unknown folding scheme 3"):
        fold("佐藤", 3)
    assert fold("Smith", 3) == "Smith"  # names already in the alphabet fold alike in every scheme


def test_fold_checked_takes_the_scheme():
    assert text.fold_checked("김", scheme=2) == "Kim"
    with pytest.raises(text.BadName, match="folds to nothing"):
        text.fold_checked("😀", scheme=2)


def test_a_missing_reader_names_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pykakasi", None)  # what an import of a package not installed does
    text._kakasi.cache_clear()
    try:
        with pytest.raises(text.ReaderMissing, match="pip install pykakasi"):
            text.read_japanese("佐藤")
    finally:
        text._kakasi.cache_clear()


def test_scheme_2_folds_any_string_into_the_alphabet():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=40) | st.text(alphabet="佐藤김민준さとうあ欧阳 ·-ー々", max_size=12))
    def check(raw):
        folded = fold(raw, 2)
        assert all(c in text.ALPHABET for c in folded) and folded == folded.strip()
        for r in readings(raw):
            assert r.text and all(c in text.ALPHABET for c in r.text)

    check()
