"""The server load benchmark: wrk on loopback against each contender, contenders alternating
round by round, reporting requests/s, p99 latency and server CPU microseconds per request (from
/proc/PID/stat, children included). Scenarios:

- pipeline: the full pipeline on a cache hit (client IP, geo, HS256 JWT, rate limit, cache hit)
  — edgecore vs the same pipeline in pure Python on uvicorn+Starlette, and nginx `return 200`;
- hello: a Python `def` handler returning "hello" — edgecore vs uvicorn raw ASGI and Granian RSGI;
- proxy: forwarding to a local origin (nginx) — edgecore vs nginx `proxy_pass` with keep-alive,
  and edgecore with a Next.js middleware on a path its matcher excludes (must not enter Python);
  with `target/release/examples/hyper_floor` built, also the hyper floor: hyper's server and
  client alone, which shows what edgecore's own work costs over the library it is built on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ._harness import version

SECRET = bytes.fromhex("6b" * 32)
# The origin's answers are shared-cacheable. Without `public`, a shared cache must not store the
# answer to a request that carries Authorization (RFC 9111 §3.5), and every pipeline request sends
# a bearer token.
ORIGIN_CACHE_CONTROL = "public, max-age=3600"
CLIENT_IP = "81.2.69.160"
# The phase breakdown's contenders: (name, steps), each one step more than the one before.
PHASE_STEPS = [
    ("cache hit", "cache"),
    ("+ JWT (HS256, the same session token)", "cache,jwt"),
    ("+ rate limit", "cache,jwt,rate"),
    ("+ client IP and geo (GeoLite2-City)", "cache,jwt,rate,geo"),
]


# The features scenario: a cache hit alone, then with one feature each (its request headers).
FEATURE_STEPS = [
    ("cache hit", "cache", {}),
    ("+ CORS (an allowed Origin)", "cache,cors", {"Origin": "https://app.example"}),
    ("+ access list (allow_ips)", "cache,access", {}),
    ("+ request IDs and trace context", "cache,reqid", {}),
    ("+ compression (a stored br variant)", "cache,compress", {"Accept-Encoding": "gzip, br"}),
    ("+ CORS, access, compression on other paths", "cache,elsewhere", {"Origin": "https://app.example"}),
]


def _token() -> str:
    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    head = b64(b'{"alg":"HS256","typ":"JWT"}')
    body = b64(json.dumps({"sub": "bench", "exp": int(time.time()) + 86400}).encode())
    sig = hmac.new(SECRET, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def cpu_seconds(pgid: int) -> float:
    """utime+stime of every process in the server's process group (a master and its forked
    workers, as nginx and Granian run), all threads included."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 of stat: the process group
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Contender:
    name: str
    cmd: list[str]
    port: int
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    # Response headers the scenario requires (None: absent), checked once before measuring, so that
    # a change in policy cannot silently turn, say, a cache-hit scenario into a proxied one.
    expect: dict[str, str | None] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    runs: list[dict] = field(default_factory=list)
    # The server's environment (None: this process's).
    env: dict[str, str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=self.env
        )
        wait_port(self.port)

    def check(self) -> None:
        """Raises if a request does not get the headers this scenario is about."""
        if not self.expect:
            return
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{self.path}", headers=self.headers)
        with urllib.request.urlopen(req, timeout=5) as resp:
            got = {k: resp.headers.get(k) for k in self.expect}
        if got != self.expect:
            raise RuntimeError(f"{self.name}: expected response headers {self.expect}, got {got}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


# What edgecore's proxy does to every request and response beyond a bare `proxy_pass`: the
# forwarding fields a reverse proxy sets (RFC 7239's de-facto X-Forwarded-* and RFC 9110 Via).
NGINX_FORWARDING = (
    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto $scheme; "
    'proxy_set_header X-Forwarded-Host $http_host; proxy_set_header Via "1.1 nginx"; add_header Via "1.1 nginx";'
)


MIDDLEWARE_EXCLUDED = "edgecore proxy, a path its Next.js middleware matcher excludes"
UPSTREAM_TWO = "edgecore proxy to an upstream of two targets"
NGINX_PROXY = "nginx proxy_pass (keep-alive, same forwarding fields)"
NGINX_PROXY_BARE = "nginx proxy_pass (keep-alive, bare)"
HYPER_FLOOR = "hyper floor (hyper's server and client alone, same forwarding fields)"


def hyper_floor() -> Path | None:
    """The floor under edgecore's proxy (`rust/edgecore-core/examples/hyper_floor.rs`), built by
    `make bench` (`cargo build --release --example hyper_floor`), or None when it is not built:
    what any proxy on hyper and tokio costs before doing anything of its own."""
    built = os.environ.get("EDGECORE_HYPER_FLOOR") or "target/release/examples/hyper_floor"
    path = Path(built)
    return path if path.is_file() and os.access(path, os.X_OK) else None


def nginx_conf(
    dir: Path,
    port: int,
    body: str,
    upstream: int | None = None,
    cache_control: str = "",
    forwarding: bool = False,
) -> Path:
    """An nginx configuration: `return 200 body`, or `proxy_pass` to `upstream` with keep-alive
    (and with `forwarding`, the same forwarding fields edgecore sets)."""
    loc = (
        'proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";'
        if upstream
        else f'return 200 "{body}";'
    )
    if upstream and forwarding:
        loc = f"{loc} {NGINX_FORWARDING}"
    if cache_control:
        loc = f'add_header Cache-Control "{cache_control}"; {loc}'

    up = f"upstream up {{ server 127.0.0.1:{upstream}; keepalive 64; }}" if upstream else ""
    conf = dir / f"nginx-{port}.conf"
    conf.write_text(
        f"""
worker_processes 2; daemon off; pid {dir}/nginx-{port}.pid; error_log {dir}/error-{port}.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 1000000;
  client_body_temp_path {dir}; proxy_temp_path {dir};
  fastcgi_temp_path {dir}; uwsgi_temp_path {dir}; scgi_temp_path {dir};
  {up}
  server {{ listen 127.0.0.1:{port}; location / {{ {loc} }} }}
}}
"""
    )
    return conf


def wrk(c: Contender, seconds: float, connections: int) -> dict:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    for k, v in c.headers.items():
        args += ["-H", f"{k}: {v}"]
    args.append(f"http://127.0.0.1:{c.port}{c.path}")
    cpu0 = cpu_seconds(c.proc.pid)
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    cpu1 = cpu_seconds(c.proc.pid)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
        "cpu_us": (cpu1 - cpu0) / max(total, 1) * 1e6,
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }


