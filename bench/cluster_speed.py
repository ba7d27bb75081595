"""The command line on Parquet rows with 1 and 2 Dask workers, and the single process's memory on 100k vs 10M rows.

    python bench/cluster_speed.py [--data DIR] [--rows 10000000] [--files 8] [--small 100000] [--model CKPT]

Rows are names drawn from the real data with a Zipf-like frequency, written as ``--files`` Parquet files.
For 1 and 2 workers: a local Dask cluster (one thread a worker) is started here, and
``nameorigin predict --input 'DIR/*.parquet' --output OUT/ --scheduler ADDRESS`` runs against it in a fresh
process; names/s comes from the command's summary line (cluster start-up left out) and each worker's peak RSS
from the worker itself. Then the single-process command (no Dask) on ``--small`` rows and on all rows of one
Parquet file, with its peak RSS: flat memory means the ratio stays within 1.25x. On a machine with 2 cores a
second worker cannot double the speed: the workers share the cores with each other and with the scheduler.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_common import real_names, run_cli, surname_predict_argv, zipf_sample


def write_parquet(names: list[str], folder: Path, files: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(names) // files)
    for i in range(files):
        part = names[i * size : (i + 1) * size]
        if part:
            pq.write_table(
                pa.table(
                    {
                        "id": pa.array(range(i * size, i * size + len(part)), pa.int64()),
                        "name": pa.array(part, pa.string()),
                    }
                ),
                folder / f"part-{i:03d}.parquet",
            )


def worker_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="names folder (default: $NAMEORIGIN_DATA or the tutorial's archive)")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--files", type=int, default=8, help="Parquet files the rows are written as")
    ap.add_argument("--small", type=int, default=100_000, help="rows of the small single-process run")
    ap.add_argument("--model", help="checkpoint (default: the bundled model)")
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    real, _ = real_names(args.data)
    names = zipf_sample(real, args.rows)
    model = ["--model", args.model] if args.model else []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_parquet(names, tmp / "data", args.files)
        print(f"{args.rows:,} rows in {args.files} Parquet files, {len(set(names)):,} distinct names\n")
        print(f"{'workers':>7} {'names/s':>10} {'peak RSS a worker (MB)':>24}")
        for workers in (1, 2):
            with (
                LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
                ) as cluster,
                Client(cluster) as client,
            ):
                n, _, seconds, _ = run_cli(
                    *surname_predict_argv(
                        tmp / "data" / "*.parquet",
                        tmp / f"out{workers}",
                        "--scheduler",
                        cluster.scheduler_address,
                        *model,
                    )
                )
                peaks = client.run(worker_peak_mb)
            print(f"{workers:>7} {n / seconds:>10,.0f} {', '.join(f'{v:.0f}' for v in peaks.values()):>24}")

        print("\nsingle process, no Dask: `nameorigin predict --input FILE.parquet --output OUT.parquet`")
        write_parquet(names[: args.small], tmp / "small", 1)
        write_parquet(names, tmp / "all", 1)
        peaks = {}
        for label, rows, src in (("small", args.small, tmp / "small"), ("all", args.rows, tmp / "all")):
            n, _, seconds, peaks[label] = run_cli(
                *surname_predict_argv(src / "part-000.parquet", tmp / f"single-{label}.parquet", *model),
                peak=True,
            )
            print(f"{rows:>11,} rows: {n / seconds:>10,.0f} names/s, peak RSS {peaks[label]:7.1f} MB")
        print(f"peak RSS {args.rows:,} / {args.small:,} rows: {peaks['all'] / peaks['small']:.2f}x (target <= 1.25x)")


if __name__ == "__main__":
    main()
