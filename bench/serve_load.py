"""A bounded load test of ``nameorigin serve`` on loopback, before and after request batching, in one run.

    python bench/serve_load.py [--requests 5000] [--seconds 30] [--clients 1,16,64] [--batch 100]
                               [--post-clients 16] [--servers before,off,on] [--workers 1] [--model CKPT]
                               [--name-types surname,auto]

For each server setting it starts ``nameorigin serve`` on a free 127.0.0.1 port: ``off`` with
``--batch-names 1 --batch-wait-ms 0`` (every request is its own model call, as before batching), ``before``
the same under uvicorn's pure-Python parser and asyncio loop (``--http h11 --loop asyncio``, the server before
httptools and uvloop were dependencies), ``thawed`` the defaults without ``gc.freeze()`` at start-up (the
collector then scans everything start-up built), ``on`` with
the defaults (concurrent requests gathered into one call), and, when asked for, ``eager`` with
``--batch-wait-ms 0`` (no waiting: a batch is whatever arrived while the model was busy). Against each it runs
single-name GETs at each ``--clients`` concurrency, then POSTs of ``--batch`` names at ``--post-clients``, each
round at most ``--requests`` requests and ``--seconds`` seconds, and prints requests/s, names/s, p50/p99 latency
and errors
(any status other than 200, or a failed connection), and the server's resident memory (all its processes)
after each round. Traffic goes to loopback only and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

try:
    import aiohttp
except ImportError:
    raise SystemExit(
        'bench/serve_load.py needs aiohttp: pip install -c constraints.txt -e ".[dev]" (or pip install aiohttp)'
    ) from None

from nameorigin import data
from nameorigin.server import ServeConfig, config_to_env

OFF = {"batch_names": 1, "batch_wait_ms": 0}
#: setting -> (ServeConfig fields beyond the defaults, uvicorn options of a "before" server or None)
SERVERS = {
    "before": (OFF, ["--http", "h11", "--loop", "asyncio"]),
    "off": (OFF, None),
    "on": ({}, None),
    "eager": ({"batch_wait_ms": 0}, None),
    "thawed": ({"gc_freeze": False}, []),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(url: str, make_request, total: int, seconds: float, concurrency: int):
    """Send up to ``total`` requests, ``concurrency`` at a time, for at most ``seconds``, after one untimed
    request a connection (so that the figures are of kept-alive connections, not of connecting)."""
    latencies: list[float] = []
    kinds: dict[str, int] = {}
    sent = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as client:

        async def warm():
            async with client.get("/healthz") as r:
                await r.read()

        await asyncio.gather(*(warm() for _ in range(concurrency)))
        started = time.perf_counter()
        deadline = started + seconds

        async def worker():
            nonlocal sent
            while sent < total and time.perf_counter() < deadline:
                sent += 1
                start = time.perf_counter()
                try:
                    async with make_request(client) as r:
                        body = await r.read()
                        if r.status != 200:
                            kind = f"HTTP {r.status}: {body[:80].decode(errors='replace')}"
                            kinds[kind] = kinds.get(kind, 0) + 1
                except aiohttp.ClientError as e:
                    kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, kinds, time.perf_counter() - started


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (uvicorn's worker processes), from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return total / 1024


def report(
    server: str,
    label: str,
    latencies: list[float],
    kinds: dict[str, int],
    seconds: float,
    names_per_request: int,
    rss: float,
) -> None:
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    print(
        f"{server:<9} {label:<22} {len(latencies):>8,} {len(latencies) / seconds:>9,.0f} "
        f"{len(latencies) * names_per_request / seconds:>9,.0f} {q[49] * 1000:>8.1f} {q[98] * 1000:>8.1f} "
        f"{sum(kinds.values()):>6} {rss:>8.0f}",
        flush=True,
    )
    for kind, n in kinds.items():
        print(f"{'':<9}   error: {n} x {kind}")


def serve(args, setting: str) -> tuple[subprocess.Popen, str]:
    """``nameorigin serve`` with the setting's options; "before" and "thawed", settings that are not flags, go
    through uvicorn's factory with the settings in ``$NAMEORIGIN_SERVE``: "before" under uvicorn's pure-Python
    HTTP parser and asyncio's own loop (what a plain ``pip install uvicorn`` gives), batching off."""
    port = free_port()
    config, uvicorn_options = SERVERS[setting]
    env = None
    if uvicorn_options is None:
        cmd = [sys.executable, "-m", "nameorigin", "serve", "--port", str(port), "--workers", str(args.workers)]
        for key, value in config.items():
            cmd += [f"--{key.replace('_', '-')}", str(value)]
        if args.model:
            cmd += ["--model", args.model]
    else:
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "nameorigin.server:app_from_env",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
            *uvicorn_options,
        ]
        env = {**os.environ, **config_to_env(ServeConfig(model=args.model, **config))}
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).read()
            return server, url
        except (urllib.error.URLError, OSError):
            if server.poll() is not None:
                raise SystemExit(f"the server stopped: {' '.join(cmd)}") from None
            time.sleep(0.2)
    server.terminate()
    raise SystemExit(f"no answer from {url}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=5_000, help="most requests a round (default: %(default)s)")
    ap.add_argument("--seconds", type=float, default=30, help="most seconds a round (default: %(default)s)")
    ap.add_argument("--clients", default="1,16,64", help="GET concurrencies (default: %(default)s)")
    ap.add_argument("--batch", type=int, default=100, help="names a POST (default: %(default)s)")
    ap.add_argument("--post-clients", type=int, default=16, help="POST concurrency (default: %(default)s)")
    ap.add_argument(
        "--servers", default="before,off,on", help=f"server settings, of {', '.join(SERVERS)} (default: %(default)s)"
    )
    ap.add_argument("--workers", type=int, default=1, help="serve --workers (default: %(default)s)")
    ap.add_argument("--data", help="names to send (default: $NAMEORIGIN_DATA or the tutorial's archive)")
    ap.add_argument("--model", help="checkpoint to serve (default: the bundled model)")
    ap.add_argument(
        "--name-types",
        default="surname",
        help="name_type of the requests, each a round of its own (e.g. surname,auto: auto is the server's "
        "default; default: %(default)s, the path the documented figures came from)",
    )
    args = ap.parse_args()
    names = [n for n, _ in data.read_labelled(data.resolve_data(args.data))]
    rng = random.Random(0)

    def single(name_type):
        return lambda client: client.get(
            "/api/predict", params={"name": rng.choice(names), "top": 3, "name_type": name_type}
        )

    def batch(name_type):
        return lambda client: client.post(
            "/api/predict", json={"names": rng.sample(names, args.batch), "top": 3, "name_type": name_type}
        )

    print(
        f"at most {args.requests:,} requests and {args.seconds:g} s a round, aiohttp clients; off: serve "
        "--batch-names 1 --batch-wait-ms 0; on: the defaults; before: off under uvicorn --http h11 --loop asyncio; "
        f"{args.workers} worker(s)\n"
    )
    print(
        f"{'server':<9} {'round':<22} {'requests':>8} {'req/s':>9} {'names/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>6} {'RSS MB':>8}"
    )
    for setting in args.servers.split(","):
        server, url = serve(args, setting)
        try:
            print(
                f"{setting:<9} {'(started, idle)':<22} {'':>8} {'':>9} {'':>9} {'':>8} {'':>8} {'':>6} "
                f"{rss_mb(server.pid):>8.0f}"
            )
            for name_type in args.name_types.split(","):
                tag = "" if args.name_types == "surname" else f" {name_type}"
                for clients in (int(c) for c in args.clients.split(",")):
                    result = asyncio.run(load(url, single(name_type), args.requests, args.seconds, clients))
                    report(setting, f"GET 1 name x{clients}{tag}", *result, 1, rss_mb(server.pid))
                result = asyncio.run(load(url, batch(name_type), args.requests, args.seconds, args.post_clients))
                what = f"POST {args.batch} names x{args.post_clients}{tag}"
                report(setting, what, *result, args.batch, rss_mb(server.pid))
        finally:
            server.terminate()
            server.wait(timeout=20)


if __name__ == "__main__":
    main()
