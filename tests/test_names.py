"""The full-name parser: a table of cases, the kinds of name, and bad input."""

import json

import pytest

from nameorigin import names
from nameorigin.names import Lexicon, ParseError, parse, parse_checked

#: (raw, given, family, order, name_type); lexicon: the small one below, so that the table does not hang on
#: Faker's lists
LEXICON = Lexicon(
    given=frozenset(
        {
            "giuseppe",
            "maria",
            "jose",
            "juan",
            "siobhan",
            "wojciech",
            "kim",
            "ana",
            "martin",
            "luther",
            "john",
            "lee",
            "harvey",
        }
    ),
    family=frozenset({"garcia", "lopez", "verdi", "smith", "kim", "lee", "oswald", "king"}),
)
CASES = [
    ("Giuseppe Verdi", ["Giuseppe"], ["Verdi"], "given-family", "full"),
    ("Verdi, Giuseppe", ["Giuseppe"], ["Verdi"], "family-given", "full"),
    ("Ludwig van Beethoven", ["Ludwig"], ["van Beethoven"], "given-family", "full"),
    ("Vincent van der Berg", ["Vincent"], ["van der Berg"], "given-family", "full"),
    ("van der Berg", [], ["van der Berg"], "given-family", "surname"),
    ("de la Cruz", [], ["de la Cruz"], "given-family", "surname"),
    ("Luiz da Silva", ["Luiz"], ["da Silva"], "given-family", "full"),
    ("João dos Santos", ["João"], ["dos Santos"], "given-family", "full"),
    ("Seán O'Brien", ["Seán"], ["O'Brien"], "given-family", "full"),
    ("Ian MacDonald", ["Ian"], ["MacDonald"], "given-family", "full"),
    ("García López", [], ["García", "López"], "given-family", "surname"),
    ("María José García López", ["María", "José"], ["García", "López"], "given-family", "full"),
    ("Juan García y López", ["Juan"], ["García", "López"], "given-family", "full"),
    ("María José", ["María", "José"], [], "given-family", "first"),
    ("Giuseppe", ["Giuseppe"], [], "given-family", "first"),
    ("Hinton", [], ["Hinton"], "given-family", "surname"),
    # one word that nameparser reads as a title or a suffix is a surname (Dr. alone stays a title: an error)
    ("Hon", [], ["Hon"], "given-family", "surname"),
    ("Baron", [], ["Baron"], "given-family", "surname"),
    ("English", [], ["English"], "given-family", "surname"),
    ("Prince", [], ["Prince"], "given-family", "surname"),
    ("Mohammed bin Salman al-Saud", ["Mohammed"], ["bin Salman", "al-Saud"], "given-family", "full"),
    ("Abd al-Rahman ibn Khaldun", ["Abd al-Rahman"], ["ibn Khaldun"], "given-family", "full"),
    ("Abu Bakr al-Baghdadi", ["Abu Bakr"], ["al-Baghdadi"], "given-family", "full"),
    ("Dr. Martin Luther King Jr.", ["Martin", "Luther"], ["King"], "given-family", "full"),
    ("John Smith III", ["John"], ["Smith"], "given-family", "full"),
    ("J. R. R. Tolkien", [], ["Tolkien"], "given-family", "full"),
    ("John F. Kennedy", ["John"], ["Kennedy"], "given-family", "full"),
    ("Tomás Ó Súilleabháin", ["Tomás"], ["Ó Súilleabháin"], "given-family", "full"),
    ("Mairéad Nic Giolla", ["Mairéad"], ["Nic Giolla"], "given-family", "full"),
    ("Rhys ap Gruffydd", ["Rhys"], ["ap Gruffydd"], "given-family", "full"),
    ("Gerrit ten Hoopen", ["Gerrit"], ["ten Hoopen"], "given-family", "full"),
    ("Ben Smith", ["Ben"], ["Smith"], "given-family", "full"),
    ("Lee Harvey Oswald", ["Lee", "Harvey"], ["Oswald"], "given-family", "full"),
    # family name first, decided from the name
    ("Kim Jong-un", ["Jong-un"], ["Kim"], "family-given", "full"),
    ("Park Ji-sung", ["Ji-sung"], ["Park"], "family-given", "full"),
    ("Wang Xiaoming", ["Xiaoming"], ["Wang"], "family-given", "full"),
    ("Nguyen Thi Minh Khai", ["Thi", "Minh", "Khai"], ["Nguyen"], "family-given", "full"),
    ("Kim Basinger", ["Kim"], ["Basinger"], "given-family", "full"),
    ("Kim Novak", ["Kim"], ["Novak"], "given-family", "full"),
    ("Nguyen Van An", ["Van", "An"], ["Nguyen"], "family-given", "full"),  # Văn: a Vietnamese middle name
    ("Wong Ka Ho", ["Ka", "Ho"], ["Wong"], "family-given", "full"),  # Hong Kong's Cantonese spelling
    ("Chan Tsz-wai", ["Tsz-wai"], ["Chan"], "family-given", "full"),
    # a Western particle, or syllables of two systems, keep the Western order (a new-user trial's names)
    ("Mai de Jong", ["Mai"], ["de Jong"], "given-family", "full"),
    ("Kim De Boer", ["Kim"], ["De Boer"], "given-family", "full"),
    ("Sam van de Water", ["Sam"], ["van de Water"], "given-family", "full"),
    ("Sam Water", ["Sam"], ["Water"], "given-family", "full"),  # Korean wat + Chinese er: no one system's
    # names in their own script
    ("김민준", ["민준"], ["김"], "family-given", "full"),
    ("张伟", ["伟"], ["张"], "family-given", "full"),
    ("李娜", ["娜"], ["李"], "family-given", "full"),
    ("欧阳娜娜", ["娜娜"], ["欧阳"], "family-given", "full"),
    ("佐藤", [], ["佐藤"], "family-given", "surname"),
    ("田中太郎", ["太郎"], ["田中"], "family-given", "full"),
    ("佐藤さくら", ["さくら"], ["佐藤"], "family-given", "full"),
    ("佐藤 太郎", ["太郎"], ["佐藤"], "family-given", "full"),
    ("김", [], ["김"], "family-given", "surname"),
]


