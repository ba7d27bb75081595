"""The first-name corpus and names in Han and Hangul read by the readers, on tiny generated sources (never
names-dataset's real data)."""

from __future__ import annotations

import sys
import types

import pytest

from nameorigin import corpus as C
from nameorigin.cli import main
from nameorigin.text import fold

pytest.importorskip("pykakasi")
pytest.importorskip("pypinyin")
pytest.importorskip("korean_romanizer")
pytest.importorskip("name_variants")

RAW = C.CorpusConfig(per_capita=False)  # shares as given
FIRST = C.CorpusConfig(kind="first", per_capita=False)


def record(name, **shares):
    return C.Record(name, shares, {c: i + 1 for i, c in enumerate(shares)})


def rows_of(records, config):
    table, stats = C.build(records, mapping=C.load_map(), config=config)
    return {r["name"]: r for r in table.to_pylist()}, stats


def top(row) -> tuple[str, float]:
    return row["top_language"], round(row["top_share"], 3)


def test_han_surnames_read_by_the_reader_of_their_population():
    rows, stats = rows_of(
        [
            record("佐藤", JP=0.9, TW=0.1),  # Japanese population: Sato; Taiwan's small share left out
            record("王", CN=0.8, US=0.2),  # Chinese population: Wang (the US is mixed)
            record("太郎", JP=0.6, HK=0.4),  # both large enough: read both ways
            record("李", US=1.0),  # neither population: no reading to choose
            record("さとう", JP=1.0),  # kana means Japanese
        ],
        RAW,
    )
    assert top(rows["Sato"]) == ("Japanese", 1.0) and rows["Sato"]["script"] == "Han"
    assert "Zuoteng" not in rows  # 佐藤's Chinese reading: Taiwan's 0.1 is under han_both
    assert top(rows["Wang"]) == ("Chinese", 1.0)
    assert top(rows["Taro"]) == ("Japanese", 1.0) and top(rows["Tailang"]) == ("Chinese", 1.0)
    assert rows["Taro"]["countries"] == "JP:1.000" and rows["Tailang"]["countries"] == "HK:1.000"
    assert stats.han_read == 4 and stats.han_both == 1 and stats.han == 1
    assert stats.han_japanese == 2 and stats.han_chinese == 1


def test_hangul_surnames_in_their_customary_spelling_and_words_left_out():
    rows, stats = rows_of([record("김", KR=1.0), record("남궁", KR=1.0), record("남성", KR=1.0)], RAW)
    assert top(rows["Kim"]) == ("Korean", 1.0) and rows["Kim"]["script"] == "Hangul"
    assert fold("남궁", 2) in rows  # as prediction reads it (scheme 2)
    assert stats.hangul_read == 2 and stats.hangul_not_surname == 1


def test_first_names_read_whole_no_family_name_looked_for():
    rows, stats = rows_of(
        [
            record("민준", KR=1.0),  # a given name: Minjun, not the family name Min + Jun
            record("김민준", KR=1.0),  # three syllables in the first-name field: a full name, left out
            record("文杰", CN=1.0),  # Wenjie, not Wen Jie
            record("Giuseppe", IT=0.97, US=0.03),
        ],
        FIRST,
    )
    assert top(rows["Minjun"]) == ("Korean", 1.0) and "Min Jun" not in rows
    assert "Wenjie" in rows and stats.hangul_not_surname == 1
    assert rows["Giuseppe"]["top_language"] == "Italian"
    surname_rows, _ = rows_of([record("文杰", CN=1.0)], RAW)
    assert "Wen Jie" in surname_rows  # a surname's start is searched for a family name


def test_an_excluded_native_name_is_excluded_in_every_reading(tmp_path):
    path = tmp_path / "exclude.txt"
    path.write_text("민준\n佐藤\n")
    off = C.read_exclude([path])
    assert {"minjun", "min jun", "sato", "zuoteng"} <= off
    rows, stats = C.build(
        [record("민준", KR=1.0), record("佐藤", JP=0.6, CN=0.4)], mapping=C.load_map(), config=FIRST, exclude=off
    )
    assert rows.num_rows == 0 and stats.excluded == 3  # Minjun, Sato and Zuoteng


def test_scheme_1_keeps_the_old_rule():
    rows, stats = rows_of([record("佐藤", JP=1.0), record("김", KR=1.0)], C.CorpusConfig(fold_scheme=1))
    assert list(rows) == ["gim"] and stats.han == 1 and stats.han_read == 0


