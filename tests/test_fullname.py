"""Full names and first names: the parts, their combination, Han readings, the front ends and bad input.

Two tiny models are trained here as conftest.py does: a surname model on the four made-up languages' surnames,
and a first-name model (name_kind first) on given names of the same languages that end in telling ways."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from conftest import SYLLABLES, make_names
from nameorigin import api, checkpoint, fullname, names, text
from nameorigin.cli import main
from nameorigin.predict import Predictor, model_info

FIRST_PATTERNS = {
    "Alpha": lambda s: s.capitalize() + "slav",
    "Beta": lambda s: s.capitalize() + "ie",
    "Gamma": lambda s: s.capitalize() + "ito",
    "Delta": lambda s: "Ai" + s,
}


def make_first_names(n: int = 40, seed: int = 0) -> dict[str, list[str]]:
    rng = random.Random(seed)
    out = {}
    for lang, make in FIRST_PATTERNS.items():
        names: set[str] = set()
        while len(names) < n:
            names.add(make("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 2)))))
        out[lang] = sorted(names)
    return out


def same(a: list[dict], b: list[dict]) -> bool:
    """Two ranked answers alike: the same languages, the same probabilities (to float rounding)."""
    return [x["language"] for x in a] == [x["language"] for x in b] and np.allclose(
        [x["probability"] for x in a], [x["probability"] for x in b], rtol=1e-9
    )


def _pairs(table: dict[str, list[str]]) -> list[tuple[str, str]]:
    return [(n, lang) for lang, names in table.items() for n in names]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    surname, first, other = root / "s.safetensors", root / "f.safetensors", root / "s2.safetensors"
    api.train(_pairs(make_names()), hidden=16, epochs=6).save(surname)
    api.train(_pairs(make_first_names()), hidden=16, epochs=6, name_kind="first").save(first)
    api.train(_pairs(make_names()), hidden=16, epochs=6, seed=1).save(other)  # another surname model
    return {"surname": surname, "first": first, "other": other, "root": root}


@pytest.fixture(scope="module")
def pair(models):
    return Predictor.load(models["surname"], first=models["first"])


def validation_pairs(seed: int = 5, n: int = 15, *, shuffle_first: bool = False) -> list[tuple[str, str]]:
    """Full names 'First Last' of one language each, from names not in the training lists' seeds; with
    ``shuffle_first``, the first names come from a random language (no evidence: the weight should fall)."""
    rng = random.Random(seed)
    surnames, firsts = make_names(n, seed=seed), make_first_names(n, seed=seed)
    out = []
    for lang in surnames:
        for last in surnames[lang]:
            source = rng.choice(list(firsts)) if shuffle_first else lang
            out.append((f"{rng.choice(firsts[source])} {last}", lang))
    return out


# ------------------------------------------------------------------------------------------- the metadata


def test_name_kind_is_recorded(models):
    assert checkpoint.read_meta(models["first"])["name_kind"] == "first"
    assert checkpoint.read_meta(models["surname"])["name_kind"] == "surname"


def test_name_kind_unknown_is_refused():
    with pytest.raises(api.InputError, match="name_kind 'middle'"):
        api.train(_pairs(make_names(10)), hidden=8, epochs=1, name_kind="middle")


def test_a_first_name_model_alone_reads_first_names_and_takes_no_pair(models):
    alone = Predictor.load(models["first"])
    assert alone.name_kind == "first" and alone.first is None and alone.predict(["Kaloslav"])[0].predictions
    with pytest.raises(checkpoint.CheckpointError, match="takes no first-name model beside it"):
        Predictor.load(models["first"], first=models["first"])
    with pytest.raises(checkpoint.CheckpointError, match="not a first-name model"):
        Predictor.load(models["surname"], first=models["other"])


# ------------------------------------------------------------------------------------------- surnames as ever


@pytest.mark.parametrize("with_first", [True, False])
def test_single_surnames_answer_under_auto_as_today(models, with_first):
    p = Predictor.load(models["surname"], first=models["first"] if with_first else False)
    names = ["Miraov", "McKalo", "Teraez", "Bonii" + "b", "van der Berg"]
    today = p.predict(names, coverage=0.9)
    auto = p.predict(names, coverage=0.9, name_type="auto")
    for t, a in zip(today, auto, strict=True):
        assert a.name_type == "surname"
        assert [x["language"] for x in a.predictions] == [x["language"] for x in t.predictions]
        np.testing.assert_allclose(
            [x["probability"] for x in a.predictions], [x["probability"] for x in t.predictions], rtol=1e-12
        )
        assert (a.set, a.abstained, a.reason) == (t.set, t.abstained, t.reason)
        assert a.out_of_scope == pytest.approx(t.out_of_scope)


def test_surname_output_keeps_its_shape(pair):
    """name_type surname keeps the shape of the surname answers before full names; the default (auto) adds
    the parts to the same answer."""
    r = pair.predict(["Miraov"], name_type="surname")[0]
    assert set(r.to_dict()) == {"name", "predictions", "out_of_scope", "abstained", "reason"}
    cols = pair.predict_columns(["Miraov"], 2, name_type="surname").column_names
    assert cols == [
        "name", "language_1", "probability_1", "language_2", "probability_2",
        "abstained", "reason", "out_of_scope", "error",
    ]  # fmt: skip
    default = pair.predict(["Miraov"])[0]
    assert same(default.predictions, r.predictions) and default.name_type == "surname"
    assert [p["part"] for p in default.parts] == ["family"]
    assert pair.predict_columns(["Miraov"], 2).column_names[:8] == cols[:8]


def test_without_a_first_model_auto_reads_a_lone_given_name_as_a_surname(models):
    p = Predictor.load(models["surname"], first=False)
    assert fullname.names.parse("Giuseppe").name_type == "first"  # a known given name (Faker's lists)
    a = p.predict(["Giuseppe"], name_type="auto")[0]
    s = p.predict(["Giuseppe"])[0]
    assert same(a.predictions, s.predictions) and a.parts[0]["part"] == "family"
    assert "read as a surname" in a.note


def test_first_without_a_first_model_says_how_to_give_one(models):
    p = Predictor.load(models["surname"], first=False)
    with pytest.raises(fullname.NoFirstModel, match="--first-model PATH"):
        p.predict(["Kaloslav"], name_type="first")


# ------------------------------------------------------------------------------------------- parts


def test_full_name_shows_its_parts(pair):
    r = pair.predict(["Kaloslav Miraov"], name_type="full", top=2)[0]
    assert r.name_type == "full" and r.reading == "none"
    assert [(p["part"], p["text"], p["used"]) for p in r.parts] == [
        ("given", "Kaloslav", True),
        ("family", "Miraov", True),
    ]
    own = pair.first.predict(["Kaloslav"], top=2)[0]
    assert r.parts[0]["predictions"][0]["language"] == own.predictions[0]["language"]
    assert sum(x["probability"] for x in pair.predict(["Kaloslav Miraov"], name_type="full", top=4)[0].predictions) == (
        pytest.approx(1.0)
    )


def test_a_part_dropping_out_leaves_the_others_answer(pair):
    initial = pair.predict(["J. Miraov"], name_type="full")[0]
    alone = pair.predict(["Miraov"])[0]
    assert same(initial.predictions, alone.predictions)
    assert "initials J." in initial.note
    table = pair.predict_columns(None, 3, first_names=["Kaloslav", None], last_names=[None, "Miraov"])
    first_alone = pair.first.predict(["Kaloslav"])[0]
    assert table.column("language_1")[0].as_py() == first_alone.predictions[0]["language"]
    assert table.column("probability_1")[0].as_py() == pytest.approx(first_alone.predictions[0]["probability"])
    assert table.column("probability_1")[1].as_py() == pytest.approx(alone.predictions[0]["probability"])
    assert table.column("parts_used").to_pylist() == ["given", "family"]


def test_the_combined_answer_goes_through_the_trust_layer(pair):
    r = pair.predict(["Kaloslav Miraov"], name_type="full", coverage=0.9, min_confidence=0.999)[0]
    assert r.set and r.abstained and r.reason == "low-confidence"
    assert r.out_of_scope is not None


def test_each_distinct_part_is_computed_once(models, monkeypatch):
    p = Predictor.load(models["surname"], first=models["first"], cache_size=0)
    calls = {"family": [], "given": []}
    for model, key in ((p, "family"), (p.first, "given")):
        real = model._run

        def run(folded, real=real, key=key):
            calls[key].append(list(folded))
            return real(folded)

        monkeypatch.setattr(model, "_run", run)
    p.predict(["Kaloslav Miraov", "Kaloslav McBone", "Kaloslav Miraov", "Tesuie Miraov"], name_type="full")
    assert calls["family"] == [["Miraov", "McBone"]]
    assert calls["given"] == [["Kaloslav", "Tesuie"]]


# ------------------------------------------------------------------------------------------- the combination


def test_fitted_weights_beat_weights_one_on_validation(pair):
    block = fullname.fit_combination(pair, validation_pairs(shuffle_first=True))
    assert block["pairs"] == 60
    assert block["weights"]["first"] < 0.8  # first names that carry no evidence are weighed down
    assert block["valid_log_loss"]["fitted"] < block["valid_log_loss"]["weights_1"] - 0.01


def test_the_stored_block_round_trips(models, pair, tmp_path):
    block = fullname.fit_combination(pair, validation_pairs())
    out = tmp_path / "f2.safetensors"
    fullname.save_combination(models["first"], block, out)
    again = Predictor.load(models["surname"], first=out)  # loads: the hash covers the block
    assert again.combination_note is None
    assert again.combination.weights == pytest.approx(block["weights"])
    assert again.combination.surname_sha256 == pair.sha256
    info = model_info(again)
    assert info["combination"]["weights"] == pytest.approx(block["weights"])
    assert info["first_model"]["name_kind"] == "first"


def test_a_mismatched_surname_model_falls_back_to_weights_one(models, pair, tmp_path, caplog):
    block = fullname.fit_combination(pair, validation_pairs())
    out = tmp_path / "f2.safetensors"
    fullname.save_combination(models["first"], block, out)
    with caplog.at_level("WARNING"):
        other = Predictor.load(models["other"], first=out)
        other.predict(["Miraov"], name_type="auto")  # a surname alone: no combination, no warning
        assert "not this one" not in caplog.text
        results = other.predict([n for n, _ in validation_pairs()], name_type="full")
        assert sum(all(p["used"] for p in r.parts) for r in results) > 10  # names that combine both parts
    assert other.combination.weights == {"surname": 1.0, "first": 1.0}
    assert "not this one" in other.combination_note and caplog.text.count("not this one") == 1


def test_combine_command(models, tmp_path, capsys):
    pairs = tmp_path / "pairs.csv"
    rows = ["first,last,language"] + [f"{n.split()[0]},{n.split()[1]},{lang}" for n, lang in validation_pairs()]
    pairs.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "combined.safetensors"
    argv = ["combine", "--model", str(models["surname"]), "--first-model", str(models["first"])]
    assert main([*argv, "--pairs", str(pairs), "--out", str(out), "--json"]) == 0
    block = json.loads(capsys.readouterr().out)
    assert checkpoint.read_meta(out)["combination"]["weights"] == pytest.approx(block["weights"])
    assert main(["info", "--model", str(models["surname"]), "--first-model", str(out)]) == 0
    assert "fitted on 60 validation pairs" in capsys.readouterr().out


def test_fit_needs_usable_pairs(pair):
    with pytest.raises(api.InputError, match="usable pair"):
        fullname.fit_combination(pair, [("Miraov", "Alpha"), ("J. K.", "Beta")])


# ------------------------------------------------------------------------------------------- Han and Hangul


def test_hangul_family_names_in_their_customary_spelling():
    assert [text.read_part(n, japanese=False) for n in ("김", "이", "박")] == ["Kim", "Lee", "Park"]
    assert text.read_part("민준", japanese=False, family=False) == "Minjun"  # not the family name Min


def test_a_reading_that_cannot_read_a_part_loses_and_says_why():
    """纪 is a simplified Chinese character: no Japanese reading. A reading that reads both parts beats one that
    reads one, and the part a reading cannot read says so (it was called a missing name)."""
    assert fullname.read_part("纪", "family", "japanese", 2) == (None, "纪 has no japanese reading")
    assert fullname.read_part("纪", "family", "chinese", 2) == ("Ji", None)
    p = Predictor.load()
    for raw in ("桂兰 纪", "纪 桂兰"):
        (r,) = p.predict([raw], name_type="full")
        assert r.reading == "chinese" and r.predictions[0]["language"] == "Chinese", r
        assert all(part["used"] for part in r.parts)
    # a part the Japanese reading reads but whose answer then drops out as out of scope still counts as read
    for raw in ("斎藤 太郎", "斉藤 花子"):
        (r,) = p.predict([raw], name_type="full")
        assert r.reading == "japanese" and r.predictions[0]["language"] == "Japanese", r
    import pandas as pd

    from nameorigin import predict_frame

    row = predict_frame(pd.DataFrame({"first": ["桂兰"], "last": ["纪"]}), first_column="first", last_column="last")
    assert row["reading"][0] == "chinese" and row["language_1"][0] == "Chinese" and row["family_read"][0] == "Ji"


def test_a_native_name_written_given_name_first():
    """Two words in Han of which only the second is a known family name: the given name came first."""
    parsed = names.parse("加奈 伊藤")
    assert (parsed.given, parsed.family, parsed.order) == (("加奈",), ("伊藤",), "given-family"), parsed.why
    assert names.parse("伊藤 加奈").family == ("伊藤",) and names.parse("张 伟").family == ("张",)
    (r,) = Predictor.load().predict(["加奈 伊藤"], name_type="full")
    assert r.predictions[0]["language"] == "Japanese" and r.reading == "japanese"


def test_han_names_keep_the_likelier_reading():
    p = Predictor.load(first=False)  # the bundled surname model knows Japanese and Chinese
    got = {r.name: r for r in p.predict(["佐藤", "鈴木", "田中", "王", "張", "さとう"], name_type="auto")}
    for name in ("佐藤", "鈴木", "田中", "さとう"):
        assert got[name].reading == "japanese" and got[name].predictions[0]["language"] == "Japanese"
    for name in ("王", "張"):
        assert got[name].reading == "chinese" and got[name].predictions[0]["language"] == "Chinese"
    assert got["佐藤"].parts[0]["read"] == "Sato"
    # the family-name tables know 藤井 as Japanese only: they decide before the models' probabilities
    assert fullname._table_says("japanese", "藤井") == 1.0 and fullname._table_says("chinese", "藤井") == 0.0
    assert p.predict(["藤井太郎"], name_type="auto")[0].reading == "japanese"


def test_evaluate_reads_names_as_written(tmp_path):
    data = tmp_path / "native.csv"
    data.write_text("name,language\n佐藤,Japanese\n鈴木,Japanese\n王,Chinese\n", encoding="utf-8")
    report = api.evaluate(Predictor.load(first=False), data, name_type="auto")
    assert report["accuracy"] == 1.0 and report["n"] == 3  # folded first, they would read as Chinese


# ------------------------------------------------------------------------------------------- bad input


def test_bad_full_names_get_error_rows(pair):
    rows = pair.predict(["J. K.", ",", " ".join(["Abc"] * 200), "", "Kaloslav Miraov"], name_type="full")
    assert "no part" in rows[0].error
    assert "no letters" in rows[1].error
    assert "200 tokens" in rows[2].error
    assert "missing" in rows[3].error
    assert rows[4].error is None and rows[4].predictions


def test_unknown_name_type_is_refused(pair):
    with pytest.raises(api.InputError, match="name_type 'middle'"):
        pair.predict(["x"], name_type="middle")


def test_cli_bad_input(models, tmp_path, capsys, monkeypatch):
    m = ["--model", str(models["surname"]), "--first-model", str(models["first"])]
    csv = tmp_path / "people.csv"
    csv.write_text("given,family\nKaloslav,Miraov\n", encoding="utf-8")
    assert main(["predict", *m, "--input", str(csv), "--first-column", "first"]) == 2
    assert "no column 'first'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["predict", *m, "--name-type", "middle", "x"])
    assert e.value.code == 2 and "invalid choice: 'middle'" in capsys.readouterr().err
    from nameorigin import predict

    monkeypatch.setattr(predict, "default_first_model_path", lambda: None)  # an install without the bundled one
    assert main(["predict", "--model", str(models["surname"]), "--name-type", "first", "Kaloslav"]) == 2
    assert "no first-name model is available" in capsys.readouterr().err
    assert main(["predict", *m, "--name-type", "full", ",", "Kaloslav Miraov"]) == 2  # one error row, exit 2
    captured = capsys.readouterr()
    assert "no letters" in captured.err and "Kaloslav Miraov" in captured.out


def test_prior_auto_on_a_file_of_full_names_is_the_mix_of_its_answers(models, pair, tmp_path, capsys):
    m = ["--model", str(models["surname"]), "--first-model", str(models["first"])]
    rng = random.Random(3)
    pairs = validation_pairs(seed=9, n=8)
    people = [n for n, lang in pairs for _ in range(3 if lang == pairs[0][1] else 1)]  # one language three times
    rng.shuffle(people)
    names_file = tmp_path / "people.txt"
    names_file.write_text("\n".join(people) + "\n", encoding="utf-8")
    _, expected = pair.predict_with_prior(people, prior="auto", name_type="full")  # one call over all of them
    out = tmp_path / "out.jsonl"
    argv = ["predict", *m, "--input", str(names_file), "--name-type", "full", "--prior", "auto", "--json"]
    assert main([*argv, "--output", str(out)]) == 0
    err = capsys.readouterr().err
    got, rests_on = pair._estimate_prior_parts([(people, None, None)], "full")
    assert 0 < rests_on <= len(set(people))  # the distinct names answered in the surname model's languages
    assert "estimated on" in err and f"{rests_on} distinct name(s)" in err
    assert got == pytest.approx(expected, abs=1e-6)  # the file's first pass is the one call's estimate
    assert max(got, key=got.get) == pairs[0][1]  # the language three times as frequent leads the mix
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert first["parts"] and first["predictions"]
    csv = tmp_path / "people.csv"  # first and last columns: the same names, the same mix
    csv.write_text("given,family\n" + "".join(p.replace(" ", ",", 1) + "\n" for p in people), encoding="utf-8")
    assert main(["predict", *m, "--input", str(csv), "--first-column", "given", "--last-column", "family",
                 "--prior", "auto", "--output", str(tmp_path / "o.csv")]) == 0  # fmt: skip
    assert f"{rests_on} distinct name(s)" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- front ends


def test_file_columns_follow_from_the_flags(models, tmp_path, capsys):
    m = ["--model", str(models["surname"]), "--first-model", str(models["first"])]
    csv = tmp_path / "people.csv"
    csv.write_text("given,family\nKaloslav,Miraov\n,McBone\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    argv = ["predict", *m, "--input", str(csv), "--first-column", "given", "--last-column", "1"]
    assert main([*argv, "--output", str(out), "--quiet"]) == 0
    header = out.read_text(encoding="utf-8").splitlines()[0].replace('"', "").split(",")
    assert header[:3] == ["line", "name", "language_1"]
    assert {"given", "family", "given_language_1", "family_language_1", "parts_used", "reading"} <= set(header)
    surnames = tmp_path / "surnames.txt"
    surnames.write_text("Miraov\n", encoding="utf-8")  # a batch of surnames only: the same columns
    out2 = tmp_path / "out2.csv"
    assert main(["predict", *m, "--input", str(surnames), "--name-type", "auto", "--output", str(out2), "--quiet"]) == 0
    assert out2.read_text(encoding="utf-8").splitlines()[0].replace('"', "").split(",") == header
    out3 = tmp_path / "out.jsonl"
    assert main([*argv, "--output", str(out3), "--json", "--quiet"]) == 0
    first = json.loads(out3.read_text(encoding="utf-8").splitlines()[0])
    assert [p["part"] for p in first["parts"]] == ["given", "family"] and first["name_type"] == "full"


def test_frames(pair):
    pd = pytest.importorskip("pandas")
    from nameorigin import predict_frame
    from nameorigin.frame import ColumnError

    df = pd.DataFrame({"first": ["Kaloslav", None], "last": ["Miraov", "McBone"]})
    out = predict_frame(df, first_column="first", last_column="last", model=pair)
    assert out["parts_used"].tolist() == ["given+family", "family"]
    full = predict_frame(pd.DataFrame({"name": ["Kaloslav Miraov"]}), name_type="full", model=pair)
    assert full["language_1"][0] == out["language_1"][0]
    with pytest.raises(ColumnError, match="no column 'given'"):
        predict_frame(df, first_column="given", model=pair)


def test_titles_and_suffixes_come_off_the_cells_as_off_a_whole_name(pair):
    """A first-name cell's title and a last-name cell's suffix are taken off as nameparser takes them off a
    whole name (a new-user trial's rows: Mr,Bean was read with the given name Mr); cells of nothing else are an
    error row; the answer equals the one-column reading of the same name."""
    pd = pytest.importorskip("pandas")
    from nameorigin import predict_frame

    df = pd.DataFrame(
        {"first": ["Mr", "Dr. Kaloslav", "Kaloslav", "Ms."], "last": ["Miraov", "Miraov", "Miraov Jr.", "Jr."]}
    )
    out = predict_frame(df, first_column="first", last_column="last", model=pair)
    assert out["given"].isna()[0] and out["given"].tolist()[1:3] == ["Kaloslav", "Kaloslav"]
    assert out["family"].tolist()[:3] == ["Miraov", "Miraov", "Miraov"]
    assert out["note"].tolist()[:3] == ["title Mr left out", "title Dr. left out", "suffix Jr. left out"]
    assert out["error"][3] == "no name in the cells (title Ms. left out; suffix Jr. left out)"
    whole = predict_frame(pd.DataFrame({"name": ["Dr. Kaloslav Miraov"]}), name_type="full", model=pair)
    assert whole["language_1"][0] == out["language_1"][1]
    assert whole["probability_1"][0] == pytest.approx(out["probability_1"][1])


def test_http_name_type(pair):
    from fastapi.testclient import TestClient

    from nameorigin.server import create_app

    with TestClient(create_app(pair)) as client:
        r = client.get("/api/predict", params={"name": "Kaloslav Miraov", "name_type": "full"})
        assert r.status_code == 200
        result = r.json()["results"][0]
        assert [p["part"] for p in result["parts"]] == ["given", "family"] and result["name_type"] == "full"
        plain = client.get("/api/predict", params={"name": "Miraov", "name_type": "surname"}).json()["results"][0]
        assert plain.get("parts") is None
        default = client.get("/api/predict", params={"name": "Miraov"}).json()["results"][0]
        assert default["name_type"] == "surname" and [p["part"] for p in default["parts"]] == ["family"]
        r = client.post("/api/predict", json={"names": ["J. Miraov", ","], "name_type": "auto"})
        assert r.status_code == 200 and r.json()["results"][1]["error"]
        assert client.get("/api/predict", params={"name": "x", "name_type": "middle"}).status_code == 422


def test_evaluate_full_names(models, tmp_path, capsys):
    data = tmp_path / "full.csv"
    data.write_text("name,language\n" + "\n".join(f"{n},{lang}" for n, lang in validation_pairs()) + "\n")
    m = ["--model", str(models["surname"]), "--first-model", str(models["first"])]
    assert main(["evaluate", *m, "--data", str(data), "--name-type", "full", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 60 and report["unanswered"] == 0
    assert set(report["parts"]) == {"surname", "first"} and 0 <= report["accuracy"] <= 1
    assert main(["evaluate", *m, "--data", str(data), "--name-type", "full", "--plot", "x.png"]) == 2


def test_two_plain_words_split_as_nameparser_splits_them(monkeypatch):
    """The parser's fast path (two plain words, no nameparser run) gives exactly nameparser's parse."""
    names = fullname.names
    lexicon = names.default_lexicon()
    rng = random.Random(3)
    pool = (
        [n for ns in make_names(30).values() for n in ns] + sorted(lexicon.given)[:300] + sorted(lexicon.family)[:300]
    )
    pool += ["Vi", "Li", "Kim", "Jr", "Dr", "van", "Mac", "III", "Abu", "de"]
    samples = [f"{rng.choice(pool).capitalize()} {rng.choice(pool).capitalize()}" for _ in range(1500)]
    fast = [names._parse.__wrapped__(s, "auto", lexicon) for s in samples]
    monkeypatch.setattr(names, "FAST_PAIRS", False)
    slow = [names._parse.__wrapped__(s, "auto", lexicon) for s in samples]
    assert fast == slow


def _plain_pool() -> list[str]:
    """Words for names of one to three words: made-up surnames, known given and family names (Faker's), Eastern
    family names and syllables, and words nameparser treats specially (titles, particles, roman numerals)."""
    lexicon = fullname.names.default_lexicon()
    pool = (
        [n for ns in make_names(30).values() for n in ns] + sorted(lexicon.given)[:300] + sorted(lexicon.family)[:300]
    )
    pool += ["Kim", "Park", "Lee", "Nguyen", "Wang", "Minjun", "Jong", "Un", "Xiaoming", "Thi", "Anh", "Basinger"]
    pool += ["Vi", "Li", "Jr", "Dr", "van", "Mac", "III", "Abu", "Abd", "de", "y", "Zoë", "Ñuñez", "O'Neil", "Ma"]
    pool += ["Lim", "Mill", "Xi", "Di", "Mimi", "IX", "iv", "X", "Vii", "Cid", "Lili"]  # roman letters, numerals or not
    pool += ["Jean-Pierre", "Smith-Jones", "D'Angelo", "Jong-un", "Van-Der", "Dr-Who", "Jr-Smith", "O'", "-Ann"]
    pool += ["Mary-Kate", "Abdel-Aziz", "Ibn-Saud", "Al-Sayed", "bin-Laden", "Mac-Donald", "Le'Roy", "Ka'ahumanu"]
    return pool


def test_plain_names_parse_a_whole_array_as_one_by_one(monkeypatch):
    """names.parse_plain (one to three plain words, a whole array at once) gives exactly nameparser's parse
    (names.parse with the two-word shortcut off) for every name it takes, under each name type; the names it
    leaves (titles, particles, other scripts, two spaces) are the ones parse must see."""
    import pyarrow as pa

    names = fullname.names
    rng = random.Random(5)
    pool = _plain_pool()
    samples = [" ".join(rng.choice(pool).capitalize() for _ in range(rng.randint(1, 3))) for _ in range(1500)]
    samples += [" ".join(rng.choice(pool) for _ in range(rng.randint(1, 3))) for _ in range(1500)]
    samples += ["Giuseppe  Verdi", " Smith\t", "Anna\u00a0Maria", "Kim\x1cMinjun"]  # white space as parse cleans it
    samples += ["Verdi, Giuseppe", "J. Smith", "김민준", "Шевченко Тарас", "a b"]
    parsed = {t: names.parse_plain(pa.array(samples), t) for t in ("auto", "full", "surname", "first")}
    monkeypatch.setattr(names, "FAST_PAIRS", False)
    lexicon = names.default_lexicon()
    for name_type, plain in parsed.items():
        assert plain.plain.sum() > 1000 and plain.plain[-9:-7].all() and not plain.plain[-7:].any()
        for i in np.flatnonzero(plain.plain):
            want = names._parse.__wrapped__(samples[i], name_type, lexicon)
            got = (plain.given[int(i)].as_py(), plain.family[int(i)].as_py(), plain.name_type[int(i)].as_py())
            assert got == (want.given_name or None, want.family_name or None, want.name_type), samples[i]


@pytest.mark.parametrize("with_first", [True, False])
def test_plain_names_answer_as_names_parsed_one_by_one(models, monkeypatch, with_first):
    """The whole-array path and the name-by-name path give the same table: answers, trust columns, sets,
    parts, errors, with the chunk's own prior (prior auto) resting on all the names alike."""
    import pyarrow as pa

    rng = random.Random(6)
    pool = _plain_pool() + make_first_names(20)["Alpha"] + make_first_names(20)["Gamma"]
    names_ = [" ".join(rng.choice(pool) for _ in range(rng.randint(1, 3))) for _ in range(300)]
    names_ += ["J. Smith", ",", None, "Verdi, Giuseppe", "김민준", "Kaloslav Miraov", "Kaloslav Miraov"]
    p = Predictor.load(models["surname"], first=models["first"] if with_first else False)
    options = {"coverage": 0.9, "prior": "auto"}
    cells = [rng.choice([*pool[:40], None, "", " J. ", "김", "Jo Ann", "  Miraov "]) for _ in range(2 * len(names_))]
    first, last = cells[: len(names_)], cells[len(names_) :]

    def answer(name_type):
        if name_type == "cells":
            return p.predict_columns(None, 3, first_names=first, last_names=last, **options)
        return p.predict_columns(names_, 3, name_type=name_type, **options)

    tables = {name_type: answer(name_type) for name_type in ("auto", "full", "cells")}
    monkeypatch.setattr(
        fullname.names,
        "parse_plain",
        lambda values, name_type: fullname.names.PlainParse(
            np.zeros(len(values), bool), values, values, pa.nulls(len(values), pa.string())
        ),
    )
    split = fullname.split_cells
    monkeypatch.setattr(
        fullname, "split_cells", lambda *a: (lambda c: c._replace(plain=np.zeros(len(c.plain), bool)))(split(*a))
    )
    for name_type, fast in tables.items():
        slow = answer(name_type)
        assert fast.column_names == slow.column_names
        for column in fast.column_names:
            a, b = fast[column].to_pylist(), slow[column].to_pylist()
            if column.startswith(("probability", "given_probability", "family_probability", "out_of_scope")):
                assert np.allclose(np.array(a, dtype=float), np.array(b, dtype=float), equal_nan=True), column
            else:
                assert a == b, column


def test_the_cluster_path_reads_full_names(models):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    from nameorigin import cluster, predict_frame

    df = pd.DataFrame({"name": ["Kaloslav Miraov", "J. McBone", ",", None, "Tesuie Miraov"]})
    paths = {"model": str(models["surname"]), "first": str(models["first"])}
    p = Predictor.load(paths["model"], first=paths["first"])
    expected = predict_frame(df, "name", top=2, model=p, name_type="full")
    result = cluster.predict(dd.from_pandas(df, npartitions=2), "name", top=2, name_type="full", **paths)
    assert list(result.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(result.compute(scheduler="sync"), expected, check_dtype=False)


def test_http_without_a_first_model_refuses_first_as_its_schema_says(models):
    from fastapi.testclient import TestClient

    from nameorigin.server import create_app

    with TestClient(create_app(Predictor.load(models["surname"], first=False))) as client:
        assert client.get("/api/predict", params={"name": "Kaloslav", "name_type": "first"}).status_code == 422
        assert client.post("/api/predict", json={"names": ["x"], "name_type": "first"}).status_code == 422
        r = client.get("/api/predict", params={"name": "Kaloslav Miraov", "name_type": "full"})
        assert r.status_code == 200 and r.json()["results"][0]["parts"][0]["dropped"] == "no first-name model"


def test_predict_frame_prior_auto_with_full_names_is_one_calls(pair):
    import pyarrow as pa

    from nameorigin import predict_frame

    people = [n for n, _ in validation_pairs(seed=4, n=6)]
    out = predict_frame(pa.table({"name": people}), model=pair, name_type="full", prior="auto", top=1)
    want = pair.predict(people, top=1, prior="auto", name_type="full")
    got = out.column("probability_1").to_pylist()
    assert got == pytest.approx([w.predictions[0]["probability"] for w in want], abs=1e-6)
    assert "given_language_1" in out.column_names


def test_a_name_written_in_a_script_is_answered_among_its_languages():
    """Hangul is Korean, kana Japanese, Han Chinese or Japanese, Greek letters Greek, Cyrillic Russian (of the
    18): the shipped model's answer puts all its probability there (with a note saying so), where its reading
    alone (김 read Kim, 이 read Lee) would not; the out-of-scope score stays the model's own; Latin letters and
    scripts none of the 18 writes (Hebrew) are left alone."""
    p = Predictor.load()
    names_ = ["김", "이", "佐藤", "王", "さくら", "Παπαδόπουλος", "Шевченко", "כהן", "Lee"]
    got = {r.name: r for r in p.predict(names_, top=len(p.labels))}
    allowed = {
        "김": {"Korean"},
        "이": {"Korean"},
        "佐藤": {"Chinese", "Japanese"},
        "王": {"Chinese", "Japanese"},
        "さくら": {"Japanese"},
        "Παπαδόπουλος": {"Greek"},
        "Шевченко": {"Russian"},
    }
    for name, languages in allowed.items():
        r = got[name]
        assert sum(x["probability"] for x in r.predictions if x["language"] in languages) == pytest.approx(1.0)
        assert "answered among" in r.note and r.predictions[0]["language"] in languages
    assert got["佐藤"].predictions[0]["language"] == "Japanese" and got["王"].predictions[0]["language"] == "Chinese"
    assert got["כהן"].note is None or "answered among" not in got["כהן"].note
    assert got["Lee"].note is None
    whole = {r.name: r for r in p.predict(["김", "Шевченко"], top=len(p.labels), name_type="surname")}
    assert whole["김"].predictions[0]["probability"] < 0.99  # read whole, the transliteration alone
    assert got["Шевченко"].out_of_scope == pytest.approx(whole["Шевченко"].out_of_scope, abs=1e-6)


@pytest.mark.parametrize(
    "name, script",
    [("김민준", "Hangul"), ("佐藤", "Han"), ("さくら", "Kana"), ("Σοφία", "Greek"), ("Иван", "Cyrillic"),
     ("محمد", "Arabic"), ("כהן", "Hebrew"), ("Zoë", "Latin"), ("Иван Smith", "Other")],
)  # fmt: skip
def test_letters_script(name, script):
    assert text.letters_script(name) == script


def test_a_first_name_model_alone_reads_each_name_whole_by_default(models):
    """A first-name model given alone (--model first.safetensors) reads each name whole as a given name under
    the default name type, as it did before auto was the default (no parse splits "Kaloslav Miraov")."""
    alone = Predictor.load(models["first"])
    names_ = ["Kaloslav", "Kaloslav Tesuie"]
    default, whole = alone.predict(names_), alone.predict(names_, name_type="surname")
    assert [r.to_dict() for r in default] == [r.to_dict() for r in whole]
    assert [r.to_dict() for r in alone.predict(names_, name_type="first")] == [r.to_dict() for r in whole]


def test_bench_fullnames_bound_scores_every_weight_pair_and_reports_the_best(models, tmp_path):
    """bench/fullnames.py bound as a command (tests never import bench/): the combined accuracy for each pair
    of weights of the grid, on the set itself, and the best of them; a first-name weight 0 answers as the
    surname model alone does on the parsed family name."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    sets = tmp_path / "sets"
    sets.mkdir()
    pairs = validation_pairs(seed=7, n=6)
    rows = ["name\tlanguage\tfirst\tlast\tlocale"] + [
        f"{n}\t{lang}\t{n.split()[0]}\t{n.split()[1]}\tx" for n, lang in pairs
    ]
    (sets / "faker.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    script = Path(__file__).resolve().parent.parent / "bench" / "fullnames.py"
    argv = [sys.executable, str(script), "bound", "--sets", str(sets), "--first-model", str(models["first"])]
    argv += ["--surname-model", str(models["surname"]), "--surname-weights", "1,2", "--first-weights", "0,1"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    assert "corpus-pairs" not in out  # only the sets the folder holds
    grid = {(float(r[0]), w): float(a) for r in re.findall(r"^([\d.]+) \| ([\d.]+) \| ([\d.]+)$", out, re.M)
            for w, a in zip((0.0, 1.0), r[1:], strict=True)}  # fmt: skip
    assert len(grid) == 4
    best = float(re.search(r"the best of the grid ([\d.]+)", out).group(1))
    assert abs(best - max(grid.values())) < 1e-3 and f"faker ({len(pairs)} names)" in out
    p = Predictor.load(models["surname"])
    alone = [r.predictions[0]["language"] for r in p.predict([n.split()[1] for n, _ in pairs], name_type="surname")]
    expected = sum(a == lang for a, (_, lang) in zip(alone, pairs, strict=True)) / len(pairs)
    assert abs(grid[(1.0, 0.0)] - expected) < 1e-3  # first name weighing 0: the surname's answer


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--surname-weights", "1,x"], "expected comma-separated numbers"),
        (["--first-weights", "1,-1"], "every weight must be a finite number >= 0"),
        (["--sets", "EMPTY"], "holds neither faker.tsv nor corpus-pairs.tsv"),
        (["--first-model", "MISSING"], "no such checkpoint file"),
    ],
)
def test_bench_fullnames_bound_refuses_bad_input_with_exit_2(models, tmp_path, extra, message):
    import subprocess
    import sys
    from pathlib import Path

    sets, empty = tmp_path / "sets", tmp_path / "empty"
    sets.mkdir()
    empty.mkdir()
    (sets / "faker.tsv").write_text("name\tlanguage\tfirst\tlast\tlocale\nKalo Miraov\tAlpha\tKalo\tMiraov\tx\n")
    argv = ["--sets", str(sets), "--first-model", str(models["first"]), "--surname-model", str(models["surname"])]
    swap = {"EMPTY": str(empty), "MISSING": str(tmp_path / "none.safetensors")}
    argv += [swap.get(a, a) for a in extra]
    script = Path(__file__).resolve().parent.parent / "bench" / "fullnames.py"
    done = subprocess.run([sys.executable, str(script), "bound", *argv], capture_output=True, text=True)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_an_error_row_quotes_a_long_cell_shortened(pair):
    """A 10,000-character cell is in the row's name, not repeated whole in its error (30 characters, then ...)."""
    long = "a" * 10_000
    for raw in (long, f"{long} {long}", "." * 500):
        (r,) = pair.predict([raw], name_type="full")
        assert r.error and len(r.error) < 300 and "..." in r.error, r.error
