"""`edgecore check` and `edgecore serve` as subprocesses."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import urllib.request

import pytest

from tests.redis_server import free_port
from tests.waiting import wait_for


def write_app(tmp_path, body: str) -> None:
    (tmp_path / "myapp.py").write_text("import edgecore as ec\n" + textwrap.dedent(body))


def edgecore(tmp_path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgecore", *args], cwd=tmp_path, capture_output=True, text=True, timeout=timeout
    )


def start_serve(tmp_path, port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edgecore", "serve", "myapp:app", "--port", str(port), *extra],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class StderrLog:
    """Reads a process's stderr as it is written, so a test can wait for a line."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def finish(self) -> str:
        """After the process exited: everything it wrote; closes its pipes."""
        self.thread.join(timeout=30)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe:
                pipe.close()
        return self.text


def fetch(proc: subprocess.Popen, url: str, timeout: float = 30) -> bytes:
    """GETs url, retrying while the server starts; fails if the server process exits."""
    deadline = time.time() + timeout
    while True:
        try:
            return urllib.request.urlopen(url, timeout=2).read()
        except OSError:
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() < deadline, f"no answer from {url}"
            time.sleep(0.05)


def test_check_accepts_a_good_app(tmp_path):
    write_app(
        tmp_path,
        """
        app = ec.Edge(origin="http://127.0.0.1:9000")
        app.rate_limit(paths=["/api/*"], limit=10, period=60)
        app.cache(paths=["/static/*"], ttl=60)
        """,
    )
    r = edgecore(tmp_path, "check", "myapp:app")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok: myapp:app: ") and "1 rate limit(s)" in r.stdout and "warning" not in r.stdout


def test_check_reports_rules_that_can_never_apply(tmp_path):
    write_app(
        tmp_path,
        """
        app = ec.Edge(origin="http://127.0.0.1:9000")
        app.cache(paths=["/*"], ttl=60)
        app.cache(paths=["/products/*"], ttl=5)

        @app.route("/api/*")
        def a(request, env):
            return "a"

        @app.route("/api/users")
        def b(request, env):
            return "b"
        """,
    )
    r = edgecore(tmp_path, "check", "myapp:app")
    assert r.returncode == 0
    assert "warning: cache rule #1 can never apply: cache rule #0 matches every path it does" in r.stdout
    assert "warning: route #1 can never match" in r.stdout
    assert "warning: cache rule #0 covers route #0: the handler runs only on a miss" in r.stdout
    assert "cache rule #1 covers route" not in r.stdout  # /products/* does not reach /api/*
    assert edgecore(tmp_path, "check", "--strict", "myapp:app").returncode == 1


def test_check_fails_on_bad_configuration_naming_the_problem(tmp_path):
    write_app(tmp_path, 'app = ec.Edge(origin="http://127.0.0.1:9000")\napp.headers(request={"x": "{geo.nope}"})\n')
    r = edgecore(tmp_path, "check", "myapp:app")
    assert r.returncode == 1 and "unknown template variable {geo.nope}" in r.stderr
    write_app(tmp_path, 'app = ec.Edge()\napp.geo("/no/such/GeoLite2.mmdb")\n')
    r = edgecore(tmp_path, "check", "myapp:app")
    assert r.returncode == 1 and "/no/such/GeoLite2.mmdb" in r.stderr
    write_app(tmp_path, 'app = ec.Edge()\napp.jwt(paths=["/*"], key="short", algorithms=["HS256"])\n')
    r = edgecore(tmp_path, "check", "myapp:app")
    assert r.returncode == 1 and "HMAC secret is 5 bytes" in r.stderr
    r = edgecore(tmp_path, "check", "nosuchmodule:app")
    assert r.returncode != 0 and "cannot import" in r.stderr


def test_serve_runs_an_app_and_stops_on_sigterm(tmp_path):
    write_app(
        tmp_path,
        """
        app = ec.Edge()

        @app.route("/hi")
        def hi(request, env):
            return "hi from serve"
        """,
    )
    port = free_port()
    proc = start_serve(tmp_path, port)
    try:
        assert fetch(proc, f"http://127.0.0.1:{port}/hi") == b"hi from serve"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert f"edgecore listening on http://127.0.0.1:{port}" in err and "draining" in err


