import random
import string

import pytest

from nameorigin.text import (
    ALPHABET,
    NOISE_CHARS,
    VOCAB_SIZE,
    BadName,
    add_noise,
    decode,
    encode,
    fold,
    fold_checked,
    seed_fold,
)


def test_alphabet_is_the_seeds():
    assert string.ascii_letters + " .,;'" == ALPHABET
    assert len(ALPHABET) == 57 and VOCAB_SIZE == 58


@pytest.mark.parametrize(
    "raw, folded",
    [
        ("Ślusàrski", "Slusarski"),
        ("Шевченко", "Shevchenko"),
        ("O'Néàl", "O'Neal"),
        ("Müller", "Muller"),
        ("  Hinton\n", "Hinton"),
        ("Łukasz", "Lukasz"),
        ("Smith-Jones", "SmithJones"),
    ],
)
def test_fold(raw, folded):
    assert fold(raw) == folded


def test_fold_keeps_the_seeds_rule_on_latin_names():
    for name in ["Ślusàrski", "Nguyễn", "Gonçalves", "Żeleński", "O'Brien", "Abl"]:
        assert fold(name) == seed_fold(name)


@pytest.mark.parametrize("bad", ["", "   ", "123", "-", "!!!"])
def test_a_name_that_folds_to_nothing_is_an_error(bad):
    with pytest.raises(BadName, match="folds to nothing"):
        fold_checked(bad)


def test_a_very_long_name_is_an_error():
    with pytest.raises(BadName, match="characters long"):
        fold_checked("a" * 10_000)
    with pytest.raises(BadName, match="at most 64"):
        fold_checked("a" * 65)


def test_encode_decode_round_trip():
    assert decode(encode("O'Neal")) == "O'Neal"
    assert min(encode(ALPHABET)) == 1 and max(encode(ALPHABET)) == 57


def test_noise_appends_zero_to_level_plus_one_punctuation_marks():
    rng = random.Random(0)
    seen = set()
    for _ in range(2000):
        noisy = add_noise("Abel", 5, rng)
        assert noisy.startswith("Abel") and set(noisy[4:]) <= set(NOISE_CHARS)
        seen.add(len(noisy) - 4)
    assert seen == set(range(0, 7))
    assert add_noise("Abel", 0, rng) == "Abel"


def test_noise_draws_as_the_worksheet_does():
    a, b = random.Random(3), random.Random(3)
    expected = "Abel"
    for _ in range(b.randint(0, 5 + 1)):
        expected += b.choice(NOISE_CHARS)
    assert add_noise("Abel", 5, a) == expected
