"""Every bad input gets a clear answer: a message naming the input and exit 2, and nothing half-written."""

import argparse
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import train_tiny
from nameorigin import checkpoint
from nameorigin.checkpoint import CheckpointError
from nameorigin.cli import RANGES, HelpFormatter, ListOf, build_parser, main
from nameorigin.models import ModelConfig, build_model
from nameorigin.predict import Predictor, Probabilities

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("errors"), "gru", "--hidden", "8", "--epochs", "3")


def exits_with_usage_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err
    return err


# ---------------------------------------------------------------------------------------- flag ranges

TRAIN_BAD = [
    ("--lr", "-1"),
    ("--lr", "0"),
    ("--dropout", "2"),
    ("--dropout", "-0.5"),
    ("--label-smoothing", "2"),
    ("--class-weight", "-1"),
    ("--weight-decay", "-1"),
    ("--threads", "-1"),
    ("--clip", "-1"),
    ("--noise", "-1"),
    ("--patience", "-1"),
    ("--print-every", "0"),
    ("--plot-every", "0"),
    ("--lr", "nan"),
    ("--embed", "-1"),
    ("--seed", "x"),
    ("--device", "foo"),
]


@pytest.mark.parametrize("flag, value", TRAIN_BAD)
def test_train_flag_out_of_range(capsys, tmp_path, tiny_dir, flag, value):
    err = exits_with_usage_error(capsys, ["train", "--data", tiny_dir, flag, value, "--out", tmp_path / "m.st"])
    assert flag in err and repr(value) in err
    assert not (tmp_path / "m.st").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "--top", "0", "x"],
        ["predict", "--device", "foo", "x"],
        ["evaluate", "--device", "gpu"],
        ["serve", "--port", "70000"],
        ["serve", "--threads", "-2"],
        ["compare", "--out", "o", "--seeds", "0"],
        ["compare", "--out", "o", "--epochs", "0"],
        ["compare", "--out", "o", "--noise", "0,-2"],
        ["split", "--out", "o", "--seed", "-1"],
    ],
)
def test_other_commands_flag_out_of_range(capsys, argv):
    err = exits_with_usage_error(capsys, argv)
    assert "expected" in err


def _options(parser: argparse.ArgumentParser, command: list[str]):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, [*command, name])
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield command, action


def test_every_numeric_option_takes_its_range_from_the_one_table():
    for command, action in _options(build_parser(), []):
        if action.type in (int, float):
            pytest.fail(f"{command} {action.option_strings}: a bare {action.type.__name__}, not ranged()")
        if action.option_strings and action.option_strings[-1] in RANGES:
            checked = action.type.item if isinstance(action.type, ListOf) else action.type
            assert checked is RANGES[action.option_strings[-1]], (command, action.option_strings)


