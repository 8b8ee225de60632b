"""The shared-cache policy (RFC 9111 + RFC 5861), rule by rule, through ec.cache_policy and
ec.HTTPCache. Each test is named after the rule it checks."""

from __future__ import annotations

import pytest

import edgecore as ec

NOW = 1_700_000_000.0


def req(method="GET", url="/a?x=1", body=None, **headers):
    h = {"Host": "shop.test", **{k.replace("_", "-"): v for k, v in headers.items()}}
    return ec.Request(method, url, headers=h, body=body)


def resp(status=200, body=b"payload", **headers):
    return ec.Response(body, status=status, headers={k.replace("_", "-"): v for k, v in headers.items()})


def policy(request=None, response=None, default_ttl=None):
    return ec.cache_policy(request or req(), response or resp(), now=NOW, default_ttl=default_ttl)


# ---- what may be stored ----


def test_max_age_gives_the_freshness_lifetime():
    p = policy(response=resp(Cache_Control="max-age=60"))
    assert p.storable and p.ttl == 60


def test_s_maxage_overrides_max_age_for_a_shared_cache():
    p = policy(response=resp(Cache_Control="max-age=60, s-maxage=300"))
    assert p.ttl == 300 and p.must_revalidate


def test_expires_relative_to_date():
    p = policy(response=resp(Date="Tue, 14 Nov 2023 22:13:20 GMT", Expires="Tue, 14 Nov 2023 22:15:20 GMT"))
    assert p.storable and p.ttl == 120


def test_invalid_expires_means_already_expired():
    p = policy(response=resp(Expires="0"))
    assert not p.storable


def test_no_store_in_the_response_is_never_stored():
    assert policy(response=resp(Cache_Control="no-store, max-age=60")).reason == "the response says no-store"


def test_no_store_in_the_request_is_never_stored():
    assert not policy(request=req(Cache_Control="no-store"), response=resp(Cache_Control="max-age=60"))


def test_private_is_not_stored_by_a_shared_cache():
    assert not policy(response=resp(Cache_Control="private, max-age=60"))
    assert not policy(response=resp(Cache_Control='private="x-user", max-age=60'))


def test_no_cache_is_stored_but_needs_revalidation():
    p = policy(response=resp(Cache_Control="no-cache", ETag='"v1"'), default_ttl=60)
    assert p.storable and p.no_cache


def test_authorization_is_not_reused_without_public_s_maxage_or_must_revalidate():
    authed = req(Authorization="Bearer x")
    assert policy(authed, resp(Cache_Control="max-age=60")).reason.startswith("the request is authenticated")
    for cc in ["public, max-age=60", "s-maxage=60", "max-age=60, must-revalidate"]:
        assert policy(authed, resp(Cache_Control=cc)).storable, cc


def test_set_cookie_responses_are_not_shared():
    assert policy(response=resp(Cache_Control="max-age=60", Set_Cookie="sid=1")).reason == "the response sets a cookie"


def test_errors_need_explicit_freshness():
    assert not policy(response=resp(status=500), default_ttl=60)
    assert not policy(response=resp(status=404), default_ttl=60)
    assert policy(response=resp(status=404, Cache_Control="max-age=30")).ttl == 30
    assert policy(response=resp(status=503, Cache_Control="max-age=5")).storable


def test_requests_with_a_body_are_not_cached():
    assert not policy(request=req(body=b"x"), response=resp(Cache_Control="max-age=60"))


def test_only_get_is_stored():
    assert not policy(request=req("POST"), response=resp(Cache_Control="max-age=60"))


def test_route_ttl_applies_without_explicit_freshness():
    assert policy(default_ttl=30).ttl == 30
    assert not policy()


def test_heuristic_freshness_from_last_modified():
    p = policy(response=resp(Date="Tue, 14 Nov 2023 22:13:20 GMT", Last_Modified="Tue, 14 Nov 2023 20:13:20 GMT"))
    assert p.storable and p.ttl == pytest.approx(720)  # 10% of two hours


def test_vary_star_is_never_stored():
    assert not policy(response=resp(Cache_Control="max-age=60", Vary="*"))


def test_partial_content_is_not_stored():
    assert not policy(response=resp(status=206, Cache_Control="max-age=60"))


# ---- reuse ----


def cache():
    return ec.HTTPCache(1 << 20)


def test_hit_carries_age_and_x_cache():
    c = cache()
    c.store(req(), resp(Cache_Control="max-age=60"), now=NOW)
    hit = c.lookup(req(), now=NOW + 7)
    assert hit.status == "HIT"
    assert hit.response.headers["age"] == "7"
    assert hit.response.headers["x-cache"] == "HIT"
    assert hit.response.body == b"payload"


