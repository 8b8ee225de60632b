"""The Next.js edge-middleware tutorial, ported: run it with
`edgecore serve examples.nextjs_middleware:app --port 8080`.

    // middleware.js
    export function middleware(request) {
      const country = request.geo?.country || "US"
      if (country === "DE" && !request.nextUrl.pathname.startsWith("/de")) {
        return NextResponse.redirect(new URL(`/de${request.nextUrl.pathname}`, request.url))
      }
      const response = NextResponse.next()
      response.headers.set("x-user-country", country)
      response.headers.set("x-edge-region", request.geo?.region || "unknown")
      return response
    }
    export const config = { matcher: ["/((?!api|_next/static|_next/image|favicon.ico).*)"] }

The matcher compiles to Rust: requests to /api, /_next/static, /_next/image and /favicon.ico go
to the origin without entering Python. Set ORIGIN to your app and GEOIP_DB to a MaxMind City
database (without one every client is "US").
"""

import os

import edgecore as ec

app = ec.Edge(origin=os.environ.get("ORIGIN", "http://127.0.0.1:3000"))
app.trust_proxies(["10.0.0.0/8"])  # your load balancers
if os.environ.get("GEOIP_DB"):
    app.geo(os.environ["GEOIP_DB"])


@app.middleware("/((?!api|_next/static|_next/image|favicon.ico).*)")
def middleware(request):
    geo = request.geo
    country = (geo and geo.country) or "US"
    if country == "DE" and not request.path.startswith("/de"):
        return ec.redirect(f"/de{request.path}", 307)  # NextResponse.redirect uses 307
    return ec.next(
        response_headers={
            "x-user-country": country,
            "x-edge-region": (geo and geo.region) or "unknown",
        }
    )
