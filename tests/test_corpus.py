"""The corpus of real surnames, on tiny generated sources (never names-dataset's real data)."""

from __future__ import annotations

import sys
from dataclasses import replace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from nameorigin import corpus as C
from nameorigin import data, syllables, text
from nameorigin.cli import main
from nameorigin.text import decode, fold
from nameorigin.training import CorpusPart, TrainConfig, fit, resolve_settings, soft_loss

RAW = C.CorpusConfig(per_capita=False)  # shares as given: the figures below are easy to check by hand


def record(name, **shares):
    return C.Record(name, shares, {c: i + 1 for i, c in enumerate(shares)})


def letters(i: int) -> str:
    """A distinct letter suffix for each i (digits would fold away)."""
    return chr(97 + i % 26) + chr(97 + i // 26 % 26) + chr(97 + i // 676)


def by_name(table: pa.Table) -> dict[str, dict]:
    return {r["name"]: r for r in table.to_pylist()}


def soft_of(row) -> dict[str, float]:
    return {lang: round(s, 4) for lang, s in zip(C.LANGUAGES, row["soft"], strict=False) if s > 1e-6}


# ------------------------------------------------------------------------------------------------ the map


def test_shipped_map_covers_every_country_and_its_examples():
    m = C.load_map()
    assert len(m) == 249 and all(abs(sum(w.values()) - 1) < 1e-9 for w in m.values())
    assert m["RU"] == {"Russian": 1.0} and m["PL"] == {"Polish": 1.0}
    assert m["BR"] == m["PT"] == {"Portuguese": 1.0} and m["EG"] == m["SA"] == {"Arabic": 1.0}
    assert m["US"] == m["CA"] == m["AU"] == {"mixed": 1.0}
    assert m["GB"] == {"English": 1.0} and m["IE"] == {"Irish": 1.0}
    assert m["FI"] == m["HU"] == m["TR"] == m["NG"] == m["IN"] == m["ID"] == {"out": 1.0}


def test_map_file_overrides_rows_and_splits_a_country(tmp_path):
    path = tmp_path / "map.tsv"
    path.write_text("# mine\ncountry\ttarget\tweight\nBE\tDutch\t0.6\nBE\tFrench\t0.4\nus\tEnglish\n")
    m = C.load_map(path)
    assert m["BE"] == {"Dutch": 0.6, "French": 0.4} and m["US"] == {"English": 1.0} and m["RU"] == {"Russian": 1.0}


@pytest.mark.parametrize(
    "text, message",
    [
        ("XX\tRussian\n", "unknown country 'XX'"),
        ("RU\tKlingon\n", "unknown language 'Klingon'"),
        ("RU\tRussian\t1.5\n", "is not a share"),
        ("RU\tRussian\tlots\n", "is not a share"),
        ("BE\tDutch\t0.5\nBE\tFrench\t0.3\n", "sum to 0.8, not 1"),
        ("RU\n", "expected COUNTRY<TAB>TARGET"),
        ("# only a comment\n", "no rows"),
    ],
)
def test_bad_map_names_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "map.tsv"
    path.write_text(text)
    with pytest.raises(C.CorpusError, match=message) as e:
        C.load_map(path)
    assert str(path) in str(e.value)


# ------------------------------------------------------------------------------------------------ labels


def test_soft_labels_scope_and_mixed_shares():
    table, stats = C.build(
        [
            record("Kowalski", PL=0.6, RU=0.2, US=0.2),
            record("Virtanen", FI=0.9, IT=0.1),
            record("Nguyen", US=0.8, FR=0.2),  # mostly in mixed countries: left out
            record("Onlyus", US=1.0),
        ],
        mapping=C.load_map(),
        config=RAW,
    )
    rows = by_name(table)
    k = rows["Kowalski"]
    assert soft_of(k) == {"Polish": 0.75, "Russian": 0.25}
    assert k["scope"] == "in" and k["top_language"] == "Polish"
    assert k["mixed"] == pytest.approx(0.2) and k["in_scope"] == pytest.approx(0.8) and k["out_of_scope"] == 0
    assert k["top_share"] == pytest.approx(0.75) and k["countries"].startswith("PL:0.600,")
    v = rows["Virtanen"]
    assert v["scope"] == "out" and v["country"] == "FI" and v["out_of_scope"] == pytest.approx(0.9)
    assert "Nguyen" not in rows and "Onlyus" not in rows
    assert (stats.mostly_mixed, stats.only_mixed, stats.in_scope, stats.out_of_scope) == (1, 1, 1, 1)


def test_per_capita_weighs_a_small_countrys_share_up():
    # KR lists one name, US lists five: Kim's 0.1 in KR weighs 5x its 0.5 in the US, per name listed
    records = [record("Kim", US=0.5, KR=0.1, GB=0.4)] + [record(f"Us{i}", US=1.0, GB=0.0001) for i in range(4)]
    raw = by_name(C.build(records, mapping=C.load_map(), config=RAW)[0])
    weighed = by_name(C.build(records, mapping=C.load_map())[0])
    assert raw["Kim"]["top_language"] == "English"
    assert weighed["Kim"]["top_language"] == "Korean"


def test_the_iran_copy_of_czech_names_goes_back_to_czech():
    records = [record("Novák", CZ=0.47, IR=0.49, AT=0.04), record("Ahmadi", IR=0.9, DE=0.1)]
    rows, stats = C.build(records, mapping=C.load_map(), config=RAW)
    rows = by_name(rows)
    assert soft_of(rows["Novak"]) == {"Czech": 0.96, "German": 0.04} and stats.mirrored == 1
    assert rows["Ahmadi"]["scope"] == "out" and rows["Ahmadi"]["country"] == "IR"
    naive = by_name(
        C.build(records, mapping=C.load_map(), config=C.CorpusConfig(per_capita=False, mirror_fix=False))[0]
    )
    assert naive["Novak"]["scope"] == "in" and naive["Novak"]["top_share"] < 0.5  # thin: never scored


@pytest.mark.parametrize(
    "name, language, fits",
    [
        *[(n, "Korean", True) for n in ("Kim", "Lee", "Park", "Choi", "Rhee", "Ahn", "Namgung", "Minjun")],
        *[(n, "Korean", True) for n in ("Dong Hyun", "Seong-hoon", "Baekeuk", "Jeahwan", "Yunbyoung", "Kwack")],
        *[(n, "Korean", False) for n in ("Agus", "Andrian", "Esmartsafe", "Klinginsmith", "Telupere", "Pqrk", "Rla")],
        *[(n, "Korean", False) for n in ("Zany Zanu", "Kimminjunho", "Smith", "Müller")],
        *[(n, "Chinese", True) for n in ("Wang", "Zhang", "Zhiqiang", "Hsieh", "Ch'en", "Jhang", "Syu", "Liou")],
        *[
            (n, "Chinese", True)
            for n in ("Cheung", "Kwok", "Ng", "Tsz", "Szeto", "Ka Ho", "Lv", "Ouyang", "Wah", "Tzeng")
        ],
        *[
            (n, "Chinese", False)
            for n in ("Indah", "Setiani", "Abrasives", "Gel Polish", "Xyooj", "Wangzhiqiang", "Dewi", "Putri")
        ],
    ],
)
def test_syllable_rule(name, language, fits):
    pytest.importorskip("pypinyin")
    assert syllables.fits(name, language) is fits


def test_a_latin_name_without_korean_or_chinese_syllables_loses_those_shares():
    pytest.importorskip("pypinyin")
    records = [
        record("Park", KR=1.0),
        record("Agus", KR=0.3, ID=0.7),  # an Indonesian name of workers in Korea: out of scope (Indonesia)
        record("Esmartsafe", KR=1.0),  # a shop: nothing left
        record("Abrasives", CN=0.5, TW=0.2, DE=0.3),  # German once China and Taiwan are gone
        record("Wong", HK=0.8, GB=0.2),
        record("김", KR=1.0),  # read by the Korean reader: the rule is for Latin letters only
    ]
    rows, stats = C.build(records, mapping=C.load_map(), config=RAW)
    rows = by_name(rows)
    assert rows["Park"]["top_language"] == "Korean" and rows["Wong"]["top_language"] == "Chinese"
    assert rows["Agus"]["scope"] == "out" and rows["Agus"]["country"] == "ID"
    assert soft_of(rows["Abrasives"]) == {"German": 1.0} and rows["Abrasives"]["in_scope"] == pytest.approx(1.0)
    assert "Esmartsafe" not in rows and rows["Kim"]["script"] == "Hangul"
    assert stats.syllable_cut == {"Korean": 2, "Chinese": 1} and stats.syllable_gone == 1
    off = by_name(C.build(records, mapping=C.load_map(), config=replace(RAW, syllable_rule=False))[0])
    assert off["Agus"]["top_language"] == "Korean" and off["Esmartsafe"]["top_language"] == "Korean"


def test_the_syllable_rule_takes_only_a_countrys_share_of_the_language(tmp_path):
    path = tmp_path / "map.tsv"
    path.write_text("KR\tKorean\t0.5\nKR\tout\t0.5\n")
    rows, _ = C.build([record("Agus", KR=1.0)], mapping=C.load_map(path), config=RAW)
    (row,) = rows.to_pylist()
    assert row["scope"] == "out" and row["out_of_scope"] == pytest.approx(1.0) and row["in_scope"] == 0


def test_the_chinese_syllable_rule_without_pypinyin_names_it(monkeypatch):
    monkeypatch.setattr(syllables, "_chinese", lambda: text.require_reader("no_such_reader_module"))
    with pytest.raises(C.CorpusError, match=r"'Wong'.*pypinyin"):
        C.build([record("Wong", HK=1.0)], mapping=C.load_map(), config=RAW)
    # a source with no Chinese population never needs it
    assert C.build([record("Novak", CZ=1.0)], mapping=C.load_map(), config=RAW)[0].num_rows == 1


# ------------------------------------------------------------------------------------------------ scripts


def test_scheme_1_folds_as_prediction_folds_them_and_keeps_han_out():
    records = [
        record("Шевченко", RU=1.0),
        record("Παπαδόπουλος", GR=1.0),
        record("김", KR=1.0),
        record("남궁", KR=1.0),
        record("남성", KR=1.0),
        record("佐藤", JP=1.0),
        record("محمد", EG=1.0),
        record("MCDONALD", GB=1.0),
        record("Novák", CZ=1.0),
        record("Novak", CZ=0.5, PL=0.5),
    ]
    table, stats = C.build(records, mapping=C.load_map(), config=replace(RAW, fold_scheme=1))
    rows = by_name(table)
    for raw in ("Шевченко", "Παπαδόπουλος", "김", "남궁", "محمد"):
        assert fold(raw) in rows, raw  # exactly prediction's folding, its capitals included
    assert rows[fold("Шевченко")]["script"] == "Cyrillic" and rows[fold("김")]["script"] == "Hangul"
    assert rows[fold("محمد")]["top_language"] == "Arabic"
    assert "Mcdonald" in rows and "MCDONALD" not in rows  # the tutorial's capitals, not the source's
    assert stats.han == 1 and stats.hangul_not_surname == 1 and not any("ato" in n.lower() for n in rows)
    assert stats.merged == 1 and list(rows).count("Novak") == 1  # Novák and Novak fold to one name


def test_case_form():
    assert C.case_form("DE LA CRUZ", "Latin") == "De La Cruz"
    assert C.case_form("GimMinJun", "Hangul") == "GimMinJun"
    assert C.script_of("佐藤さん") == "Han" and C.script_of("O'Brien") == "Latin"


# ------------------------------------------------------------------------------------------------ cap, split


def test_per_language_cap_keeps_the_most_frequent():
    records = [C.Record(f"Ivan{c}ov", {"RU": 1.0}, {"RU": rank}) for rank, c in enumerate("abcde", 1)]
    records += [C.Record(f"Virta{c}", {"FI": 1.0}, {"FI": rank}) for rank, c in enumerate("abc", 1)]
    table, stats = C.build(records, mapping=C.load_map(), config=C.CorpusConfig(per_language=2))
    assert sorted(table["name"].to_pylist()) == ["Ivanaov", "Ivanbov", "Virtaa", "Virtab"]
    assert stats.capped == 4 and stats.by_language_before["Russian"] == 5
    with pytest.raises(C.CorpusError, match="--per-language 0"):
        C.build(records, mapping=C.load_map(), config=C.CorpusConfig(per_language=0))


def test_split_by_name_is_deterministic_and_held_out_scored_above_the_label_share():
    config = C.CorpusConfig()
    sides = [C.split_of(f"name{i}", config) for i in range(4000)]
    assert sides == [C.split_of(f"name{i}", config) for i in range(4000)]
    assert 0.08 < sides.count("held-out") / 4000 < 0.12 and 0.08 < sides.count("valid") / 4000 < 0.12
    records = [record(f"Sure{letters(i)}", RU=1.0) for i in range(300)] + [
        record(f"Torn{letters(i)}", RU=0.6, PL=0.4) for i in range(300)
    ]
    table, stats = C.build(records, mapping=C.load_map(), config=RAW)
    held = [r for r in table.to_pylist() if r["split"] == "held-out"]
    assert len(table) == 600 and held and all((r["label"] == "Russian") == r["name"].startswith("Sure") for r in held)
    assert stats.held_out == len(held) == stats.held_out_labelled + stats.held_out_unlabelled
    assert all(r["label"] is None for r in table.to_pylist() if r["split"] != "held-out")


# ------------------------------------------------------------------------------------------------ files


def write_source(tmp_path, rows=None):
    rows = rows or [
        ("Kowalski", "PL", 90),
        ("Ivanov", "RU", 50),
        ("Smirnov", "RU", 70),
        ("Virtanen", "FI", 40),
        ("Müller", "DE", 80),
        ("Muller", "FR", 5),
        ("Esmartsafe", "KR", 3),  # no Korean name: the syllable rule leaves it out
    ] + [(f"Nowak{letters(i)}", "PL", 10 + i) for i in range(200)]
    path = tmp_path / "census.csv"
    path.write_text("name,country,count\n" + "".join(f"{n},{c},{k}\n" for n, c, k in rows), encoding="utf-8")
    return path


def test_cli_builds_from_a_table_and_reads_back(tmp_path, capsys):
    out = tmp_path / "corpus.parquet"
    bench = tmp_path / "held.tsv"
    exclude = tmp_path / "exclude.csv"
    exclude.write_text("name\nIVANOV\n")
    assert (
        main(
            [
                "corpus",
                "--source",
                str(write_source(tmp_path)),
                "--out",
                str(out),
                "--exclude",
                str(exclude),
                "--benchmark",
                str(bench),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "in scope" in printed and "1 excluded" in printed
    assert "syllable rule:" in printed and "1 of Korean (1 of them had no other country)" in printed
    corpus = C.read(out)
    rows = by_name(corpus.table)
    assert "Ivanov" not in rows and soft_of(rows["Kowalski"]) == {"Polish": 1.0}
    assert rows["Virtanen"]["scope"] == "out" and rows["Virtanen"]["country"] == "FI"
    assert corpus.meta["source"] == str(tmp_path / "census.csv") and corpus.meta["map"] == "shipped"
    assert corpus.meta["stats"]["excluded"] == 1 and len(corpus.meta["map_sha256"]) == 64
    assert corpus.meta["config"]["syllable_rule"] and corpus.meta["stats"]["syllable_cut"] == {"Korean": 1}
    assert "Esmartsafe" not in rows
    pairs = data.read_labelled(bench)  # what evaluate reads
    assert pairs == corpus.held_out_pairs()


def test_out_of_scope_names_by_country_with_whole_countries_held_out(tmp_path):
    rows = [(f"Virta{letters(i)}", "FI", 5) for i in range(5)] + [(f"Yil{letters(i)}", "TR", 5) for i in range(3)]
    rows += [("Kowalski", "PL", 9)]
    out = tmp_path / "c.parquet"
    assert main(["corpus", "--source", str(write_source(tmp_path, rows)), "--out", str(out)]) == 0
    real = C.read(out)
    fit_part = real.out_of_scope(held_out_countries=["tr"])
    held = real.out_of_scope(held_out_countries=["tr"], part="held-out")
    assert set(fit_part) == {"FI"} and len(fit_part["FI"]) == 5 and set(held) == {"TR"} and len(held["TR"]) == 3
    assert "Kowalski" not in [n for part in fit_part.values() for n in part]


def test_exclude_reads_any_predict_input(tmp_path):
    (tmp_path / "a.txt").write_text("Шевченко\nMCDONALD\n")
    pq.write_table(pa.table({"surname": ["Novák"]}), tmp_path / "b.parquet")
    assert C.read_exclude([tmp_path / "a.txt", tmp_path / "b.parquet"]) == {"shevchenko", "mcdonald", "novak"}


def no_file_written(tmp_path, *args):
    out = tmp_path / "out.parquet"
    try:
        code = main(["corpus", "--out", str(out), *args])
    except SystemExit as e:  # argparse refuses a flag's value before the command runs
        code = e.code
    assert not out.exists() and not list(tmp_path.glob(".out.parquet*"))
    return code


def test_per_language_zero_is_refused_before_anything_is_read(tmp_path, capsys):
    assert no_file_written(tmp_path, "--per-language", "0") == 2
    assert "--per-language: '0': expected a whole number of at least 1" in capsys.readouterr().err


def test_missing_extra_names_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "names_dataset", None)  # import fails as when the package is missing
    assert no_file_written(tmp_path) == 2
    assert 'pip install -c constraints.txt -e ".[corpus]"' in capsys.readouterr().err


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_text("name,count\nSmith,3\n"), "expected columns name, country and count or share"),
        (lambda p: p.write_text("name,country,count\nSmith,GB,lots\n"), "cannot be read as a table|other than numbers"),
        (lambda p: p.write_text("name,country,count\nSmith,GB,-3\n"), "not a non-negative number"),
    ],
)
def test_bad_source_table(tmp_path, capsys, make, message):
    source = tmp_path / "source.csv"
    make(source)
    assert no_file_written(tmp_path, "--source", str(source)) == 2
    err = capsys.readouterr().err
    assert str(source) in err
    assert any(m in err for m in message.split("|"))


