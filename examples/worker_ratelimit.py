"""The Cloudflare Workers rate-limiting tutorial, ported: run it with
`edgecore serve examples.worker_ratelimit:app --port 8080`.

    export default {
      async fetch(request, env) {
        const ip = request.headers.get("CF-Connecting-IP")
        const count = parseInt((await env.RATE_LIMIT.get(ip)) || "0")
        if (count >= LIMIT) {
          return Response.json(
            { error: "Rate limit exceeded", remaining: 0, location: request.cf.colo },
            { status: 429, headers: { "Retry-After": "60" } })
        }
        await env.RATE_LIMIT.put(ip, String(count + 1), { expirationTtl: 60 })
        const response = await fetch(request)
        return new Response(response.body, response)  // plus the remaining count
      }
    }

Every request counts against the client IP in the RATE_LIMIT KV (in process, or shared through
Redis with REDIS_URL), and what is left goes to the origin with `env.fetch`. (The same policy
without Python: `app.rate_limit(paths="/*", limit=LIMIT, period=60)` with
`app.error_response(429, ...)` for the JSON body.)
"""

import os

import edgecore as ec

LIMIT = int(os.environ.get("LIMIT", "100"))

app = ec.Edge(origin=os.environ.get("ORIGIN", "http://127.0.0.1:9000"))
app.kv("RATE_LIMIT", os.environ.get("REDIS_URL"))


@app.route("/:path*", methods="*")
async def fetch(request, env):
    ip = request.client_ip
    count = int(env.kv["RATE_LIMIT"].get(ip) or 0)
    if count >= LIMIT:
        return ec.Response.json(
            {"error": "Rate limit exceeded", "remaining": 0, "location": request.location},
            status=429,
            headers={"retry-after": "60"},
        )
    env.kv["RATE_LIMIT"].put(ip, str(count + 1), ttl=60)
    response = await env.fetch(request)
    response.headers["x-ratelimit-remaining"] = str(LIMIT - count - 1)
    return response
