"""What a new user meets first: input columns and encodings, standard input, output paths that cannot be lost,
arguments that are not UTF-8, SIGTERM, threads."""

import csv
import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import make_names, slow_train_argv, train_tiny
from nameorigin import checkpoint
from nameorigin.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("contact"), "gru", "--hidden", "8", "--epochs", "3")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def rows_of(out: str) -> list[dict]:
    return list(csv.DictReader(out.splitlines()))


# ------------------------------------------------------------------------------------------- readers


@pytest.mark.parametrize(
    "content, fmt, column_note",
    [
        (b"\xef\xbb\xbfname,other\nKalov,1\nMcRaboo,2\n", "csv", "column 'name' (its header looks like a name's)"),
        (b"\xef\xbb\xbfname\tother\nKalov\t1\nMcRaboo\t2\n", "tsv", "column 'name'"),
        (b"country,Last Name\nXX,Kalov\nYY,McRaboo\n", "csv", "column 'Last Name' (its header looks like a name's)"),
        (b"id;surname\n1;Kalov\n2;McRaboo\n", "csv", "semicolon-separated, 2 columns; names from column 'surname'"),
        (b"id|family_name\n1|Kalov\n2|McRaboo\n", "csv", "bar-separated"),
        (b"id\tsurname\n1\tKalov\n2\tMcRaboo\n", "csv", "tab-separated"),
        (b"name\rKalov\rMcRaboo\r", "csv", None),
        # a people table's usual headers are a header row, never a name (the helper's first-contact report)
        (
            b"id,first,last,email\n1,Ann,Kalov,a@b\n2,Bob,McRaboo,c@d\n",
            "csv",
            "names from column 'last' (its header looks like a name's); it also has a column of first names, 'first': "
            "--first-column first --last-column last reads each name from both",
        ),
        (b"id,given,family\n1,Ann,Kalov\n2,Bob,McRaboo\n", "csv", "--first-column given --last-column family"),
        (
            b"First Name,Last Name\nAnn,Kalov\nBob,McRaboo\n",
            "csv",
            "--first-column 'First Name' --last-column 'Last Name'",
        ),
        (b"id,full_name,last\n1,Kalov,x\n2,McRaboo,y\n", "csv", "names from column 'full_name' (its header"),
        (b"last\nKalov\nMcRaboo\n", "csv", None),
        (b"full_name\nKalov\nMcRaboo\n", "csv", None),
        (b"\xef\xbb\xbfKalov\nMcRaboo\n", "txt", None),
        (b"Kalov\rMcRaboo\r", "txt", None),
        (b"Kalov\r\nMcRaboo\r\n", "txt", None),
        (b'\xef\xbb\xbf{"name": "Kalov"}\n{"name": "McRaboo"}\n', "jsonl", None),
    ],
)
def test_readers_strip_the_bom_read_cr_line_ends_and_say_which_column(
    capsys, tmp_path, trained, content, fmt, column_note
):
    _, model = trained
    src = tmp_path / f"in.{fmt}"
    src.write_bytes(content)
    code, out, err = run(capsys, "predict", "--model", model, "--input", src, "--top", "1")
    assert code == 0, err
    assert [r["name"] for r in rows_of(out)] == ["Kalov", "McRaboo"]
    if column_note:
        assert column_note in err
    else:
        assert "names from column" not in err


def test_a_headerless_many_column_file_says_it_took_the_first_column(capsys, tmp_path, trained):
    src = tmp_path / "in.csv"
    src.write_text("Kalov,Alpha\nMcRaboo,Beta\n")
    code, out, err = run(capsys, "predict", "--model", trained[1], "--input", src)
    assert code == 0 and "no header row, so the first column; choose another with --column N" in err
    code, out, err = run(capsys, "predict", "--model", trained[1], "--input", src, "--column", "1")
    assert code == 0 and "names from column" not in err and rows_of(out)[0]["name"] == "Alpha"


