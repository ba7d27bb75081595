"""End-to-end ``nameorigin predict --input`` against the model's own tensor path, side by side in one run.

    python bench/cli_speed.py [--data DIR] [--names 1000000] [--model CKPT] [--repeat 3]

For a gru with hidden 128 (untrained, built from seed 0: speed does not depend on the weights; or ``--model``)
and for the bundled model, on the same names: ``Predictor.probabilities`` on every name (the tensor path: the
model and nothing else) against ``nameorigin predict --input names.txt --output out.csv`` (reading, folding,
the model, top-K, writing CSV; timed by its own summary line, so process start and model loading are left out,
and by wall clock with them). Two samples: names drawn from the real data with a Zipf-like frequency (files
repeat names; the command computes each distinct name once) and all-distinct names (each real name with a
random three-letter tail, so nothing repeats: the worst case). The issue's target: the command >= 80 % of the
tensor path.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nameorigin import Predictor
from scale_common import gru128_checkpoint, real_names, run_cli, two_samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="names folder (default: $NAMEORIGIN_DATA or the tutorial's archive)")
    ap.add_argument("--names", type=int, default=1_000_000, help="names a sample (default: %(default)s)")
    ap.add_argument("--model", help="checkpoint to time instead of an untrained gru 128")
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each side, alternating; the best of each counts "
        "(this machine's speed moves by 10-20 %% from run to run)",
    )
    args = ap.parse_args()
    real, labels = real_names(args.data)
    samples = two_samples(real, args.names)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.names:,} names a sample; best of "
        f"{args.repeat} runs a side\n"
    )
    print(
        f"{'model':<16} {'sample':<9} {'distinct':>9} {'tensor names/s':>15} {'CLI names/s':>12} "
        f"{'CLI/tensor':>10} {'CLI wall names/s':>17}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            "gru 128": args.model or str(gru128_checkpoint(labels, Path(tmp) / "gru128.safetensors")),
            "bundled": None,
        }
        for sample, names in samples.items():
            src = Path(tmp) / f"{sample}.txt"
            src.write_text("\n".join(names) + "\n", encoding="utf-8")
            for label, model in models.items():
                predictor = Predictor.load(model)
                predictor.probabilities(names[:2000])  # warm up
                argv = ["predict", "--input", str(src), "--output", str(Path(tmp) / "out.csv")]
                argv += ["--model", model] if model else []
                tensor = cli = wall = 0.0
                for _ in range(args.repeat):  # the two sides alternate; each keeps its best
                    start = time.perf_counter()
                    predictor.probabilities(names)
                    tensor = max(tensor, len(names) / (time.perf_counter() - start))
                    start = time.perf_counter()
                    n, _, seconds, _ = run_cli(*argv)
                    wall = max(wall, n / (time.perf_counter() - start))
                    cli = max(cli, n / seconds)
                print(
                    f"{label:<16} {sample:<9} {len(set(names)):>9,} {tensor:>15,.0f} {cli:>12,.0f} "
                    f"{cli / tensor:>9.0%} {wall:>17,.0f}"
                )


if __name__ == "__main__":
    main()
