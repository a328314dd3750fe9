"""``thorcut.values``: durations and seconds, Redis URLs checked before redis-py would guess at them,
and URLs redacted for messages."""

from __future__ import annotations

import re

import pytest

from thorcut.errors import ConfigError
from thorcut.values import MAX_SECONDS, check_redis_url, parse_duration, parse_seconds, redact_url


@pytest.mark.parametrize(
    ("raw", "seconds"), [(2, 2.0), ("500ms", 0.5), ("24h", 86400.0), ("1.5m", 90.0), ("3d", 259200.0)]
)
def test_parse_duration(raw: object, seconds: float) -> None:
    assert parse_duration(raw, "x") == seconds


# -- issue 9: nothing falls back silently, nothing overflows later --------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e309, "nan", "inf", "1e309", 0, -1,
                                   366 * 86400, True, None, "soon"])  # fmt: skip
def test_parse_seconds_refuses_what_is_not_a_finite_positive_number(value: object) -> None:
    with pytest.raises(ConfigError, match="--x must be"):
        parse_seconds(value, "--x")


def test_parse_seconds_range_ends() -> None:
    assert parse_seconds("0.5", "--x") == 0.5
    assert parse_seconds(0, "--wait", allow_minimum=True) == 0.0
    assert parse_seconds(MAX_SECONDS, "--x") == MAX_SECONDS
    with pytest.raises(ConfigError, match=r"from 0\.01 to 31536000"):
        parse_seconds("0.001", "--timeout", minimum=0.01, allow_minimum=True)


@pytest.mark.parametrize("raw", [float("nan"), float("inf"), "99999999999d"])
def test_parse_duration_refuses_non_finite_and_huge(raw: object) -> None:
    with pytest.raises(ConfigError):
        parse_duration(raw, "timeout")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://", "names no host"),
        ("redis://:pw@", "names no host"),
        ("unix://", "names no socket path"),
        ("http://h:6379/0", "must start with redis:// or rediss:// or unix://"),
        ("redis://[", "Invalid IPv6 URL"),
        ("redis://h:70000/0", "Port out of range"),
        ("redis://h/-1", "whole number"),
        ("redis://h/abc", "whole number"),
        ("redis://h/0?db=one", "whole number"),
        ("rediss://:pw@h/0?ssl_cert_reqs=bogus", "ssl_cert_reqs must be one of none, optional, required"),
        ("redis://h/0?ssl_cert_reqs=none", "is a TLS option; use rediss://"),
    ],
)
def test_check_redis_url_refuses_what_redis_py_would_guess_at(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        check_redis_url(url, "THORCUT_REDIS_URL")
    assert "pw" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["redis://h", "redis://h/", "redis://h:1/15", "rediss://u:p@h/99", "unix:///s?db=3",
     "rediss://h/0?ssl_cert_reqs=none", "rediss://h/0?ssl_cert_reqs=required"],
)  # fmt: skip
def test_check_redis_url_accepts_good_urls_and_leaves_the_db_range_to_the_server(url: str) -> None:
    assert check_redis_url(url, "x") == url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://user:s3cret@host:6380/1", "rediss://user:***@host:6380/1"),
        ("redis://s3cret@host", "redis://***@host"),
        ("unix:///run/redis.sock?password=s3cret&db=2", "unix:///run/redis.sock?password=***&db=2"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("user:s3cret@host:1?password=s3cret", "***@host:1?password=***"),  # no scheme: query too
        ("redis://user:s3cret@[:1?password=s3cret", "redis://***@[:1?password=***"),  # does not parse
    ],
)
def test_redact_url_hides_every_password_form(url: str, shown: str) -> None:
    assert redact_url(url) == shown
