"""Where ``nameorigin predict --input`` spends its CPU time, stage by stage, on one thread.

    python bench/predict_cpu.py [--names 100000] [--data DIR] [--input FILE] [--repeat 3]

Runs ``predict --input FILE --output out.csv --quiet`` (bundled model, ``--threads 1``) in a fresh process
``--repeat`` times, each time with every stage's functions wrapped in a timer of the process's CPU seconds
(``time.process_time``: user + system, roughly independent of what else runs on the machine, unlike wall
time), and prints the median of each stage over the runs. A stage's time excludes the stages called inside it.
The input is ``--names`` distinct names (each real name with a random three-letter tail, as ``bench/busy.py``
makes them) unless ``--input`` is given.

The stages: ``start`` (the interpreter, and importing nameorigin and torch), ``load`` (the checkpoint and its
trust layer), ``read`` (the input file's batches), ``fold`` (folding and deduplicating each chunk's names),
``model`` (the network on the distinct folded names), ``trust`` (temperature, out-of-scope detector,
abstention), ``columns`` (top-K and the output columns), ``write`` (the CSV) and ``other`` (the rest).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_common import surname_predict_argv

CHILD = r"""
import json, os, sys, time
t0 = time.process_time()
from nameorigin import cli, frame, predict, trust
from nameorigin.predict import Predictor

stages = {"start": time.process_time(), "other": 0.0}  # start: all CPU time up to here (interpreter + imports)
stack = []


def timed(stage, fn):
    def wrapper(*args, **kwargs):
        begin = time.process_time()
        stack.append(0.0)  # CPU time of stages nested inside this call
        try:
            return fn(*args, **kwargs)
        finally:
            spent = time.process_time() - begin
            inner = stack.pop()
            stages[stage] = stages.get(stage, 0.0) + spent - inner
            if stack:
                stack[-1] += spent

    return wrapper


def wrap_iter(stage, make):
    def wrapper(*args, **kwargs):
        it = iter(make(*args, **kwargs))
        step = timed(stage, lambda: next(it, StopIteration))
        while (item := step()) is not StopIteration:
            yield item

    return wrapper


Predictor.load = classmethod(timed("load", Predictor.load.__func__))
Predictor._run = timed("model", Predictor._run)
Predictor._distinct = timed("fold", Predictor._distinct)
trust.Trust.apply = timed("trust", trust.Trust.apply)
Predictor._top_columns = timed("columns", Predictor._top_columns)
Predictor._trust_columns = timed("columns", Predictor._trust_columns)
frame.Writer.write = timed("write", frame.Writer.write)
frame.Writer.close = timed("write", frame.Writer.close)
frame._sliced = wrap_iter("read", frame._sliced)
code = cli.main(sys.argv[1:])
total = time.process_time()
stages["other"] = total - sum(v for k, v in stages.items() if k != "other")
stages["total"] = total
print(json.dumps(stages))
"""

ORDER = ("start", "load", "read", "fold", "model", "trust", "columns", "write", "other", "total")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="names folder (default: $NAMEORIGIN_DATA or the tutorial's archive)")
    ap.add_argument("--names", type=int, default=100_000, help="distinct names (default: %(default)s)")
    ap.add_argument("--input", type=Path, help="a names file to predict instead of the generated one")
    ap.add_argument("--repeat", type=int, default=3, help="runs; the median counts (default: %(default)s)")
    ap.add_argument("--args", default="", help="extra flags for predict (e.g. '--top 5')")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nameorigin-cpu-") as tmp:
        names = args.input
        if names is None:
            from scale_common import distinct_sample, real_names

            real, _ = real_names(args.data)
            names = Path(tmp) / "names.txt"
            names.write_text("\n".join(distinct_sample(real, args.names)) + "\n", encoding="utf-8")
        argv = surname_predict_argv(names, Path(tmp) / "out.csv", "--quiet", "--threads", "1", *args.args.split())
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, "-c", CHILD, *argv], env=env, capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"predict failed ({out.returncode}):\n{out.stderr[-2000:]}")
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        f"predict --input ({names.name if args.input else f'{args.names:,} distinct names'}), one thread, "
        f"CPU seconds, median of {args.repeat}:"
    )
    for stage in ORDER:
        values = [r.get(stage, 0.0) for r in runs]
        print(f"  {stage:<8} {statistics.median(values):6.2f}   ({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
