"""Run the benchmark suites from a checkout: python benches/run.py [--quick] [--only SUITE ...]."""

import sys

from edgecore.bench.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