def median(c: Contender, key: str) -> float:
    return statistics.median(r[key] for r in c.runs)


def run(quick: bool = False) -> dict:
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed: run `make bench` (scripts/system-deps.sh bench installs it)")
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    tmp = Path(tempfile.mkdtemp(prefix="edgecore-load-"))
    py = sys.executable
    srv = [py, "-m", "edgecore.bench.servers"]
    started: list[Contender] = []
    origin_port = free_port()
    if nginx:
        origin = Contender(
            "origin (nginx)",
            [nginx, "-c", str(nginx_conf(tmp, origin_port, "origin says hi", cache_control=ORIGIN_CACHE_CONTROL))],
            origin_port,
        )
    else:
        origin = Contender("origin (edgecore)", [*srv, "edgecore-origin", "--port", str(origin_port)], origin_port)
    origin.start()
    started.append(origin)
    origin_url = f"http://127.0.0.1:{origin_port}"
    auth = {"Authorization": f"Bearer {_token()}", "X-Forwarded-For": CLIENT_IP}

    def contender(name: str, server: str, **kw) -> Contender:
        port = free_port()
        return Contender(name, [*srv, server, "--port", str(port), "--origin", origin_url], port, **kw)

    def step(name: str, steps: str) -> Contender:
        port = free_port()
        cmd = [*srv, "edgecore-steps", "--steps", steps, "--port", str(port), "--origin", origin_url]
        return Contender(name, cmd, port, path="/page", headers=auth, expect={"x-cache": "HIT"})

    def feature(name: str, steps: str, headers: dict[str, str]) -> Contender:
        port = free_port()
        cmd = [*srv, "edgecore-steps", "--steps", steps, "--port", str(port), "--origin", origin_url]
        return Contender(name, cmd, port, path="/page", headers=headers, expect={"x-cache": "HIT"})

    scenarios: dict[str, list[Contender]] = {
        "pipeline": [
            contender("edgecore", "edgecore-pipeline", path="/page", headers=auth, expect={"x-cache": "HIT"}),
            contender("uvicorn+Starlette (pure-Python pipeline)", "starlette-pipeline", path="/page", headers=auth),
        ],
        # The pipeline a step at a time (each adds one to the one before); the report turns the
        # differences into CPU per phase.
        "phases": [step(name, steps) for name, steps in PHASE_STEPS],
        # Each feature alone over the same cache hit; the report turns them into CPU per feature.
        "features": [feature(name, steps, headers) for name, steps, headers in FEATURE_STEPS],
        "hello": [
            contender("edgecore def handler", "edgecore-hello"),
            contender("uvicorn raw ASGI", "uvicorn-hello"),
        ],
        "proxy": [
            contender("edgecore proxy", "edgecore-proxy", path="/page"),
            # A path the middleware's matcher excludes: no Python (the response would carry x-mw).
            contender(MIDDLEWARE_EXCLUDED, "edgecore-proxy-middleware", path="/api/page", expect={"x-mw": None}),
            contender(UPSTREAM_TWO, "edgecore-proxy-upstream", path="/page"),
        ],
    }
    granian = shutil.which("granian") or str(Path(py).parent / "granian")
    if Path(granian).exists():
        port = free_port()
        scenarios["hello"].append(
            Contender(
                "Granian RSGI",
                [
                    granian,
                    "--interface",
                    "rsgi",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                    "--no-ws",
                    "--log-level",
                    "warning",
                    "edgecore.bench.servers:rsgi_hello",
                ],
                port,
            )
        )
    if nginx:
        port = free_port()
        scenarios["pipeline"].append(
            Contender("nginx return 200", [nginx, "-c", str(nginx_conf(tmp, port, "hello"))], port)
        )
        # Two nginx contenders: one doing what edgecore's proxy does (the target's baseline),
        # and a bare `proxy_pass` for reference.
        for name, forwarding in ((NGINX_PROXY, True), (NGINX_PROXY_BARE, False)):
            port = free_port()
            scenarios["proxy"].append(
                Contender(
                    name,
                    [nginx, "-c", str(nginx_conf(tmp, port, "", origin_port, forwarding=forwarding))],
                    port,
                    path="/page",
                )
            )
    floor = hyper_floor()
    if floor:
        port = free_port()
        cmd = [str(floor), "--port", str(port), "--origin", f"127.0.0.1:{origin_port}"]
        scenarios["proxy"].append(Contender(HYPER_FLOOR, cmd, port, path="/page", expect={"via": "1.1 floor"}))
    else:
        print("  load proxy: no hyper floor (cargo build --release --example hyper_floor)", file=sys.stderr)
    rounds = 2 if quick else 7
    seconds = 1.0 if quick else 4.0
    try:
        for cs in scenarios.values():
            for c in cs:
                c.start()
                started.append(c)
                wrk(c, 1.0, 32)  # warm-up: fill caches and connection pools alike
                c.check()
        for r in range(rounds):
            for name, cs in scenarios.items():
                order = cs[r % len(cs) :] + cs[: r % len(cs)]
                for c in order:
                    c.runs.append(wrk(c, seconds, 32))
                    print(
                        f"  load {name} round {r + 1}/{rounds}: {c.name}: {c.runs[-1]['rps']:.0f} req/s",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        for c in started:
            c.stop()
    result = {
        "rounds": rounds,
        "seconds": seconds,
        "versions": [version(v) for v in ("uvicorn", "starlette", "granian", "httptools", "uvloop")]
        + [
            subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
            if nginx
            else "nginx: not installed"
        ],
        "scenarios": {
            name: [
                {
                    "name": c.name,
                    "rps": median(c, "rps"),
                    "rps_spread": (max(r["rps"] for r in c.runs) - min(r["rps"] for r in c.runs)) / median(c, "rps"),
                    "p99_ms": median(c, "p99_ms"),
                    "cpu_us": median(c, "cpu_us"),
                    "errors": sum(r["errors"] for r in c.runs),
                }
                for c in cs
            ]
            for name, cs in scenarios.items()
        },
    }
    return result
