"""python -m edgecore: the same as the `edgecore` command."""

import sys

from edgecore.cli import main

sys.exit(main())
