"""Parity runs: the drivers that feed the sans-I/O judge of :mod:`thorcut.compare`, and the report.

:mod:`.live` samples a running backend (WebSocket + REST), :mod:`.replay` judges a recording,
:mod:`.noise` learns which paths differ between two reads of one version; all return a
:class:`~.result.RunResult`. :mod:`.report` renders it (tables, JSON, JUnit, GitHub annotations).
:mod:`.watch` judges live traffic window by window as it flows; :mod:`.guard` rolls a feature back
the moment its window fails, and :mod:`.ramp` raises a feature's percent step by step on windows
that pass.
"""
