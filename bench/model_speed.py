"""Prediction speed of model shapes against a gru with hidden 128, side by side in one run.

    python bench/model_speed.py [--data DIR] [--names 200000] [--presets best,bundled] [--shape JSON ...]
    python bench/model_speed.py --presets bundled --shape '{"name": "transformer", "layers": 2}' \
        --shape '{"name": "cnn", "embed": 64}'

Speed does not depend on the weights, so each shape is built fresh (untrained) from a preset's model
settings (or from ``--shape '{"name": "lstm", "bidirectional": true}'``, over the default preset's) and timed
through ``Predictor.probabilities`` on the same folded names, batched as the
command line does (``Predictor.predict`` computes each distinct name once, so on repeated names it would time
its cache, not the model). Prints names per second and the slowdown against gru 128: the rule for the bundled
model is that it stays within 3x.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch

from nameorigin import Predictor, data
from nameorigin.checkpoint import Checkpoint
from nameorigin.models import ModelConfig, build_model
from nameorigin.training import PRESETS, resolve_settings


def names_per_second(config: ModelConfig, labels: list[str], names: list[str], repeats: int) -> float:
    torch.manual_seed(0)
    predictor = Predictor(Checkpoint(model=build_model(config, len(labels)).eval(), labels=labels))
    predictor.probabilities(names[:2000])  # warm up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.probabilities(names)
        best = min(best, time.perf_counter() - started)
    return len(names) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="names folder (default: $NAMEORIGIN_DATA or the tutorial's archive)")
    ap.add_argument("--names", type=int, default=200_000, help="names per timing (drawn from the data)")
    ap.add_argument("--presets", default="best,bundled", help="presets whose model shapes are timed")
    ap.add_argument("--shape", action="append", default=[], help="a model shape as JSON, over the default preset's")
    ap.add_argument("--repeats", type=int, default=2, help="timings per shape; the fastest counts")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pairs = data.read_labelled(data.resolve_data(args.data))
    labels = data.languages(pairs)
    rng = random.Random(0)
    names = [rng.choice(pairs)[0] for _ in range(args.names)]
    shapes = [("gru, hidden 128 (reference)", ModelConfig(name="gru", hidden=128))]
    for preset in [p for p in args.presets.split(",") if p]:
        shapes.append((f"preset {preset}", resolve_settings(preset).model))  # a distilled student: the student
    for text in args.shape:
        shapes.append((text, ModelConfig(**{**PRESETS["default"].model, **json.loads(text)})))
    print(f"{len(names):,} names, {torch.get_num_threads()} torch threads")
    reference = None
    for label, config in shapes:
        speed = names_per_second(config, labels, names, args.repeats)
        reference = reference or speed
        print(f"{label} ({config.to_dict()}): {speed:,.0f} names/s, {reference / speed:.2f}x the reference's time")


if __name__ == "__main__":
    main()