def test_a_long_text_line_without_line_ends_is_refused_with_flat_memory(capsys, tmp_path, trained, monkeypatch):
    from nameorigin import frame

    monkeypatch.setattr(frame, "MAX_LINE_BYTES", 1000)
    src = tmp_path / "one.txt"
    src.write_bytes(b"Kalov" * 1000)
    code, _, err = run(capsys, "predict", "--model", trained[1], "--input", src)
    assert code == 2 and "line 1 runs over" in err and "without a line end" in err


def test_cr_line_ends_cut_between_blocks_count_once():
    import io

    from nameorigin.frame import _read_text

    batches = list(_read_text("x", io.BytesIO(b"Kalov\r\nMcRaboo\r\n\rTesuez"), block=6))
    rows = [r for b in batches for r in b.to_pylist()]
    assert rows == [{"line": 1, "name": "Kalov"}, {"line": 2, "name": "McRaboo"}, {"line": 4, "name": "Tesuez"}]


# ------------------------------------------------------------------------------------------- standard input


def _stdin_run(trained, stdin: bytes, *argv):
    return subprocess.run(
        [sys.executable, "-m", "nameorigin", "predict", "--model", str(trained[1]), "--input", "-", *argv],
        input=stdin,
        capture_output=True,
        timeout=120,
    )


def test_input_dash_reads_standard_input_as_text_or_csv_and_spools_it_for_prior_auto(trained):
    r = _stdin_run(trained, b"Kalov\nMcRaboo\n", "--top", "1")
    assert r.returncode == 0 and [x["name"] for x in rows_of(r.stdout.decode())] == ["Kalov", "McRaboo"]
    r = _stdin_run(trained, b"id;surname\n1;Kalov\n2;McRaboo\n", "--format", "csv", "--prior", "auto", "--quiet")
    assert r.returncode == 0, r.stderr
    assert [x["name"] for x in rows_of(r.stdout.decode())] == ["Kalov", "McRaboo"]
    assert b"estimated on standard input, 2 distinct name(s) (EM, shrunk towards the training mix" in r.stderr
    r = _stdin_run(trained, b"", "--top", "1")
    assert r.returncode == 2 and b"standard input: has no names" in r.stderr
    r = _stdin_run(trained, b"x", "--format", "parquet")
    assert r.returncode == 2 and b"Parquet cannot be read from standard input" in r.stderr
    r = _stdin_run(trained, b"Kalov\rMcRaboo\r", "--format", "jsonl")  # refused with a message, no abort
    assert r.returncode == 2 and b"standard input: cannot be read" in r.stderr


# ------------------------------------------------------------------------------------------- arguments


def test_names_and_input_together_are_refused(capsys, tmp_path, trained):
    src = tmp_path / "in.txt"
    src.write_text("Kalov\n")
    code, out, err = run(capsys, "predict", "--model", trained[1], "Smith", "--input", src)
    assert code == 2 and out == "" and "names as arguments ('Smith'...) and --input" in err


def test_a_name_argument_that_is_not_utf8_is_an_error_row_echoed_escaped(trained):
    argv = [b"predict", b"--model", os.fsencode(trained[1]), b"Sm\xffith", b"Kalov", b"--json"]
    r = subprocess.run([os.fsencode(sys.executable), b"-m", b"nameorigin", *argv], capture_output=True, timeout=120)
    assert r.returncode == 2 and b"Traceback" not in r.stderr
    rows = json.loads(r.stdout)
    assert rows[0]["name"] == "Sm\\xffith" and rows[0]["error"] == "name argument 'Sm\\xffith' is not valid UTF-8 text"
    assert rows[0]["abstained"] is False and rows[1]["name"] == "Kalov" and rows[1]["predictions"]
    assert b"nameorigin: name argument 'Sm\\xffith' is not valid UTF-8 text" in r.stderr


