"""What the scale benchmarks share: realistic samples of names, a gru 128 checkpoint, running the command line."""

from __future__ import annotations

import random
import re
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from nameorigin import data
from nameorigin.checkpoint import save
from nameorigin.models import ModelConfig, build_model

PEAK = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
    "sys.stderr.write(r.stderr); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)
SUMMARY = re.compile(r"nameorigin: ([\d,]+) names, ([\d,]+) errors.*?, ([\d.]+) s \(")


def real_names(folder: str | None) -> tuple[list[str], list[str]]:
    """The real data's names (folded, one entry a line, so repeats count) and its languages."""
    pairs = data.read_labelled(data.resolve_data(folder))
    return [n for n, _ in pairs], data.languages(pairs)


def zipf_sample(names: list[str], n: int, *, exponent: float = 1.0, seed: int = 0) -> list[str]:
    """``n`` names drawn with a Zipf-like frequency: the name of rank r (in a seeded random order of the
    distinct names) has weight 1 / r ** exponent, as surnames in a population do."""
    distinct = sorted(set(names))
    rng = np.random.default_rng(seed)
    rng.shuffle(distinct)
    weights = 1.0 / np.arange(1, len(distinct) + 1) ** exponent
    picks = rng.choice(len(distinct), size=n, p=weights / weights.sum())
    return [distinct[i] for i in picks]


def distinct_sample(names: list[str], n: int, *, seed: int = 0) -> list[str]:
    """``n`` names that never repeat: each a real name with a random three-letter tail (the worst case)."""
    rng = random.Random(seed)
    return [f"{rng.choice(names)} {''.join(rng.choices(string.ascii_lowercase, k=3))}" for _ in range(n)]


def two_samples(names: list[str], n: int) -> dict[str, list[str]]:
    """The speed benchmarks' two samples of ``n`` names: Zipf-like repeats of real names, and all distinct."""
    return {"zipf": zipf_sample(names, n), "distinct": distinct_sample(names, n)}


def gru128_checkpoint(labels: list[str], path: Path) -> Path:
    """An untrained gru with hidden 128 (speed does not depend on the weights), saved so the CLI can load it."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="gru", hidden=128), len(labels)).eval()
    return save(path, model, labels, {})


def surname_predict_argv(src, out, *extra: str) -> list[str]:
    """``nameorigin predict``'s arguments for a file of surnames read whole (``--name-type surname``, the path
    the speed figures measure; the default, ``auto``, parses each name first), ``src`` into ``out``."""
    return ["predict", "--name-type", "surname", "--input", str(src), "--output", str(out), *extra]


def run_cli(*argv: str, peak: bool = False) -> tuple[int, int, float, float | None]:
    """``nameorigin ARGV`` in a fresh process: (names, errors, seconds from its summary line, peak RSS MB)."""
    cmd = [sys.executable, "-m", "nameorigin", *argv]
    if peak:
        out = subprocess.run([sys.executable, "-c", PEAK, *cmd], capture_output=True, text=True, check=True)
        rss = int(out.stdout.strip().splitlines()[-1]) / 1024
    else:
        out = subprocess.run(cmd, capture_output=True, text=True)
        rss = None
    match = SUMMARY.search(out.stderr)
    if not match:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    names, errors, seconds = match.groups()
    return int(names.replace(",", "")), int(errors.replace(",", "")), float(seconds), rss
