"""``predict``, ``train`` and ``compare`` on a quiet machine and beside one CPU-bound process a core, side by side.

    python bench/busy.py [--names 100000] [--train-names 4000] [--baseline-src DIR] [--repeat 1] [--data DIR]

Each command runs in a fresh process (start and model loading included), first with the machine otherwise
quiet, then beside ``os.cpu_count()`` processes that spin on the CPU (one a core, as a busy shared machine has
them). For each it prints the wall time, the rate, the CPU time the run received (user + system, from
``wait4``: a run that spins waiting for its own threads gets CPU time and no work done) and the busy/quiet
ratio; the fair share beside one spinner a core is about 0.5. ``--baseline-src DIR`` runs the same commands
with ``DIR/src`` on ``PYTHONPATH`` (a checkout of another commit, e.g. ``git worktree add /tmp/base c7a5610``),
alternating with this checkout, so that both see the same machine. ``--args "--threads 0"`` adds flags to this
checkout's commands (e.g. to time torch's default thread count).

The runs:

- ``predict --input names.txt --output out.csv`` on ``--names`` distinct names (each real name with a random
  three-letter tail, so nothing repeats), bundled model; rate in names/s;
- ``train --model gru --hidden 64 --epochs 3`` on ``--train-names`` labelled names drawn from the data; rate in
  names/s (names x epochs / wall time);
- ``compare --models rnn,gru --noise 0 --epochs 1 --hidden 32`` on the same names; rate in runs/min.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nameorigin import data
from scale_common import distinct_sample, real_names

HERE = Path(__file__).resolve().parents[1] / "src"


@dataclass
class Run:
    wall: float
    cpu: float
    code: int


def spin() -> None:  # a CPU-bound process: what another user's job looks like to the scheduler
    while True:
        pass


def timed(cmd: list[str], src: Path, env_extra: dict | None = None) -> Run:
    """``cmd`` in a fresh process with ``src`` on PYTHONPATH: wall seconds and the CPU seconds it received."""
    env = {**os.environ, "PYTHONPATH": str(src), **(env_extra or {})}
    env.pop("OMP_NUM_THREADS", None)  # the commands' own defaults are what is measured
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    err = proc.stderr.read().decode("utf-8", "replace")
    proc.stderr.close()
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} (PYTHONPATH={src}) failed with {code}:\n{err[-2000:]}")
    return Run(wall, usage.ru_utime + usage.ru_stime, code)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="names folder (default: $NAMEORIGIN_DATA or the tutorial's archive)")
    ap.add_argument("--names", type=int, default=100_000, help="distinct names for predict (default: %(default)s)")
    ap.add_argument(
        "--train-names", type=int, default=4_000, help="labelled names for train and compare (default: %(default)s)"
    )
    ap.add_argument("--baseline-src", type=Path, help="a checkout of another commit: time its src/ beside this one")
    ap.add_argument("--args", default="", help='extra flags for this checkout\'s commands (e.g. "--threads 0")')
    ap.add_argument("--repeat", type=int, default=1, help="runs of each, the best counts (default: %(default)s)")
    ap.add_argument("--only", default="predict,train,compare", help="which commands (default: %(default)s)")
    ap.add_argument(
        "--spinners",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="CPU-bound processes for the busy runs (default: one a core, %(default)s)",
    )
    args = ap.parse_args()
    sources = {"this": HERE}
    if args.baseline_src:
        base = args.baseline_src.resolve() / "src"
        if not (base / "nameorigin").is_dir():
            raise SystemExit(f"--baseline-src {args.baseline_src}: no src/nameorigin there")
        sources["baseline"] = base
    extra = shlex.split(args.args)

    real, _ = real_names(args.data)
    pairs = data.dedupe(data.read_labelled(data.resolve_data(args.data)))
    random.Random(0).shuffle(pairs)
    pairs = pairs[: args.train_names]
    tmp = Path(tempfile.mkdtemp(prefix="nameorigin-busy-"))
    names_txt = tmp / "names.txt"
    names_txt.write_text("\n".join(distinct_sample(real, args.names)) + "\n", encoding="utf-8")
    labelled = tmp / "labelled.tsv"
    labelled.write_text("name\tlanguage\n" + "".join(f"{n}\t{lang}\n" for n, lang in pairs), encoding="utf-8")
    py = [sys.executable, "-m", "nameorigin"]
    commands = {
        "predict": (
            [*py, "predict", "--input", str(names_txt), "--output", str(tmp / "out.csv")],
            args.names,
            "names/s",
        ),
        "train": (
            [
                *py,
                "train",
                "--data",
                str(labelled),
                "--model",
                "gru",
                "--hidden",
                "64",
                "--epochs",
                "3",
                "--patience",
                "0",
                "--out",
                str(tmp / "m.safetensors"),
                "--quiet",
            ],
            len(pairs) * 0.8 * 3,
            "names/s",
        ),
        "compare": (
            [
                *py,
                "compare",
                "--models",
                "rnn,gru",
                "--noise",
                "0",
                "--epochs",
                "1",
                "--hidden",
                "32",
                "--data",
                str(labelled),
                "--out",
                str(tmp / "cmp"),
            ],
            2 * 60,
            "runs/min",
        ),
    }
    chosen = [c for c in args.only.split(",") if c]
    cores = len(os.sched_getaffinity(0))
    print(
        f"{cores} cores; busy: {args.spinners} CPU-bound process(es) beside each run; {args.names:,} distinct "
        f"names for predict, {len(pairs):,} labelled names for train/compare; best of {args.repeat}; "
        f"sources: {', '.join(f'{k} {v}' for k, v in sources.items())}" + (f"; this with {args.args}" if extra else ""),
        flush=True,
    )
    # a file of surnames read whole, as the baseline's predict (before --name-type) read every name
    this_only = {"predict": ["--name-type", "surname"]}
    results: dict[tuple[str, str, str], Run] = {}
    for load in ("quiet", "busy"):
        spinners = [mp.Process(target=spin, daemon=True) for _ in range(args.spinners if load == "busy" else 0)]
        for p in spinners:
            p.start()
        try:
            for name in chosen:
                cmd, _, _ = commands[name]
                for _ in range(args.repeat):
                    for label, src in sources.items():  # alternating: both see the same machine
                        run = timed(cmd + (extra + this_only.get(name, []) if label == "this" else []), src)
                        print(f"  {name} {label} {load}: {run.wall:.1f} s wall, {run.cpu:.1f} s CPU", flush=True)
                        key = (name, label, load)
                        if key not in results or run.wall < results[key].wall:
                            results[key] = run
        finally:
            for p in spinners:
                p.kill()
                p.join()
    print(f"\n{'command':<9} {'source':<9} {'quiet':>11} {'cpu s':>7} {'busy':>11} {'cpu s':>7} {'busy/quiet':>11}")
    for name in chosen:
        _, work, unit = commands[name]
        for label in sources:
            q, b = results[(name, label, "quiet")], results[(name, label, "busy")]

            def rate(r: Run, work=work) -> float:
                return work / r.wall

            print(
                f"{name:<9} {label:<9} {rate(q):>11,.1f} {q.cpu:>7.1f} {rate(b):>11,.1f} {b.cpu:>7.1f} "
                f"{rate(b) / rate(q):>11.2f}   ({unit}; wall {q.wall:.1f} s / {b.wall:.1f} s)"
            )
        if "baseline" in sources:
            this, base = results[(name, "this", "quiet")], results[(name, "baseline", "quiet")]
            print(f"{name:<9} quiet: this / baseline {base.wall / this.wall:.2f}x the rate")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
