"""Two builds of edgecore side by side: CPU per request and requests per second of the same
scenario, the builds' wrk runs alternating (A B A B …) so that the machine's drift hits both.

    # a build of another commit, with the same cargo profile as this one:
    git worktree add /tmp/old <commit>
    (cd /tmp/old && cargo build --profile ci -p edgecore-py)
    cp /tmp/old/target/ci/lib_core.so /tmp/old/python/edgecore/_core.cpython-311-x86_64-linux-gnu.so
    python benches/compare_builds.py --a /tmp/old/python --b python --scenario proxy
    python benches/compare_builds.py --a /tmp/old/python --b python --scenario pipeline
    # one build, two setups: a single-target origin against an upstream of two targets
    python benches/compare_builds.py --a python --b python --scenario proxy --b-scenario upstream

``--a`` and ``--b`` are directories holding an ``edgecore`` package with its built extension
(put first on ``PYTHONPATH`` for that server); the scenarios use only API that every version
has. The origin is nginx answering ``200`` with ``Cache-Control: public, max-age=3600``.
Prints each build's medians and B/A: a ratio above 1 means B costs more CPU per request.
Needs wrk and nginx (``scripts/system-deps.sh bench``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from edgecore.bench.load import CLIENT_IP, Contender, _token, free_port, nginx_conf, wrk

SCENARIOS = {
    # A proxied request: the origin's answer passed through.
    "proxy": "ec.Edge(origin=ORIGIN).run('127.0.0.1', PORT)",
    # A cache hit on every request after the first.
    "cache": "ec.Edge(origin=ORIGIN).cache(paths=['/*'], ttl=3600).run('127.0.0.1', PORT)",
    # The full pipeline of `make bench` (client IP, geo, HS256 JWT, rate limit, cache hit), as
    # `edgecore.bench.servers` of each tree builds it; requests carry the token and a client IP.
    "pipeline": (
        "from edgecore.bench.load import SECRET\n"
        "from edgecore.bench.servers import edgecore_pipeline\n"
        "edgecore_pipeline(PORT, ORIGIN, SECRET)"
    ),
    # A Python `def` handler answering "hello" (the load benchmark's hello row).
    "hello": "from edgecore.bench.servers import edgecore_hello\nedgecore_hello(PORT)",
    # The proxy to an upstream of two targets (builds that have app.upstream).
    "upstream": (
        "app = ec.Edge(origin='upstream:api'); app.upstream('api', [ORIGIN, ORIGIN + '/']); app.run('127.0.0.1', PORT)"
    ),
}


def server(name: str, tree: Path, scenario: str, origin: str) -> Contender:
    port = free_port()
    code = f"import edgecore as ec\nORIGIN = {origin!r}\nPORT = {port}\n{SCENARIOS[scenario]}"
    env = {**os.environ, "PYTHONPATH": f"{tree.resolve()}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    c = Contender(name=name, cmd=[sys.executable, "-c", code], port=port, env=env)
    if scenario == "pipeline":
        c.headers = {"Authorization": f"Bearer {_token()}", "X-Forwarded-For": CLIENT_IP}
    c.start()
    return c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", type=Path, required=True, help="the baseline build's python/ directory")
    ap.add_argument("--b", type=Path, required=True, help="the build compared with it")
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), default="proxy")
    ap.add_argument(
        "--b-scenario", choices=sorted(SCENARIOS), help="B's scenario, when it differs (one build, two setups)"
    )
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()
    nginx = "nginx" if subprocess.run(["which", "nginx"], capture_output=True).returncode == 0 else "/usr/sbin/nginx"
    with tempfile.TemporaryDirectory() as tmp:
        origin_port = free_port()
        conf = nginx_conf(Path(tmp), origin_port, "origin says hi", cache_control="public, max-age=3600")
        origin = Contender("nginx origin", [nginx, "-c", str(conf)], origin_port)
        origin.start()
        url = f"http://127.0.0.1:{origin_port}"
        b_scenario = args.b_scenario or args.scenario
        builds = [server("A", args.a, args.scenario, url), server("B", args.b, b_scenario, url)]
        try:
            for c in builds:
                wrk(c, 1, args.connections)  # warm-up: connections, the cache entry
            for r in range(args.rounds):
                for c in builds if r % 2 == 0 else reversed(builds):
                    c.runs.append(wrk(c, args.seconds, args.connections))
        finally:
            for c in [*builds, origin]:
                c.stop()
    med = {c.name: {k: statistics.median(run[k] for run in c.runs) for k in ("cpu_us", "rps")} for c in builds}
    scenarios = args.scenario if not args.b_scenario else f"{args.scenario} (A) vs {args.b_scenario} (B)"
    print(f"scenario {scenarios}: {args.rounds} rounds of {args.seconds:g} s, {args.connections} connections")
    for c in builds:
        cpu = [round(run["cpu_us"], 2) for run in c.runs]
        print(f"  {c.name}: {med[c.name]['cpu_us']:.2f} µs CPU/request, {med[c.name]['rps']:.0f} req/s  (runs: {cpu})")
    print(
        f"  B/A: CPU per request {med['B']['cpu_us'] / med['A']['cpu_us']:.3f}x, "
        f"req/s {med['B']['rps'] / med['A']['rps']:.3f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
