"""The `edgecore` command line: `edgecore demo`, `edgecore serve MODULE:ATTR`, `edgecore check MODULE:ATTR`,
`edgecore explain MODULE:ATTR "GET /path"`, `edgecore purge PREFIX --redis URL`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any

from edgecore.app import DEV_MODE_NOTE


def _load(path: str, fresh: bool = False, app_dir: str | None = None) -> Any:
    """Imports MODULE and returns ATTR; `fresh` re-executes the module (SIGHUP reload). The
    working directory (or `app_dir`) is on the import path, as uvicorn does it."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"edgecore: expected MODULE:ATTR (like app:app), got {path!r}")
    where = os.path.abspath(app_dir) if app_dir else os.getcwd()
    if app_dir and not os.path.isdir(where):
        raise SystemExit(f"edgecore: --app-dir {app_dir!r} is not a directory")
    if where not in sys.path:
        sys.path.insert(0, where)
    if fresh:
        sys.modules.pop(module_name, None)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise SystemExit(f"edgecore: cannot import {module_name!r}: {e}") from e
    try:
        return getattr(module, attr)
    except AttributeError as e:
        raise SystemExit(f"edgecore: {module_name!r} has no attribute {attr!r}") from e


def _run_demo(args: argparse.Namespace) -> int:
    from edgecore import _demo

    return _demo.main(args)


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.reload:
        return _reload(args)
    if args.workers > 1:
        return _supervise(args)

    def build() -> Any:
        app = _load(args.app, fresh=True, app_dir=args.app_dir)
        if args.dev:
            app.configure(dev_mode=True)
        if args.access_log:
            app.configure(access_log=args.access_log)
        if args.tls_cert or args.tls_key:
            app.configure(tls_cert=args.tls_cert, tls_key=args.tls_key)
        return app

    app = build()
    if args.dev:
        print(f"edgecore: {DEV_MODE_NOTE}", file=sys.stderr, flush=True)
    app.run(args.host, args.port, workers=args.python_workers, reload_app=build, reuse_port=args.reuse_port)
    return 0


def _supervise(args: argparse.Namespace) -> int:
    """--workers N: N server processes sharing the port (SO_REUSEPORT); signals are forwarded,
    and the supervisor exits when they have all stopped."""
    import signal
    import subprocess

    if args.port == 0:
        raise SystemExit("edgecore: --workers needs a fixed --port")
    from edgecore import Edge

    app = _load(args.app, app_dir=args.app_dir)
    if not isinstance(app, Edge):
        raise SystemExit(f"edgecore: {args.app} is a {type(app).__name__}, not an edgecore.Edge")
    wrong, copies = app.per_process_state()
    if wrong and not args.per_worker_state:
        raise SystemExit(
            f"edgecore: --workers {args.workers} would give each server process its own copy of:\n"
            + "".join(f"  - {w}\n" for w in wrong)
            + f"  so {args.workers} processes would allow {args.workers}x each limit and disagree on KV values.\n"
            'Share them through Redis (rate_limit(..., store="redis://..."), app.kv(name, "redis://...")),\n'
            "or serve with one process (its server already runs on every core; --python-workers N adds\n"
            "handler threads), or pass --per-worker-state to accept a copy per process."
        )
    for line in [
        *(f"{w}: one per process (--per-worker-state)" for w in wrong),
        *(f"{c}: one per process" for c in copies),
    ]:
        print(f"edgecore: {args.workers} workers: {line}", file=sys.stderr, flush=True)
    child = [*_child_command(args), "--reuse-port"]
    procs = [subprocess.Popen(child) for _ in range(args.workers)]

    def forward(signum: int, _frame: Any) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, forward)
    codes = [p.wait() for p in procs]
    return max(codes, key=abs)