def test_age_from_upstream_counts():
    c = cache()
    c.store(req(), resp(Cache_Control="max-age=60", Age="50"), now=NOW)
    assert c.lookup(req(), now=NOW + 5).response.headers["age"] == "55"
    assert c.lookup(req(), now=NOW + 11).status != "HIT"


def test_miss_when_absent_or_expired_without_validators():
    c = cache()
    assert c.lookup(req(), now=NOW).status == "MISS"
    c.store(req(), resp(Cache_Control="max-age=10"), now=NOW)
    assert c.lookup(req(), now=NOW + 11).status == "MISS"


def test_query_is_normalized_but_distinct_queries_are_distinct():
    c = cache()
    c.store(req(url="/a?b=2&a=1"), resp(Cache_Control="max-age=60"), now=NOW)
    assert c.lookup(req(url="/a?a=1&b=2"), now=NOW).status == "HIT"
    assert c.lookup(req(url="/a?a=1&b=3"), now=NOW).status == "MISS"


def test_vary_keeps_variants_apart():
    c = cache()
    c.store(req(Accept_Encoding="gzip"), resp(body=b"gz", Cache_Control="max-age=60", Vary="Accept-Encoding"), now=NOW)
    c.store(req(Accept_Encoding="br"), resp(body=b"br", Cache_Control="max-age=60", Vary="Accept-Encoding"), now=NOW)
    assert c.lookup(req(Accept_Encoding="gzip"), now=NOW).response.body == b"gz"
    assert c.lookup(req(Accept_Encoding="br"), now=NOW).response.body == b"br"
    assert c.lookup(req(), now=NOW).status == "MISS"


def test_vary_variants_per_url_are_capped():
    c = ec.HTTPCache(1 << 20, max_variants=3)
    for i in range(10):
        c.store(req(X_Lang=f"l{i}"), resp(Cache_Control="max-age=60", Vary="X-Lang"), now=NOW)
    hits = [c.lookup(req(X_Lang=f"l{i}"), now=NOW).status for i in range(10)]
    assert hits == ["MISS"] * 7 + ["HIT"] * 3
    assert len(c) <= 4  # three variants and the vary index


def test_authorized_requests_only_get_entries_allowed_for_them():
    c = cache()
    c.store(req(), resp(Cache_Control="max-age=60"), now=NOW)
    assert c.lookup(req(Authorization="Bearer t"), now=NOW).status == "BYPASS"
    c2 = cache()
    c2.store(req(Authorization="Bearer t"), resp(Cache_Control="public, max-age=60"), now=NOW)
    assert c2.lookup(req(Authorization="Bearer u"), now=NOW).status == "HIT"


def test_request_no_cache_forces_revalidation():
    c = cache()
    c.store(req(), resp(Cache_Control="max-age=60", ETag='"v1"'), now=NOW)
    assert c.lookup(req(Cache_Control="no-cache"), now=NOW).status == "REVALIDATE"
    assert c.lookup(req(Pragma="no-cache"), now=NOW).status == "REVALIDATE"


def test_response_no_cache_revalidates_every_time():
    c = cache()
    c.store(req(), resp(Cache_Control="no-cache", ETag='"v1"'), now=NOW)
    assert c.lookup(req(), now=NOW).status == "REVALIDATE"


def test_stale_while_revalidate_serves_stale_then_stops():
    c = cache()
    c.store(req(), resp(Cache_Control="max-age=10, stale-while-revalidate=20"), now=NOW)
    stale = c.lookup(req(), now=NOW + 15)
    assert stale.status == "STALE" and stale.response.headers["x-cache"] == "STALE"
    assert c.lookup(req(), now=NOW + 31).status == "MISS"


def test_must_revalidate_forbids_stale_serving():
    c = cache()
    c.store(req(), resp(Cache_Control="max-age=10, stale-while-revalidate=20, must-revalidate", ETag='"x"'), now=NOW)
    assert c.lookup(req(), now=NOW + 15).status == "REVALIDATE"


def test_stale_if_error_serves_stale_when_the_origin_fails():
    c = cache()
    c.store(req(), resp(Cache_Control="max-age=10, stale-if-error=60"), now=NOW)
    missed = c.lookup(req(), now=NOW + 30)
    assert missed.status == "MISS" and missed.has_entry
    fallback = c.stale_on_error(missed, now=NOW + 30)
    assert fallback is not None and fallback.headers["x-cache"] == "STALE"
    assert c.stale_on_error(c.lookup(req(), now=NOW + 80), now=NOW + 80) is None