def test_bad_map_through_the_cli(tmp_path, capsys):
    bad = tmp_path / "map.tsv"
    bad.write_text("RU\tRussian\t2\n")
    assert no_file_written(tmp_path, "--source", str(write_source(tmp_path)), "--map", str(bad)) == 2
    assert "is not a share" in capsys.readouterr().err


def test_a_corpus_file_of_another_shape_is_refused(tmp_path):
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"name": ["a"]}), plain)
    with pytest.raises(C.CorpusError, match="is not a nameorigin corpus"):
        C.read(plain)
    good = tmp_path / "good.parquet"
    assert main(["corpus", "--source", str(write_source(tmp_path)), "--out", str(good)]) == 0
    table = pq.read_table(good)
    pq.write_table(table.drop(["soft"]).replace_schema_metadata(table.schema.metadata), tmp_path / "short.parquet")
    with pytest.raises(C.CorpusError, match="another shape: missing column"):
        C.read(tmp_path / "short.parquet")
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(C.CorpusError, match="is not a Parquet file"):
        C.read(tmp_path / "text.parquet")


# ------------------------------------------------------------------------------------------------ training


def test_soft_loss_is_nll_for_one_hot_targets():
    lp = torch.log_softmax(torch.randn(5, 4), 1)
    y = torch.tensor([0, 1, 2, 3, 1])
    assert soft_loss(lp, torch.eye(4)[y], torch.ones(5)) == pytest.approx(float(torch.nn.functional.nll_loss(lp, y)))


