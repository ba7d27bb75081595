"""Training in 1 and in 2 processes (DistributedDataParallel over gloo), side by side in one run.

    python bench/ddp_speed.py [--data DIR] [--nprocs 1,2] [--epochs 5] [--prune 0] [-- EXTRA TRAIN FLAGS]

Runs ``nameorigin train --json --nproc N`` for each N on the same data, split and seed, and prints training
names/s (the trainer's own clock: all processes' names over rank 0's training seconds, start-up excluded), the
wall time of the whole command, and validation and held-out test accuracy. The cores are shared out between the
processes (``OMP_NUM_THREADS`` = cores / N). With N processes each step takes N batches at once (the global
batch is N x --batch-size) and there are N times fewer steps, so accuracy can move a little: compare with the
seed-to-seed spread of nameorigin.reference. On a machine with 2 cores a second process cannot double the speed:
the two processes split the same 2 cores that one process already uses, and add an all-reduce every step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="labelled names (default: $NAMEORIGIN_DATA or the tutorial's archive)")
    ap.add_argument("--nprocs", default="1,2", help="process counts to compare (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=5, help="epochs of each run (default: %(default)s)")
    ap.add_argument("--prune", type=int, default=0, help="at most N training names a language; 0 all (default: 0)")
    ap.add_argument("extra", nargs="*", help="more `nameorigin train` flags, after --")
    args = ap.parse_args()
    counts = [int(x) for x in args.nprocs.split(",")]
    cores = os.cpu_count() or 1
    print(
        f"{cores} cores; train --epochs {args.epochs}{f' --prune {args.prune}' if args.prune else ''} "
        f"{' '.join(args.extra)}\n"
    )
    print(
        f"{'processes':>9} {'names/s':>9} {'train s':>8} {'wall s':>7} {'valid acc':>9} {'test acc':>9} {'test F1':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            cmd = [
                sys.executable,
                "-m",
                "nameorigin",
                "train",
                "--json",
                "--nproc",
                str(n),
                "--epochs",
                str(args.epochs),
                "--split",
                "0.8,0.1,0.1",
                "--out",
                str(Path(tmp) / f"ddp{n}.safetensors"),
                *args.extra,
            ]
            if args.data:
                cmd += ["--data", args.data]
            if args.prune:
                cmd += ["--prune", str(args.prune)]
            env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // n))}
            started = time.perf_counter()
            run = subprocess.run(cmd, capture_output=True, text=True, env=env)
            wall = time.perf_counter() - started
            if run.returncode:
                print(f"{n:>9} failed (exit {run.returncode}): {run.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(run.stdout.strip().splitlines()[-1])
            print(
                f"{n:>9} {r['names_per_second']:>9,.0f} {r['train_seconds']:>8.1f} {wall:>7.1f} "
                f"{r['accuracy']:>9.4f} {r['test_accuracy']:>9.4f} {r['test_macro_f1']:>8.4f}"
            )


if __name__ == "__main__":
    main()
