"""The main commands on a pseudo-terminal, as a user runs them: their progress bars are drawn, and they finish."""

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios

import pytest

from conftest import make_names, write_names_dir

pytestmark = pytest.mark.skipif(not hasattr(pty, "openpty"), reason="no pseudo-terminals here")


def on_terminal(*argv, timeout: float = 180.0) -> tuple[int, str]:
    """Run ``nameorigin ARGV`` with stdin, stdout and stderr on a pseudo-terminal; (exit code, what it showed)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a real terminal's size
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "100", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nameorigin", *map(str, argv)],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    shown = b""
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], timeout)
            assert ready, f"no output for {timeout} s: {shown[-500:]!r}"
            try:
                chunk = os.read(leader, 1 << 16)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
        code = proc.wait(timeout=60)
    return code, shown.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("pty")
    folder = write_names_dir(root)
    out = root / "m.safetensors"
    code, shown = on_terminal(
        "train", "--data", folder, "--model", "gru", "--hidden", "8", "--epochs", "2", "--out", out
    )
    assert code == 0, shown
    assert "training: " in shown and "epoch" in shown  # tqdm's bar, drawn on the terminal
    assert f"saved {out}" in shown and "Traceback" not in shown
    return folder, out


def test_train_on_a_terminal_draws_its_bar(model):
    assert model[1].is_file()


def test_predict_input_on_a_terminal(tmp_path, model):
    src = tmp_path / "people.csv"
    src.write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(make_names(30)["Alpha"])))
    code, shown = on_terminal("predict", "--model", model[1], "--input", src, "--output", tmp_path / "o.csv")
    assert code == 0, shown
    assert "Traceback" not in shown and "30 names, 0 errors" in shown and " names/s]" in shown  # the bar
    assert (tmp_path / "o.csv").read_text().count("\n") == 31
    code, shown = on_terminal("predict", "--model", model[1], "--input", src, "--top", "1")  # CSV on the terminal
    assert code == 0 and "language_1" in shown and "30 names" in shown, shown


def test_evaluate_on_a_terminal(model):
    code, shown = on_terminal("evaluate", "--model", model[1], "--data", model[0])
    assert code == 0 and "accuracy" in shown and "Traceback" not in shown, shown


def test_compare_on_a_terminal(tmp_path, model):
    code, shown = on_terminal(
        "compare",
        "--models",
        "rnn,gru",
        "--noise",
        "0",
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--data",
        model[0],
        "--out",
        tmp_path / "cmp",
    )
    assert code == 0 and "wrote" in shown and "Traceback" not in shown, shown
    assert (tmp_path / "cmp" / "results.csv").is_file()