def test_leak_guard_both_ways():
    g = data.leak_guard(
        [("Smith", "English"), ("Kelly", "Irish"), ("Bond", "English")],
        ["smith", "Ivanov", "Olsen"],
        labelled_held=["IVANOV"],
        corpus_held=["SMITH"],
        exclude=["bond", "olsen"],
    )
    assert g.train == [("Kelly", "Irish")] and g.corpus_kept == [0]
    assert (g.removed_from_train, g.removed_from_corpus) == (2, 2)


@pytest.fixture
def tiny_corpus(tmp_path):
    """A corpus over the tiny data's four languages' look-alikes: names of the tutorial's languages."""
    rows = [(f"{stem}ov", "RU", 20 + i) for i, stem in enumerate(["Kal", "Mir", "Tes", "Rab", "Sun", "Bod", "Nek"])]
    rows += [(f"Mc{stem}", "GB", 10 + i) for i, stem in enumerate(["Kal", "Mir", "Tes", "Rab", "Sun", "Bod"])]
    rows += [(f"{stem}ski", "PL", 5 + i) for i, stem in enumerate(["Kal", "Mir", "Tes", "Rab"])]
    rows += [("Mckaloo", "GB", 3), ("Mckaloo", "PL", 1)]
    out = tmp_path / "c.parquet"
    assert main(["corpus", "--source", str(write_source(tmp_path, rows)), "--out", str(out)]) == 0
    return C.read(out)


