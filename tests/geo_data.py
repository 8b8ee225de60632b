"""Geo databases for the tests: generated with mmdb-writer, and the MaxMind test databases that
ship in the maxminddb source distribution (downloaded from PyPI once into a cache directory)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import maxminddb
from mmdb_writer import MMDBWriter
from netaddr import IPSet

CACHE = Path(os.environ.get("EDGECORE_TEST_CACHE", Path.home() / ".cache" / "edgecore-tests"))

CITY_RECORDS = {
    "81.2.69.0/24": {
        "city": {"geoname_id": 2643743, "names": {"en": "London", "de": "London"}},
        "continent": {"code": "EU", "geoname_id": 6255148, "names": {"en": "Europe"}},
        "country": {"iso_code": "GB", "geoname_id": 2635167, "names": {"en": "United Kingdom"}},
        "location": {"latitude": 51.5142, "longitude": -0.0931, "time_zone": "Europe/London", "accuracy_radius": 10},
        "postal": {"code": "EC2V"},
        "subdivisions": [{"iso_code": "ENG", "names": {"en": "England"}}, {"iso_code": "WSM"}],
    },
    "2001:db8::/32": {
        "city": {"names": {"en": "Berlin"}},
        "continent": {"code": "EU"},
        "country": {"iso_code": "DE"},
        "location": {"latitude": 52.52, "longitude": 13.405, "time_zone": "Europe/Berlin"},
        "subdivisions": [{"iso_code": "BE"}],
    },
    "198.51.100.0/24": {
        "continent": {"code": "NA"},
        "country": {"iso_code": "US"},
        "registered_country": {"iso_code": "US"},
    },
    "203.0.113.0/24": {"registered_country": {"iso_code": "AU"}},
}


def write_city_db(path: Path, records: dict | None = None, database_type: str = "GeoIP2-City") -> Path:
    w = MMDBWriter(
        ip_version=6,
        database_type=database_type,
        languages=["en", "de"],
        description="edgecore test",
        ipv4_compatible=True,
    )
    for net, rec in (records or CITY_RECORDS).items():
        w.insert_network(IPSet([net]), rec)
    w.to_db_file(str(path))
    return path


def write_asn_db(path: Path) -> Path:
    w = MMDBWriter(ip_version=6, database_type="GeoLite2-ASN", ipv4_compatible=True)
    w.insert_network(
        IPSet(["1.1.1.0/24"]), {"autonomous_system_number": 13335, "autonomous_system_organization": "CLOUDFLARENET"}
    )
    w.insert_network(
        IPSet(["8.8.8.0/24"]), {"autonomous_system_number": 15169, "autonomous_system_organization": "GOOGLE"}
    )
    w.to_db_file(str(path))
    return path


def maxmind_test_data() -> Path:
    """The tests/data directory of the installed maxminddb's sdist."""
    version = maxminddb.__version__
    root = CACHE / f"maxminddb-{version}"
    data = root / f"maxminddb-{version}" / "tests" / "data"
    if data.is_dir():
        return data
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-binary",
            ":all:",
            "--no-deps",
            f"maxminddb=={version}",
            "-d",
            str(root),
        ],
        check=True,
    )
    (sdist,) = root.glob("maxminddb-*.tar.gz")
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/tests/data/" in m.name and (m.isfile() or m.isdir())]
        tar.extractall(root, members=members, filter="data")
    return data