def test_every_option_has_help_that_states_its_default():
    parser = build_parser()
    formatter = HelpFormatter("nameorigin")
    for command, action in _options(parser, []):
        assert action.help, (command, action.option_strings or action.dest)
        if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
            assert "default" in formatter._get_help_string(action), (command, action.option_strings)
    text = subprocess.run(
        [sys.executable, "-m", "nameorigin", "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    text = " ".join(text.split())
    assert "(default: 127.0.0.1)" in text and "(default: 8000)" in text


def test_predict_on_cuda_without_cuda(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = main(["predict", "--device", "cuda", "Hinton"])
    err = capsys.readouterr().err
    assert code == 2 and "--device cuda" in err and "no CUDA" in err


# ---------------------------------------------------------------------------------------- data and splits


def test_train_without_validation_keeps_the_last_epoch_and_prints_no_figures_of_zero_names(capsys, tmp_path, tiny_dir):
    code = main(
        [
            "train",
            "--data",
            str(tiny_dir),
            "--split",
            "1,0,0",
            "--epochs",
            "3",
            "--hidden",
            "8",
            "--patience",
            "1",
            "--out",
            str(tmp_path / "m.st"),
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "(0 names)" not in out and "accuracy" not in out and "no validation names" in out and "last epoch (3)" in out
    meta = checkpoint.load(tmp_path / "m.st").meta
    assert meta["history"]["best_epoch"] == 3 and meta["metrics"]["valid"] is None


@pytest.mark.parametrize(
    "value, says",
    [
        ("0,0,1", "training fraction is 0"),
        ("0.5,0.5,0.5", "sum to 1.5"),
        ("0.8,-0.1,0.3", "negative"),
        ("a,b,c", "three fractions"),
        ("0.5,0.5", "three fractions"),
    ],
)
def test_split_says_what_is_really_wrong(capsys, tmp_path, tiny_dir, value, says):
    code = main(["split", "--data", str(tiny_dir), "--split", value, "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and says in err and not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--out", "{tmp}/m.st"],
        ["split", "--out", "{tmp}/s"],
        ["compare", "--out", "{tmp}/c", "--models", "gru", "--epochs", "1"],
    ],
)
def test_one_language_cannot_be_classified(capsys, tmp_path, tiny_dir, command):
    one = tmp_path / "one"
    one.mkdir()
    (one / "Alpha.txt").write_text((tiny_dir / "Alpha.txt").read_text())
    argv = [a.format(tmp=tmp_path) for a in command] + ["--data", str(one)]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "at least 2 languages" in err and "'Alpha'" in err and str(one) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["names", "one"]


def test_predict_empty_input_file(capsys, tmp_path, tiny_model):
    _, model = tiny_model
    for content in ("", "\n\n  \n"):
        (tmp_path / "empty.txt").write_text(content)
        code = main(
            [
                "predict",
                "--model",
                str(model),
                "--input",
                str(tmp_path / "empty.txt"),
                "--output",
                str(tmp_path / "out.csv"),
            ]
        )
        err = capsys.readouterr().err
        assert code == 2 and "empty.txt" in err and "no names" in err
        assert not (tmp_path / "out.csv").exists()


def test_predict_column_beyond_the_files_columns(capsys, tmp_path, tiny_model):
    _, model = tiny_model
    (tmp_path / "people.csv").write_text("id,surname\n1,Kalov\n2,McRaboo\n")
    code = main(["predict", "--model", str(model), "--input", str(tmp_path / "people.csv"), "--column", "5"])
    err = capsys.readouterr().err
    assert code == 2 and "people.csv" in err and "no column 5" in err


def test_evaluate_out_of_scope_file_missing_or_empty(capsys, tmp_path, tiny_dir, tiny_model):
    _, model = tiny_model
    (tmp_path / "empty.txt").write_text("\n")
    for name, says in (("missing.txt", "no such file"), ("empty.txt", "no readable names")):
        code = main(
            ["evaluate", "--model", str(model), "--data", str(tiny_dir), "--out-of-scope", str(tmp_path / name)]
        )
        err = capsys.readouterr().err
        assert code == 2 and name in err and says in err, err


def test_serve_on_a_port_already_taken_or_a_host_not_here(capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--port", str(port)])
        err = capsys.readouterr()
        assert code == 2 and f"--port {port}" in err.err and "serving" not in err.out
    code = main(["serve", "--host", "no-such-host.invalid", "--port", "8000"])
    assert code == 2 and "--host no-such-host.invalid" in capsys.readouterr().err
    with socket.socket() as probe:  # an address, but not this machine's (where the system lets it bind, skip)
        try:
            probe.bind(("10.255.255.1", 0))
        except OSError:
            pass
        else:
            pytest.skip("this machine binds 10.255.255.1")
    code = main(["serve", "--host", "10.255.255.1", "--port", "8000"])
    err = capsys.readouterr().err
    assert code == 2 and "--host 10.255.255.1: not an address of this machine" in err and "--port" not in err


# ---------------------------------------------------------------------------------------- the Python API


def test_stream_over_an_open_text_file_strips_line_ends_and_skips_blank_lines(tmp_path):
    (tmp_path / "names.txt").write_text("Hinton\n\nZhou\r\n   \n")
    with open(tmp_path / "names.txt", newline="") as fh:
        results = list(Predictor.load().stream(fh))
    assert [r.name for r in results] == ["Hinton", "Zhou"]
    assert all(not r.error and r.predictions for r in results)


def test_predict_refuses_a_single_string():
    p = Predictor.load()
    with pytest.raises(TypeError, match=r"predict\(\[name\]\)"):
        p.predict("Hinton")
    assert p.predict_one("Hinton").name == "Hinton"


def test_probabilities_has_a_clear_return_type():
    result = Predictor.load().probabilities(["Hinton"])
    assert isinstance(result, Probabilities)
    assert result.probs.shape == (1, 18) and result.attention is None
    assert abs(float(result.probs.sum()) - 1) < 1e-5


# ---------------------------------------------------------------------------------------- outputs


def test_train_json_writes_null_not_nan(capsys, tmp_path, tiny_dir):
    # two epochs of 2 steps each: no complete loss window of 50 steps, so the final loss is unknown
    code = main(
        [
            "train",
            "--data",
            str(tiny_dir),
            "--epochs",
            "2",
            "--hidden",
            "8",
            "--batch-size",
            "64",
            "--out",
            str(tmp_path / "m.st"),
            "--json",
        ]
    )
    line = capsys.readouterr().out.strip().splitlines()[-1]

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    summary = json.loads(line, parse_constant=refuse)
    assert code == 0 and summary["final_loss"] is None


def test_outputs_follow_the_umask(tmp_path, tiny_dir, capsys):
    old = os.umask(0o022)
    try:
        assert (
            main(
                [
                    "train",
                    "--data",
                    str(tiny_dir),
                    "--epochs",
                    "1",
                    "--hidden",
                    "8",
                    "--quiet",
                    "--out",
                    str(tmp_path / "m.st"),
                ]
            )
            == 0
        )
        assert main(["split", "--data", str(tiny_dir), "--out", str(tmp_path / "s")]) == 0
    finally:
        os.umask(old)
    for path in (tmp_path / "m.st", tmp_path / "s" / "train.tsv"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_compare_prints_clean_paths(capsys, tmp_path, tiny_dir):
    code = main(
        [
            "compare",
            "--data",
            str(tiny_dir),
            "--models",
            "gru",
            "--noise",
            "0",
            "--epochs",
            "1",
            "--hidden",
            "8",
            "--out",
            str(tmp_path / "cmp") + "/",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "//" not in out and f"{tmp_path / 'cmp' / 'results.csv'}" in out


def test_progress_is_one_line_an_epoch_when_stderr_is_not_a_terminal(tmp_path, tiny_dir):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nameorigin",
            "train",
            "--data",
            str(tiny_dir),
            "--epochs",
            "3",
            "--hidden",
            "8",
            "--out",
            str(tmp_path / "m.st"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 2", "epoch 3"]
    assert "accuracy" in lines[0]


# ---------------------------------------------------------------------------------------- checkpoints


def test_one_flipped_byte_in_the_weights_is_found(tmp_path):
    model = build_model(ModelConfig(name="gru", hidden=8), 3)
    path = checkpoint.save(tmp_path / "m.safetensors", model, ["A", "B", "C"])
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x01  # the last tensor's bytes: still a finite float, still loadable
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="damaged") as info:
        checkpoint.load(path)
    assert str(path) in str(info.value)
    code = main(["predict", "--model", str(path), "Hinton"])
    assert code == 2


# ---------------------------------------------------------------------------------------- house-keeping


def test_licence_matches_the_project():
    text = (ROOT / "LICENSE").read_text()
    assert "MIT License" in text and "Permission is hereby granted" in text
    assert 'license = { text = "MIT" }' in (ROOT / "pyproject.toml").read_text()


@pytest.mark.parametrize(
    ("suffix", "text"),
    [(".csv", "name\nGiuseppe Verdi\nVerdi, Giuseppe\nRossi\n"), (".jsonl", '{"name": "Smith"}\n{"name": Rossi}\n')],
)
def test_a_file_that_fails_to_parse_exits_2_every_time(tmp_path, suffix, text):
    """Arrow's read-ahead thread over a Python file object aborted the process (-6) after the message, now and
    then, when a block failed to parse: a regular file is read by Arrow itself. Several runs: it was a race."""
    import subprocess
    import sys

    bad = tmp_path / f"bad{suffix}"
    bad.write_text(text, encoding="utf-8")
    for i in range(4):
        done = subprocess.run(
            [sys.executable, "-m", "nameorigin", "predict", "--input", str(bad), "--output", tmp_path / f"o{i}.csv"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert f"bad{suffix}: cannot be read" in done.stderr and "terminate called" not in done.stderr
        assert not (tmp_path / f"o{i}.csv").exists()