LABELS = ["English", "Polish", "Russian"]
PAIRS = (
    [(f"{s}ov", "Russian") for s in ["Ka", "Lo", "Mira", "Tesu"]]
    + [(f"Mc{s}", "English") for s in ["Ka", "Lo", "Mira", "Tesu"]]
    + [(f"{s}ski", "Polish") for s in ["Ka", "Lo"]]
)


def capture_batches(monkeypatch) -> list[str]:
    """Every name that goes through a model's forward during training (the batches, decoded)."""
    from nameorigin import models

    seen: list[str] = []
    build = models.build_model

    def recording(config, n_classes):
        model = build(config, n_classes)

        def hook(module, inputs):
            if module.training:
                tokens, lengths = inputs[:2]
                seen.extend(decode(t[: int(n)].tolist()) for t, n in zip(tokens, lengths, strict=False))

        model.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(models, "build_model", recording)
    return seen


@pytest.mark.parametrize("mode", ["joint", "pretrain"])
def test_corpus_trains_and_an_excluded_name_never_reaches_a_batch(tiny_corpus, monkeypatch, mode):
    seen = capture_batches(monkeypatch)
    train, part, guard = C.guarded_sources(
        tiny_corpus, PAIRS, LABELS, labelled_held=["RABOV"], exclude=["mckal", "Kaov"]
    )
    all_corpus = tiny_corpus.names("train")
    assert guard.removed_from_corpus == sum(n.lower() in {"rabov", "mckal"} for n in all_corpus)
    settings = resolve_settings(
        None,
        model={"name": "gru", "hidden": 8},
        train={"epochs": 2, "corpus_mode": mode, "pretrain_epochs": 1, "batch_size": 4},
    )
    valid = data.encode_pairs([("Loov", "Russian"), ("Mclo", "English")], LABELS)
    _model, history, used = fit(settings, train, valid, LABELS, corpus=part)
    assert {n.lower() for n in seen} >= {n.lower() for n in part.names} | {n.lower() for n, _ in train}
    assert not {"rabov", "mckal", "kaov"} & {n.lower() for n in seen}
    assert ("Kaov", "Russian") not in used
    if mode == "pretrain":
        assert [row["phase"] for row in history.epochs] == ["pretrain", "fine-tune", "fine-tune"]
    else:
        assert len(history.epochs) == 2