def test_an_error_rows_abstained_is_false_in_json_csv_and_jsonl(capsys, tmp_path, trained):
    src = tmp_path / "in.txt"
    src.write_text("Kalov\n1234\n")
    _, out, _ = run(capsys, "predict", "--model", trained[1], "1234", "--json")
    assert json.loads(out)[0]["abstained"] is False
    _, out, _ = run(capsys, "predict", "--model", trained[1], "--input", src, "--json")
    assert [json.loads(line)["abstained"] for line in out.splitlines()] == [False, False]
    _, out, _ = run(capsys, "predict", "--model", trained[1], "--input", src)
    assert [r["abstained"] for r in rows_of(out)] == ["false", "false"]
    run(capsys, "predict", "--model", trained[1], "--input", src, "--output", tmp_path / "o.jsonl")
    assert [json.loads(line)["abstained"] for line in (tmp_path / "o.jsonl").read_text().splitlines()] == [False] * 2


def test_attention_help_names_every_model_with_attention():
    from nameorigin.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0]
    help_text = next(a.help for a in sub._choices_actions if a.dest == "attention")
    assert "transformer" in help_text and "gru-attention" in help_text


# ------------------------------------------------------------------------------------------- output paths


def test_the_output_may_not_be_the_input_even_through_a_hard_link_or_symlink(capsys, tmp_path, trained):
    src = tmp_path / "in.txt"
    src.write_text("Kalov\n")
    os.link(src, tmp_path / "hard.txt")
    os.symlink(src, tmp_path / "soft.txt")
    for out in (src, tmp_path / "hard.txt", tmp_path / "soft.txt", tmp_path / "." / "in.txt"):
        code, _, err = run(capsys, "predict", "--model", trained[1], "--input", src, "--output", out)
        assert code == 2 and "writing it would replace the input" in err
        assert src.read_text() == "Kalov\n"


def test_a_symlinked_output_is_written_through_to_its_target(capsys, tmp_path, trained):
    src = tmp_path / "in.txt"
    src.write_text("Kalov\n")
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "o.csv"
    target.write_text("old")
    link = tmp_path / "o.csv"
    link.symlink_to(target)
    code, _, err = run(capsys, "predict", "--model", trained[1], "--input", src, "--output", link)
    assert code == 0, err
    assert link.is_symlink() and "Kalov" in target.read_text()
    assert sorted(os.listdir(tmp_path / "real")) == ["o.csv"]


@pytest.mark.parametrize(
    "make, what",
    [
        (lambda p: os.mkfifo(p), "is a FIFO"),
        (lambda p: p.mkdir(), "is a folder"),
    ],
)
def test_special_files_are_refused_as_outputs(capsys, tmp_path, trained, make, what):
    src = tmp_path / "in.txt"
    src.write_text("Kalov\n")
    out = tmp_path / "o.csv"
    make(out)
    code, _, err = run(capsys, "predict", "--model", trained[1], "--input", src, "--output", out)
    assert code == 2 and what in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "out, says",
    [
        ("blank.txt/out.csv", "blank.txt is a file, not a folder"),
        ("/dev/null", "is a character device"),
        ("/proc/nope.csv", "cannot be written"),
        ("/sys/out.parquet", "cannot be written"),
    ],
)
def test_unwritable_output_paths_give_one_line(capsys, tmp_path, trained, monkeypatch, out, says):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blank.txt").write_text("")
    (tmp_path / "in.txt").write_text("Kalov\n")
    code, _, err = run(capsys, "predict", "--model", trained[1], "--input", "in.txt", "--output", out)
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err


