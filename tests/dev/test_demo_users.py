"""The demo's two users (``thorcut dev up``): ``demo`` is an operator, ``viewer`` is not, and both
logins are printed."""

from __future__ import annotations

from thorcut.commands.dev import _login_lines
from thorcut.dev.backend import demo_login


def test_dev_up_prints_both_logins_and_says_who_operates() -> None:
    assert _login_lines(demo_login()) == [
        "  demo login: demo / demo-pass (account DU1234; operator: the page shows stage controls)",
        "  viewer login: viewer / viewer-pass (account DU9012; not an operator: no stage controls)",
    ]


def test_a_state_file_from_before_the_viewer_prints_the_demo_login_alone() -> None:
    old = {"user": "demo", "password": "demo-pass", "account": "DU1234"}
    demo = "  demo login: demo / demo-pass (account DU1234; operator: the page shows stage controls)"
    assert _login_lines(old) == [demo]