def test_corpus_part_keeps_only_the_models_languages(tiny_corpus):
    part = C.training_part(tiny_corpus, ["English", "Russian"])
    assert len(part) and torch.allclose(part.targets.sum(1), torch.ones(len(part)))
    assert not any(n.endswith("ski") for n in part.names)  # all-Polish names have no share left
    with pytest.raises(ValueError, match="corpus targets"):
        CorpusPart(["a"], torch.zeros(2, 3))


def test_ngram_lr_takes_the_corpus_as_weighted_rows(tiny_corpus):
    pytest.importorskip("sklearn")
    part = C.training_part(tiny_corpus, LABELS)
    settings = resolve_settings("ngram-lr")
    model, _, _ = fit(settings, PAIRS, None, LABELS, corpus=part)
    enc = data.encode_pairs([(n, "English") for n in part.names], LABELS)
    predicted = model(enc.tokens, enc.lengths)[0].argmax(1)
    assert (predicted == part.targets.argmax(1)).float().mean() >= 0.8


def test_ngram_corpus_weighs_languages_alike_and_answers_under_the_labelled_mix(tiny_corpus):
    pytest.importorskip("sklearn")
    from nameorigin.training import _ngram_class_weights

    labels = torch.tensor([0, 0, 0, 1])
    weights, mix = _ngram_class_weights(labels, None, 3, 1.0)
    totals = torch.zeros(3).index_add_(0, labels, weights)
    torch.testing.assert_close(totals[0], totals[1])  # every language present weighs alike
    torch.testing.assert_close(mix, torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64))
    same, raw_mix = _ngram_class_weights(labels, None, 3, 0.0)
    assert same is None and torch.allclose(raw_mix, torch.tensor([0.75, 0.25, 0], dtype=torch.float64))

    part = C.training_part(tiny_corpus, LABELS)
    own = fit(resolve_settings("ngram-corpus"), PAIRS, None, LABELS, corpus=part)[0]
    shared = fit(resolve_settings("ngram-corpus", train={"corpus_prior": "shared"}), PAIRS, None, LABELS, corpus=part)[
        0
    ]
    assert own.config.edges and own.config.vocab <= 100_000
    torch.testing.assert_close(own.weight, shared.weight)  # one fit; only the bias moves to the labelled mix
    enc = data.encode_pairs(PAIRS, LABELS)
    labelled = torch.bincount(enc.labels, minlength=len(LABELS)).double()
    labelled = (labelled / labelled.sum()).clamp(min=1e-4)
    rows = shared(enc.tokens, enc.lengths)[0].exp().mean(0).double()
    moved = own(enc.tokens, enc.lengths)[0].exp().mean(0).double()
    assert (moved - labelled).abs().sum() < (rows - labelled).abs().sum()  # nearer the labelled names' mix