def _child_command(args: argparse.Namespace) -> list[str]:
    """The `edgecore serve` command line a supervisor starts (without --workers/--reload)."""
    child = [sys.executable, "-m", "edgecore", "serve", args.app, "--host", args.host, "--port", str(args.port)]
    child += ["--python-workers", str(args.python_workers), "--log-level", args.log_level]
    if args.dev:
        child.append("--dev")
    if args.debug:
        child.append("--debug")
    if args.app_dir:
        child += ["--app-dir", args.app_dir]
    for flag, value in (("--access-log", args.access_log), ("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if value:
            child += [flag, value]
    return child


def _reload(args: argparse.Namespace) -> int:
    """--reload (development): serve in a child process and restart it when a Python file under
    the watched directories changes. A child that fails to start (a syntax error, a bad
    configuration) is reported, and the next change starts it again."""
    import signal
    import subprocess
    import threading

    try:
        from watchfiles import PythonFilter, watch
    except ImportError:
        raise SystemExit("edgecore: --reload needs the watchfiles package: pip install 'edgecore[reload]'") from None
    if args.workers > 1:
        raise SystemExit("edgecore: --reload runs a single server process; drop --workers")
    if args.port == 0:
        raise SystemExit("edgecore: --reload needs a fixed --port (it restarts the server on it)")
    dirs = [os.path.abspath(d) for d in (args.reload_dir or [os.getcwd()])]
    for d in dirs:
        if not os.path.isdir(d):
            raise SystemExit(f"edgecore: --reload-dir {d!r} is not a directory")
    child = _child_command(args)
    stop = threading.Event()
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: stop.set())
    print(f"edgecore: watching {', '.join(dirs)} for changes to Python files", file=sys.stderr, flush=True)

    def halt(p: subprocess.Popen[bytes]) -> None:
        if p.poll() is None:
            p.terminate()  # graceful: the child drains in-flight requests
            p.wait()

    proc = subprocess.Popen(child)
    try:
        for changes in watch(*dirs, watch_filter=PythonFilter(), stop_event=stop, raise_interrupt=False):
            names = sorted({os.path.relpath(path) for _, path in changes})
            print(f"edgecore: {', '.join(names[:5])} changed; restarting", file=sys.stderr, flush=True)
            halt(proc)
            proc = subprocess.Popen(child)
    finally:
        halt(proc)
    return 0


def _purge(args: argparse.Namespace) -> int:
    from edgecore import EdgeError, publish_purge

    try:
        nodes = publish_purge(args.redis, args.prefix, tag=args.tag, channel=args.channel)
    except EdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    what = f"tag {args.tag!r}" if args.tag else repr(args.prefix) if args.prefix else "everything"
    print(f"purge of {what} reached {nodes} node(s) on channel {args.channel!r}")
    if nodes == 0:
        print("warning: no edgecore node is subscribed to that channel", file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    from edgecore import ConfigError, Edge

    try:
        app = _load(args.app, app_dir=args.app_dir)
        if not isinstance(app, Edge):
            print(f"error: {args.app} is a {type(app).__name__}, not an edgecore.Edge", file=sys.stderr)
            return 1
        summary, warnings = app.check()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"ok: {args.app}: " + (", ".join(summary) or "no policies"))
    for w in warnings:
        print(f"warning: {w}")
    return 1 if warnings and args.strict else 0


def _explain(args: argparse.Namespace) -> int:
    """Runs one request through the app's pipeline on a private loopback listener in dry-run
    mode (the origin is never contacted) and prints each phase's decision."""
    import http.client
    import json

    from edgecore import ConfigError, Edge

    app = _load(args.app, app_dir=args.app_dir)
    if not isinstance(app, Edge):
        print(f"error: {args.app} is a {type(app).__name__}, not an edgecore.Edge", file=sys.stderr)
        return 1
    method, _, target = args.request.strip().partition(" ")
    if not method.isalpha() or not target.startswith("/"):
        print(f'error: the request must be "METHOD /path", like "GET /api/x", not {args.request!r}', file=sys.stderr)
        return 1
    headers: dict[str, str] = {}
    for h in args.header or []:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            print(f'error: -H takes "Name: value", not {h!r}', file=sys.stderr)
            return 1
        headers[name.strip()] = value.strip()
    dev = {"client_ip": args.client_ip, "country": args.country, "bot": "1" if args.bot else None}
    headers.update({f"x-edge-dev-{k.replace('_', '-')}": v for k, v in dev.items() if v})
    try:
        app.configure(
            dry_run=True,
            dev_mode=True,
            access_log=None,
            metrics_path=None,
            admin_addr=None,
            tls_cert=None,
            tls_key=None,
        )
        app._spec["server"].pop("purge_redis", None)
        with app.serve("127.0.0.1", 0, workers=1) as srv:
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
            sep = "&" if "?" in target else "?"
            conn.request(method.upper(), f"{target}{sep}__explain", body=args.data, headers=headers)
            reply = conn.getresponse()
            doc = json.loads(reply.read())
            conn.close()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{method.upper()} {target}")
    for step in doc["phases"]:
        rule = f"rule #{step['rule']}" if step["rule"] is not None else ""
        print(f"  {step['phase']:<11} {step['decision']:<44} {rule:<8} {step['micros']:>6} µs")
    resp = doc["response"]
    print(f"=> {resp['status']}")
    for name, value in resp["headers"].items():
        print(f"   {name}: {value}")
    return 0


class _DefaultsFormatter(argparse.HelpFormatter):
    """Shows an option's default when it has one worth showing (not None, False or a list)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and not isinstance(action.default, list):
            if action.option_strings and "(default" not in text:
                text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    from edgecore import __version__, _demo

    ap = argparse.ArgumentParser(prog="edgecore", description="edgecore: the fast edge layer for Python")
    ap.add_argument("--version", action="version", version=f"edgecore {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    defaults = _DefaultsFormatter
    demo = sub.add_parser("demo", help="run an edge server on embedded defaults (no external services)")
    _demo.add_arguments(demo)
    demo.set_defaults(func=_run_demo)
    serve = sub.add_parser("serve", help="serve an app: edgecore serve app:app", formatter_class=defaults)
    serve.add_argument("app", help="MODULE:ATTR of an ec.Edge")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on")
    serve.add_argument("--workers", type=int, default=1, help="server processes sharing the port (SO_REUSEPORT)")
    serve.add_argument("--python-workers", type=int, default=4, help="threads running Python handlers, per process")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument(
        "--per-worker-state",
        action="store_true",
        help="with --workers: accept a copy of in-process limits and KV per process (each allows the full limit)",
    )
    serve.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"], help="how much to log"
    )
    serve.add_argument(
        "--access-log", metavar="FILE", help="JSON-lines access log to FILE (- for stderr); off by default"
    )
    serve.add_argument("--reload", action="store_true", help="development: restart when a Python file changes")
    serve.add_argument(
        "--reload-dir",
        action="append",
        metavar="DIR",
        help="directory to watch with --reload (default: cwd; repeatable)",
    )
    serve.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS: certificate chain (PEM); SIGHUP re-reads it")
    serve.add_argument("--tls-key", metavar="PEM", help="serve HTTPS: private key (PEM)")
    serve.add_argument(
        "--dev",
        action="store_true",
        help="dev mode: requests may set their IP, country and bot status (never in production)",
    )
    serve.add_argument("--app-dir", metavar="DIR", help="import the app from DIR (default: the working directory)")
    serve.add_argument("--debug", action="store_true", help="print the traceback of a start-up error")
    serve.set_defaults(func=_serve)
    purge = sub.add_parser("purge", help="purge cached responses on every node sharing a Redis")
    purge.add_argument("prefix", nargs="?", default="", help="/path/prefix, a URL prefix, or nothing for everything")
    purge.add_argument("--redis", required=True, metavar="URL", help="the Redis the nodes use (redis://host:port/db)")
    purge.add_argument("--channel", default="edgecore:purge", help="the nodes' purge channel")
    purge.add_argument("--tag", help="purge every response tagged NAME (Cache-Tag / Surrogate-Key) instead of a prefix")
    purge.set_defaults(func=_purge)
    check = sub.add_parser(
        "check", help="validate an app before deploying it: edgecore check app:app", formatter_class=defaults
    )
    check.add_argument("app", help="MODULE:ATTR of an ec.Edge")
    check.add_argument("--app-dir", metavar="DIR", help="import the app from DIR (default: the working directory)")
    check.add_argument("--debug", action="store_true", help="print the traceback of an error")
    check.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    check.set_defaults(func=_check)
    explain = sub.add_parser(
        "explain",
        help='why a request is answered as it is: edgecore explain app:app "GET /path" (the origin is not contacted)',
        formatter_class=defaults,
    )
    explain.add_argument("app", help="MODULE:ATTR of an ec.Edge")
    explain.add_argument("request", help='"METHOD /path?query"')
    explain.add_argument(
        "-H", "--header", action="append", metavar="'NAME: VALUE'", help="a request field (repeatable)"
    )
    explain.add_argument("-d", "--data", help="the request body")
    explain.add_argument("--client-ip", help="the client's IP (as if it connected from there)")
    explain.add_argument("--country", help="the client's country (two letters)")
    explain.add_argument("--bot", action="store_true", help="the client is a bot")
    explain.add_argument("--json", action="store_true", help="print the trace as JSON")
    explain.add_argument("--app-dir", metavar="DIR", help="import the app from DIR (default: the working directory)")
    explain.add_argument("--debug", action="store_true", help="print the traceback of an error")
    explain.set_defaults(func=_explain)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SystemExit:
        raise
    except Exception as e:
        # One line for what went wrong at start-up (a bad configuration, an app that raises
        # on import); --debug shows the traceback.
        if getattr(args, "debug", False):
            raise
        print(f"error: {type(e).__name__}: {e}" if not _is_edge_error(e) else f"error: {e}", file=sys.stderr)
        print("(run with --debug for the traceback)", file=sys.stderr)
        return 1


def _is_edge_error(e: BaseException) -> bool:
    from edgecore import EdgeError

    return isinstance(e, EdgeError)


if __name__ == "__main__":
    sys.exit(main())
