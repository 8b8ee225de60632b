#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind: steadier than CPU time on a
# shared machine, so it shows what a change to the request path costs or saves.
#
#   benches/profile_proxy.sh [REQUESTS]      (default 3000; needs nginx and valgrind:
#                                             apt-get install valgrind)
#   SERVER=edgecore-cache benches/profile_proxy.sh   (the same, every request a cache hit)
#   SERVER=edgecore-cache-jwt ...      (a cache hit behind an HS256 JWT rule)
#   SERVER=edgecore-pipeline ...       (client IP, GeoLite2-City, HS256 JWT, rate limit, cache hit)
#   AUTH=1 SERVER=edgecore-cache ...   (sends the same token and X-Forwarded-For, unchecked: the
#                                       cache hit to compare edgecore-cache-jwt with)
#   STEPS=cache,reqid SERVER=edgecore-steps ...   (a cache hit with the features named, as the
#                                       load benchmark's phase and feature rows build it)
#   HEADER='Origin: https://app.example' STEPS=cache,cors SERVER=edgecore-steps ...   (one more
#                                       request field, as the feature rows send it)
#   REQUEST_PATH=/api/page SERVER=edgecore-proxy-middleware ...   (a path its matcher excludes;
#                                       REQUEST_PATH is the path requested, /page by default)
#
# Starts an nginx origin and `edgecore-proxy` under callgrind (instrumentation off during start-up
# and warm-up), sends REQUESTS keep-alive GETs, and prints the instructions per request and the
# functions with the most inclusive cost. The raw profile is left in $OUT for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3000}
NAME=${SERVER:-edgecore-proxy}
PY=${PYTHON:-.venv/bin/python}
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
T=$(mktemp -d)
OUT=${OUT:-$T/callgrind.out}
ORIGIN=$($PY -c 'from edgecore.bench.load import free_port; print(free_port())')
PORT=$($PY -c 'from edgecore.bench.load import free_port; print(free_port())')
cat > "$T/origin.conf" <<NG
worker_processes 1; daemon off; pid $T/nginx.pid; error_log $T/error.log warn;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000; client_body_temp_path $T; proxy_temp_path $T;
  fastcgi_temp_path $T; uwsgi_temp_path $T; scgi_temp_path $T;
  server { listen 127.0.0.1:$ORIGIN; location / { add_header Cache-Control "public, max-age=3600"; return 200 "origin says hi"; } } }
NG
"$NGINX" -c "$T/origin.conf" & NGINX_PID=$!
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT" \
  "$PY" -m edgecore.bench.servers "$NAME" --port "$PORT" --origin "http://127.0.0.1:$ORIGIN" ${STEPS:+--steps "$STEPS"} \
  >/dev/null 2>"$T/valgrind.log" & SERVER=$!
trap 'kill $SERVER $NGINX_PID 2>/dev/null || true' EXIT
"$PY" - "$PORT" "$N" "$SERVER" "$NAME" "${AUTH:-0}" "${REQUEST_PATH:-/page}" "${HEADER:-}" <<'PY'
import http.client, subprocess, sys, time
port, n, pid, name, auth, path, extra = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
headers = {}
if name in ("edgecore-pipeline", "edgecore-cache-jwt") or auth == "1":  # the same session token each time
    from edgecore.bench.load import _token as make_token
    headers = {"Authorization": f"Bearer {make_token()}", "X-Forwarded-For": "81.2.69.160"}
if extra:
    headers[extra.split(":", 1)[0].strip()] = extra.split(":", 1)[1].strip()
deadline = time.time() + 120
while True:  # start-up under valgrind is slow
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/warm", headers=headers); c.getresponse().read(); break
    except OSError:
        if time.time() > deadline:
            raise
        time.sleep(0.5)
conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(4)]
def run(k):
    for i in range(k):
        c = conns[i % 4]; c.request("GET", path, headers=headers); r = c.getresponse(); r.read()
        assert r.status == 200, r.status
run(400)  # warm-up: pools, caches, lazy statics
subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
run(n)
subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)
subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
PY
sleep 1
PROFILE=$(ls -t "$OUT"* | head -1)
TOTAL=$(callgrind_annotate "$PROFILE" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "user-space instructions per request ($NAME): $((TOTAL / N))  (callgrind, $N requests; profile: $PROFILE)"
callgrind_annotate --inclusive=yes "$PROFILE" | sed 's/ \[.*//' | grep -E '^ *[0-9,]+ ' | sed -n 2,31p