def test_a_second_run_into_the_same_output_is_refused_naming_the_first(capsys, tmp_path, trained):
    from nameorigin.atomic import atomic_path

    src = tmp_path / "in.txt"
    src.write_text("Kalov\n")
    out = tmp_path / "o.csv"
    with atomic_path(out) as tmp:  # the first run, still writing
        tmp.write_text("first")
        code, _, err = run(capsys, "predict", "--model", trained[1], "--input", src, "--output", out)
        assert code == 2 and f"another run (process {os.getpid()}) is writing it" in err
        assert tmp.read_text() == "first"
    assert out.read_text() == "first"
    code, _, _ = run(capsys, "predict", "--model", trained[1], "--input", src, "--output", out)  # lock released
    assert code == 0 and "Kalov" in out.read_text() and sorted(os.listdir(tmp_path)) == ["in.txt", "o.csv"]


def test_the_next_run_into_a_folder_removes_unheld_partials_only(tmp_path):
    from nameorigin.atomic import atomic_text

    dead = tmp_path / ".a.csv.partial-dead"
    dead.write_text("killed")
    live = tmp_path / ".b.csv.partial-live"
    live.write_text("writing")
    with open(live) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with atomic_text(tmp_path / "c.csv") as fh:
            fh.write("x")
    assert not dead.exists() and live.exists() and (tmp_path / "c.csv").read_text() == "x"


# ------------------------------------------------------------------------------------------- SIGTERM


def _terminate_when(proc, ready, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


def test_sigterm_during_predict_output_leaves_no_partial_file(tmp_path, trained):
    names = [n for lang in make_names(40).values() for n in lang]
    big = tmp_path / "big.txt"
    big.write_text("\n".join(names * 5000) + "\n")
    out = tmp_path / "out" / "O.csv"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nameorigin",
            "predict",
            "--model",
            str(trained[1]),
            "--input",
            str(big),
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def partial():
        return out.parent.exists() and any(p.stat().st_size for p in out.parent.glob(".O.csv.partial-*"))

    assert _terminate_when(proc, partial) == 128 + signal.SIGTERM
    assert "nameorigin: terminated" in proc.stderr.read()
    assert not out.exists() and os.listdir(out.parent) == []


def test_sigterm_during_train_out_leaves_no_partial_file(tmp_path):
    from conftest import write_names_dir

    folder = write_names_dir(tmp_path)
    model = tmp_path / "m" / "M.safetensors"
    proc = subprocess.Popen(
        slow_train_argv(folder, model),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr.readline().startswith("epoch ")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert not model.exists() and (not model.parent.exists() or os.listdir(model.parent) == [])


# ------------------------------------------------------------------------------------------- threads


def test_threads_default_to_one_and_are_recorded_in_the_checkpoint(capsys, tmp_path, trained):
    import torch

    from nameorigin.cli import build_parser

    parser = build_parser()
    for argv in (["predict", "x"], ["evaluate"], ["compare", "--out", "o"], ["train"]):
        assert parser.parse_args(argv).threads == 1
    assert parser.parse_args(["predict", "x", "--quiet"]).quiet
    assert checkpoint.read_meta(trained[1])["training"]["threads"] == torch.get_num_threads() == 1
    folder = trained[0]
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    for out in (a, b):  # the same settings and seed: the same weights
        assert (
            main(
                [
                    "train",
                    "--data",
                    str(folder),
                    "--hidden",
                    "8",
                    "--epochs",
                    "2",
                    "--out",
                    str(out),
                    "--quiet",
                    "--threads",
                    "1",
                ]
            )
            == 0
        )
    capsys.readouterr()
    wa, wb = checkpoint.load(a).model.state_dict(), checkpoint.load(b).model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_predict_quiet_prints_nothing_on_stderr(capsys, tmp_path, trained):
    src = tmp_path / "in.txt"
    src.write_text("Kalov\n")
    code, out, err = run(capsys, "predict", "--model", trained[1], "--input", src, "--quiet", "--threads", "1")
    assert code == 0 and "Kalov" in out and err == ""


@pytest.mark.parametrize(
    "content, suffix, expected",
    [  # where the bad byte is, and how to convert: in the sniffed sample, past it (Arrow's reader), in text
        (b"first,last\n" + b"Ann,Kalov\n" * 40 + "José,Muñoz\n".encode("latin1"), ".csv", "byte 0xe9 on line 42"),
        (b"first,last\n" + b"Ann,Kalov\n" * 200_000 + "José,Muñoz\n".encode("latin1"), ".csv", "on line 200002"),
        (b"Kalov\n" * 200_000 + "Muñoz\n".encode("latin1"), ".txt", "byte 0xf1 on line 200001"),
    ],
)
def test_a_file_that_is_not_utf8_says_where_and_how_to_convert(capsys, tmp_path, trained, content, suffix, expected):
    src, dst = tmp_path / f"in{suffix}", tmp_path / "out.csv"
    src.write_bytes(content)
    code, _, err = run(capsys, "predict", "--model", trained[1], "--input", src, "--output", dst)
    assert code == 2 and "is not UTF-8 text" in err and expected in err and "iconv -f latin1 -t utf-8" in err, err
    assert not dst.exists()  # nothing half-written


def test_a_folder_as_input_and_a_table_on_standard_input_get_plain_messages(capsys, tmp_path, trained, monkeypatch):
    import io

    folder = tmp_path / "names"
    folder.mkdir()
    for flags in ([], ["--format", "csv"]):
        code, _, err = run(capsys, "predict", "--model", trained[1], "--input", folder, *flags)
        assert code == 2 and f"{folder}: is a folder, not a file" in err, err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"first,last\nAnn,Kalov\n")))
    code, _, err = run(capsys, "predict", "--model", trained[1], "--input", "-", "--last-column", "last")
    assert code == 2 and "standard input is read as text, one name a line: give --format csv" in err, err


