"""``predict_frame`` against a Python loop over ``Predictor.predict``, side by side in one run.

    python bench/frame_speed.py [--data DIR] [--rows 1000000] [--model CKPT] [--loop-rows 100000]

Rows are names drawn from the real data with a Zipf-like frequency (as surnames occur in a population), in a
pandas DataFrame. ``predict_frame(df, "name")`` (the columnar path: each distinct name folded and computed
once) against what a user would write without it: a loop over the rows, ``Predictor.predict`` on chunks of
8,192 names, and a DataFrame built from the ``Prediction`` objects; the loop runs on a predictor without the
cross-chunk cache (``cache_size=0``; ``predict`` is built on the columnar core, so it still computes a name once
per chunk), on the first ``--loop-rows`` rows (its speed does not change with length). A third line shows the
model alone on every row with no de-duplication (``Predictor.probabilities``): against it, what computing each
distinct name once saves. Prints names/s, the ratio, and how many distinct names the rows hold.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nameorigin import Predictor, predict_frame
from scale_common import real_names, zipf_sample


def loop(predictor: Predictor, names: list[str], top: int = 3, chunk: int = 8192) -> pd.DataFrame:
    rows = []
    for i in range(0, len(names), chunk):
        for p in predictor.predict(names[i : i + chunk], top, name_type="surname"):
            row = {"name": p.name, "error": p.error}
            for k, x in enumerate(p.predictions, 1):
                row[f"language_{k}"], row[f"probability_{k}"] = x["language"], x["probability"]
            rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="names folder (default: $NAMEORIGIN_DATA or the tutorial's archive)")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--loop-rows", type=int, default=100_000, help="rows the Python loop is timed on")
    ap.add_argument("--model", help="checkpoint (default: the bundled model)")
    ap.add_argument("--zipf", type=float, default=1.0, help="exponent of the Zipf-like frequency")
    args = ap.parse_args()
    real, _ = real_names(args.data)
    df = pd.DataFrame({"name": zipf_sample(real, args.rows, exponent=args.zipf)})
    distinct = df["name"].nunique()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; model: {args.model or 'bundled'}")
    print(
        f"{args.rows:,} rows, {distinct:,} distinct names ({distinct / args.rows:.1%}); "
        f"the 100 most frequent names make {df['name'].value_counts().iloc[:100].sum() / args.rows:.1%} of rows\n"
    )

    predictor = Predictor.load(args.model)
    start = time.perf_counter()
    out = predict_frame(df, "name", top=3, model=predictor, name_type="surname")
    frame_rate = args.rows / (time.perf_counter() - start)

    uncached = Predictor.load(args.model, cache_size=0)
    names = df["name"].tolist()[: args.loop_rows]
    start = time.perf_counter()
    looped = loop(uncached, names)
    loop_rate = len(names) / (time.perf_counter() - start)
    start = time.perf_counter()
    uncached.probabilities(names)
    model_rate = len(names) / (time.perf_counter() - start)
    same = (out["language_1"].iloc[: len(names)].to_numpy() == looped["language_1"].to_numpy()).mean()

    print(f"{'path':<58} {'names/s':>10}")
    print(f"{'predict_frame (columnar, distinct names once)':<58} {frame_rate:>10,.0f}")
    print(
        f"{'loop over Predictor.predict, 8,192 a chunk (' + format(len(names), ',') + ' rows)':<58} {loop_rate:>10,.0f}"
    )
    print(f"{'the model on every row, no de-duplication (probabilities)':<58} {model_rate:>10,.0f}")
    print(
        f"predict_frame / loop: {frame_rate / loop_rate:.1f}x; predict_frame / model on every row: "
        f"{frame_rate / model_rate:.1f}x; same top language on {same:.2%} of the looped rows"
    )


if __name__ == "__main__":
    main()
