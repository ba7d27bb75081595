"""Training speed, side by side in one run: the seeds' one-name loop against nameorigin's trainers.

    python bench/train_speed.py [--data DIR] [--seed-iters 3000]

Prints, for gru at hidden 32 and 128: names per second of the seeds' loop and of the batched trainer,
their ratio and both held-out accuracies; the wall seconds until the batched gru (hidden 128) first
reaches 0.80 held-out accuracy; and the worksheet loop's speed-up over the seeds' code (rnn and gru,
hidden 32), which computes the same thing (tests/test_training.py shows the same losses).
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from nameorigin import data
from nameorigin import reference as seeds  # the seeds' code, reimplemented once for tests and benchmarks
from nameorigin.evaluation import metrics
from nameorigin.models import ModelConfig, batched_log_probs, build_model
from nameorigin.text import ALPHABET
from nameorigin.training import TrainConfig, WorksheetConfig, category_lines, train_batched, train_worksheet


def held_out_accuracy(model, test, labels) -> float:
    lp, _ = batched_log_probs(model, test.tokens, test.lengths)
    return metrics(test.labels, lp.argmax(1), labels)["accuracy"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="names folder (default: $NAMEORIGIN_DATA or the tutorial's archive)")
    ap.add_argument("--seed-iters", type=int, default=3000, help="steps of the seeds' loop to time")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=512, help="batched trainer's batch size")
    ap.add_argument("--lr", type=float, default=0.006, help="batched trainer's learning rate")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pairs = data.dedupe(data.read_labelled(data.resolve_data(args.data)))
    labels = data.languages(pairs)
    parts = data.split(pairs, (0.8, 0.1, 0.1), seed=0)
    train = data.encode_pairs(parts.train, labels)
    valid = data.encode_pairs(parts.valid, labels)
    test = data.encode_pairs(parts.test, labels)
    lines = category_lines(parts.train)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(parts.train)} training names, "
        f"{len(parts.test)} held out\n"
    )

    config = TrainConfig(batch_size=args.batch_size, lr=args.lr, schedule="plateau", class_weight=0.25)
    print(
        f"## Training speed: seeds' one-name loop vs batched trainer (gru; batches of {config.batch_size}, "
        f"lr {config.lr})"
    )
    print(f"{'hidden':>6} {'seeds names/s':>14} {'batched names/s':>16} {'ratio':>7} {'batched held-out acc':>21}")
    for hidden in (32, 128):
        torch.manual_seed(0)
        seed_model = seeds.GRUClassifier(len(ALPHABET), hidden, len(labels))
        seed_rate, _ = seeds.seed_train(seed_model, lines, args.seed_iters)
        torch.manual_seed(0)
        model = build_model(ModelConfig(name="gru", hidden=hidden), len(labels))
        history = train_batched(model, train, valid, labels, config, progress=False)
        acc = held_out_accuracy(model, test, labels)
        print(
            f"{hidden:>6} {seed_rate:>14,.0f} {history.names_per_second:>16,.0f} "
            f"{history.names_per_second / seed_rate:>6.0f}x {acc:>21.4f}"
        )

    print("\n## Time to 0.80 held-out (validation) accuracy: batched gru, hidden 128")
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="gru", hidden=128), len(labels))
    start = time.perf_counter()
    reached: list[float] = []

    def on_epoch(row):
        if row["accuracy"] >= 0.80 and not reached:
            reached.append(time.perf_counter() - start)
            print(f"epoch {row['epoch']}: validation accuracy {row['accuracy']:.4f} after {reached[0]:.1f} s wall")

    quick = TrainConfig(**{**config.__dict__, "epochs": 15, "patience": 0})
    train_batched(model, train, valid, labels, quick, progress=False, on_epoch=on_epoch)
    if not reached:
        print("did not reach 0.80 in 15 epochs")

    print("\n## Worksheet loop: nameorigin's vs the seeds' code (same arithmetic, hidden 32, noise 0)")
    print(f"{'model':>6} {'seeds it/s':>11} {'nameorigin it/s':>16} {'ratio':>7}")
    pruned = category_lines(data.prune(parts.train, 50, random.Random(0)))
    for name in ("rnn", "gru"):
        torch.manual_seed(0)
        seed_rate, _ = seeds.seed_train(
            seeds.SEED_MODELS[name](len(ALPHABET), 32, len(labels)), pruned, args.seed_iters
        )
        torch.manual_seed(0)
        model = build_model(ModelConfig(name=name, hidden=32), len(labels))
        history = train_worksheet(model, pruned, labels, WorksheetConfig(iters=args.seed_iters), printer=None)
        ours = args.seed_iters / history.train_seconds
        print(f"{name:>6} {seed_rate:>11,.0f} {ours:>16,.0f} {ours / seed_rate:>6.1f}x")


if __name__ == "__main__":
    main()
