"""A complete edge app: run it with `edgecore serve examples.app:app --port 8080`.

Set ORIGIN to your backend, JWT_SECRET to your HS256 secret (32+ bytes) and GEOIP_DB to a
MaxMind City database; the defaults make it run on its own.
"""

import os

import edgecore as ec

app = ec.Edge(origin=os.environ.get("ORIGIN", "http://127.0.0.1:9000"))
app.trust_proxies(["10.0.0.0/8"])  # your load balancers
if os.environ.get("GEOIP_DB"):
    app.geo(os.environ["GEOIP_DB"])
    app.redirect(to="https://example.de{path}", status=302, paths=["/shop/*"], country="DE")
    app.headers(request={"x-user-country": "{geo.country}"}, response={"x-edge-region": "{geo.region}"})
app.bots("block", allow=["Googlebot", "bingbot"])
app.jwt(
    paths=["/api/*"],
    key=os.environ.get("JWT_SECRET", "change-me-to-a-real-32-byte-secret!!"),
    algorithms=["HS256"],
    claims_to_headers={"sub": "x-user-id"},
)
app.rate_limit(paths=["/api/*"], limit=100, period=60, key="claim:sub")
app.cache(paths=["/static/*", "/products/*"], ttl=60)
app.ab_test("checkout", {"control": 90, "new-flow": 10}, paths=["/checkout/*"])
app.kv("flags")


@app.route("/hello")
def hello(request, env):
    country = request.geo.country if request.geo else None
    return ec.Response.json({"hello": "world", "country": country, "ip": request.client_ip})


@app.route("/flags/:name", methods=["GET", "PUT"])
async def flag(request, env):
    kv = env.kv["flags"]
    if request.method == "PUT":
        kv.put(request.params["name"], request.body, ttl=3600)
    return {"flag": request.params["name"], "value": (kv.get(request.params["name"]) or b"").decode()}


@app.middleware(["/admin/*"])
def admin_only(request):
    if request.headers.get("x-admin-token") != os.environ.get("ADMIN_TOKEN", "letmein"):
        return ec.Response("forbidden", status=403)
    return None
