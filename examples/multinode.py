"""One node of a multi-node deployment: run this same app on every node, all pointing at one Redis.

    EDGECORE_REDIS=redis://10.0.0.5:6379/0 ORIGIN=http://10.0.1.10:8000 EDGECORE_NODE=edge-1 \\
        edgecore serve examples.multinode:app --host 0.0.0.0 --port 8080 --workers 2

What the nodes share through Redis (see "Several nodes" in the README):
- the /api/* rate limit is global: N nodes together allow `limit` per `period`, not N times it;
- the "shared" KV store (a handler on one node writes, a handler on another reads);
- cache purges: `edgecore purge /products/ --redis $EDGECORE_REDIS` empties /products/ on every
  node (each node keeps its own response cache; only purges travel).
"""

import os
import socket

import edgecore as ec

REDIS = os.environ.get("EDGECORE_REDIS", "redis://127.0.0.1:6379/0")
NODE = os.environ.get("EDGECORE_NODE", socket.gethostname())

app = ec.Edge(origin=os.environ.get("ORIGIN", "http://127.0.0.1:9000"))
app.trust_proxies(os.environ.get("EDGECORE_TRUSTED_PROXIES", "10.0.0.0/8").split(","))  # your load balancers
app.rate_limit(
    paths=["/api/*"],
    limit=int(os.environ.get("EDGECORE_API_LIMIT", "100")),
    period=float(os.environ.get("EDGECORE_API_PERIOD", "60")),
    store=REDIS,
    # No answer from Redis within the timeout (or Redis down): each node enforces the limit on
    # its own meanwhile, so N nodes allow up to N times the limit until Redis is back.
    on_store_error="local",
    store_timeout=float(os.environ.get("EDGECORE_REDIS_TIMEOUT", "0.05")),
)
app.cache(paths=["/products/*", "/static/*"], ttl=60)
app.purge_broadcast(REDIS)
app.kv("shared", REDIS)
app.headers(response={"x-edge-node": NODE})
app.configure(metrics_path="/metrics")


@app.route("/kv/:key", methods=["GET", "PUT"])
def shared_value(request, env):
    store = env.kv["shared"]
    key = request.params["key"]
    if request.method == "PUT":
        store.put(key, request.body, ttl=3600)
        return ec.Response(status=204)
    value = store.get(key)
    return ec.Response(value, status=200) if value is not None else ec.Response("not found\n", status=404)
