"""app.configure(...) checks what it is given at the call, by the rules the server uses."""

import pytest

import edgecore as ec


def test_a_typo_names_the_setting_and_the_closest_known_one():
    with pytest.raises(
        ec.ConfigError, match=r"unknown setting 'keep_alive_timout' \(did you mean 'keep_alive_timeout'\?\)"
    ):
        ec.Edge().configure(keep_alive_timout=5)
    with pytest.raises(ec.ConfigError, match=r"unknown setting 'nothing_like_it'$"):
        ec.Edge().configure(nothing_like_it=1)


@pytest.mark.parametrize(
    "settings,match",
    [
        ({"threads": "two"}, "threads"),
        ({"origin_timeout": 0}, "origin_timeout must be a positive number"),
        ({"grace_period": float("nan")}, "server.grace_period must be a finite number"),
        ({"escaped_slashes": "sometimes"}, "escaped_slashes must be"),
        ({"path_params": "drop"}, "path_params must be"),
        ({"allowed_hosts": ["a b"]}, "allowed_hosts"),
        ({"ipv6_prefix": 0}, "ipv6_prefix"),
        ({"admin_addr": "localhost"}, "admin_addr"),
        ({"metrics_allow": ["not a cidr"]}, "metrics_allow"),
        ({"max_uri_bytes": 0}, "max_uri_bytes"),
    ],
)
def test_a_bad_value_is_refused_by_the_call_that_sets_it(settings, match):
    app = ec.Edge()
    with pytest.raises(ec.ConfigError, match=match):
        app.configure(**settings)
    # Nothing of the refused call is kept.
    app.check()


def test_good_settings_are_kept_and_accumulate():
    app = ec.Edge(origin="http://127.0.0.1:9").configure(threads=2).configure(escaped_slashes="decode")
    spec = app.spec_json()
    assert '"threads": 2' in spec and '"escaped_slashes": "decode"' in spec


def test_the_typed_settings_are_exactly_the_servers():
    """`ServerSettings` (what a type checker sees for `configure(...)`) and the Rust settings are
    the same set of names: adding one on either side alone fails here."""
    import json

    from edgecore._spec import ServerSettings

    assert set(ServerSettings.__annotations__) == set(json.loads(ec._core.default_settings()))


def test_a_type_checker_catches_a_misspelled_or_mistyped_setting(tmp_path):
    from mypy import api

    src = tmp_path / "app.py"
    src.write_text(
        "import edgecore as ec\n"
        "ec.Edge().configure(keep_alive_timout=5)\n"
        "ec.Edge().configure(escaped_slashes='sometimes')\n"
        "ec.Edge().configure(keep_alive_timeout=5, escaped_slashes='decode')\n"
    )
    out, _, status = api.run(["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(src)])
    assert status == 1, out
    assert 'Unexpected keyword argument "keep_alive_timout"' in out, out
    assert "escaped_slashes" in out and "sometimes" in out, out
    assert "app.py:4" not in out, out


def test_a_request_id_template_without_request_ids_is_refused_when_served():
    app = ec.Edge(origin="http://127.0.0.1:9")
    app.headers(response={"x-rid": "{request_id}"})
    with pytest.raises(ec.ConfigError, match=r"uses \{request_id\}, which needs app.request_ids\(\)"), app.serve():
        pass
    app.request_ids()
    with app.serve():
        pass


BAD_CALLS = [
    (lambda a: a.redirect(to="/{nope}"), r"unknown template variable \{nope\}"),
    (lambda a: a.rewrite(to="/{geo.nope}"), r"unknown template variable"),
    (lambda a: a.headers(request={"x-a": "{nope}"}), r"unknown template variable"),
    (lambda a: a.headers(response={"bad name": "x"}), r'invalid header name "bad name"'),
    (lambda a: a.cache(paths="/x", ttl=0), r"cache ttl must be a positive number"),
    (lambda a: a.cache(paths="/x", tag_fields=["bad name"]), r"cache tag field"),
    (lambda a: a.jwt(paths="/x", key=b"k" * 32, algorithms=["HS256"], claims_to_headers={"sub": "a b"}), r"header"),
    (lambda a: a.rate_limit(paths="/x", limit=1, period=1, key="ip:x"), r'rate limit key must be "ip"'),
    (lambda a: a.rate_limit(paths="/x", limit=1, period=1, headers="new"), r"rate limit headers must be"),
    (lambda a: a.bots("nope"), r'bots action must be "block" or "tag"'),
    (lambda a: a.ab_test("x", {"a": 1}, cookie="a;b"), r"ab_test cookie"),
]


@pytest.mark.parametrize(("call", "match"), BAD_CALLS, ids=[m for _, m in BAD_CALLS])
def test_a_bad_rule_is_refused_by_the_call_that_writes_it_and_leaves_nothing_behind(call, match):
    # The message is the plan builder's (one place for validation messages), raised by the
    # call rather than later by serve(); the app is left as it was.
    app = ec.Edge(origin="http://127.0.0.1:9")
    before = app.spec_json()
    with pytest.raises(ec.ConfigError, match=match):
        call(app)
    assert app.spec_json() == before
    assert (app._verifiers, app._limiters) == ([], [])
    app.check()


def test_cross_rule_checks_wait_for_the_whole_app():
    # {request_id} needs app.request_ids(), which may come after the rule that uses it.
    app = ec.Edge(origin="http://127.0.0.1:9")
    app.redirect(to="/r/{request_id}", paths="/old")
    with pytest.raises(ec.ConfigError, match=r"needs app\.request_ids"):
        app.check()
    app.request_ids()
    app.check()
