"""Inference precision, side by side in one run: names/s and accuracy of fp32, bf16 and int8 on one model.

    python bench/precision.py [--model CKPT] [--data LABELLED] [--names 200000] [--repeat 3] [--threads N]

``--data`` is a labelled file or folder to score (all of it). Without it, the names the model did not train
on: the checkpoint's own split (its fractions and seed) of $NAMEORIGIN_DATA, test part if it has one, else the
validation part (which picked the best epoch: fine for comparing precisions, slightly optimistic as a level).
Speed is ``Predictor.probabilities`` on ``--names`` folded names drawn from those names, best of ``--repeat``.
A precision is worth keeping only if its accuracy moves by less than 0.2 points from fp32's.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from nameorigin import data
from nameorigin.evaluation import metrics
from nameorigin.models import PRECISIONS, PrecisionError, batched_log_probs, int8_modules
from nameorigin.predict import Predictor
from nameorigin.text import fold

KEEP_POINTS = 0.2


def scored_names(predictor: Predictor, path: str | None) -> tuple[list[data.Pair], str]:
    if path:
        return data.dedupe(data.read_labelled(path)), f"all of {path}"
    training = predictor.checkpoint.meta.get("training") or {}
    if "split" not in training:
        raise SystemExit("this checkpoint does not record its split: give --data (a labelled test file)")
    pairs = data.dedupe(data.read_labelled(data.resolve_data(None)))
    parts = data.split(pairs, tuple(training["split"]), seed=training.get("split_seed", 0))
    if parts.test:
        return parts.test, f"the model's held-out test split ({len(parts.test)} names)"
    return parts.valid, (
        f"the model's validation split ({len(parts.valid)} names; it has no test split, and "
        "validation picked its best epoch)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint (default: the bundled model)")
    ap.add_argument("--data", help="labelled names to score (default: the model's own held-out names)")
    ap.add_argument("--names", type=int, default=200_000, help="names for the speed figure (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=3, help="speed runs, best kept (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    reference = Predictor.load(args.model)
    pairs, what = scored_names(reference, args.data)
    encoded = data.encode_pairs(pairs, reference.labels)
    rng = random.Random(0)
    folded = [fold(rng.choice(pairs)[0]) for _ in range(args.names)]
    config = reference.checkpoint.config
    print(
        f"model: {args.model or 'the bundled model'} ({config.name}, hidden {config.hidden}, "
        f"{'bidirectional, ' if config.bidirectional else ''}{reference.n_parameters:,} parameters); "
        f"int8 quantizes: {', '.join(sorted(int8_modules(reference.model))) or 'nothing'}"
    )
    print(
        f"accuracy on {what}; speed on {args.names:,} names, {torch.get_num_threads()} torch thread(s), "
        f"best of {args.repeat}\n"
    )
    print(f"{'precision':<10} {'names/s':>10} {'accuracy':>9} {'Δ points':>9} {'macro-F1':>9} {'max |Δp|':>9}  keep")
    base_acc, base_probs = None, None
    for precision in PRECISIONS:
        try:
            predictor = Predictor.load(args.model, precision=precision)
        except PrecisionError as e:
            print(f"{precision:<10} not available: {e}")
            continue
        lp, _ = batched_log_probs(predictor.model, encoded.tokens, encoded.lengths)
        result = metrics(encoded.labels, lp.argmax(1), predictor.labels)
        probs = (lp / predictor.temperature).softmax(1)
        predictor.probabilities(folded[:2048])  # warm-up
        best = float("inf")
        for _ in range(args.repeat):
            started = time.perf_counter()
            predictor.probabilities(folded)
            best = min(best, time.perf_counter() - started)
        if base_acc is None:
            base_acc, base_probs = result["accuracy"], probs
        delta = (result["accuracy"] - base_acc) * 100
        keep = "yes" if precision == "fp32" or abs(delta) < KEEP_POINTS else "no"
        print(
            f"{precision:<10} {args.names / best:>10,.0f} {result['accuracy']:>9.4f} {delta:>+9.2f} "
            f"{result['macro_f1']:>9.4f} {float((probs - base_probs).abs().max()):>9.4f}  {keep}"
        )


if __name__ == "__main__":
    main()