def test_conditional_revalidation_with_etag_and_304_refresh():
    c = cache()
    c.store(
        req(), resp(Cache_Control="max-age=10", ETag='"v1"', Last_Modified="Tue, 14 Nov 2023 20:00:00 GMT"), now=NOW
    )
    look = c.lookup(req(), now=NOW + 20)
    assert look.status == "REVALIDATE"
    assert dict(look.conditional_headers) == {
        "if-none-match": '"v1"',
        "if-modified-since": "Tue, 14 Nov 2023 20:00:00 GMT",
    }
    served = c.revalidated(
        look, ec.Response(b"", status=304, headers={"Cache-Control": "max-age=100", "X-New": "1"}), now=NOW + 20
    )
    assert served.body == b"payload" and served.headers["x-cache"] == "REVALIDATED" and served.headers["x-new"] == "1"
    again = c.lookup(req(), now=NOW + 90)
    assert again.status == "HIT" and again.response.headers["x-new"] == "1"


def test_conditional_revalidation_with_last_modified_only():
    c = cache()
    c.store(req(), resp(Cache_Control="max-age=1", Last_Modified="Tue, 14 Nov 2023 20:00:00 GMT"), now=NOW)
    look = c.lookup(req(), now=NOW + 5)
    assert dict(look.conditional_headers) == {"if-modified-since": "Tue, 14 Nov 2023 20:00:00 GMT"}


def test_unsafe_methods_that_succeed_invalidate_the_url():
    c = cache()
    c.store(req(url="/items/1"), resp(Cache_Control="max-age=60"), now=NOW)
    c.store(
        req(url="/items/1", Accept_Language="de"),
        resp(Cache_Control="max-age=60"),
        dimensions={"country": "DE"},
        now=NOW,
    )
    c.store(req(url="/items/2"), resp(Cache_Control="max-age=60"), now=NOW)
    assert c.invalidate(req("POST", "/items/1"), resp(status=500)) == 0, "failures invalidate nothing"
    assert c.invalidate(req("PUT", "/items/1"), resp(status=204)) == 2
    assert c.lookup(req(url="/items/1"), now=NOW).status == "MISS"
    assert c.lookup(req(url="/items/2"), now=NOW).status == "HIT"
    for m in ["DELETE", "PATCH", "POST"]:
        c.store(req(url="/items/2"), resp(Cache_Control="max-age=60"), now=NOW)
        assert c.invalidate(req(m, "/items/2"), resp(status=200)) == 1, m


def test_purge_by_url_prefix():
    c = cache()
    for u in ["/products/1", "/products/2", "/about"]:
        c.store(req(url=u), resp(Cache_Control="max-age=60"), now=NOW)
    assert c.purge("http://shop.test/products/") == 2
    assert len(c) == 1


def test_purge_by_path_prefix_on_any_host():
    c = cache()
    for host in ["shop.test", "eu.shop.test"]:
        for u in ["/products/1", "/products/2?x=1", "/productsfeed", "/about"]:
            c.store(req(url=u, Host=host), resp(Cache_Control="max-age=60"), now=NOW)
    assert c.purge("/products/") == 4  # both hosts, not /productsfeed
    assert c.purge("/products/") == 0
    assert sorted(c.lookup(req(url=u), now=NOW).status for u in ["/productsfeed", "/about"]) == ["HIT", "HIT"]
    assert c.purge("") == 4


def test_cache_key_options_and_dimensions():
    r = req(url="/p?utm_source=x&b=1&a=2")
    assert ec.cache_key(r) == "http://shop.test/p?a=2&b=1&utm_source=x\x1fGET"
    assert ec.cache_key(r, ignore_params=["utm_*"]) == "http://shop.test/p?a=2&b=1\x1fGET"
    assert ec.cache_key(r, ignore_query=True, scheme="https") == "https://shop.test/p\x1fGET"
    assert ec.cache_key(r, dimensions={"variant:hero": "b", "country": "DE"}).endswith(
        "\x1fcountry=DE\x1fvariant:hero=b"
    )


@pytest.mark.parametrize("vary", ["accept, *=", "accept language", "*", "accept, *"])
def test_a_vary_member_that_is_not_a_field_name_counts_as_star(vary):
    assert policy(response=resp(Cache_Control="max-age=60", Vary=vary)).reason == "the response varies on *"


def test_a_well_formed_vary_is_stored_and_listed():
    p = policy(response=resp(Cache_Control="max-age=60", Vary="Accept-Language, accept-encoding"))
    assert p.storable
