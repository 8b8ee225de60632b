"""BotDetector: the crawler-user-agents list, compiled in Rust."""

from __future__ import annotations

import json
from pathlib import Path

import crawleruseragents
import fake_useragent
import pytest

import edgecore as ec


def browser_corpus() -> list[str]:
    path = Path(fake_useragent.__file__).parent / "data" / "browsers.jsonl"
    return [json.loads(line)["useragent"] for line in path.read_text().splitlines() if line.strip()]


def test_every_instance_in_the_list_is_detected():
    d = ec.BotDetector()
    assert len(d) == len(crawleruseragents.CRAWLER_USER_AGENTS_DATA)
    missed = [
        ua
        for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA
        for ua in entry.get("instances", [])
        if not d.is_bot(ua)
    ]
    total = sum(len(e.get("instances", [])) for e in crawleruseragents.CRAWLER_USER_AGENTS_DATA)
    assert total > 1000
    assert missed == []


def test_false_positive_rate_on_real_browsers_is_under_half_a_percent():
    corpus = browser_corpus()
    assert len(corpus) > 1000
    flagged = [ua for ua in corpus if ec.BotDetector().is_bot(ua)]
    assert len(flagged) / len(corpus) < 0.005, flagged[:10]


def test_match_names_the_pattern():
    d = ec.BotDetector()
    assert d.match("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)") == "Googlebot\\/"
    assert d.match("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36") is None


def test_empty_user_agent_is_configurable():
    assert ec.BotDetector().is_bot("") is True
    assert ec.BotDetector(empty_is_bot=False).is_bot("") is False
    assert ec.BotDetector(["x"], empty_is_bot=False).match("") is None


def test_custom_patterns_and_errors():
    d = ec.BotDetector([r"(?i)internal-monitor/\d+", "^curl/"])
    assert d.is_bot("Internal-Monitor/3") and d.is_bot("curl/8.1") and not d.is_bot("xcurl/8")
    assert d.match("curl/8.1") == "^curl/"
    with pytest.raises(ec.ConfigError, match="invalid bot pattern"):
        ec.BotDetector(["(unclosed"])
