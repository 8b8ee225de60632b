"""Simulates edge nodes in several regions sharing one Redis, strict vs local-first limits.

    python benches/simulate_regions.py [--nodes 3] [--rtt-ms 0,20,80] [--seconds 4]

Starts a private redis-server and, in front of it, a TCP proxy that delays every packet by half
the round trip each way (the "distance" to the Redis region). N simulated nodes (one
`ec.RateLimiter` each, as N edge servers would hold one, checked by `--concurrency` request
threads) send checks for one hot key at ~4x the limit's rate. For each round trip and mode it
reports how many checks the nodes admitted against the ideal (what one exact limiter admits over
the run), and the latency each check added to a request (median and p99). Needs redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import edgecore as ec

LIMIT, PERIOD, BURST = 100, 1.0, 20  # 100 checks/s per key, bucket of 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis() -> tuple[subprocess.Popen[bytes], int]:
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server is not installed (scripts/system-deps.sh installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tempfile.mkdtemp()],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, port
        except OSError:
            time.sleep(0.02)
    sys.exit("redis-server did not start")


class DelayProxy:
    """A TCP proxy adding `delay` seconds to every chunk in each direction (in order)."""

    def __init__(self, upstream: int, delay: float) -> None:
        self.upstream, self.delay, self.port = upstream, delay, free_port()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result()

    async def _serve(self) -> None:
        await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    writer.close()
                    return
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(send())
        while data := await reader.read(65536):
            queue.put_nowait((time.monotonic() + self.delay, data))
        queue.put_nowait((0.0, b""))
        await sender

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)


def run(url: str, nodes: int, seconds: float, sync: float | None, rtt: float, concurrency: int) -> dict:
    key = f"hot-{time.monotonic_ns()}"
    timeout = max(0.05, 4 * rtt)
    limiters = [ec.RateLimiter(LIMIT, PERIOD, burst=BURST, store=url, timeout=timeout, sync=sync) for _ in range(nodes)]
    for lim in limiters:  # connect before the clock starts
        lim.check("warm-up")
    admitted = [0] * nodes
    waits: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(nodes * concurrency)
    # Each request thread offers its share of 4x the limit.
    gap = nodes * concurrency / (4 * LIMIT / PERIOD)

    def node(i: int) -> None:
        mine: list[float] = []
        barrier.wait()
        end = time.monotonic() + seconds
        next_at = time.monotonic()
        while time.monotonic() < end:
            t0 = time.perf_counter()
            d = limiters[i].check(key)
            mine.append(time.perf_counter() - t0)
            with lock:
                admitted[i] += d.allowed
            next_at += gap
            time.sleep(max(0.0, next_at - time.monotonic()))
        with lock:
            waits.extend(mine)

    threads = [threading.Thread(target=node, args=(i,)) for i in range(nodes) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ideal = BURST + LIMIT / PERIOD * seconds
    waits.sort()
    return {
        "admitted": sum(admitted),
        "ideal": ideal,
        "accuracy": sum(admitted) / ideal,
        "median_ms": statistics.median(waits) * 1e3,
        "p99_ms": waits[int(len(waits) * 0.99) - 1] * 1e3,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--rtt-ms", default="0,20,80", help="round trips to Redis to simulate, comma-separated")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--sync", type=float, default=0.05, help="the local-first interval")
    ap.add_argument("--concurrency", type=int, default=8, help="request threads per node")
    args = ap.parse_args()
    proc, port = start_redis()
    try:
        print(
            f"{args.nodes} nodes, one hot key at 4x a {LIMIT}/{PERIOD:g}s limit (burst {BURST}), "
            f"{args.seconds:g} s per run, {args.concurrency} request threads per node; local-first sync={args.sync}"
        )
        print("| RTT to Redis | mode | admitted / ideal | accuracy | added latency median | p99 |")
        print("|---|---|---|---|---|---|")
        for rtt_ms in (float(x) for x in args.rtt_ms.split(",")):
            proxy = DelayProxy(port, rtt_ms / 2000)
            url = f"redis://127.0.0.1:{proxy.port}/0"
            for mode, sync in (("strict", None), ("local-first", args.sync)):
                r = run(url, args.nodes, args.seconds, sync, rtt_ms / 1000, args.concurrency)
                print(
                    f"| {rtt_ms:g} ms | {mode} | {r['admitted']} / {r['ideal']:.0f} | {r['accuracy']:.2f}x | "
                    f"{r['median_ms']:.3f} ms | {r['p99_ms']:.3f} ms |",
                    flush=True,
                )
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
