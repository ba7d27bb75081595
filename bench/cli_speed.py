"""End-to-end ``nameorigin predict --input`` against the model's own tensor path, side by side in one run.

    python bench/cli_speed.py [--data DIR] [--names 1000000] [--model CKPT] [--repeat 3] [--full-names | --only-full]

For a gru with hidden 128 (untrained, built from seed 0: speed does not depend on the weights; or ``--model``)
and for the bundled model, on the same names: ``Predictor.probabilities`` on every name (the tensor path: the
model and nothing else) against ``nameorigin predict --input names.txt --output out.csv`` (reading, folding,
the model, top-K, writing CSV; timed by its own summary line, so process start and model loading are left out,
and by wall clock with them). Two samples: names drawn from the real data with a Zipf-like frequency (files
repeat names; the command computes each distinct name once) and all-distinct names (each real name with a
random three-letter tail, so nothing repeats: the worst case). The issue's target: the command >= 80 % of the
tensor path.

With ``--full-names``, a second table: the same command on full names (``--name-type full``, a given name drawn
from the same real names, Zipf-like, before each surname, read by a second untrained gru 128 saved as a
first-name model) against surnames alone (``--name-type surname``, the same surnames; in the distinct sample
each surname's tail joined on, ``Smithqwe``, so that a full name is two words), side by side, and the surnames
under ``--name-type auto`` (the default: parsed, with the part columns) against ``surname``, and the same pairs
as a CSV of a first-name and a last-name column (``--first-column first --last-column last``). The issue's
target: full names >= 50 % of the surname-only names/s.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nameorigin import Predictor
from nameorigin.checkpoint import save
from nameorigin.models import ModelConfig, build_model
from scale_common import gru128_checkpoint, real_names, run_cli, surname_predict_argv, two_samples, zipf_sample


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
    ap.add_argument("--full-names", action="store_true", help="also time full names against surnames alone (see above)")
    ap.add_argument("--only-full", action="store_true", help="only the full-names table (implies --full-names)")
    args = ap.parse_args()
    real, labels = real_names(args.data)
    samples = two_samples(real, args.names)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.names:,} names a sample; best of "
        f"{args.repeat} runs a side\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        if args.only_full:
            full_names_table(samples, real, labels, Path(tmp), args.repeat, args.model)
            return
        print(
            f"{'model':<16} {'sample':<9} {'distinct':>9} {'tensor names/s':>15} {'CLI names/s':>12} "
            f"{'CLI/tensor':>10} {'CLI wall names/s':>17}"
        )
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
                argv = surname_predict_argv(src, Path(tmp) / "out.csv", *(["--model", model] if model else []))
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
        if args.full_names:
            full_names_table(samples, real, labels, Path(tmp), args.repeat, args.model)


def full_names_table(samples: dict, real: list[str], labels: list[str], tmp: Path, repeat: int, model) -> None:
    """``predict --input`` names/s on full names (``--name-type full``) and on their surnames alone."""
    surname = model or str(gru128_checkpoint(labels, tmp / "gru128.safetensors"))
    first = tmp / "first.safetensors"
    torch.manual_seed(1)
    net = build_model(ModelConfig(name="gru", hidden=128), len(labels)).eval()
    save(first, net, labels, {"name_kind": "first"})
    print(
        f"\n{'sample':<9} {'distinct full':>13} {'surname names/s':>16} {'full names/s':>13} {'full/surname':>12} "
        f"{'auto on surnames':>17} {'auto/surname':>12} {'first+last':>13} {'f+l/surname':>12}"
    )
    for sample, names in samples.items():
        names = [n.replace(" ", "") for n in names]  # the distinct sample's tail joined on: one surname
        givens = zipf_sample(real, len(names), seed=1)
        files = {"surname": tmp / f"{sample}-s.txt", "full": tmp / f"{sample}-f.txt"}
        files["surname"].write_text("\n".join(names) + "\n", encoding="utf-8")
        full = [f"{g} {s}" for g, s in zip(givens, names, strict=True)]
        files["full"].write_text("\n".join(full) + "\n", encoding="utf-8")
        files["cells"] = tmp / f"{sample}-c.csv"
        with open(files["cells"], "w", newline="", encoding="utf-8") as fh:  # quoted: some names hold a comma
            csv.writer(fh).writerows([("first", "last"), *zip(givens, names, strict=True)])
        best = {"surname": 0.0, "full": 0.0, "auto": 0.0, "cells": 0.0}
        runs = {
            "surname": (files["surname"], ["--name-type", "surname"]),
            "full": (files["full"], ["--name-type", "full"]),
            "auto": (files["surname"], ["--name-type", "auto"]),
            "cells": (files["cells"], ["--first-column", "first", "--last-column", "last"]),
        }
        for _ in range(repeat):  # alternating; each keeps its best
            for kind, (src, flags) in runs.items():
                argv = ["predict", "--input", str(src), "--output", str(tmp / "out.csv"), "--model", surname]
                argv += [*flags, "--first-model", str(first)]
                n, _, seconds, _ = run_cli(*argv)
                best[kind] = max(best[kind], n / seconds)
        print(
            f"{sample:<9} {len(set(full)):>13,} {best['surname']:>16,.0f} {best['full']:>13,.0f} "
            f"{best['full'] / best['surname']:>11.0%} {best['auto']:>17,.0f} {best['auto'] / best['surname']:>11.0%} "
            f"{best['cells']:>13,.0f} {best['cells'] / best['surname']:>11.0%}"
        )


if __name__ == "__main__":
    main()
