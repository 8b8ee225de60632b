"""A real Redis Cluster on loopback: six redis-server processes (three masters, three replicas)
joined by `redis-cli --cluster create`, started and stopped by the tests."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

from tests.redis_server import RedisServer


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free and valid too."""
    import random
    import socket

    while True:
        port = random.randint(20000, 40000)
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue


class RedisCluster:
    def __init__(self, nodes: int = 6, node_timeout_ms: int = 1500) -> None:
        if shutil.which("redis-cli") is None:
            raise RuntimeError("redis-cli is not installed: run `make install` (scripts/system-deps.sh installs it)")
        self.node_timeout_ms = node_timeout_ms
        self.servers = [RedisServer(cluster_port()) for _ in range(nodes)]

    @property
    def url(self) -> str:
        return "redis-cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers[:3])

    def start(self) -> RedisCluster:
        for s in self.servers:
            s.start(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"{s.dir}/nodes.conf",
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                "--repl-diskless-sync-delay",
                "0",
            )
        addrs = [f"127.0.0.1:{s.port}" for s in self.servers]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addrs, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_ok()
        # A replica can take over only once it has synced with its master.
        deadline = time.time() + 30
        while any(
            "role:slave" in (info := self.cli(s.port, "info", "replication")) and "master_link_status:up" not in info
            for s in self.servers
        ):
            assert time.time() < deadline, "the replicas never synced"
            time.sleep(0.1)
        return self

    def cli(self, port: int, *args: str) -> str:
        r = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10)
        return r.stdout

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every live node says the cluster is ok and every slot has a live master."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            live = [s for s in self.servers if s.proc is not None]
            if all("cluster_state:ok" in self.cli(s.port, "cluster", "info") for s in live):
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not become ok")

    def wait_failover(self, dead: RedisServer, timeout: float = 30) -> None:
        """Until a replica has taken the dead master's slots, as every live node sees it."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            live = [s for s in self.servers if s.proc is not None]
            views = [self.cli(s.port, "cluster", "nodes") for s in live]
            owned = any(
                f":{dead.port}@" in line and len(line.split()) > 8 for view in views for line in view.splitlines()
            )
            if not owned and all("cluster_state:ok" in self.cli(s.port, "cluster", "info") for s in live):
                return
            time.sleep(0.1)
        raise RuntimeError(f"no replica took over from {dead.port}")

    def master_of(self, key: str) -> RedisServer:
        """The server holding `key`'s slot now."""
        slot = int(self.cli(self.servers[0].port, "cluster", "keyslot", key).strip())
        for line in self.cli(self.servers[0].port, "cluster", "nodes").splitlines():
            parts = line.split()
            if "master" in parts[2] and "fail" not in parts[2]:
                for r in parts[8:]:
                    lo, _, hi = r.partition("-")
                    if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                        port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
                        return next(s for s in self.servers if s.port == port)
        raise LookupError(key)

    def kill(self, server: RedisServer) -> None:
        assert server.proc is not None
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        server.proc = None

    def stop(self) -> None:
        for s in self.servers:
            s.stop()