def test_names_dataset_first_names_loaded_alone_and_gender_ignored(monkeypatch):
    calls = []

    class NameDataset:
        def __init__(self, load_first_names=True, load_last_names=True):
            calls.append((load_first_names, load_last_names))
            self.first_names = {
                "Giuseppe": {"country": {"IT": 0.98, "CH": 0.02}, "gender": {"M": 0.99, "F": 0.01}, "rank": {"IT": 1}}
            }
            self.last_names = None

    monkeypatch.setitem(sys.modules, "names_dataset", types.SimpleNamespace(NameDataset=NameDataset))
    [rec] = list(C.from_names_dataset("first"))
    assert calls == [(True, False)]
    assert rec == C.Record("Giuseppe", {"IT": 0.98, "CH": 0.02}, {"IT": 1})
    with pytest.raises(C.CorpusError, match="--kind 'middle': expected one of surname, first"):
        list(C.from_names_dataset("middle"))


def test_corpus_kind_first_from_a_table(tmp_path, capsys):
    src = tmp_path / "first.csv"
    rows = ["first_name,country,count", "Giuseppe,IT,90", "Giuseppe,US,10", "민준,KR,5", "太郎,JP,6", "太郎,HK,4"]
    rows += [f"Name{chr(97 + i)}{chr(97 + j)},PL,{i + j + 1}" for i in range(20) for j in range(20)]
    src.write_text("\n".join(rows) + "\n")
    out = tmp_path / "first.parquet"
    assert main(["corpus", "--kind", "first", "--source", str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "read by the readers: 1 Han/kana names (0 Japanese reading, 0 Chinese, 1 both), 1 Hangul names" in printed
    assert "Hangul words that are not first names" in printed
    read = C.read(out)
    assert read.kind == "first" and read.fold_scheme == 2 and read.meta["folding"]["scheme"] == 2
    names = set(read.table["name"].to_pylist())
    assert {"Giuseppe", "Minjun", "Taro", "Tailang"} <= names


def test_corpus_kind_unknown_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["corpus", "--kind", "middle", "--out", str(tmp_path / "c.parquet")])
    assert e.value.code == 2 and "invalid choice: 'middle'" in capsys.readouterr().err
    assert not (tmp_path / "c.parquet").exists()


def test_a_corpus_of_before_the_kind_reads_as_surnames_folded_by_scheme_1():
    assert C.Corpus(table=None, meta={"config": {}}).kind == "surname"
    assert C.Corpus(table=None, meta={"config": {}}).fold_scheme == 1


# ------------------------------------------------------------------------------------------------ training

STEMS = ["ka", "lo", "mi", "ra", "te", "su", "bo", "ne", "di", "fa", "gu", "pe"]
SMALL = ["--model", "gru", "--hidden", "8", "--epochs", "2", "--batch-size", "8", "--quiet"]


@pytest.fixture
def first_corpus(tmp_path):
    """First names of four languages, some shared by two (soft labels), and out-of-scope Finnish ones."""
    rows = [(f"{a.capitalize()}{b}o", "IT", 20) for a in STEMS for b in STEMS[:5]]
    rows += [(f"{a.capitalize()}{b}ek", "PL", 20) for a in STEMS for b in STEMS[:5]]
    rows += [(f"{a.capitalize()}{b}iy", "RU", 20) for a in STEMS for b in STEMS[:5]]
    rows += [(f"{a.capitalize()}{b}ez", "ES", 20) for a in STEMS for b in STEMS[:5]]
    rows += [(f"{a.capitalize()}{b}a", c, 10) for a in STEMS[:6] for b in STEMS[:2] for c in ("IT", "ES")]
    rows += [(f"Aino{a}{b}", "FI", 5) for a in STEMS for b in STEMS[:2]]
    src = tmp_path / "first.csv"
    src.write_text("first_name,country,count\n" + "".join(f"{n},{c},{k}\n" for n, c, k in rows), encoding="utf-8")
    out = tmp_path / "first.parquet"
    assert main(["corpus", "--kind", "first", "--source", str(src), "--out", str(out)]) == 0
    return out


def test_train_kind_first_on_its_corpus_alone(tmp_path, first_corpus, monkeypatch, capsys):
    from nameorigin import checkpoint
    from test_corpus import capture_batches

    seen = capture_batches(monkeypatch)
    excluded = "Kakao"
    (tmp_path / "exclude.txt").write_text(excluded + "\n")
    out = tmp_path / "first.safetensors"
    argv = ["train", "--kind", "first", "--corpus", str(first_corpus), "--exclude", str(tmp_path / "exclude.txt")]
    assert main([*argv, "--out", str(out), *SMALL]) == 0
    ck = checkpoint.load(out)
    assert ck.meta["name_kind"] == "first" and ck.meta["training"]["name_kind"] == "first"
    assert ck.meta["folding"]["scheme"] == 2  # folded as its corpus was
    assert ck.labels == ["Italian", "Polish", "Russian", "Spanish"]  # the languages its scored names cover
    real = ck.meta["training"]["corpus"]
    assert real["kind"] == "first" and real["n_train_labelled"] > 0 and real["n_train"] > 0  # soft: the IT/ES names
    corpus = C.read(first_corpus)
    held = {n for n, _ in corpus.scored_pairs("held-out")} | {n for n, _ in corpus.scored_pairs("valid")}
    assert held and not held & set(seen)  # validation and held-out first names never reach a batch
    assert excluded not in seen and any(n.startswith("Lo") for n in seen)
    assert ck.meta["metrics"]["test"]["n"] == len(corpus.scored_pairs("held-out"))


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "name_kind first: a first-name model trains on a first-name corpus"),
        (["--corpus", "SURNAMES"], "a corpus of surnames; a first-name model trains on a first-name corpus"),
        (["--corpus", "SURNAMES", "--worksheet"], "a first-name model trains with the batched trainer"),
    ],
)
def test_train_kind_first_refuses_a_missing_or_surname_corpus(tmp_path, extra, message, capsys):
    from test_corpus import write_source

    surnames = tmp_path / "surnames.parquet"
    assert main(["corpus", "--source", str(write_source(tmp_path)), "--out", str(surnames)]) == 0
    extra = [str(surnames) if a == "SURNAMES" else a for a in extra]
    out = tmp_path / "m.safetensors"
    assert main(["train", "--kind", "first", *extra, "--out", str(out), *SMALL]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_a_surname_model_refuses_a_first_name_corpus(tmp_path, first_corpus, capsys):
    labelled = tmp_path / "l.csv"
    labelled.write_text(
        "name,language\n" + "".join(f"N{a}{b}ov,Russian\nM{a}{b}ski,Polish\n" for a in STEMS for b in STEMS)
    )
    out = tmp_path / "m.safetensors"
    assert main(["train", "--data", str(labelled), "--corpus", str(first_corpus), "--out", str(out), *SMALL]) == 2
    assert "a corpus of first names; a surname model trains on a surname corpus" in capsys.readouterr().err
    assert not out.exists()


def test_bench_fullnames_builds_both_sets_exclude_lists_and_validation_pairs(tmp_path, first_corpus):
    """bench/fullnames.py build as a command (tests never import bench/): Faker's full names of the 18
    languages' locales as they write them, corpus pairs of one language, and the exclude lists."""
    import csv
    import subprocess
    from pathlib import Path

    from test_corpus import write_source

    pytest.importorskip("faker")
    surnames = tmp_path / "surnames.parquet"
    rows = [(f"{a.capitalize()}{b}ini", "IT", 20) for a in STEMS for b in STEMS[:5]]
    rows += [(f"{a.capitalize()}{b}ski", "PL", 20) for a in STEMS for b in STEMS[:5]]
    assert main(["corpus", "--source", str(write_source(tmp_path, rows)), "--out", str(surnames)]) == 0
    script = Path(__file__).resolve().parent.parent / "bench" / "fullnames.py"
    out = tmp_path / "sets"
    argv = [sys.executable, str(script), "build", "--out", str(out), "--per-locale", "3", "--per-language", "4"]
    argv += ["--first-corpus", str(first_corpus), "--surname-corpus", str(surnames)]
    subprocess.run(argv, check=True, capture_output=True, text=True)

    def table(name):
        with open(out / name, encoding="utf-8") as fh:
            return list(csv.DictReader(fh, delimiter="\t"))

    faker = table("faker.tsv")
    assert {r["locale"] for r in faker} >= {"ja_JP", "zh_CN", "zh_TW", "ko_KR", "ru_RU", "en_IE"}
    ko = next(r for r in faker if r["locale"] == "ko_KR")
    assert ko["name"] == ko["last"] + ko["first"] and ko["language"] == "Korean"  # as the locale writes it
    held, valid = table("corpus-pairs.tsv"), table("valid-pairs.tsv")
    first, surname = C.read(first_corpus), C.read(surnames)
    assert {r["language"] for r in held} == {"Italian", "Polish"} and len(held) == 8  # both corpora's languages
    assert all(r["name"] == f"{r['first']} {r['last']}" for r in held)
    held_first = {n for n, _ in first.scored_pairs("held-out")}
    valid_first, valid_last = {n for n, _ in first.scored_pairs("valid")}, {n for n, _ in surname.scored_pairs("valid")}
    assert {r["first"] for r in held} <= held_first
    assert {r["first"] for r in valid} <= valid_first and {r["last"] for r in valid} <= valid_last
    excluded = set((out / "exclude-first.txt").read_text(encoding="utf-8").split("\n"))
    assert ko["first"] in excluded and all(r["first"] in excluded for r in faker)
