"""Generated hostile input thrown at the real CLI; only the contract is asserted (issue 9).

The contract (docs/contracts.md, "Exit codes"), for every command and every input:

- the exit code is a documented one, 0-5. 70 ("Error: internal error") is documented too, but it
  means a bug in thorcut, so here it is a finding, like any undocumented code;
- no Python traceback reaches stdout or stderr (under CliRunner: ``result.exception`` is None or
  ``SystemExit``);
- a command that did not succeed (exit != 0), and any ``--dry-run`` or ``--replay``, leaves Redis
  exactly as it was: every key under the example's prefix, with its type and content, in every
  database, and the size of every database. (A live ``check``/``diff`` stores its FAIL or PENDING
  verdict, as documented: only its ``parity``/``mismatches`` keys may change on exit 1 or 5.)

No example can reach a Redis on 127.0.0.1:6379 or a backend on :8000: Redis is the session's
private server (or a port nobody listens on), the backend and WebSocket URLs point at a closed
local port, and a generated URL whose effective port would be 6379 or 8000 is discarded.

In-process runs set ``THORCUT_TRACEBACK=1``, so an internal error (exit 70) shows where it was
raised; each crash site fails as its own bug in Hypothesis's report, shrunk on its own.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from redis.connection import parse_url
from typer.testing import Result

from tests.runner import Run
from thorcut.clock import now_iso
from thorcut.dev.stack import EmbeddedRedis, free_port
from thorcut.manifest import DEFAULT_MANIFEST

# ============================================================================================
# The contract
# ============================================================================================

#: exit codes a command may end with; 70 is documented but is a bug by definition (docs/contracts.md)
DOCUMENTED = frozenset({0, 1, 2, 3, 4, 5})
TRACEBACK = "Traceback (most recent call last)"
FORBIDDEN_PORTS = frozenset({6379, 8000})
#: seconds one in-process command may run before it counts as hung
WATCHDOG = 25.0
THORCUT = Path(sys.executable).with_name("thorcut")  # the console script, as a terminal runs it

#: a failing example with a 300 kB argument is still the finding: only its report is long
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning")

IN_PROCESS = settings(
    max_examples=60,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the checkout or in the test's cwd
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
SUBPROCESS = settings(IN_PROCESS, max_examples=15)


class Hung(BaseException):
    """An in-process command ran past :data:`WATCHDOG` (BaseException: no ``except Exception`` eats it)."""


@contextmanager
def watchdog(seconds: float = WATCHDOG) -> Iterator[None]:
    def fire(signum: int, frame: Any) -> None:
        raise Hung(f"the command was still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class InternalError(AssertionError):
    """Exit 70 or an uncaught exception; one subclass per crash site (Hypothesis's bug identity)."""


_SITES: dict[str, type[InternalError]] = {}


def internal_error(site: str, message: str) -> InternalError:
    cls = _SITES.setdefault(site, type(f"InternalError[{site}]", (InternalError,), {}))
    return cls(message)


def crash_site(stderr: str) -> str:
    """``ExcType at file:line`` of the innermost thorcut frame of the traceback in ``stderr``
    (the library frames below it vary, e.g. with recursion depth), else just the type."""
    frames = re.findall(r'File "([^"]+/thorcut/[^"]+)", line (\d+)', stderr)
    kind = re.search(r"internal error \((\w+)", stderr) or re.search(r"^(\w+(?:Error|Exception)\w*)\b", stderr, re.M)
    where = f" at {Path(frames[-1][0]).name}:{frames[-1][1]}" if frames else ""
    return f"{kind.group(1) if kind else 'exit 70'}{where}"


def _quote(args: list[Any]) -> str:
    return " ".join(repr(a) if len(a) < 200 else f"{a[:200]!r}…({len(a)})" for a in args)


Snapshot = dict[Any, Any]


def _each_db(raw: redis.Redis) -> Iterator[tuple[int, redis.Redis]]:
    port = raw.connection_pool.connection_kwargs["port"]
    for name in raw.info("keyspace"):
        db = int(name[2:])
        if db == 0:
            yield db, raw
        else:
            with redis.Redis(port=port, db=db) as c:
                yield db, c


def _content(c: redis.Redis, key: bytes, kind: str) -> Any:
    if kind == "string":
        return c.get(key)
    if kind == "hash":
        return sorted(c.hgetall(key).items())
    if kind == "list":
        return c.lrange(key, 0, -1)
    if kind == "set":
        return sorted(c.smembers(key))
    if kind == "zset":
        return c.zrange(key, 0, -1, withscores=True)
    if kind == "stream":
        return [(i, sorted(f.items())) for i, f in c.xrange(key)]
    return None


def snapshot(raw: redis.Redis, prefix: str) -> Snapshot:
    """Every key whose name holds ``prefix``, with type and content, in every database; and the
    names of all keys of each database (a write under another prefix or into another database
    shows as a key that was not there before; keys of other tests may expire meanwhile)."""
    snap: Snapshot = {}
    for db, c in _each_db(raw):
        snap[("keys", db)] = frozenset(c.scan_iter(count=1000))
        for key in c.scan_iter(match=f"*{prefix}*", count=1000):
            kind = c.type(key).decode()
            value = _content(c, key, kind)
            snap[(db, key)] = (kind, value)
    return snap


def forget(raw: redis.Redis, prefix: str) -> None:
    """Delete the example's keys in every database, so the session's server stays small."""
    for _, c in _each_db(raw):
        keys = list(c.scan_iter(match=f"*{prefix}*", count=1000))
        if keys:
            c.delete(*keys)


#: Keys of the reference backend's channel layer (``<prefix>.thor:…``: groups, stream history),
#: which the session's backend servers of other test modules write while these tests run and
#: thorcut never writes (its keys are ``{<prefix>}:…``).
BACKEND_KEY = re.compile(rb"^[^{]*\.thor:")


def _new_keys(before: Any, now: Any) -> set[bytes]:
    return {k for k in now - before if not BACKEND_KEY.match(k)}


def check_contract(
    result: Result,
    args: list[str],
    *,
    before: Snapshot | None = None,
    after: Callable[[], Snapshot] | None = None,
    untouched: bool = False,
    verdicts: bool = False,
) -> None:
    """Assert the contract on one in-process run.

    ``untouched``: Redis must not change whatever the exit. ``verdicts``: a live ``check``/``diff``,
    which stores its verdict also when it is FAIL (1) or PENDING (5).
    """
    where = f"thorcut {_quote(args)}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        tail = "".join(traceback.format_exception(result.exception))[-2500:]
        raise AssertionError(f"{where}: uncaught {type(result.exception).__name__}\n{tail}") from result.exception
    if result.exit_code == 70:
        raise internal_error(crash_site(result.stderr), f"{where}: exit 70\n{result.stderr[-2500:]}")
    assert result.exit_code in DOCUMENTED, f"{where}: exit {result.exit_code}\n{result.stderr[-1500:]}"
    assert TRACEBACK not in result.stdout, f"{where}: traceback on stdout\n{result.stdout[-2000:]}"
    assert TRACEBACK not in result.stderr, f"{where}: traceback on stderr\n{result.stderr[-2000:]}"
    if before is None or after is None or not (untouched or result.exit_code != 0):
        return
    now = after()
    changed = sorted(
        (before.keys() ^ now.keys())
        | {k for k in before.keys() & now.keys() if k[0] != "keys" and before[k] != now[k]}
        | {("new keys", *k[1:], *sorted(_new_keys(before[k], now[k]))[:3]) for k in before.keys() & now.keys()
           if k[0] == "keys" and _new_keys(before[k], now[k])},
        key=repr,
    )  # fmt: skip
    if verdicts and result.exit_code in (1, 5):
        changed = [k for k in changed if k[0] != "new keys" and not re.search(rb":(parity|mismatches):", k[1])]
    assert not changed, f"{where}: exit {result.exit_code}, yet Redis changed: {changed[:8]}\n{result.stderr[-800:]}"


def check_process(proc: subprocess.CompletedProcess[bytes], args: list[Any]) -> None:
    """The contract for a real process of the console script."""
    stdout, stderr = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    where = f"thorcut {_quote(args)}"
    if proc.returncode == 70 or TRACEBACK in stderr:
        raise internal_error(crash_site(stderr), f"{where}: exit {proc.returncode}\n{stderr[-2500:]}")
    assert TRACEBACK not in stdout, f"{where}: exit {proc.returncode}, traceback on stdout\n{stdout[-2500:]}"
    assert proc.returncode in DOCUMENTED, f"{where}: exit {proc.returncode}\n{stderr[-1500:]}"


# ============================================================================================
# Fixtures
# ============================================================================================


@pytest.fixture(scope="session")
def dead_port() -> int:
    """A loopback port nobody listens on: "unreachable" is answered at once."""
    port = free_port()
    assert port not in FORBIDDEN_PORTS
    return port


@pytest.fixture
def raw(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    c = redis.Redis(port=redis_server.port)  # bytes: keys and values exactly as stored
    yield c
    c.close()


@pytest.fixture
def hostile_env(cli_env: dict[str, str], dead_port: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """cli_env with the backend and its WebSocket on a closed port, and a short timeout."""
    env = {
        **cli_env,
        "THORCUT_BACKEND_URL": f"http://127.0.0.1:{dead_port}",
        "THORCUT_WS_URL": f"ws://127.0.0.1:{dead_port}/ws/stream/",
        "THORCUT_TIMEOUT": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("THORCUT_TRACEBACK", "1")  # in-process only: real processes run as users do
    return env


def new_prefix() -> str:
    return f"h{uuid.uuid4().hex[:12]}"


def run_in(folder: Path) -> Any:
    """chdir for one run (CliRunner does not); back afterwards."""

    @contextmanager
    def inside() -> Iterator[None]:
        old = Path.cwd()
        os.chdir(folder)
        try:
            yield
        finally:
            os.chdir(old)

    return inside()


# ============================================================================================
# Hostile values
# ============================================================================================

# fmt: off
SPECIAL_TEXT = [
    "", " ", "\x00", "\n", "\r\n", "\t", "\x1b[31mred\x1b[0m", "\x1b]0;title\x07", "[bold]x[/]", "[/]", "[",
    "--help", "-", "--", "%s%n", "{0}", "${HOME}", "'\"", "\\", "\u202e\u202d", "\ufeff", "\u200b", "é", "e\u0301",
    "🔥", "\U0010ffff", "\udcff", "\udc80abc", "positions\x00", "positions ", "POSITIONS", "position",
    "ｐｏｓｉｔｉｏｎｓ",
]
NUMBERS = [
    "nan", "NaN", "-nan", "NAN", "inf", "-inf", "Infinity", "1e309", "-1e309", "1e308", "1e-320", "4.9e-324", "0",
    "-0", "0.0", "-1", "-0.0001", "0.001", "1", "2", "1_0", " 1", "1 ", "0x10", "1,5", "½", "١٢", "∞", "9" * 400,
    "-" + "9" * 400, "1e3", "+5", "0b1", "",
]
REDIS_SCHEMES = ["redis", "rediss", "unix", "REDIS", "http", "", "redis+sentinel", "ws", "ré"]
REDIS_CREDENTIALS = [
    "", "user:pass@", ":pass@", "pass@", "ü:ñ@", "@", "a:b:c@", "%zz@", "user:p%40ss@", "u@s@",
    "user:" + "x" * 5000 + "@", "\x00:\x00@",
]
HOSTS = [
    "127.0.0.1", "[::1]", "[", "[::1", "::1", "", "256.1.1.1", "host name", "ünïcode.invalid", "xn--.invalid", "..",
    "-", "127.0.0.1\x00", "[fe80::1%eth0]", "[::ffff:127.0.0.1]", "localhost",
]
BAD_PORTS = ["0", "65535", "65536", "99999", "-1", "abc", "", "١", "1e3", "0x50", str(2**64), " 1", None]
REDIS_DBS = [
    "", "/", "/0", "/1", "/15", "/16", "/99", "/-1", "/abc", "/0/extra", "/%00", "/1e3", "/ 1", "/" + "9" * 30,
    "/1.5", "/%2F", "/٣", "/0?",
]
REDIS_QUERIES = [
    "", "?db=99", "?db=abc", "?db=-1", "?socket_timeout=nan", "?socket_timeout=abc", "?socket_timeout=-1",
    "?socket_connect_timeout=inf", "?ssl_cert_reqs=bogus", "?health_check_interval=-1", "?protocol=9",
    "?protocol=abc", "?decode_responses=maybe", "?password=x", "?ssl_ca_certs=/nonexistent", "?max_connections=0",
    "?max_connections=-5", "?client_name=a b", "?retry_on_timeout=nope", "?&&==", "?db=1&db=2", "#frag",
]
WEB_SCHEMES = ["ftp", "", "WS", "HTTP", "redis", "ws+unix", "é"]
WEB_CREDENTIALS = ["", "user:secret@", ":tok@", "@", "ü:ñ@"]
WEB_PATHS = [
    "", "/", "/ws/stream/", "/ws/stream/?features=", "/%zz", "/é", "?a=1&&b", "#x", "/" + "a" * 10_000,
    "/?features=positions&features=x",
]
TOML_TEXTS = ["", "nan", "inf", "-1", "0", "24h", "500ms", "1e309", "2s", "-5m", "1.5.5", "redis://x:1/0", "0s"]
TOML_DATES = ["1979-05-27T07:32:00Z", "1979-05-27", "07:32:00"]
SETTING_NAMES = ["redis_url", "backend_url", "ws_url", "token", "prefix", "timeout", "operator", "verdict_validity"]
FEATURE_KEYS = ["types", "rest", "env_override", "ws", "rest_locators", "ignore", "tolerance", "keyed_lists",
                "thresholds"]
THRESHOLDS = ["min_paired", "min_duration", "max_mismatch_rate", "max_gaps", "max_duplicates", "max_out_of_order",
              "max_resyncs", "bogus"]
REST_TEMPLATES = ["/api/{key}", "{key}", "/{key}{key}", "/{", "/{nope}", "http://127.0.0.1:1/{key}", "/%s", "/{0}"]
PYPROJECT_ODDITIES = ["tool = 5\n", "tool = 'x'\n", "tool = [1]\n", "[tool]\nthorcut = 5\n", "[tool]\nthorcut = []\n"]
CONFIG_BLOBS = [
    b"\xff\xfe[features]\n", b'prefix = "\xe9"\n', b"\xef\xbb\xbfprefix = 'x'\n", b'[tool.thorcut]\nprefix = "\xff"\n',
    b"timeout = 1\x00\n", b"[features.\xc3]\n", b"[" * 100_000, b"a = " + b"{b=" * 5_000,
    b"a = '" + b"x" * 5_000_000 + b"'", b"[features]\n" + b"[features.a]\n" * 2,
]
WS_TYPES = ["account_balance", "positions", "intraday_bar", "vwap", "market_status", "heartbeat", "flags"]
REST_PATHS = ["/api/account/balance?account=DU1", "/api/account/positions?account=DU1", "/api/intraday/ES/bar",
              "/api/intraday/ES/vwap", "/api/markets/status?market=CME"]
TIMES = [
    "2026-11-24T14:30:00.000Z", "2026-11-24T14:30:01.500Z", "2026-11-24T14:31:05Z", "9999-12-31T23:59:59.999999Z",
    "0001-01-01T00:00:00+23:59", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "2026-02-30T00:00:00Z", "",
    "now", "2026-11-24", "2026-11-24T14:30:00", "١٩٧٠-01-01T00:00:00Z",
]
DATA_LAST_HEADS = [
    '{"at":"2026-11-24T14:30:00Z","src":"ws","data_last":1,"msg":{"type":"positions","key":"DU1","seq":1,"data":',
    '{"at":"2026-11-24T14:30:00Z","src":"ws","data_last":1,"msg":{"data":',
    '{"data_last":1,"at":"x","src":"rest","body":{"a":{"data":1},"data":',
]
DATA_LAST_TAILS = ["}}", "}", "}}}", "", ',"seq":2}}', "}}\r", "}}  "]
STORED_STAGES = ["off", "shadow", "live", "complete", "", "LIVE", "bogus", "live ", "\x00", "é"]
STORED_NUMBERS = ["", "abc", "1e3", "1.5", "-1", "٣", "²", " 2", "nan", "inf", "9" * 40]
STORED_TIMES = ["NOW", "", "garbage", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+23:59", "2020-01-01T00:00:00Z",
                "2026-02-30T00:00:00Z", "NOW+1d"]
#: nesting whose failure depends on the stack depth it starts at: run in a real process only
DEEP_CONFIGS = [b"a = " + b"[" * 100_000, b"a = " + b"[" * 2_000,
                b"a = " + b"{b=" * 100_000, b"a.b" * 100_000 + b" = 1"]
ARGV_SPECIALS = [b"positions", b"\xff", b"pos\xe9", b"\xed\xa0\x80", b"\x1b[2J", b"\xc3\xa9", b"x" * 100_000]
# fmt: on

#: what real argv can carry: any character but surrogates, plus the lone surrogates that
#: Python's surrogateescape makes of bytes that are not UTF-8
CHARS = st.characters(exclude_categories=("Cs",)) | st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF)
TEXT_CHARS = st.characters(exclude_categories=("Cs",))  # for JSON and TOML, which cannot hold surrogates
hostile_text = st.one_of(
    st.text(CHARS, max_size=30),
    st.sampled_from(SPECIAL_TEXT),
    st.tuples(st.sampled_from(["x", "é", "🔥", "\x1b[", "\n"]), st.integers(1_000, 300_000)).map(lambda t: t[0] * t[1]),
)
#: command-line text of a number: non-finite, huge, negative, not a number at all
NUMBER_TEXT = st.one_of(
    st.sampled_from(NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(2**80), 2**80).map(str),
    st.text(CHARS, max_size=8),
)
FEATURE_NAME = st.one_of(st.sampled_from(DEFAULT_MANIFEST.names), hostile_text)


def safe_redis_url(url: str) -> bool:
    """False when redis-py would connect to port 6379 or 8000 (of any host) for ``url``."""
    try:
        kwargs = parse_url(url)
    except Exception:
        return True  # not even parsed: nothing is connected to
    return "path" in kwargs or kwargs.get("port", 6379) not in FORBIDDEN_PORTS


def safe_web_url(url: str) -> bool:
    """False when a ws/http client could connect to port 6379 or 8000 for ``url``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return True
    if port is None:
        port = 443 if parts.scheme.lower() in ("https", "wss") else 80
    return port not in FORBIDDEN_PORTS


@st.composite
def redis_urls(draw: st.DrawFn, live_port: int, dead: int) -> str:
    """A Redis URL built from hostile parts: scheme, credentials, host, port, database, query."""
    if draw(st.integers(0, 9)) == 0:
        url = draw(hostile_text)
    else:
        port = draw(st.sampled_from([str(live_port), str(live_port), str(dead), *BAD_PORTS]))
        netloc = draw(st.sampled_from(REDIS_CREDENTIALS)) + draw(st.sampled_from(HOSTS))
        netloc += "" if port is None else f":{port}"
        rest = draw(st.sampled_from(REDIS_DBS)) + draw(st.sampled_from(REDIS_QUERIES))
        scheme = draw(st.sampled_from(REDIS_SCHEMES))
        url = f"{scheme}://{netloc}{rest}" if scheme or draw(st.booleans()) else f"{netloc}{rest}"
    assume(safe_redis_url(url))
    return url


@st.composite
def web_urls(draw: st.DrawFn, schemes: list[str], dead: int) -> str:
    """A ws(s)/http(s) URL built from hostile parts; never one that reaches :8000 or :6379."""
    if draw(st.integers(0, 9)) == 0:
        url = draw(hostile_text)
    else:
        port = draw(st.sampled_from([str(dead), str(dead), *BAD_PORTS]))
        netloc = draw(st.sampled_from(WEB_CREDENTIALS)) + draw(st.sampled_from(HOSTS))
        netloc += "" if port is None else f":{port}"
        path = draw(st.sampled_from(WEB_PATHS))
        scheme = draw(st.sampled_from([*schemes, *schemes, *WEB_SCHEMES]))
        url = f"{scheme}://{netloc}{path}" if scheme or draw(st.booleans()) else f"{netloc}{path}"
    assume(safe_web_url(url))
    return url


# -- TOML: a tiny writer, so that any value of any type can go into any setting ---------------


class TomlRaw(str):
    """Text written into the TOML as it is (dates and times)."""


toml_scalars = st.one_of(
    st.text(TEXT_CHARS, max_size=20),
    st.sampled_from(TOML_TEXTS),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from(TOML_DATES).map(TomlRaw),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(TEXT_CHARS, max_size=8), inner, max_size=4),
    max_leaves=12,
)


def toml_value(v: Any) -> str:
    if isinstance(v, TomlRaw):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return toml_key(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml_key(k: str) -> str:
    return json.dumps(k, ensure_ascii=False)


def _dicts(keys: list[str], values: st.SearchStrategy[Any], size: int = 4) -> st.SearchStrategy[Any]:
    return st.dictionaries(st.sampled_from(keys), values, max_size=size)


FEATURE_VALUES = {
    "types": toml_values | st.lists(st.sampled_from(["positions", "vwap", "", "é"]), max_size=3),
    "rest": toml_values
    | st.lists(st.fixed_dictionaries({"type": toml_values, "path": toml_values}), max_size=2)
    | st.lists(
        st.fixed_dictionaries({"type": st.just("positions"), "path": st.sampled_from(REST_TEMPLATES)}), max_size=2
    ),
    "env_override": toml_values | st.sampled_from(["", "=", "A=B", "WS_FEATURE_X", "\x00"]),
    "ws": toml_values | _dicts(["seq", "key", "body", "x"], toml_values),
    "rest_locators": toml_values | _dicts(["seq", "key", "body"], toml_scalars),
    "ignore": toml_values | st.lists(st.sampled_from(["*", "[*]", "a..b", "", "a[", "[x=", "**"])),
    "tolerance": toml_values | _dicts(["*", "a", "", "[*]"], toml_values | _dicts(["abs", "rel", "x"], toml_scalars)),
    "keyed_lists": toml_values | _dicts(["positions", "", "*"], toml_scalars),
    "thresholds": toml_values | _dicts(THRESHOLDS, toml_scalars),
}


@st.composite
def config_texts(draw: st.DrawFn, url: st.SearchStrategy[str]) -> tuple[str, dict[str, Any]]:
    """TOML text of settings and [features.*] tables with values of every type; and the settings."""
    chosen: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from([*SETTING_NAMES, "bogus", "Redis_Url", "features"]), max_size=4)):
        chosen[name] = draw(toml_values | url if name.endswith("_url") else toml_values)
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in chosen.items()]
    for _ in range(draw(st.integers(0, 2))):
        name = draw(
            st.sampled_from([*DEFAULT_MANIFEST.names, "new_one"]) | st.text(TEXT_CHARS, min_size=1, max_size=10)
        )
        lines.append(f"[features.{toml_key(name)}]")
        for key in draw(st.lists(st.sampled_from(FEATURE_KEYS), max_size=4, unique=True)):
            lines.append(f"{key} = {toml_value(draw(FEATURE_VALUES[key]))}")
    return "\n".join(lines) + "\n", chosen


# -- recordings ------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(TEXT_CHARS, max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=16,
)
#: what a valid recording may hold: JSON has no NaN or Infinity
finite_json_values = st.recursive(
    json_scalars.filter(lambda v: not (isinstance(v, float) and not math.isfinite(v))),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=16,
)
AT = st.sampled_from(TIMES) | json_values
SEQ = st.one_of(st.integers(0, 60), st.integers(0, 60), st.integers(-5, 2**70), json_values)


@st.composite
def envelopes(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    env: dict[str, Any] = {
        "type": draw(st.sampled_from(WS_TYPES) | json_values),
        "key": draw(st.sampled_from(["DU1", "ES", "CME"]) | json_values),
        "seq": draw(SEQ),
        "data": draw(json_values),
    }
    env.update(draw(_dicts(["feature", "ts", "resync", "for_seq"], json_values)))
    return env


@st.composite
def garbage_lines(draw: st.DrawFn) -> str:
    n = draw(st.sampled_from([10, 999, 1001, 5_000, 200_000]))
    deep = '{"at":"2026-11-24T14:30:00Z","src":"ws","msg":{"type":"positions","key":"DU1","seq":1,"data":'
    lines = [
        "[" * n, "{" * n, '{"a":' * n, "[" * n + "]" * n, deep + "[" * n + "]" * n + "}}", deep + '{"a":' * n,
        "NaN", "Infinity", "-Infinity", '{"at":NaN}', "null", "[]", "1", '"s"', "\x00", "\ufeff{}",
        '{"at":"x","src":"ws","msg":' + "1" * n + "}", "{'a': 1}", "\u2028", "{}" * 3,
    ]  # fmt: skip
    return draw(st.sampled_from(lines) | st.text(TEXT_CHARS.filter(lambda c: c not in "\r\n"), max_size=40))


@st.composite
def record_lines(draw: st.DrawFn) -> str:
    """One line of a recording after the header: well-formed, half-formed, or garbage."""
    kind = draw(st.integers(0, 11))
    if kind <= 3:
        obj: Any = {"at": draw(AT), "src": "ws", "msg": draw(envelopes())}
    elif kind == 4:
        obj = {"at": draw(AT), "src": "ws", "raw": draw(json_values)}
    elif kind <= 7:
        obj = {
            "at": draw(AT),
            "src": "rest",
            "feature": draw(st.sampled_from(DEFAULT_MANIFEST.names) | json_values),
            "url": draw(st.sampled_from(REST_PATHS) | json_values),
            "status": draw(st.just(200) | json_values),
            "elapsed_ms": draw(st.just(3.1) | json_values),
        }
        for name in draw(st.lists(st.sampled_from(["type", "key", "for_seq", "body", "raw", "error", "data_last"]))):
            obj[name] = draw(envelopes()) if name == "body" else draw(json_values)
        if "body" not in obj and draw(st.booleans()):
            obj["body"] = draw(envelopes())
    elif kind == 8:
        return draw(garbage_lines())
    elif kind == 9:  # the data-last layout, right or wrong
        return (
            draw(st.sampled_from(DATA_LAST_HEADS))
            + json.dumps(draw(json_values))
            + draw(st.sampled_from(DATA_LAST_TAILS))
        )
    else:
        obj = draw(_dicts(["at", "src", "msg", "raw", "body", "feature"], json_values, 6))
    return json.dumps(obj, ensure_ascii=draw(st.booleans()), allow_nan=True)


@st.composite
def recording_headers(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 5))
    if kind <= 2:
        head: dict[str, Any] = {"thorcut_recording": 1, "created": "2026-11-24T14:29:59Z", "manifest": {}}
        if draw(st.booleans()):
            head["features"] = draw(
                st.lists(st.sampled_from([*DEFAULT_MANIFEST.names, "nope", ""]), max_size=4) | json_values
            )
        if draw(st.booleans()):
            head["manifest"] = draw(json_values | st.just({"features": {"positions": {"types": 5}}}))
        return json.dumps(head, allow_nan=True)
    if kind == 3:
        return json.dumps({"thorcut_recording": draw(json_values), "manifest": draw(json_values)}, allow_nan=True)
    return draw(garbage_lines())


@st.composite
def recordings(draw: st.DrawFn) -> bytes:
    """A recording: a header and lines of every kind, then maybe truncated, spliced or grown huge."""
    text = "\n".join([draw(recording_headers()), *draw(st.lists(record_lines(), max_size=12))])
    data = text.encode()
    mangle = draw(st.integers(0, 7))
    if mangle == 0:  # cut anywhere
        data = data[: draw(st.integers(0, len(data)))]
    elif mangle == 1:  # bytes that are not UTF-8, binary, stray line ends
        at = draw(st.integers(0, len(data)))
        splice = draw(st.sampled_from([b"\xff", b"\xc3", b"\x00" * 10, b"\xed\xa0\x80", b"\r", b"\n\n", b"\x1a"]))
        data = data[:at] + splice + data[at:]
    elif mangle == 2:
        data += b"\n" + draw(st.binary(max_size=200))
    elif mangle == 3:  # a big line (the 64 MiB limit has its own test)
        size = draw(st.sampled_from([100_000, 2_000_000, 8_000_000]))
        msg = {"type": "positions", "key": "DU1", "seq": 3, "data": {"x": "y" * size}}
        data += b"\n" + json.dumps({"at": "2026-11-24T14:30:02Z", "src": "ws", "msg": msg}).encode()
    return data


@st.composite
def valid_recordings(draw: st.DrawFn, optional: bool = True) -> tuple[bytes, list[int]]:
    """A well-formed recording (``optional``: REST lines may carry type/key/for_seq too), and the
    offset just past each line's newline."""
    lines = [json.dumps({"thorcut_recording": 1, "created": "2026-11-24T14:29:59Z", "manifest": {}})]
    for seq in range(1, draw(st.integers(1, 8)) + 1):
        data = draw(finite_json_values)
        env = {"type": "positions", "feature": "positions", "key": "DU1", "seq": seq, "data": data}
        lines.append(json.dumps({"at": f"2026-11-24T14:30:{seq:02d}Z", "src": "ws", "msg": env}, allow_nan=False))
        if draw(st.booleans()):
            rest: dict[str, Any] = {
                "at": f"2026-11-24T14:30:{seq:02d}.5Z", "src": "rest", "feature": "positions",
                "url": "/api/account/positions?account=DU1", "status": 200, "elapsed_ms": 1.5,
                "body": {**env, "data": draw(st.just(data) | finite_json_values)},
            }  # fmt: skip
            if optional and draw(st.booleans()):
                rest.update(type="positions", key="DU1", for_seq=seq)
            lines.append(json.dumps(rest, allow_nan=False))
    ends, total = [], 0
    for line in lines:
        total += len(line.encode()) + 1
        ends.append(total)
    return ("\n".join(lines) + "\n").encode(), ends


# -- stored state ----------------------------------------------------------------------------

STORED_NUMBER = st.integers(0, 5) | st.integers(-(2**70), 2**70) | st.sampled_from(STORED_NUMBERS)


@st.composite
def stored_states(draw: st.DrawFn) -> dict[str, dict[str, dict[str, str]]]:
    """What Redis holds before the command: flags and verdicts, sane or written by another tool."""
    state: dict[str, dict[str, dict[str, str]]] = {"flag": {}, "parity": {}}
    for feature in DEFAULT_MANIFEST.names:
        if draw(st.booleans()):
            flag = {"stage": draw(st.sampled_from(STORED_STAGES)), "version": str(draw(STORED_NUMBER))}
            if draw(st.booleans()):
                flag["percent"] = str(draw(STORED_NUMBER))
            state["flag"][feature] = flag
        if draw(st.integers(0, 2)) == 0:
            parity = {
                "verdict": draw(st.sampled_from(["PASS", "PASS", "FAIL", "PENDING", "pass", ""])),
                "judged_at": draw(st.sampled_from(STORED_TIMES)),
            }
            for count in draw(st.lists(st.sampled_from(["paired", "gaps", "duplicates", "samples"]), max_size=2)):
                parity[count] = str(draw(STORED_NUMBER))
            state["parity"][feature] = parity
    # Usually a store with its epoch (meta), so the stage machine is exercised; sometimes one
    # that reads as reset (flags but no meta), where changes are refused unless forced.
    if draw(st.integers(0, 3)):
        state["meta"] = {"": {"epoch": draw(st.sampled_from(["seeded", "", "é"])), "created_at": "2026-01-01"}}
    return state


def seed(client: redis.Redis, prefix: str, state: dict[str, dict[str, dict[str, str]]]) -> None:
    times = {"NOW": now_iso(), "NOW+1d": now_iso(datetime.now(UTC) + timedelta(days=1))}
    for feature, flag in state["flag"].items():
        client.hset(f"{{{prefix}}}:flag:{feature}", mapping=flag)  # type: ignore[arg-type]
    for feature, parity in state["parity"].items():
        fields = {k: times.get(v, v) if k == "judged_at" else v for k, v in parity.items()}
        client.hset(f"{{{prefix}}}:parity:{feature}", mapping=fields)  # type: ignore[arg-type]
    for meta in state.get("meta", {}).values():
        client.hset(f"{{{prefix}}}:meta", mapping=meta)  # type: ignore[arg-type]


@st.composite
def stage_commands(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from(["shadow", "enable", "disable", "off", "complete", "rollback"]))
    args = [command]
    if command == "rollback":
        if draw(st.integers(0, 4)):
            args.append("--all")
    else:
        args.append(draw(FEATURE_NAME))
    if draw(st.booleans()):
        args += ["--reason", draw(hostile_text)]
    if command != "rollback" and draw(st.booleans()):
        args += ["--expect-version", draw(st.integers(0, 3).map(str) | NUMBER_TEXT)]
    if command == "enable":
        if draw(st.booleans()):
            args += ["--percent", draw(st.integers(-1, 101).map(str) | NUMBER_TEXT)]
        if draw(st.booleans()):
            args.append("--force")
    if command in ("enable", "disable", "rollback") and draw(st.integers(0, 3)) == 0:
        args += ["--wait", draw(st.sampled_from(["0", "0.01", "1e308", "inf", "nan"]))]
    for flag in ("--dry-run", "--json"):
        if draw(st.booleans()):
            args.append(flag)
    return args


# ============================================================================================
# CLI options and the boundary
# ============================================================================================

#: per command: the arguments it always takes, then the options that take a generated value
OPTION_TARGETS: dict[str, tuple[list[str], list[str]]] = {
    "status": ([], ["--timeout"]),
    "history": ([], ["--limit", "--timeout"]),
    "shadow": (["positions"], ["--expect-version", "--timeout"]),
    "enable": (["positions", "--force", "--reason", "fuzz"], ["--percent", "--expect-version", "--wait", "--timeout"]),
    "disable": (["positions"], ["--wait", "--expect-version", "--timeout"]),
    "off": (["intraday"], ["--expect-version", "--timeout"]),
    "complete": (["global_market"], ["--expect-version", "--timeout"]),
    "rollback": (["--all"], ["--wait", "--timeout"]),
    "tail": ([], ["--count", "--duration", "--timeout"]),
    "check": ([], ["--duration", "--samples", "--timeout"]),
    "diff": (["positions"], ["--duration", "--samples", "--timeout"]),
}


@given(data=st.data())
@IN_PROCESS
def test_option_values_never_crash_or_write_when_refused(
    run: Run, hostile_env: dict[str, str], raw: redis.Redis, data: st.DataObject
) -> None:
    command = data.draw(st.sampled_from(sorted(OPTION_TARGETS)), label="command")
    fixed, options = OPTION_TARGETS[command]
    args = [command, *fixed]
    for option in data.draw(st.lists(st.sampled_from(options), min_size=1, unique=True), label="options"):
        args += [option, data.draw(NUMBER_TEXT, label=option)]
    if command in ("enable", "disable", "rollback") and data.draw(st.booleans(), label="bare --wait"):
        args.append("--wait")
    if data.draw(st.booleans(), label="--json"):
        args.append("--json")
    prefix = new_prefix()
    before = snapshot(raw, prefix)
    try:
        with watchdog():
            result = run(*args, env={"THORCUT_PREFIX": prefix})
        live = command in ("check", "diff")
        check_contract(result, args, before=before, after=lambda: snapshot(raw, prefix), verdicts=live)
    finally:
        forget(raw, prefix)


# ============================================================================================
# URLs
# ============================================================================================


@given(data=st.data())
@IN_PROCESS
def test_redis_urls_from_flag_or_environment(
    run: Run,
    hostile_env: dict[str, str],
    raw: redis.Redis,
    redis_server: EmbeddedRedis,
    dead_port: int,
    data: st.DataObject,
) -> None:
    url = data.draw(redis_urls(redis_server.port, dead_port), label="url")
    commands = [["status"], ["status", "--json"], ["history"], ["shadow", "positions"], ["rollback", "--all"]]
    command = data.draw(st.sampled_from(commands), label="command")
    prefix = new_prefix()
    env = {"THORCUT_PREFIX": prefix, "THORCUT_TIMEOUT": "0.5"}
    if data.draw(st.booleans(), label="as --redis-url"):
        args = [*command, "--redis-url", url]
    else:
        args = list(command)
        assume("\x00" not in url)  # an environment variable cannot hold NUL
        env["THORCUT_REDIS_URL"] = url
        if not url:  # an empty variable may fall back to the file or the default: keep that off :6379
            Path("thorcut.toml").write_text(f'redis_url = "redis://127.0.0.1:{dead_port}/0"\n')
    before = snapshot(raw, prefix)
    try:
        with watchdog():
            result = run(*args, env=env)
        check_contract(result, args, before=before, after=lambda: snapshot(raw, prefix))
        for secret in ("pass@", "p%40ss", "password=x"):  # never print a secret (STYLE.md)
            if secret in url:
                assert secret not in result.stdout + result.stderr, f"{secret!r} of {url!r} was printed"
    finally:
        Path("thorcut.toml").unlink(missing_ok=True)
        forget(raw, prefix)


@given(data=st.data())
@IN_PROCESS
def test_backend_and_websocket_urls_from_flag_or_environment(
    run: Run, hostile_env: dict[str, str], dead_port: int, data: st.DataObject
) -> None:
    ws, http = web_urls(["ws", "wss"], dead_port), web_urls(["http", "https"], dead_port)
    command = data.draw(st.sampled_from(["tail", "check", "diff", "learn"]), label="command")
    args = {
        "tail": ["tail", "--count", "1", "--duration", "1"],
        "check": ["check", "--duration", "0.5"],
        "diff": ["diff", "positions", "--duration", "0.5"],
        "learn": ["diff", "positions", "--learn-noise", "--duration", "0.5"],
    }[command]
    env: dict[str, str | None] = {"THORCUT_PREFIX": new_prefix(), "THORCUT_TIMEOUT": "0.5"}
    for option, var, strategy in (("--url", "THORCUT_WS_URL", ws), ("--backend-url", "THORCUT_BACKEND_URL", http)):
        ways = ["default", "env"] if (command, option) == ("tail", "--backend-url") else ["default", "env", "flag"]
        how = data.draw(st.sampled_from(ways), label=f"{option} given as")
        if how == "env":
            env[var] = data.draw(strategy.filter(lambda u: "\x00" not in u), label=var)
            if var == "THORCUT_BACKEND_URL" and "THORCUT_WS_URL" not in env and data.draw(st.booleans()):
                env["THORCUT_WS_URL"] = None  # derive the stream's URL from the backend's
        elif how == "flag":
            args += [option, data.draw(strategy, label=option)]
    if "" in env.values():  # an empty variable may fall back to the default (:8000): the file says where
        Path("thorcut.toml").write_text(
            f'backend_url = "http://127.0.0.1:{dead_port}"\nws_url = "ws://127.0.0.1:{dead_port}/ws/stream/"\n'
        )
    try:
        with watchdog():
            result = run(*args, env=env)
        check_contract(result, args)
        for secret in ("secret", ":tok@"):  # never print a secret (STYLE.md)
            if secret in " ".join(args) + " ".join(v or "" for v in env.values()):
                assert secret not in result.stdout + result.stderr, f"{secret!r} was printed"
    finally:
        Path("thorcut.toml").unlink(missing_ok=True)


# ============================================================================================
# Configuration files
# ============================================================================================

CONFIG_COMMANDS = [
    ["status"],
    ["status", "--json"],
    ["history"],
    ["shadow", "positions"],
    ["check", "--duration", "0.3"],
    ["tail", "--count", "1", "--duration", "0.5"],
    ["check", "--replay", "REC"],
    ["diff", "--all", "--replay", "REC"],
]
#: a small recording any manifest can judge (PENDING under the defaults)
SMALL_RECORDING = "".join(
    json.dumps(x) + "\n"
    for x in [
        {"thorcut_recording": 1, "created": "2026-11-24T14:29:59Z", "manifest": {}},
        {"at": "2026-11-24T14:30:00Z", "src": "ws",
         "msg": {"type": "positions", "key": "DU1", "seq": 1, "data": {"positions": [{"symbol": "ES", "qty": 1}]}}},
        {"at": "2026-11-24T14:30:00Z", "src": "rest", "feature": "positions", "type": "positions", "key": "DU1",
         "for_seq": 1, "url": "/api/account/positions?account=DU1", "status": 200, "elapsed_ms": 1.0,
         "body": {"type": "positions", "key": "DU1", "seq": 1, "data": {"positions": [{"symbol": "ES", "qty": 1.0}]}}},
    ]
)  # fmt: skip


def _run_with_config(
    run: Run, raw: redis.Redis, tmp_path: Path, data: st.DataObject, blob: bytes, name: str, chosen: dict[str, Any]
) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    (folder / name).write_bytes(blob)
    (folder / "rec.jsonl").write_text(SMALL_RECORDING)
    command = data.draw(st.sampled_from(CONFIG_COMMANDS), label="command")
    args = [str(folder / "rec.jsonl") if a == "REC" else a for a in command]
    prefix = new_prefix()
    env: dict[str, str | None] = {"THORCUT_PREFIX": prefix, "THORCUT_TIMEOUT": None}
    # The environment wins over the file: drop a variable to let the file's value count, unless
    # that value could send the command to :6379 (an empty or missing redis_url is the default).
    redis_url = chosen.get("redis_url")
    usable = not isinstance(redis_url, str) or (redis_url != "" and safe_redis_url(redis_url))
    if "redis_url" in chosen and usable and data.draw(st.booleans(), label="the file's redis_url"):
        env["THORCUT_REDIS_URL"] = None
    for setting in ("prefix", "operator", "timeout"):
        if setting in chosen and data.draw(st.booleans(), label=f"the file's {setting}"):
            env[f"THORCUT_{setting.upper()}"] = None
    how = data.draw(st.sampled_from(["found in cwd", "--config", "THORCUT_CONFIG"]), label="file")
    if how == "--config":
        args += ["--config", str(folder / name)]
    elif how == "THORCUT_CONFIG":
        env["THORCUT_CONFIG"] = str(folder / name)
    live = command[0] in ("check", "diff") and "--replay" not in command
    before = snapshot(raw, prefix)
    try:
        with run_in(folder if how == "found in cwd" else tmp_path), watchdog():
            result = run(*args, env=env)
        check_contract(result, args, before=before, after=lambda: snapshot(raw, prefix), verdicts=live)
    finally:
        forget(raw, prefix)
        shutil.rmtree(folder, ignore_errors=True)


@given(data=st.data())
@IN_PROCESS
def test_config_files_with_every_setting_of_every_type(
    run: Run,
    hostile_env: dict[str, str],
    raw: redis.Redis,
    tmp_path: Path,
    dead_port: int,
    redis_server: EmbeddedRedis,
    data: st.DataObject,
) -> None:
    # A TOML file is UTF-8, which cannot hold a lone surrogate (hostile URLs may): "?" stands in for
    # one (files that are not UTF-8 at all are test_config_files_of_random_bytes').
    urls = (redis_urls(redis_server.port, dead_port) | web_urls(["http", "ws"], dead_port)).map(
        lambda url: url.encode("utf-8", "replace").decode("utf-8")
    )
    text, chosen = data.draw(config_texts(urls), label="settings")
    name = data.draw(st.sampled_from(["thorcut.toml", "pyproject.toml"]), label="file name")
    if name == "pyproject.toml":
        layout = data.draw(st.sampled_from(["table", "dotted keys", "tool is not a table"]), label="layout")
        if layout == "table":
            text = "[project]\nname = 'x'\n[tool.thorcut]\n" + text.replace("[features.", "[tool.thorcut.flags.stages.")
        elif layout == "dotted keys":
            text = "".join(f"tool.thorcut.{line}\n" for line in text.splitlines() if not line.startswith("["))
        else:  # found by its marker text, but `tool` (or `tool.thorcut`) is not a table
            text = "# [tool.thorcut]\n" + data.draw(st.sampled_from(PYPROJECT_ODDITIES))
    _run_with_config(run, raw, tmp_path, data, text.encode(), name, chosen)


@given(data=st.data(), blob=st.binary(max_size=300) | st.sampled_from(CONFIG_BLOBS))
@IN_PROCESS
def test_config_files_of_random_bytes(
    run: Run, hostile_env: dict[str, str], raw: redis.Redis, tmp_path: Path, data: st.DataObject, blob: bytes
) -> None:
    name = data.draw(st.sampled_from(["thorcut.toml", "pyproject.toml"]), label="file name")
    if name == "pyproject.toml" and b"[tool.thorcut" not in blob:
        blob = b"[tool.thorcut]\n" + blob
    _run_with_config(run, raw, tmp_path, data, blob, name, {})


# ============================================================================================
# The stage machine
# ============================================================================================


READBACKS = [["status"], ["status", "--json"], ["history"], ["history", "--json"]]


@given(state=stored_states(), args=stage_commands(), readback=st.sampled_from(READBACKS))
@settings(IN_PROCESS, max_examples=80)
def test_stage_commands_with_generated_names_reasons_percents_and_versions(
    run: Run,
    hostile_env: dict[str, str],
    raw: redis.Redis,
    state: dict[str, dict[str, dict[str, str]]],
    args: list[str],
    readback: list[str],
) -> None:
    prefix = new_prefix()
    seed(raw, prefix, state)
    before = snapshot(raw, prefix)
    env = {"THORCUT_PREFIX": prefix}
    try:
        with watchdog():
            result = run(*args, env=env)
        check_contract(result, args, before=before, after=lambda: snapshot(raw, prefix), untouched="--dry-run" in args)
        # Whatever was stored, status and the audit log read it back.
        for shown in (readback, ["history", "--verify"]):
            with watchdog():
                check_contract(run(*shown, env=env), [*shown, f"(after {_quote(args[:2])})"])
    finally:
        forget(raw, prefix)


# ============================================================================================
# Recordings
# ============================================================================================


@given(data=st.data(), recording=recordings())
@IN_PROCESS
def test_replaying_hostile_recordings(
    run: Run, hostile_env: dict[str, str], raw: redis.Redis, tmp_path: Path, data: st.DataObject, recording: bytes
) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    path = folder / "rec.jsonl"
    path.write_bytes(recording)
    command = data.draw(st.sampled_from(["check", "diff"]), label="command")
    features = data.draw(st.lists(st.sampled_from([*DEFAULT_MANIFEST.names, "--all"]) | hostile_text, max_size=3))
    if command == "diff":
        features = features[:1] or ["--all"]
    args = [command, *features, "--replay", str(path)]
    for extra in data.draw(st.lists(st.sampled_from(["--json", "--junit", "--samples"]), unique=True), label="extra"):
        if extra == "--junit":
            args += [extra, str(folder / "junit.xml")]
        elif extra == "--samples":
            args += [extra, data.draw(NUMBER_TEXT, label=extra)]
        else:
            args.append(extra)
    prefix = new_prefix()
    github = data.draw(st.sampled_from(["", "true"]), label="GITHUB_ACTIONS")
    before = snapshot(raw, prefix)
    try:
        with watchdog():
            result = run(*args, env={"THORCUT_PREFIX": prefix, "GITHUB_ACTIONS": github})
        # A replay uses no network: Redis never changes, whatever the verdict.
        check_contract(result, args, before=before, after=lambda: snapshot(raw, prefix), untouched=True)
    finally:
        forget(raw, prefix)
        shutil.rmtree(folder, ignore_errors=True)


@given(data=st.data(), recording=valid_recordings())
@IN_PROCESS
def test_truncated_recording_is_bad_input_naming_the_line(
    run: Run, hostile_env: dict[str, str], tmp_path: Path, data: st.DataObject, recording: tuple[bytes, list[int]]
) -> None:
    """docs/contracts.md, "Recordings": a malformed line is an error naming its line number (exit 2)."""
    blob, ends = recording
    cut = data.draw(st.integers(0, len(blob) - 1), label="cut at")
    kept = blob[:cut]
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "rec.jsonl"
    path.write_bytes(kept)
    args = ["check", "positions", "--replay", str(path)]
    with watchdog():
        result = run(*args)
    check_contract(result, args)
    body = kept.rstrip(b"\n")
    try:
        json.loads(body.rsplit(b"\n", 1)[-1])
    except ValueError:  # the last line was cut in the middle (or nothing is left): malformed
        number = next(i for i, end in enumerate(ends, 1) if end > len(body))
        assert result.exit_code == 2, f"cut at {cut}: exit {result.exit_code}\n{result.stderr[-800:]}"
        assert f"line {number}" in result.stderr, f"cut at {cut}: line {number} not named\n{result.stderr[-800:]}"


@given(recording=valid_recordings(optional=False))
@IN_PROCESS
def test_recording_in_the_documented_minimal_format_is_judged_not_rejected(
    run: Run, hostile_env: dict[str, str], tmp_path: Path, recording: tuple[bytes, list[int]]
) -> None:
    """docs/contracts.md, "Recordings": lines with only the required fields are read and judged (0, 1 or 5)."""
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "rec.jsonl"
    path.write_bytes(recording[0])
    args = ["check", "--replay", str(path)]
    with watchdog():
        result = run(*args)
    check_contract(result, args)
    assert result.exit_code in (0, 1, 5), f"exit {result.exit_code}: {result.stderr[-800:]}"


def test_recording_line_over_the_64_mib_limit_is_bad_input_naming_it(
    run: Run, hostile_env: dict[str, str], tmp_path: Path
) -> None:
    """docs/contracts.md, "Recordings": a line longer than the limit (default 64 MiB) is exit 2 naming the line."""
    head = {"thorcut_recording": 1, "created": "2026-11-24T14:29:59Z", "manifest": {}}
    first = {
        "at": "2026-11-24T14:30:00Z",
        "src": "ws",
        "msg": {"type": "positions", "key": "DU1", "seq": 1, "data": {}},
    }
    path = tmp_path / "big.jsonl"
    with path.open("w") as f:
        f.write(json.dumps(head) + "\n" + json.dumps(first) + "\n")
        f.write('{"at":"2026-11-24T14:30:01Z","src":"ws","msg":{"type":"positions","key":"DU1","seq":2,"data":"')
        f.write("x" * (64 * 1024 * 1024 + 1) + '"}}\n')
    with watchdog(60):
        result = run("check", "--replay", str(path))
    check_contract(result, ["check", "--replay", str(path)])
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.stderr[-800:]}"
    assert "line 3" in result.stderr, result.stderr[-800:]


# ============================================================================================
# Through the real console script: argv bytes, real stdio, the real exit status
# ============================================================================================

ARGV_BYTES = st.binary(min_size=1, max_size=40).filter(lambda b: b"\x00" not in b) | st.sampled_from(ARGV_SPECIALS)
ARGV_NUMBERS = NUMBER_TEXT.filter(lambda s: "\x00" not in s).map(lambda s: s.encode("utf-8", "surrogateescape"))


def _process(args: list[Any], env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("THORCUT_", "WS_FEATURE_"))}
    full.update(env)
    return subprocess.run([THORCUT, *args], env=full, capture_output=True, timeout=timeout, check=False)


@given(data=st.data())
@SUBPROCESS
def test_real_process_stage_commands_with_undecodable_argv(
    hostile_env: dict[str, str], raw: redis.Redis, data: st.DataObject
) -> None:
    command = data.draw(st.sampled_from(["shadow", "enable", "disable", "off", "complete", "history"]), label="cmd")
    args: list[Any] = [command, data.draw(ARGV_BYTES | st.sampled_from([b"positions", b"intraday"]), label="feature")]
    if command != "history":
        args += ["--reason", data.draw(ARGV_BYTES, label="reason")]
        if command == "enable":
            args.append("--force")
    for option in data.draw(st.lists(st.sampled_from(["--expect-version", "--timeout", "--json"]), unique=True)):
        args += [option] if option == "--json" else [option, data.draw(ARGV_NUMBERS, label=option)]
    prefix = new_prefix()
    seed(raw, prefix, data.draw(stored_states(), label="stored"))
    before = snapshot(raw, prefix)
    env = {**hostile_env, "THORCUT_PREFIX": prefix}
    try:
        proc = _process(args, env)
        check_process(proc, args)
        if proc.returncode != 0:
            assert snapshot(raw, prefix) == before, f"exit {proc.returncode}, yet Redis changed"
        elif command != "history":  # what was stored reads back in a terminal
            check_process(_process(["history", "--limit", "3"], env), ["history", f"(after {_quote(args[:2])})"])
    finally:
        forget(raw, prefix)


@given(data=st.data())
@SUBPROCESS
def test_real_process_hostile_urls_and_settings(
    hostile_env: dict[str, str], redis_server: EmbeddedRedis, dead_port: int, data: st.DataObject
) -> None:
    env = {**hostile_env, "THORCUT_PREFIX": new_prefix(), "THORCUT_TIMEOUT": "0.5"}
    which = data.draw(
        st.sampled_from(["THORCUT_REDIS_URL", "THORCUT_WS_URL", "THORCUT_BACKEND_URL", "THORCUT_TIMEOUT"])
    )
    if which == "THORCUT_REDIS_URL":
        env[which] = data.draw(redis_urls(redis_server.port, dead_port).filter(bool), label=which)
        args = data.draw(st.sampled_from([["status"], ["history", "--json"], ["shadow", "positions"]]), label="args")
    elif which == "THORCUT_WS_URL":
        env[which] = data.draw(web_urls(["ws", "wss"], dead_port).filter(bool), label=which)
        args = ["tail", "--count", "1", "--duration", "1"]
    elif which == "THORCUT_BACKEND_URL":
        env[which] = data.draw(web_urls(["http", "https"], dead_port).filter(bool), label=which)
        args = data.draw(st.sampled_from([["check", "--duration", "0.5"], ["tail", "--count", "1"]]), label="args")
        if args[0] == "tail":
            del env["THORCUT_WS_URL"]  # derived from the backend URL
    else:
        env[which] = data.draw(NUMBER_TEXT.filter(bool), label=which)
        args = data.draw(st.sampled_from([["status"], ["tail", "--count", "1"], ["check", "--duration", "0.5"]]))
    assume(not any("\x00" in v for v in env.values()))  # an environment variable cannot hold NUL
    # Linux caps one environment string at 128 KiB (MAX_ARG_STRLEN): exec itself would refuse it.
    assume(len(env[which].encode("utf-8", "surrogateescape")) < 100_000)
    check_process(_process(args, env), [*args, f"({which}={env[which]!r})"])


@given(recording=recordings(), features=st.lists(st.sampled_from([*DEFAULT_MANIFEST.names, "nope"]), max_size=2))
@SUBPROCESS
def test_real_process_replays_hostile_recordings(
    hostile_env: dict[str, str], tmp_path: Path, recording: bytes, features: list[str]
) -> None:
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "rec.jsonl"
    path.write_bytes(recording)
    args = ["check", *features, "--replay", str(path)]
    try:
        check_process(_process(args, hostile_env), args)
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


@given(
    blob=st.sampled_from(DEEP_CONFIGS) | st.binary(max_size=200),
    name=st.sampled_from(["thorcut.toml", "pyproject.toml"]),
)
@SUBPROCESS
def test_real_process_hostile_config_files(hostile_env: dict[str, str], tmp_path: Path, blob: bytes, name: str) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    (folder / name).write_bytes(blob if name == "thorcut.toml" else b"[tool.thorcut]\n" + blob)
    args = ["status", "--config", str(folder / name)]
    try:
        check_process(_process(args, hostile_env), args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
