"""Training with a corpus through the use case (``nameorigin train --corpus``, ``nameorigin.fit(corpus=...)``), on
tiny generated data and a tiny corpus built from a generated table (never names-dataset's real data)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import nameorigin
from nameorigin import checkpoint, data
from nameorigin import corpus as C
from nameorigin.cli import main
from test_corpus import capture_batches, letters, write_source

STEMS = ["ka", "lo", "mi", "ra", "te", "su", "bo", "ne", "di", "fa", "gu", "pe"]
#: labelled names of three of the tutorial's languages, 24 each
LABELLED = (
    [(f"{a.capitalize()}{b}ov", "Russian") for a in STEMS[:6] for b in STEMS[6:10]]
    + [(f"Mc{a.capitalize()}{b}", "English") for a in STEMS[:6] for b in STEMS[6:10]]
    + [(f"{a.capitalize()}{b}ski", "Polish") for a in STEMS[:6] for b in STEMS[6:10]]
)
SMALL = ["--model", "gru", "--hidden", "8", "--epochs", "2", "--batch-size", "8", "--quiet"]


@pytest.fixture
def labelled(tmp_path):
    path = tmp_path / "labelled.csv"
    path.write_text("name,language\n" + "".join(f"{n},{lang}\n" for n, lang in LABELLED), encoding="utf-8")
    return path


@pytest.fixture
def corpus_file(tmp_path):
    """In scope: Russian, English and Polish look-alikes (one shared with the labelled data, Mckafa); out of
    scope: Finnish names (fitted on) and Icelandic ones (a held-out country)."""
    rows = [(f"{a.capitalize()}{b}ov", "RU", 20) for a in STEMS[6:] for b in STEMS[:4]]
    rows += [(f"Mc{a.capitalize()}{b}", "GB", 20) for a in STEMS[6:] for b in STEMS[:4]]
    rows += [(f"{a.capitalize()}{b}ski", "PL", 20) for a in STEMS[6:] for b in STEMS[:4]]
    rows += [("Mckafa", "GB", 30), ("Mckafa", "PL", 1)]
    rows += [(f"Virta{letters(i)}nen", "FI", 5) for i in range(12)]
    rows += [(f"Gudmunds{letters(i)}dottir", "IS", 5) for i in range(6)]
    out = tmp_path / "corpus.parquet"
    assert main(["corpus", "--source", str(write_source(tmp_path, rows)), "--out", str(out)]) == 0
    return out


def test_cli_and_fit_train_the_same_weights_and_record_the_corpus(tmp_path, labelled, corpus_file, capsys):
    out = tmp_path / "cli.safetensors"
    assert main(["train", "--data", str(labelled), "--corpus", str(corpus_file), "--out", str(out), *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "corpus names" in printed and "real from the corpus" in printed
    trained = nameorigin.fit(
        nameorigin.load_names(labelled), model="gru", hidden=8, epochs=2, batch_size=8, corpus=corpus_file
    )
    saved = checkpoint.load(out)
    theirs = trained.model.state_dict()
    assert saved.model.state_dict().keys() == theirs.keys()
    for name, mine in saved.model.state_dict().items():
        assert torch.equal(mine, theirs[name]), name
    record = saved.meta["training"]["corpus"]
    assert record["sha256"] == checkpoint.file_sha256(corpus_file) and record["n_train"] > 0
    assert record["names_dataset"] is None and len(record["map_sha256"]) == 64  # built from a table
    assert trained.trust.info["n_oos_fit_real"] > 0
    assert trained.trust.info["model_prior_from"] == "validation and corpus validation"  # its prior: both sets
    plain = nameorigin.fit(nameorigin.load_names(labelled), model="gru", hidden=8, epochs=1, batch_size=8)
    assert plain.meta["data_fingerprint"] == data.fingerprint(plain.train_pairs) != saved.meta["data_fingerprint"]


def test_an_excluded_name_never_reaches_a_batch_nor_do_held_names(tmp_path, labelled, corpus_file, monkeypatch):
    real = C.read(corpus_file)
    pairs = nameorigin.load_names(labelled)
    in_corpus, in_labelled = real.names("train")[0], data.split(pairs, (0.8, 0.1, 0.1), seed=0).train[0][0]
    exclude = tmp_path / "exclude.txt"
    exclude.write_text(f"{in_corpus.upper()}\n{in_labelled.lower()}\n")  # one of each source, in other cases
    seen = capture_batches(monkeypatch)
    trained = nameorigin.fit(
        pairs, model="gru", hidden=8, epochs=1, batch_size=8, corpus=corpus_file, exclude=[exclude]
    )
    batches = {n.lower() for n in seen}
    assert len(batches) > len(trained.train_pairs)  # corpus names did reach the batches
    assert not {in_corpus.lower(), in_labelled.lower()} & batches
    held = {n.lower() for n, _ in trained.split.valid + trained.split.test}
    assert held and not held & batches  # the labelled data's validation and test names left the corpus too
    corpus_held = {n.lower() for n in real.names("valid") + real.names("held-out")}
    assert corpus_held and not corpus_held & {n.lower() for n, _ in trained.train_pairs}


def test_exclude_without_a_corpus_leaves_the_labelled_names(tmp_path, labelled):
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("KABOOV\n")
    trained = nameorigin.fit(
        nameorigin.load_names(labelled), model="gru", hidden=8, epochs=1, split=(1, 0, 0), exclude=[exclude]
    )
    assert "Kaboov" not in {n for n, _ in trained.train_pairs} and len(trained.train_pairs) == len(LABELLED) - 1


def test_real_out_of_scope_names_leave_held_out_countries_and_labelled_names(corpus_file):
    real = C.read(corpus_file)
    fit_names = C.out_of_scope_fit(real, held_out_countries=("IS",), exclude=["VIRTAAAANEN"])
    assert len(fit_names) == 11 and all(n.startswith("Virta") for n in fit_names) and "Virtaaaanen" not in fit_names
    held = C.out_of_scope_held_out(real, held_out_countries=("IS",))
    assert len(held) == 6 and all(n.startswith("Gudmunds") for n in held)
    assert len(C.out_of_scope_fit(real, per_country=2, held_out_countries=())) == 4  # 2 FI, 2 IS


@pytest.mark.parametrize("case", ["another shape", "missing", "worksheet", "not parquet"])
def test_bad_corpus_is_refused_and_nothing_written(tmp_path, labelled, corpus_file, capsys, case):
    path = {
        "another shape": tmp_path / "plain.parquet",
        "missing": tmp_path / "nope.parquet",
        "worksheet": corpus_file,
        "not parquet": tmp_path / "text.parquet",
    }[case]
    if case == "another shape":
        pq.write_table(pa.table({"name": ["Smith"], "country": ["GB"]}), path)
    if case == "not parquet":
        path.write_text("name\nSmith\n")
    out = tmp_path / "model.safetensors"
    extra = ["--worksheet", "--model", "rnn", "--iters", "10"] if case == "worksheet" else SMALL
    assert main(["train", "--data", str(labelled), "--corpus", str(path), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert {
        "another shape": "is not a nameorigin corpus",
        "missing": "no such corpus file",
        "worksheet": "--corpus: the worksheet loop",
        "not parquet": "is not a Parquet file",
    }[case] in err
    assert str(path) in err or case == "worksheet"
    assert not out.exists() and not list(tmp_path.glob("model*"))


def test_corpus_writes_both_benchmarks_for_evaluate(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(C, "OOS_HELD_OUT_COUNTRIES", ("IS",))
    rows = [(f"Gudmunds{letters(i)}dottir", "IS", 5) for i in range(6)] + [("Kowalski", "PL", 9)]
    out, oos = tmp_path / "c.parquet", tmp_path / "oos.txt"
    assert (
        main(
            [
                "corpus",
                "--source",
                str(write_source(tmp_path, rows)),
                "--out",
                str(out),
                "--out-of-scope-benchmark",
                str(oos),
            ]
        )
        == 0
    )
    assert "6 out-of-scope names of IS" in capsys.readouterr().out
    assert oos.read_text().split() == C.out_of_scope_held_out(C.read(out), held_out_countries=("IS",))


def test_bench_oos_detectors_compares_detectors_on_the_models_own_fitting_names(tmp_path, labelled, corpus_file):
    """bench/oos_detectors.py as a command (tests never import bench/): the names the trust layer was fitted on
    rebuilt as training built them, each detector's AUROC on the held-out country, the stored one's equal to
    what `nameorigin evaluate --out-of-scope` reports."""
    import json
    import re
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("faker")
    model = tmp_path / "m.safetensors"
    argv = ["train", "--data", str(labelled), "--corpus", str(corpus_file), "--split", "0.9,0.1,0"]
    assert main([*argv, "--out", str(model), *SMALL]) == 0
    bench = tmp_path / "in.tsv"
    bench.write_text("".join(f"{a.capitalize()}{b}ski\tPolish\n" for a in STEMS[:3] for b in STEMS[10:]))
    held = tmp_path / "out.txt"
    held.write_text("".join(f"Gudmunds{letters(i)}dottir\n" for i in range(6)))
    script = Path(__file__).resolve().parent.parent / "bench" / "oos_detectors.py"
    cmd = [sys.executable, str(script), "--data", str(labelled), "--corpus", str(corpus_file), "--model", str(model)]
    out = subprocess.run([*cmd, "--benchmark", str(bench), "--out-of-scope", str(held)], check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    rows = dict(re.findall(r"^\| ([^|]+?) \| ([\d.]+) \|$", out, re.M))
    assert set(rows) == {"stored", "7 features, LR", "7 features, boosted", "27 features, LR", "27 features, boosted",
                         "n-gram in/out"}  # fmt: skip
    assert all(0 <= float(v) <= 1 for v in rows.values())
    assert "scored on 6 in-scope and 6 out-of-scope names" in out
    evaluated = subprocess.run(
        [sys.executable, "-m", "nameorigin", "evaluate", "--model", str(model), "--data", str(bench), "--json",
         "--out-of-scope", str(held)], check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert abs(json.loads(evaluated)["out_of_scope"]["auroc"] - float(rows["stored"])) < 1e-3


def test_bench_oos_detectors_refuses_a_missing_file_with_exit_2(tmp_path, labelled, corpus_file):
    import subprocess
    import sys
    from pathlib import Path

    bench = tmp_path / "in.tsv"
    bench.write_text("Kalov\tRussian\n")
    script = Path(__file__).resolve().parent.parent / "bench" / "oos_detectors.py"
    argv = [sys.executable, str(script), "--data", str(labelled), "--corpus", str(corpus_file)]
    argv += ["--benchmark", str(bench), "--out-of-scope", str(tmp_path / "none.txt")]
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 2 and "none.txt" in done.stderr and "Traceback" not in done.stderr