def test_the_worksheet_loop_refuses_a_corpus(tiny_corpus):
    part = C.training_part(tiny_corpus, LABELS)
    with pytest.raises(ValueError, match="worksheet loop"):
        fit(resolve_settings("worksheet-rnn", train={"iters": 10}), PAIRS, None, LABELS, corpus=part)
    assert TrainConfig().corpus_mode in {"joint", "pretrain"}


def test_a_teacher_and_a_mixed_ensemble_train_with_the_corpus(tiny_corpus):
    part = C.training_part(tiny_corpus, LABELS)
    settings = resolve_settings(None, model={"name": "gru", "hidden": 8}, train={"epochs": 1, "distill_weight": 0.5})
    teacher = torch.log_softmax(torch.randn(len(PAIRS), len(LABELS)), 1)
    _, history, _ = fit(settings, PAIRS, None, LABELS, soft_targets=teacher, corpus=part)
    assert history.names_seen == len(PAIRS) + len(part)
    mixed = resolve_settings("mixed", train={"epochs": 1})
    model, history, _ = fit(mixed, PAIRS, data.encode_pairs(PAIRS[:4], LABELS), LABELS, corpus=part)
    assert len(model.members) == 2 and history.names_seen == 2 * (len(PAIRS) + len(part))


def test_a_model_and_each_member_take_their_own_share_of_the_corpus(tiny_corpus, capsys):
    """corpus_per_language: at most N corpus names of each top language, the first in the corpus's order (its most
    frequent); the validation names stay; a mixed preset's member caps its own (bundled: the network 8000, the
    n-gram member all); a negative cap is refused, by the trainer and by the command line."""
    part = C.training_part(tiny_corpus, LABELS)
    top, capped = part.targets.argmax(1).tolist(), part.capped(2)
    assert 0 < len(capped) < len(part) and capped.valid == part.valid
    for c in set(top):
        firsts = [n for n, t in zip(part.names, top, strict=True) if t == c][:2]
        assert [n for n, t in zip(capped.names, capped.targets.argmax(1).tolist(), strict=True) if t == c] == firsts
    gru = {"name": "gru", "hidden": 8}
    _, history, _ = fit(
        resolve_settings(None, model=gru, train={"epochs": 1, "corpus_per_language": 2}),
        PAIRS,
        None,
        LABELS,
        corpus=part,
    )
    assert history.names_seen == len(PAIRS) + len(capped)
    mixed = resolve_settings("mixed", train={"epochs": 1, "corpus_per_language": 2})
    _, history, _ = fit(mixed, PAIRS, data.encode_pairs(PAIRS[:4], LABELS), LABELS, corpus=part)
    assert history.names_seen == 2 * (len(PAIRS) + len(capped))
    assert [m.train.corpus_per_language for m in resolve_settings("bundled").members] == [8000, 0]
    with pytest.raises(ValueError, match="corpus_per_language -1"):
        fit(resolve_settings(None, model=gru, train={"corpus_per_language": -1}), PAIRS, None, LABELS, corpus=part)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--corpus-per-language", "-1", "--out", "x.safetensors"])
    assert exit_info.value.code == 2 and "--corpus-per-language" in capsys.readouterr().err


