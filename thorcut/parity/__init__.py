"""Parity runs: the drivers that feed the sans-I/O judge of :mod:`thorcut.compare`, and the report.

:mod:`.live` samples a running backend (WebSocket + REST), :mod:`.replay` judges a recording,
:mod:`.noise` learns which paths differ between two reads of one version; all return a
:class:`~.result.RunResult`. :mod:`.report` renders it (tables, JSON, JUnit, GitHub annotations).
"""