@pytest.mark.parametrize("raw, given, family, order, name_type", CASES, ids=[c[0] for c in CASES])
def test_parse_table(raw, given, family, order, name_type):
    p = parse(raw, lexicon=LEXICON)
    assert (list(p.given), list(p.family), p.order, p.name_type) == (given, family, order, name_type), p.why
    assert p.error is None and p.why


def test_titles_suffixes_and_initials_are_kept_apart():
    p = parse("Dr. Martin Luther King Jr.", lexicon=LEXICON)
    assert p.title == ("Dr.",) and p.suffix == ("Jr.",)
    assert parse("J. R. R. Tolkien", lexicon=LEXICON).initials == ("J.", "R.", "R.")
    assert parse("Smith, J.", lexicon=LEXICON).initials == ("J.",)


def test_the_kind_comes_from_the_parse_not_the_token_count():
    two_tokens = {
        raw: parse(raw, lexicon=LEXICON).name_type for raw in ["García López", "María José", "Giuseppe Verdi"]
    }
    assert two_tokens == {"García López": "surname", "María José": "first", "Giuseppe Verdi": "full"}
    one_token = {raw: parse(raw, lexicon=LEXICON).name_type for raw in ["김민준", "Giuseppe", "Hinton"]}
    assert one_token == {"김민준": "full", "Giuseppe": "first", "Hinton": "surname"}


def test_without_a_lexicon_the_structure_still_decides():
    empty = Lexicon()
    assert parse("van der Berg", lexicon=empty).name_type == "surname"
    assert parse("Giuseppe Verdi", lexicon=empty).name_type == "full"
    assert parse("Giuseppe", lexicon=empty).name_type == "surname"  # nothing says it is a first name


def test_asked_name_types():
    assert parse("García López", name_type="surname").family == ("García López",)
    assert parse("Jean Paul", name_type="first").given == ("Jean Paul",)
    full = parse("Hinton Smith", name_type="full", lexicon=Lexicon(family=frozenset({"hinton", "smith"})))
    assert full.name_type == "full" and full.given == ("Hinton",) and full.family == ("Smith",)
    with pytest.raises(ValueError, match="unknown name type 'nick'"):
        parse("Hinton", name_type="nick")


@pytest.mark.parametrize(
    "bad, message",
    [
        ("", "no letters"),
        ("   ", "no letters"),
        (",", "no letters"),
        ("123 456", "no letters"),
        ("Dr.", "no part that can be read"),
        (" ".join(["Ab"] * 200), "200 tokens"),
    ],
)
def test_bad_input_is_an_error_result_never_a_crash(bad, message):
    p = parse(bad, lexicon=LEXICON)
    assert p.error and message in p.error and not p.given and not p.family
    with pytest.raises(ParseError, match=message):
        parse_checked(bad, lexicon=LEXICON)


def test_not_a_string_is_an_error_result():
    assert parse(None).error == "not a string"


def test_the_library_defaults_of_nameparser_are_left_alone():
    from nameparser.config import CONSTANTS

    before = set(CONSTANTS.prefixes)
    parse("Abu Bakr al-Baghdadi")
    assert set(CONSTANTS.prefixes) == before