def test_own_prior_offsets_score_corpus_rows_under_the_corpus_mix(tiny_corpus):
    from nameorigin.training import joint_set, source_offsets

    part = C.training_part(tiny_corpus, LABELS)
    train = data.encode_pairs(PAIRS, LABELS)
    joined, rows, teacher = joint_set(train, part, 0.5, prior="own")
    assert teacher is None and len(joined) == len(PAIRS) + len(part)
    assert torch.equal(rows.offsets[: len(PAIRS)], torch.zeros(len(PAIRS), len(LABELS)))
    labelled = torch.tensor([4, 2, 4], dtype=torch.float64) / 10  # English, Polish, Russian in PAIRS
    expected = (part.targets.double().mean(0).log() - labelled.log()).float()
    assert torch.allclose(rows.offsets[len(PAIRS) :], expected.expand(len(part), -1), atol=1e-6)
    assert torch.allclose(source_offsets(train.labels, part.targets, 3), expected, atol=1e-6)
    assert torch.equal(rows.class_counts, labelled * 10)  # the loss weights come from the labelled names only
    _, shared, _ = joint_set(train, part, 0.5, prior="shared")
    assert shared.offsets is None and shared.class_counts is None
    with pytest.raises(ValueError, match="corpus prior 'odd'"):
        joint_set(train, part, 0.5, prior="odd")


