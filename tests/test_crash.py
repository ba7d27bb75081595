"""Killed midway (SIGKILL), a run leaves no output file, only a recognisable hidden temporary file that the next
run into the same folder removes."""

import os
import signal
import subprocess
import sys
import time

from conftest import make_names, slow_train_argv, write_names_dir


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "finished too soon"
        assert time.monotonic() < deadline, "the run never reached the point to kill it at"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_killed_predict_leaves_no_output_and_the_next_run_cleans_up(tmp_path):
    names = [n for lang in make_names(40).values() for n in lang]
    big = tmp_path / "big.txt"
    big.write_text("\n".join(names * 5000) + "\n")  # 800,000 lines: seconds of work
    out_dir = tmp_path / "out"
    out = out_dir / "OUT.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nameorigin", "predict", "--input", str(big), "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def partial():
        return [p for p in out_dir.glob(".OUT.csv.partial-*") if p.stat().st_size > 0] if out_dir.exists() else []

    _kill_when(proc, partial)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    left = list(out_dir.glob(".OUT.csv.partial-*"))
    assert len(left) == 1
    small = tmp_path / "small.txt"
    small.write_text("Hinton\nZhou\n")
    subprocess.run(
        [sys.executable, "-m", "nameorigin", "predict", "--input", str(small), "--output", str(out)],
        check=True,
        capture_output=True,
    )
    assert out.is_file() and "Hinton" in out.read_text()
    assert list(out_dir.glob(".OUT.csv.partial-*")) == []


def test_killed_training_leaves_no_checkpoint_and_stale_partials_are_removed(tmp_path):
    folder = write_names_dir(tmp_path)
    model = tmp_path / "models" / "M.safetensors"
    model.parent.mkdir()
    stale = model.parent / ".M.safetensors.partial-old"
    stale.write_bytes(b"left by a killed run")
    argv = slow_train_argv(folder, model)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def training_started() -> bool:  # one line an epoch on stderr when it is not a terminal
        lines.append(proc.stderr.readline())
        return lines[-1].startswith("epoch ")

    _kill_when(proc, training_started)
    assert not model.exists()
    argv[argv.index("500")] = "1"
    subprocess.run(argv, check=True, capture_output=True)
    assert model.is_file()
    assert list(model.parent.glob(".M.safetensors.partial-*")) == []
