"""A bounded load test of ``nameorigin serve`` on loopback.

    python bench/serve_load.py [--requests 20000] [--concurrency 64] [--batch 100]

Starts the server on a free 127.0.0.1 port, sends ``--requests`` requests, ``--concurrency`` at a time,
in two rounds (single names by GET, then batches of ``--batch`` names by POST), and prints requests/s,
names/s, p50/p99 latency and the error count for each. Traffic goes to loopback only and stops by itself.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import socket
import statistics
import subprocess
import sys
import time

import httpx

from nameorigin import data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(url: str, make_request, total: int, concurrency: int) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    kinds: dict[str, int] = {}
    sent = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        async def worker():
            nonlocal sent, errors
            while sent < total:
                sent += 1
                start = time.perf_counter()
                try:
                    r = await make_request(client)
                    if r.status_code != 200:
                        errors += 1
                        kinds[f"HTTP {r.status_code}: {r.text[:80]}"] = kinds.get(f"HTTP {r.status_code}: {r.text[:80]}", 0) + 1
                except httpx.HTTPError as e:
                    errors += 1
                    kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
                latencies.append(time.perf_counter() - start)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        for kind, n in kinds.items():
            print(f"  error: {n} x {kind}")
        return latencies, errors, time.perf_counter() - started


def report(label: str, latencies: list[float], errors: int, seconds: float, names_per_request: int) -> None:
    q = statistics.quantiles(latencies, n=100)
    print(f"{label:<22} {len(latencies):>7,} {len(latencies) / seconds:>9,.0f} "
          f"{len(latencies) * names_per_request / seconds:>9,.0f} {q[49] * 1000:>8.1f} {q[98] * 1000:>8.1f} {errors:>6}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--data", help="names to send (default: $NAMEORIGIN_DATA or the tutorial's archive)")
    ap.add_argument("--model", help="checkpoint to serve (default: the bundled model)")
    args = ap.parse_args()
    names = [n for n, _ in data.read_labelled(data.resolve_data(args.data))]
    rng = random.Random(0)
    port = free_port()
    cmd = [sys.executable, "-m", "nameorigin", "serve", "--port", str(port)] + (["--model", args.model] if args.model else [])
    server = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(url + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        print(f"{args.requests:,} requests a round, {args.concurrency} at a time, to {url}\n")
        print(f"{'round':<22} {'requests':>7} {'req/s':>9} {'names/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")

        async def single(client):
            return await client.get("/api/predict", params={"name": rng.choice(names), "top": 3})

        async def batch(client):
            return await client.post("/api/predict", json={"names": rng.sample(names, args.batch), "top": 3})
        report("GET one name", *asyncio.run(load(url, single, args.requests, args.concurrency)), 1)
        report(f"POST {args.batch} names", *asyncio.run(load(url, batch, args.requests, args.concurrency)), args.batch)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