def test_own_prior_keeps_the_labelled_mix_where_shared_drifts_to_the_corpus():
    """A corpus of Polish names only, twice the labelled names: trained under one shared mix the model's
    answers on the labelled validation names drift to Polish; under the corpus's own mix they do not."""
    pairs = [(f"{s}ov", "Russian") for s in ["Ka", "Lo", "Mi", "Te", "Ra", "Su"]] + [
        (f"Mc{s}", "English") for s in ["Ka", "Lo", "Mi", "Te", "Ra", "Su"]
    ]
    part = CorpusPart(
        [f"{s}{e}" for s in ["Ka", "Lo", "Mi", "Te", "Ra", "Su"] for e in ("ski", "ov", "wicz", "son")],
        torch.tensor([[0.0, 1.0, 0.0]] * 24),
    )
    part.targets[1::4] = torch.tensor([0.0, 0.5, 0.5])  # "Kaov": half Polish, half Russian in the corpus
    part.targets[3::4] = torch.tensor([0.5, 0.5, 0.0])
    valid = data.encode_pairs(pairs, LABELS)
    polish = {}
    for prior in ("own", "shared"):
        settings = resolve_settings(
            None,
            model={"name": "gru", "hidden": 16},
            train={"epochs": 12, "corpus_weight": 1.0, "corpus_prior": prior, "batch_size": 8, "patience": 0},
        )
        model, _, _ = fit(settings, pairs, None, LABELS, corpus=part)
        lp = model(valid.tokens, valid.lengths)[0]
        polish[prior] = float(lp.detach().exp()[:, 1].mean())
    assert polish["own"] < polish["shared"] / 2, polish


def test_the_corpus_validation_takes_part_in_choosing_the_epoch(tiny_corpus):
    from nameorigin.training import _better

    a = {"macro_f1": 0.6, "loss": 1.0, "corpus_macro_f1": 0.2, "corpus_loss": 2.0}
    b = {"macro_f1": 0.5, "loss": 1.0, "corpus_macro_f1": 0.5, "corpus_loss": 2.0}
    assert _better("macro_f1", a, b) and not _better("macro_f1", a, b, both=True)
    part = C.training_part(tiny_corpus, LABELS)
    assert part.valid == [(n, lab) for n, lab in tiny_corpus.scored_pairs("valid") if lab in LABELS]
    if not part.valid:  # the tiny corpus may put no scored name in its validation part: give it one
        part.valid = [("Kalov", "Russian")]
    settings = resolve_settings(None, model={"name": "gru", "hidden": 8}, train={"epochs": 2, "patience": 0})
    _, history, _ = fit(settings, PAIRS, data.encode_pairs(PAIRS[:4], LABELS), LABELS, corpus=part)
    assert all("corpus_macro_f1" in row and "macro_f1" in row for row in history.epochs)
