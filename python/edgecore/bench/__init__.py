"""edgecore's benchmark suites: each compares edgecore with the pure-Python (or C-extension)
libraries a user would otherwise pick, contenders alternating in one run. Run them all with
``python -m edgecore.bench`` (``--quick`` for a short run, ``--only NAME`` for one suite)."""
