"""Knowing the client: GeoDB.lookup/get vs the maxminddb C extension on a real GeoLite2-City
database; BotDetector.is_bot vs crawlerdetect over a real browser corpus; assign_variant."""

from __future__ import annotations

import functools
import itertools
import json
import random
from pathlib import Path

from ._harness import Ratio, SuiteResult, compare, version


def _city_db() -> str:
    import _maxminddb_geolite2  # shipped by the maxminddb-geolite2 package (GeoLite2-City, 2018)

    return str(Path(_maxminddb_geolite2.__file__).parent / "GeoLite2-City.mmdb")


def _hit_ips(reader, n: int) -> list[str]:
    rng = random.Random(7)
    out = []
    while len(out) < n:
        ip = ".".join(str(rng.randrange(1, 224)) for _ in range(4))
        if reader.get(ip) is not None:
            out.append(ip)
    return out


def run(quick: bool = False) -> SuiteResult:
    import fake_useragent
    import maxminddb
    from crawlerdetect import CrawlerDetect

    import edgecore as ec

    path = _city_db()
    oracle = maxminddb.open_database(path, maxminddb.MODE_MMAP_EXT)
    ours = ec.GeoDB(path)
    rng = random.Random(11)
    hits = _hit_ips(oracle, 2000)
    randoms = [".".join(str(rng.randrange(256)) for _ in range(4)) for _ in range(2000)]
    hit_cycle, rand_cycle = itertools.cycle(hits), itertools.cycle(randoms)
    hit_cycle2, rand_cycle2 = itertools.cycle(hits), itertools.cycle(randoms)
    hit_cycle3 = itertools.cycle(hits)

    corpus_path = Path(fake_useragent.__file__).parent / "data" / "browsers.jsonl"
    corpus = [json.loads(line)["useragent"] for line in corpus_path.read_text().splitlines() if line.strip()]
    ua_a, ua_b = itertools.cycle(corpus), itertools.cycle(corpus)
    bots = ec.BotDetector()
    crawler = CrawlerDetect()
    exp = ec.Experiment("hero", {"control": 50, "new": 50})
    units = itertools.cycle([f"user-{i}" for i in range(1000)])
    weights = {"control": 50, "new": 50}

    stats = compare(
        {
            "edgecore GeoDB.lookup (hits)": lambda: ours.lookup(next(hit_cycle)),
            "maxminddb C ext get (hits)": lambda: oracle.get(next(hit_cycle2)),
            "edgecore GeoDB.get (hits)": lambda: ours.get(next(hit_cycle3)),
            "edgecore GeoDB.lookup (random IPs)": lambda: ours.lookup(next(rand_cycle)),
            "maxminddb C ext get (random IPs)": lambda: oracle.get(next(rand_cycle2)),
            "edgecore BotDetector.is_bot": lambda: bots.is_bot(next(ua_a)),
            "crawlerdetect isCrawler": lambda: crawler.isCrawler(next(ua_b)),
            "edgecore assign_variant": functools.partial(ec.assign_variant, "hero", "user-42", weights),
            "edgecore Experiment.assign": lambda: exp.assign(next(units)),
        },
        rounds=7 if quick else 11,
        batch_time=0.03 if quick else 0.05,
    )
    res = SuiteResult(
        "Knowing the client (geo, bots, A/B)",
        stats,
        [
            Ratio("edgecore GeoDB.lookup (hits)", "maxminddb C ext get (hits)", 4.0),
            Ratio("edgecore GeoDB.lookup (random IPs)", "maxminddb C ext get (random IPs)", 4.0),
            Ratio("edgecore GeoDB.get (hits)", "maxminddb C ext get (hits)", 1.0),
            Ratio("edgecore BotDetector.is_bot", "crawlerdetect isCrawler", 20.0),
        ],
        notes=[
            version("maxminddb"),
            version("maxminddb-geolite2"),
            version("crawlerdetect"),
            f"GeoLite2-City from maxminddb-geolite2; {len(corpus)} browser User-Agents from fake-useragent",
        ],
    )
    per_call = stats["edgecore assign_variant"].median
    res.figures["assign_variant per call"] = f"{per_call * 1e9:.0f} ns (target < 1 µs)"
    return res