def test_sighup_reloads_the_configuration_and_rejects_a_bad_one(tmp_path):
    import signal

    write_app(tmp_path, 'app = ec.Edge()\n\n@app.route("/v")\ndef v(request, env):\n    return "one"\n')
    port = free_port()
    proc = start_serve(tmp_path, port)
    log = StderrLog(proc)

    def get() -> bytes:
        return fetch(proc, f"http://127.0.0.1:{port}/v")

    try:
        assert get() == b"one"
        write_app(tmp_path, 'app = ec.Edge()\n\n@app.route("/v")\ndef v(request, env):\n    return "two"\n')
        proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while get() != b"two":
            assert time.time() < deadline, "not reloaded"
            time.sleep(0.1)
        # A bad configuration is rejected and the running one stays.
        write_app(tmp_path, 'app = ec.Edge()\napp.headers(request={"x": "{nope}"})\n')
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload rejected" in log.text, what="the bad reload to be rejected")
        assert get() == b"two"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    err = log.finish()
    assert "configuration reloaded" in err and "reload rejected" in err and "unknown template variable" in err


def test_workers_share_the_port_and_stop_together(tmp_path):
    import signal

    write_app(
        tmp_path,
        'import os\napp = ec.Edge()\n\n@app.route("/pid")\ndef pid(request, env):\n    return str(os.getpid())\n',
    )
    port = free_port()
    proc = start_serve(tmp_path, port, "--workers", "2")
    try:
        pids = set()
        deadline = time.time() + 30
        while len(pids) < 2 and time.time() < deadline:
            # A new connection each time: the kernel spreads connections across the processes.
            pids.add(fetch(proc, f"http://127.0.0.1:{port}/pid"))
        assert len(pids) == 2, pids
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert err.count("edgecore listening on") == 2


def test_reload_restarts_on_file_change_and_survives_a_broken_edit(tmp_path):
    import signal

    def version(text: str) -> None:
        write_app(tmp_path, f'app = ec.Edge()\n\n@app.route("/v")\ndef v(request, env):\n    return "{text}"\n')

    version("one")
    port = free_port()
    proc = start_serve(tmp_path, port, "--reload")
    log = StderrLog(proc)
    url = f"http://127.0.0.1:{port}/v"

    def serves(expected: bytes) -> None:
        deadline = time.time() + 30
        while True:
            try:
                if urllib.request.urlopen(url, timeout=2).read() == expected:
                    return
            except OSError:
                pass
            assert proc.poll() is None, log.text
            assert time.time() < deadline, f"never served {expected!r}"
            time.sleep(0.1)

    try:
        serves(b"one")
        version("two")
        serves(b"two")
        # A syntax error stops the child; the supervisor stays and the next good edit serves again.
        (tmp_path / "myapp.py").write_text("import edgecore as ec\napp = ec.Edge(\n")
        wait_for(lambda: "SyntaxError" in log.text, timeout=30, what="the child to fail on the broken edit")
        assert proc.poll() is None
        version("three")
        serves(b"three")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    err = log.finish()
    assert proc.returncode == 0, err
    assert "myapp.py changed; restarting" in err
    assert "SyntaxError" in err
    assert err.count("edgecore listening on") >= 3
    # The child went with the supervisor: nothing listens any more.
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


def test_reload_needs_a_fixed_port(tmp_path):
    write_app(tmp_path, "app = ec.Edge()\n")
    r = edgecore(tmp_path, "serve", "myapp:app", "--reload", "--port", "0")
    assert r.returncode != 0 and "--reload needs a fixed --port" in r.stderr


def test_purge_command_reports_unreachable_or_invalid_redis(tmp_path):
    dead = edgecore(tmp_path, "purge", "/x", "--redis", f"redis://127.0.0.1:{free_port()}/0")
    assert dead.returncode == 1 and "error: Redis at" in dead.stderr and "cannot connect" in dead.stderr
    bad = edgecore(tmp_path, "purge", "/x", "--redis", "http://nope")
    assert bad.returncode == 1 and "invalid Redis URL" in bad.stderr


def test_purge_command_with_no_node_listening_warns(tmp_path, redis_url):
    r = edgecore(tmp_path, "purge", "--redis", redis_url)
    assert r.returncode == 0
    assert "purge of everything reached 0 node(s)" in r.stdout
    assert "no edgecore node is subscribed" in r.stderr


