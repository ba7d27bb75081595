"""Prediction speed and memory, side by side in one run.

    python bench/predict_speed.py [--data DIR] [--names 1000000] [--seed-names 20000]

Prints names per second of ``Predictor.predict`` (batched) on a million names against the seeds'
one-name-at-a-time evaluation of the same model, a gru with hidden 128 (the seeds' GRUClassifier shape;
speed does not depend on the weights, so it is built fresh from seed 0), and the peak memory (max RSS) of
``nameorigin predict --input`` (the bundled model) on 100,000 and 1,000,000 lines, with their ratio.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from nameorigin import Predictor, data
from nameorigin import reference as seeds  # the seeds' code, reimplemented once for tests and benchmarks
from nameorigin.checkpoint import Checkpoint
from nameorigin.models import ModelConfig, build_model
from nameorigin.text import ALPHABET

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_common import surname_predict_argv

PEAK = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_rss_mb(argv: list[str]) -> float:
    """Max RSS of one command, measured from a fresh parent so no other child counts."""
    out = subprocess.run([sys.executable, "-c", PEAK, *argv], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def seed_model_like(predictor: Predictor) -> seeds.GRUClassifier:
    """The seeds' GRUClassifier holding the predictor's gru weights."""
    cfg = predictor.model.config
    seed = seeds.GRUClassifier(len(ALPHABET), cfg.hidden, len(predictor.labels))
    seed.gru.load_state_dict(predictor.model.encoder.fwd[0].state_dict())
    seed.h2o.load_state_dict(predictor.model.h2o.state_dict())
    return seed.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="names folder (default: $NAMEORIGIN_DATA or the tutorial's archive)")
    ap.add_argument("--names", type=int, default=1_000_000)
    ap.add_argument("--seed-names", type=int, default=20_000, help="names the seeds' loop evaluates (timed)")
    args = ap.parse_args()
    pairs = data.read_labelled(data.resolve_data(args.data))
    real, labels = [n for n, _ in pairs], data.languages(pairs)
    rng = random.Random(0)
    names = [rng.choice(real) for _ in range(args.names)]
    torch.manual_seed(0)
    predictor = Predictor(
        Checkpoint(model=build_model(ModelConfig(name="gru", hidden=128), len(labels)).eval(), labels=labels)
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; model: gru, hidden 128\n")

    print(f"## Names per second on {args.names:,} names")
    seed = seed_model_like(predictor)
    sample = names[: args.seed_names]
    seed_pred, seed_rate = seeds.seed_evaluate(seed, sample)
    start = time.perf_counter()
    results = predictor.predict(names, top=3, name_type="surname")
    rate = len(names) / (time.perf_counter() - start)
    ours = [predictor.labels.index(r.predictions[0]["language"]) for r in results[: len(sample)]]
    agree = sum(int(a == b) for a, b in zip(ours, seed_pred.tolist(), strict=False)) / len(sample)
    start = time.perf_counter()
    predictor.probabilities(names)
    tensor_rate = len(names) / (time.perf_counter() - start)
    print(f"{'path':<44} {'names/s':>10} {'vs seeds':>9}")
    print(f"{'seeds: one name at a time (' + format(len(sample), ',') + ' names)':<44} {seed_rate:>10,.0f} {1:>8.0f}x")
    print(f"{'Predictor.predict (top 3 as dicts)':<44} {rate:>10,.0f} {rate / seed_rate:>8.0f}x")
    print(f"{'Predictor.probabilities (tensor out)':<44} {tensor_rate:>10,.0f} {tensor_rate / seed_rate:>8.0f}x")
    print(f"same top language as the seeds' loop on {agree:.2%} of the timed names\n")

    print("## Peak memory of `nameorigin predict --input FILE --output OUT.csv`")
    with tempfile.TemporaryDirectory() as tmp:
        rows = {}
        for n in (100_000, 1_000_000):
            src = Path(tmp) / f"names{n}.txt"
            src.write_text("\n".join(names[i % len(names)] for i in range(n)) + "\n")
            start = time.perf_counter()
            rows[n] = peak_rss_mb(
                [sys.executable, "-m", "nameorigin", *surname_predict_argv(src, Path(tmp) / "out.csv")]
            )
            print(f"{n:>9,} lines: peak RSS {rows[n]:7.1f} MB, {time.perf_counter() - start:5.1f} s wall")
        print(f"ratio 1,000,000 / 100,000 lines: {rows[1_000_000] / rows[100_000]:.2f}x")


if __name__ == "__main__":
    main()
