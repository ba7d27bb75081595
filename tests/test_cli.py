import csv
import json
import subprocess
import sys

import pytest
import torch

from conftest import train_tiny
from nameorigin.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small gru-attention trained through the command line on the tiny data."""
    return train_tiny(
        tmp_path_factory.mktemp("cli"),
        "gru-attention",
        "--hidden",
        "16",
        "--epochs",
        "15",
        "--lr",
        "0.02",
        "--batch-size",
        "16",
    )


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_json_line(capsys, tmp_path, tiny_dir):
    code, out, _ = run(
        capsys,
        "train",
        "--data",
        tiny_dir,
        "--model",
        "gru",
        "--hidden",
        "8",
        "--epochs",
        "2",
        "--out",
        tmp_path / "g.safetensors",
        "--json",
        "--quiet",
    )
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    for key in ("train_seconds", "names_seen", "names_per_second", "accuracy", "macro_f1"):
        assert isinstance(summary[key], (int, float)), key
    assert summary["names_seen"] == 2 * 128  # 80 % of 160 distinct names, two epochs
    assert (tmp_path / "g.safetensors").is_file()


def test_train_worksheet_prints_the_seeds_lines(capsys, tmp_path, tiny_dir):
    code, out, _ = run(
        capsys,
        "train",
        "--worksheet",
        "--data",
        tiny_dir,
        "--model",
        "rnn",
        "--iters",
        "400",
        "--hidden",
        "8",
        "--noise",
        "5",
        "--prune",
        "10",
        "--print-every",
        "100",
        "--plot-every",
        "50",
        "--out",
        tmp_path / "w.safetensors",
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("100 25% (0m ") and (" ✓" in lines[0] or " ✗ (" in lines[0])
    assert len([line for line in lines if "% (" in line]) == 4
    from nameorigin.checkpoint import load

    meta = load(tmp_path / "w.safetensors").meta
    assert meta["history"]["loss_steps"] == list(range(50, 401, 50))
    assert meta["training"]["mode"] == "worksheet" and meta["training"]["prune"] == 10


def test_predict_names_and_json(capsys, trained):
    _, model = trained
    code, out, _ = run(capsys, "predict", "--model", model, "--top", "2", "--json", "Kalov", "McRaboo")
    assert code == 0
    result = json.loads(out)
    assert [r["name"] for r in result] == ["Kalov", "McRaboo"]
    assert all(len(r["predictions"]) == 2 for r in result)
    assert result[0]["predictions"][0]["language"] == "Alpha"
    assert result[1]["predictions"][0]["language"] == "Beta"
    assert result[0]["predictions"][0]["probability"] >= result[0]["predictions"][1]["probability"]
    code, out, _ = run(capsys, "predict", "--model", model, "Kalov")
    assert code == 0 and out.split()[:2] == ["Kalov", "Alpha"]


def test_predict_input_file_streams_csv_with_error_rows(capsys, tmp_path, trained):
    _, model = trained
    src = tmp_path / "people.csv"
    src.write_text("id,surname\n1,Kalov\n2,123\n3,McRaboo\n")
    out_file = tmp_path / "out" / "pred.csv"
    code, _, _ = run(capsys, "predict", "--model", model, "--input", src, "--column", "surname", "--output", out_file)
    assert code == 0
    rows = list(csv.DictReader(out_file.open()))
    assert [r["name"] for r in rows] == ["Kalov", "123", "McRaboo"]
    assert rows[0]["language_1"] == "Alpha" and rows[0]["error"] == ""
    assert rows[1]["language_1"] == "" and "folds to nothing" in rows[1]["error"]
    assert [r["line"] for r in rows] == ["2", "3", "4"]


def test_predict_input_text_to_stdout_json_lines(capsys, tmp_path, trained):
    _, model = trained
    src = tmp_path / "names.txt"
    src.write_text("Kalov\nMcRaboo\n")
    code, out, _ = run(capsys, "predict", "--model", model, "--input", src, "--json", "--top", "1")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["predictions"][0]["language"] for r in rows] == ["Alpha", "Beta"]


def test_evaluate_json_and_table(capsys, trained):
    folder, model = trained
    code, out, _ = run(capsys, "evaluate", "--model", model, "--data", folder, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["n"] == 160 and result["accuracy"] > 0.8 and 0 < result["macro_f1"] <= 1
    assert set(result["per_language"]) == {"Alpha", "Beta", "Gamma", "Delta"}
    code, out, _ = run(capsys, "evaluate", "--model", model, "--data", folder)
    assert "macro-F1" in out and "Gamma" in out


def test_split_writes_leak_free_tsv_files(capsys, tmp_path, tiny_dir):
    code, _, _ = run(capsys, "split", "--data", tiny_dir, "--out", tmp_path / "s")
    assert code == 0
    train = (tmp_path / "s" / "train.tsv").read_text().splitlines()[1:]
    test = (tmp_path / "s" / "test.tsv").read_text().splitlines()[1:]
    assert len(train) == 128 and len(test) == 32
    assert not {r.split("\t")[0] for r in train} & {r.split("\t")[0] for r in test}


# --- bad input: a clear message naming the input, exit code 2 ------------------------------------------


def test_name_that_folds_to_nothing(capsys, trained):
    _, model = trained
    code, out, err = run(capsys, "predict", "--model", model, "Kalov", "1234")
    assert code == 2 and "'1234'" in err and "folds to nothing" in err
    assert "Kalov" in out  # the good name is still answered


def test_empty_file(capsys, tmp_path, trained):
    _, model = trained
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    code, _, err = run(capsys, "evaluate", "--model", model, "--data", empty)
    assert code == 2 and "empty.csv" in err and "no labelled names" in err
    code, _, err = run(capsys, "train", "--data", empty, "--out", tmp_path / "x.safetensors")
    assert code == 2 and "empty.csv" in err
    assert not (tmp_path / "x.safetensors").exists()


def test_missing_column(capsys, tmp_path, trained):
    _, model = trained
    src = tmp_path / "people.csv"
    src.write_text("id,surname\n1,Kalov\n")
    out_file = tmp_path / "pred.csv"
    code, _, err = run(capsys, "predict", "--model", model, "--input", src, "--column", "family", "--output", out_file)
    assert code == 2 and "people.csv" in err and "'family'" in err
    assert not out_file.exists() and list(tmp_path.iterdir()) == [src]  # nothing half-written
    labelled = tmp_path / "labelled.csv"
    labelled.write_text("Kalov\nMcRaboo\n")
    code, _, err = run(capsys, "evaluate", "--model", model, "--data", labelled)
    assert code == 2 and "labelled.csv:1" in err and "missing column" in err


def test_unknown_model_name(capsys, tmp_path, tiny_dir):
    code, _, err = run(capsys, "train", "--data", tiny_dir, "--model", "perceiver", "--out", tmp_path / "t.st")
    assert code == 2 and "unknown model 'perceiver'" in err and "gru-attention" in err


def test_damaged_checkpoint(capsys, tmp_path, trained):
    _, model = trained
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(model.read_bytes()[: len(model.read_bytes()) // 2])
    code, _, err = run(capsys, "predict", "--model", broken, "Kalov")
    assert code == 2 and "broken.safetensors" in err and "Traceback" not in err


def test_unknown_language_in_evaluation_data(capsys, tmp_path, trained):
    _, model = trained
    other = tmp_path / "other.csv"
    other.write_text("Kalov,Klingon\n")
    code, _, err = run(capsys, "evaluate", "--model", model, "--data", other)
    assert code == 2 and "Klingon" in err


def test_bad_split(capsys, tmp_path, tiny_dir):
    code, _, err = run(capsys, "train", "--data", tiny_dir, "--split", "0.8,0.3", "--out", tmp_path / "m.st")
    assert code == 2 and "--split '0.8,0.3'" in err


def test_console_script_runs_as_a_process(trained):
    _, model = trained
    proc = subprocess.run(
        [sys.executable, "-m", "nameorigin", "predict", "--model", str(model), "--json", "Kalov"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["predictions"][0]["language"] == "Alpha"


def test_ensemble_checkpoint_round_trip(capsys, tmp_path, tiny_dir):
    out = tmp_path / "e.safetensors"
    code, text, _ = run(
        capsys,
        "train",
        "--data",
        tiny_dir,
        "--model",
        "gru-attention",
        "--hidden",
        "8",
        "--members",
        "2",
        "--epochs",
        "2",
        "--out",
        out,
        "--quiet",
    )
    assert code == 0 and "member 2/2 (seed 1)" in text
    from nameorigin.checkpoint import load
    from nameorigin.predict import Predictor

    ck = load(out)
    assert ck.meta["history"]["best_epoch"] is None and len(ck.model.members) == 2
    result = Predictor(ck).predict(["Kalov"], top=2, attention=True)[0]
    assert len(result.predictions) == 2 and abs(sum(result.attention) - 1) < 1e-5
    code, text, _ = run(capsys, "attention", "--model", out, "Kalov")
    assert code == 0 and "K" in text


@pytest.mark.parametrize(
    "flag, value", [("--members", "0"), ("--hidden", "-3"), ("--layers", "two"), ("--epochs", "0")]
)
def test_sizes_must_be_positive_whole_numbers(capsys, tmp_path, tiny_dir, flag, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(tiny_dir), flag, value, "--out", str(tmp_path / "m.st")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and flag in err and repr(value) in err
    assert not (tmp_path / "m.st").exists()


@pytest.mark.parametrize("flags", [("--members", "2"), ("--compact",)])
def test_batched_only_settings_with_the_worksheet_loop_are_refused(capsys, tmp_path, tiny_dir, flags):
    code, _, err = run(capsys, "train", "--worksheet", *flags, "--data", tiny_dir, "--out", tmp_path / "m.st")
    assert code == 2 and flags[0] in err and "worksheet" in err
    assert not (tmp_path / "m.st").exists()


def test_train_compact_stores_the_network_at_float16(capsys, tmp_path, tiny_dir):
    from safetensors import safe_open

    out = tmp_path / "m.st"
    argv = ["train", "--data", tiny_dir, "--model", "gru", "--hidden", "8", "--epochs", "1", "--quiet"]
    assert run(capsys, *argv, "--compact", "--out", out)[0] == 0
    assert run(capsys, *argv, "--out", tmp_path / "full.st")[0] == 0
    with safe_open(str(out), "pt") as f:
        kinds = {f.get_tensor(k).dtype for k in f.keys() if not k.startswith("trust.")}  # noqa: SIM118 (safe_open is no dict)
    assert kinds == {torch.float16}
    assert out.stat().st_size < (tmp_path / "full.st").stat().st_size
    assert run(capsys, "predict", "--model", out, "Kowalski")[0] == 0  # loads and answers


def test_presets_lists_every_preset_with_its_settings(capsys):
    from nameorigin.training import PRESETS

    code, out, _ = run(capsys, "presets")
    assert code == 0
    for name in ("default", "best", "bundled", "worksheet-rnn", "worksheet-gru", "worksheet-attention"):
        assert name in PRESETS and f"\n{name}\n" in f"\n{out}"
    assert "'members': 3" in out and "'label_smoothing': 0.1" in out
    assert "teacher: the mixed preset, 3 folds out of fold" in out


def test_flags_override_the_best_preset(capsys, tmp_path, tiny_dir):
    from nameorigin.checkpoint import load

    out = tmp_path / "b.safetensors"
    code, _, _ = run(
        capsys,
        "train",
        "--preset",
        "best",
        "--data",
        tiny_dir,
        "--hidden",
        "8",
        "--embed",
        "4",
        "--members",
        "2",
        "--epochs",
        "1",
        "--out",
        out,
        "--quiet",
    )
    assert code == 0
    ck = load(out)
    assert ck.config.to_dict() == {
        "name": "gru-attention",
        "hidden": 8,
        "layers": 1,
        "bidirectional": True,
        "embed": 4,
        "dropout": 0.4,
        "members": 2,
        "heads": 4,
        "vocab": 0,
        "ngram": 5,
        "edges": False,
        "vocab_limit": 0,
        "compact": False,
        "int8": False,
        "mix": [],
    }
    training = ck.meta["training"]
    assert training["preset"] == "best" and training["label_smoothing"] == 0.1 and training["schedule"] == "cosine"
    assert training["epochs"] == 1


def test_unknown_preset(capsys, tmp_path, tiny_dir):
    code, _, err = run(capsys, "train", "--preset", "fastest", "--data", tiny_dir, "--out", tmp_path / "m.st")
    assert code == 2 and "unknown preset 'fastest'" in err and "best" in err
    assert not (tmp_path / "m.st").exists()


def test_train_with_a_teacher_file_and_out_of_fold_teachers(capsys, tmp_path, tiny_dir):
    from nameorigin.checkpoint import load

    teacher = tmp_path / "t.safetensors"
    assert (
        run(
            capsys,
            "train",
            "--data",
            tiny_dir,
            "--model",
            "cnn",
            "--hidden",
            "8",
            "--epochs",
            "2",
            "--out",
            teacher,
            "--quiet",
        )[0]
        == 0
    )
    code, text, _ = run(
        capsys,
        "train",
        "--data",
        tiny_dir,
        "--model",
        "transformer",
        "--hidden",
        "8",
        "--heads",
        "2",
        "--epochs",
        "2",
        "--teacher",
        teacher,
        "--teacher-folds",
        "2",
        "--distill-weight",
        "0.8",
        "--distill-temperature",
        "3",
        "--out",
        tmp_path / "s.safetensors",
        "--quiet",
    )
    assert code == 0 and "teacher 2/2 (cnn) trained" in text
    training = load(tmp_path / "s.safetensors").meta["training"]
    assert training["distill_weight"] == 0.8 and training["distill_temperature"] == 3.0
    assert training["teacher"]["file"] == str(teacher) and training["teacher"]["out_of_fold"]
    assert training["teacher"]["model"]["name"] == "cnn"
    code, text, _ = run(
        capsys,
        "train",
        "--data",
        tiny_dir,
        "--model",
        "gru",
        "--hidden",
        "8",
        "--epochs",
        "1",
        "--teacher",
        teacher,
        "--out",
        tmp_path / "s0.safetensors",
        "--quiet",
    )
    assert code == 0 and "teacher 1/" not in text  # the teacher file's own probabilities
    assert load(tmp_path / "s0.safetensors").meta["training"]["teacher"]["out_of_fold"] is False
    code, _, err = run(
        capsys,
        "train",
        "--data",
        tiny_dir,
        "--teacher",
        teacher,
        "--teacher-folds",
        "1",
        "--out",
        tmp_path / "bad.safetensors",
    )
    assert code == 2 and "--teacher-folds 1" in err and not (tmp_path / "bad.safetensors").exists()


@pytest.mark.parametrize(
    "flag, value",
    [("--distill-weight", "1.5"), ("--distill-temperature", "0"), ("--heads", "0"), ("--teacher-folds", "-1")],
)
def test_distillation_and_transformer_flags_are_checked(capsys, tmp_path, tiny_dir, flag, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(tiny_dir), flag, value, "--out", str(tmp_path / "m.st")])
    assert exit_info.value.code == 2 and flag in capsys.readouterr().err


def test_a_teacher_for_other_languages_is_refused(capsys, tmp_path, tiny_dir):
    teacher = tmp_path / "t.safetensors"
    other = tmp_path / "other.csv"
    other.write_text(
        "name,language\n"
        + "".join(f"{n}{i},{lang}\n" for i in range(10) for n, lang in [("Abc", "Xish"), ("Def", "Yish")])
    )
    assert (
        run(
            capsys,
            "train",
            "--data",
            other,
            "--model",
            "gru",
            "--hidden",
            "8",
            "--epochs",
            "1",
            "--split",
            "0.5,0.5,0",
            "--out",
            teacher,
            "--quiet",
        )[0]
        == 0
    )
    code, _, err = run(capsys, "train", "--data", tiny_dir, "--teacher", teacher, "--out", tmp_path / "s.st")
    assert code == 2 and "--teacher" in err and "languages" in err


def test_transformer_checkpoint_works_in_attention_and_predict(capsys, tmp_path, tiny_dir):
    out = tmp_path / "tr.safetensors"
    assert (
        run(
            capsys,
            "train",
            "--data",
            tiny_dir,
            "--model",
            "transformer",
            "--hidden",
            "8",
            "--heads",
            "2",
            "--layers",
            "2",
            "--epochs",
            "2",
            "--out",
            out,
            "--quiet",
        )[0]
        == 0
    )
    code, text, _ = run(capsys, "attention", "--model", out, "Kalov", "--plot", tmp_path / "h.png")
    weights = [float(cell.split(":")[1]) for cell in text.splitlines()[1].split()]
    assert code == 0 and len(weights) == 5 and abs(sum(weights) - 1) < 0.02 and (tmp_path / "h.png").is_file()
    assert run(capsys, "predict", "--model", out, "Kalov")[0] == 0


# --- files in and out through the columnar path ------------------------------------------------------------


def test_predict_parquet_in_and_out_keeping_columns(capsys, tmp_path, trained):
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, model = trained
    src = tmp_path / "people.parquet"
    pq.write_table(pa.table({"id": [7, 8, 9], "surname": ["Kalov", None, "McRaboo"]}), src)
    out_file = tmp_path / "pred.parquet"
    code, _, err = run(
        capsys,
        "predict",
        "--model",
        model,
        "--input",
        src,
        "--column",
        "surname",
        "--keep-columns",
        "--name-type",
        "surname",
        "--top",
        "1",
        "--output",
        out_file,
    )
    assert code == 0
    table = pq.read_table(out_file)
    assert table.column_names == [
        "id",
        "surname",
        "language_1",
        "probability_1",
        "abstained",
        "reason",
        "out_of_scope",
        "error",
    ]
    assert table.column("id").to_pylist() == [7, 8, 9]
    assert table.column("language_1").to_pylist() == ["Alpha", None, "Beta"]
    assert err.strip().splitlines()[-1].startswith("nameorigin: 3 names, 1 errors, ")  # the summary line


def test_format_flags_override_extensions(capsys, tmp_path, trained):
    _, model = trained
    src = tmp_path / "names.list"
    src.write_text("Kalov\n\nMcRaboo\n")
    out_file = tmp_path / "pred.out"
    code, _, _ = run(
        capsys,
        "predict",
        "--model",
        model,
        "--input",
        src,
        "--format",
        "txt",
        "--output",
        out_file,
        "--output-format",
        "jsonl",
        "--top",
        "1",
    )
    assert code == 0
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [(r["line"], r["language_1"]) for r in rows] == [(1, "Alpha"), (3, "Beta")]
    code, _, err = run(capsys, "predict", "--model", model, "--input", src, "--output", out_file)
    assert code == 2 and "names.list" in err and "--format" in err


def test_column_index_beyond_the_columns(capsys, tmp_path, trained):
    _, model = trained
    src = tmp_path / "people.csv"
    src.write_text("id,surname\n1,Kalov\n")
    code, _, err = run(
        capsys, "predict", "--model", model, "--input", src, "--column", "5", "--output", tmp_path / "o.csv"
    )
    assert code == 2 and "people.csv" in err and "no column 5" in err
    assert list(tmp_path.iterdir()) == [src]


@pytest.mark.parametrize("content", ["", "\n\n", "name\n"])
def test_empty_input_file(capsys, tmp_path, trained, content):
    _, model = trained
    src = tmp_path / "names.csv"
    src.write_text(content)
    code, _, err = run(capsys, "predict", "--model", model, "--input", src, "--output", tmp_path / "o.csv")
    assert code == 2 and "names.csv" in err and ("empty" in err or "no names" in err)
    assert list(tmp_path.iterdir()) == [src]


def test_a_killed_runs_partial_file_is_removed_by_the_next_run(capsys, tmp_path, trained):
    _, model = trained
    src = tmp_path / "names.txt"
    src.write_text("Kalov\n")
    stale = tmp_path / ".o.csv.partial-999999999-dead"
    stale.write_text("line,name\n1,Ka")
    code, _, _ = run(capsys, "predict", "--model", model, "--input", src, "--output", tmp_path / "o.csv")
    assert code == 0 and not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["names.txt", "o.csv"]


def test_every_numeric_predict_flag_is_in_the_ranges_table():
    from nameorigin.cli import RANGES, build_parser

    predict = build_parser()._subparsers._group_actions[0].choices["predict"]
    for action in predict._actions:
        if isinstance(action.type, type(RANGES["--top"])):
            assert action.option_strings[0] in RANGES
    assert "--workers" in RANGES


def test_the_terminal_table_pads_wide_characters_by_their_width():
    """Han, kana and Hangul take two terminal columns: the languages line up after 佐藤 and 김민준 as after Smith."""
    from nameorigin.cli import _padded

    assert _padded("Smith") == "Smith" + " " * 11
    assert _padded("佐藤") == "佐藤" + " " * 12 and _padded("김민준") == "김민준" + " " * 10
    assert _padded("Giuseppe Verdi Rossi") == "Giuseppe Verdi Rossi"  # longer than the column: as it is