def test_version_flag_prints_the_package_version(tmp_path):
    import edgecore as ec

    r = edgecore(tmp_path, "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"edgecore {ec.__version__}"


def test_serve_help_shows_defaults(tmp_path):
    r = edgecore(tmp_path, "serve", "--help")
    assert r.returncode == 0 and "(default: 8080)" in r.stdout and "--app-dir" in r.stdout


COUNTRY_APP = """
app = ec.Edge()

@app.route("/where")
def where(request, env):
    return (request.geo.country if request.geo else None) or "unknown"
"""


def test_dev_flag_lets_requests_set_their_country_and_says_so(tmp_path):
    write_app(tmp_path, COUNTRY_APP)
    for dev, expected in ((True, b"DE"), (False, b"unknown")):
        port = free_port()
        proc = start_serve(tmp_path, port, *(["--dev"] if dev else []))
        try:
            fetch(proc, f"http://127.0.0.1:{port}/where")
            req = urllib.request.Request(f"http://127.0.0.1:{port}/where", headers={"X-Edge-Dev-Country": "de"})
            assert urllib.request.urlopen(req, timeout=5).read() == expected
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30)
        assert ("dev mode" in err and "Never in production" in err) == dev, err


def test_app_dir_imports_the_app_from_another_directory(tmp_path):
    appdir = tmp_path / "site"
    appdir.mkdir()
    write_app(appdir, COUNTRY_APP)
    r = edgecore(tmp_path, "check", "myapp:app")
    assert r.returncode != 0 and "cannot import" in r.stderr
    r = edgecore(tmp_path, "check", "myapp:app", "--app-dir", "site")
    assert r.returncode == 0 and r.stdout.startswith("ok: myapp:app"), r.stderr
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecore", "serve", "myapp:app", "--app-dir", str(appdir), "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert fetch(proc, f"http://127.0.0.1:{port}/where") == b"unknown"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    r = edgecore(tmp_path, "check", "myapp:app", "--app-dir", "nowhere")
    assert r.returncode != 0 and "--app-dir 'nowhere' is not a directory" in r.stderr


def test_a_start_up_error_is_one_line_unless_debug(tmp_path):
    write_app(tmp_path, 'app = ec.Edge()\napp.headers(request={"x": "{geo.nope}"})\n')
    r = edgecore(tmp_path, "serve", "myapp:app", "--port", str(free_port()))
    assert r.returncode == 1
    assert "unknown template variable {geo.nope}" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "--debug" in r.stderr
    r = edgecore(tmp_path, "serve", "myapp:app", "--port", str(free_port()), "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr and "{geo.nope}" in r.stderr


def test_workers_refuse_in_process_limits_and_kv_unless_shared_or_accepted(tmp_path, redis_url):
    import signal
    import urllib.error

    write_app(
        tmp_path,
        """
        app = ec.Edge()
        app.rate_limit(paths="/limited", limit=3, period=60)
        app.kv("sessions")
        app.cache(paths="/c/*", ttl=60)

        @app.route("/limited")
        def limited(request, env):
            return "ok"
        """,
    )
    port = free_port()
    refused = edgecore(tmp_path, "serve", "myapp:app", "--port", str(port), "--workers", "2")
    assert refused.returncode == 1
    assert "rate limit on /limited (in process)" in refused.stderr and "KV store 'sessions'" in refused.stderr
    assert "allow 2x each limit" in refused.stderr and "redis://" in refused.stderr
    # Shared through Redis: the limit holds across both processes.
    write_app(
        tmp_path,
        f"""
        app = ec.Edge()
        app.rate_limit(paths="/limited", limit=3, period=60, store={redis_url!r})
        app.kv("sessions", {redis_url!r})
        app.cache(paths="/c/*", ttl=60)

        @app.route("/limited")
        def limited(request, env):
            return "ok"
        """,
    )
    proc = start_serve(tmp_path, port, "--workers", "2")
    try:
        fetch(proc, f"http://127.0.0.1:{port}/limited")
        statuses = []
        for _ in range(12):  # a new connection each: spread over both processes
            try:
                statuses.append(urllib.request.urlopen(f"http://127.0.0.1:{port}/limited", timeout=5).status)
            except urllib.error.HTTPError as e:
                statuses.append(e.code)
        assert statuses.count(200) == 2 and statuses.count(429) == 10, statuses
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "2 workers: response cache on /c/*: one per process" in err
    assert "(in process)" not in err


def test_per_worker_state_accepts_a_copy_per_process_and_says_so(tmp_path):
    import signal

    write_app(
        tmp_path,
        """
        app = ec.Edge()
        app.rate_limit(paths="/limited", limit=3, period=60)

        @app.route("/limited")
        def limited(request, env):
            return "ok"
        """,
    )
    port = free_port()
    proc = start_serve(tmp_path, port, "--workers", "2", "--per-worker-state")
    try:
        assert fetch(proc, f"http://127.0.0.1:{port}/limited") == b"ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "rate limit on /limited (in process): one per process (--per-worker-state)" in err