def test_to_dict_is_json_ready():
    import json

    d = parse("Verdi, Giuseppe", lexicon=LEXICON).to_dict()
    assert json.loads(json.dumps(d))["family"] == ["Verdi"] and d["order"] == "family-given"


def test_faker_lexicon_knows_first_names():
    pytest.importorskip("faker")
    lexicon = Lexicon.from_faker(("it_IT", "es_ES"))
    assert lexicon.is_given("Giuseppe") and lexicon.is_family("García") and not lexicon.is_given("García")
    assert names.default_lexicon().is_given("Wojciech")


def test_derived_tables_are_stored_once_built_and_rebuilt_when_unreadable(tmp_path, monkeypatch):
    """The syllables and Faker's name lists are built from large modules once, then read back from the cache
    folder; a damaged file is built again, and a folder that cannot be written still gives the table."""
    monkeypatch.setenv("NAMEORIGIN_CACHE", str(tmp_path / "cache"))
    built = []

    def build():
        built.append(1)
        return {"kim", "lee"}

    assert names._stored("t", ("pyarrow",), build) == {"kim", "lee"} and len(built) == 1
    (stored,) = (tmp_path / "cache" / "tables").glob("t-*.json")
    assert json.loads(stored.read_text()) == ["kim", "lee"]
    assert names._stored("t", ("pyarrow",), build) == {"kim", "lee"} and len(built) == 1  # read back
    stored.write_text("{not json")
    assert names._stored("t", ("pyarrow",), build) == {"kim", "lee"} and len(built) == 2  # rebuilt
    assert json.loads(stored.read_text()) == ["kim", "lee"]
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("NAMEORIGIN_CACHE", str(blocked))  # its tables/ folder cannot be made
    assert names._stored("t", ("pyarrow",), build) == {"kim", "lee"} and len(built) == 3
    pytest.importorskip("faker")
    monkeypatch.setenv("NAMEORIGIN_CACHE", str(tmp_path / "cache2"))
    given, family = names._faker_names(Lexicon.FAKER_LOCALES)
    for _ in range(2):  # built and stored, then read back: the same lists either way
        lexicon = Lexicon.from_faker()
        assert lexicon.given == given and lexicon.family == family
    assert len(list((tmp_path / "cache2" / "tables").glob("faker-*.json"))) == 2


def test_cli_parse_plain_and_json(capsys):
    from nameorigin.cli import main

    assert main(["parse", "Verdi, Giuseppe", "김민준"]) == 0
    out = capsys.readouterr().out
    assert "Verdi, Giuseppe\n  full, family-given: given: Giuseppe; family: Verdi" in out
    assert "given: 민준; family: 김" in out
    assert main(["parse", "--json", "van der Berg", "Kim Jong-un"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["family"] == ["van der Berg"] and rows[0]["name_type"] == "surname"
    assert rows[1]["order"] == "family-given" and rows[1]["given"] == ["Jong-un"]


def test_cli_parse_bad_names_exit_2_and_the_rest_are_shown(capsys):
    from nameorigin.cli import main

    assert main(["parse", ",", "Hinton", " ".join(["Ab"] * 200)]) == 2
    captured = capsys.readouterr()
    assert "Hinton\n  surname" in captured.out
    assert "name ',' has no letters" in captured.err and "200 tokens" in captured.err


def test_cli_parse_unknown_name_type_exits_2(capsys):
    from nameorigin.cli import main

    with pytest.raises(SystemExit) as e:
        main(["parse", "--name-type", "nick", "Hinton"])
    assert e.value.code == 2 and "invalid choice: 'nick'" in capsys.readouterr().err


def test_any_string_parses_or_is_an_error_result():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(
        st.text(max_size=80)
        | st.lists(
            st.sampled_from(
                ["van", "de", "Dr.", ",", "y", "Jr.", "J.", "Kim", "김", "佐藤", "al-", "bin", "O'", "III", "-", "Abu"]
            ),
            max_size=15,
        ).map(" ".join)
    )
    def check(raw):
        for name_type in names.NAME_TYPES:
            p = parse(raw, name_type=name_type, lexicon=LEXICON)
            assert p.error or p.given or p.family or p.initials
            assert p.name_type in ("surname", "first", "full")

    check()


def test_only_what_nameparser_reads_as_a_roman_numeral_leaves_the_whole_array_path():
    """A word of roman letters is a plain name unless nameparser's own pattern (I to X) makes it a suffix: `Li`,
    `Lim`, `Mill` and `Xi` take the fast path; `Vi`, `III` and `IX` go through nameparser."""
    from nameorigin import names

    assert all(names._plain(w) for w in ("Li", "Lim", "Mill", "Xi", "Mimi"))
    assert not any(names._plain(w) for w in ("Vi", "III", "IX", "iv", "X"))