@pytest.mark.parametrize(
    "argv, victim",
    [  # a second new-user trial's commands: each wrote over its own input (or the model) and exited 0
        (["train", "--data", "{data}", "--epochs", "1", "--out", "{data}"], "data"),
        (["train", "--data", "{data}", "--epochs", "1", "--plot", "{model}", "--out", "{model}"], "model"),
        (["train", "--data", "{data}", "--epochs", "1", "--teacher", "{model}", "--out", "{model}"], "model"),
        (["evaluate", "--model", "{model}", "--data", "{data}", "--plot", "{data}"], "data"),
        (["evaluate", "--model", "{model}", "--data", "{data}", "--reliability", "{data}"], "data"),
        (["evaluate", "--model", "{model}", "--data", "{data}", "--risk-coverage", "{model}"], "model"),
        (["attention", "--model", "{model}", "Kalov", "--plot", "{model}"], "model"),
        (["split", "--data", "{folder}/test.tsv", "--split", "0.8,0,0.2", "--out", "{folder}"], "test"),
        (["predict", "--model", "{model}", "--input", "{data}", "--output", "{model}"], "model"),
        (
            ["combine", "--model", "{model}", "--first-model", "{model}", "--pairs", "{data}", "--out", "{model}"],
            "model",
        ),
        (["corpus", "--source", "{data}", "--out", "{data}"], "data"),
    ],
)
def test_no_command_writes_over_its_own_input_or_another_output(capsys, tmp_path, trained, argv, victim):
    import shutil

    folder = tmp_path / "work"
    folder.mkdir()
    data, model = folder / "names.tsv", folder / "model.safetensors"
    data.write_text("".join(f"{n}\t{lang}\n" for lang, ns in make_names(20).items() for n in ns))
    shutil.copy(data, folder / "test.tsv")
    shutil.copy(trained[1], model)
    files = {"data": data, "model": model, "test": folder / "test.tsv"}
    before = files[victim].read_bytes()
    code, _, err = run(capsys, *[a.format(data=data, model=model, folder=folder) for a in argv])
    assert code == 2 and "writing it would replace that file" in err, err
    assert files[victim].read_bytes() == before
