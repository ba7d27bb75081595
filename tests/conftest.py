"""Tiny generated data: four made-up 'languages' whose names differ in telling ways."""

from __future__ import annotations

import random
import sys

import pytest

PATTERNS = {
    "Alpha": lambda r, s: s.capitalize() + "ov",
    "Beta": lambda r, s: "Mc" + s.capitalize(),
    "Gamma": lambda r, s: s.capitalize() + "ez",
    "Delta": lambda r, s: s.capitalize() + "ii" + s[:1],
}
SYLLABLES = ["ka", "lo", "mi", "ra", "te", "su", "bo", "ne", "di", "fa", "gu", "pe"]


def make_names(n_per_language: int = 40, seed: int = 0) -> dict[str, list[str]]:
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    for lang, make in PATTERNS.items():
        names: set[str] = set()
        while len(names) < n_per_language:
            stem = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))
            names.add(make(rng, stem))
        out[lang] = sorted(names)
    return out


def write_names_dir(root, *, duplicate: bool = False):
    """A folder of <Language>.txt files, 40 names each (with ``duplicate``, one repeated line in Alpha)."""
    folder = root / "names"
    folder.mkdir()
    for lang, names in make_names().items():
        lines = names + ([names[0]] if duplicate and lang == "Alpha" else [])
        (folder / f"{lang}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def train_tiny(root, model: str, *extra: str):
    """Train ``model`` on the tiny folder through the command line; returns (folder, checkpoint)."""
    from nameorigin.cli import main

    folder = write_names_dir(root)
    checkpoint = root / f"{model}.safetensors"
    assert main(["train", "--data", str(folder), "--model", model, "--out", str(checkpoint), "--quiet", *extra]) == 0
    return folder, checkpoint


@pytest.fixture
def tiny_dir(tmp_path):
    return write_names_dir(tmp_path, duplicate=True)


@pytest.fixture
def tiny_csv(tmp_path):
    path = tmp_path / "names.csv"
    rows = ["name,language"] + [f"{n},{lang}" for lang, names in make_names(20, seed=1).items() for n in names]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def slow_train_argv(folder, out) -> list[str]:
    """A ``nameorigin train`` process that runs long enough (500 epochs, no early stop) to be killed mid-run."""
    cmd = ["train", "--data", str(folder), "--epochs", "500", "--patience", "0", "--hidden", "8", "--out", str(out)]
    return [sys.executable, "-m", "nameorigin", *cmd]
