"""Bad input and unreachable servers: clear errors, right exit codes, no secret, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from tests.runner import Run
from tests.tls import CA_WITHOUT_KEY_USAGE, Chain, issue
from thorcut.dev.stack import EmbeddedRedis, free_port
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.redisconn import translate


def test_unreachable_redis_exits_4_within_timeout_naming_redacted_url(run: Run) -> None:
    url = f"redis://ops:hunter2@127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    result = run("status", "--redis-url", url, "--timeout", "0.5")
    assert result.exit_code == 4
    assert time.monotonic() - started < 2.5
    assert "hunter2" not in result.stderr + result.stdout
    assert f"Redis at redis://ops:***@127.0.0.1:{url.rsplit(':', 1)[1]}" in result.stderr
    assert "THORCUT_REDIS_URL" in result.stderr


def test_unanswering_redis_times_out_with_exit_4(run: Run) -> None:
    # A listening socket that never speaks: connect succeeds, PING never answers.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        started = time.monotonic()
        result = run("status", "--redis-url", f"redis://127.0.0.1:{port}/0", "--timeout", "0.3")
    assert result.exit_code == 4
    assert time.monotonic() - started < 2
    assert "did not answer in time" in result.stderr


def test_wrong_password_exits_4_and_never_prints_it(run: Run, client: redis.Redis, redis_server: EmbeddedRedis) -> None:
    user = f"u{uuid.uuid4().hex[:6]}"
    client.acl_setuser(user, enabled=True, passwords=["+right-pass"], keys=["*"], channels=["*"], commands=["+@all"])
    try:
        good = run("status", "--json", "--redis-url", f"redis://{user}:right-pass@127.0.0.1:{redis_server.port}/0")
        assert good.exit_code == 0, good.stderr
        assert "right-pass" not in good.stdout
        bad = run("status", "--redis-url", f"redis://{user}:wrong-pass@127.0.0.1:{redis_server.port}/0")
        assert bad.exit_code == 4
        assert "rejected the credentials" in bad.stderr
        assert "wrong-pass" not in bad.stderr + bad.stdout
    finally:
        client.acl_deluser(user)


def test_unix_socket_url_works(tmp_path: Path, redis_server: EmbeddedRedis, run: Run, prefix: str) -> None:
    sock = tmp_path / "r.sock"
    proc = subprocess.Popen(
        [redis_server.binary, "--port", "0", "--unixsocket", str(sock), "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        result = run("shadow", "positions", "--json", "--redis-url", f"unix://{sock}")
        assert result.exit_code == 0, result.stderr
        assert (
            redis.Redis(unix_socket_path=str(sock), decode_responses=True).hget(f"{{{prefix}}}:flag:positions", "stage")
            == "shadow"
        )
    finally:
        proc.terminate()
        proc.wait(5)


def test_malformed_redis_url_exits_2(run: Run) -> None:
    result = run("status", "--redis-url", "http://127.0.0.1:6379")
    assert result.exit_code == 2
    assert "bad Redis URL" in result.stderr


def test_bad_config_file_exits_2_naming_it(run: Run, tmp_path: Path) -> None:
    (tmp_path / "thorcut.toml").write_text("[features.positions\n")
    result = run("status")
    assert result.exit_code == 2
    assert "thorcut.toml is not valid TOML" in result.stderr


def test_bad_timeout_variable_exits_2(run: Run) -> None:
    result = run("status", env={"THORCUT_TIMEOUT": "soon"})
    assert result.exit_code == 2
    assert "THORCUT_TIMEOUT must be a duration" in result.stderr


def _cli(args: list[str], env: dict[str, str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "thorcut", *args], env={**os.environ, **env}, text=True, **kw)  # type: ignore[call-overload,no-any-return]


def test_output_piped_into_head_ends_without_traceback(cli_env: dict[str, str], store: FlagStore) -> None:
    for i in range(300):
        store.change("positions", Stage.SHADOW if i % 2 == 0 else Stage.OFF, reason="x" * 50)
    env = {**os.environ, **cli_env}
    for cmd in ("history --limit 300", "history --limit 300 --json", "status"):
        result = subprocess.run(
            f"{sys.executable} -m thorcut {cmd} | head -1",
            shell=True,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.stdout.count("\n") == 1
        assert "Traceback" not in result.stderr, result.stderr
        assert "BrokenPipe" not in result.stderr, result.stderr


@pytest.mark.parametrize("cmd", ["status -h", "--help", "check --help"])
def test_help_piped_into_head_exits_0(cli_env: dict[str, str], cmd: str) -> None:
    # Rich exits 1 on a closed pipe by default, and 1 is what CI reads as parity FAIL.
    script = f"{sys.executable} -m thorcut {cmd} | head -1 >/dev/null; exit ${{PIPESTATUS[0]}}"
    result = subprocess.run(["bash", "-c", script], env={**os.environ, **cli_env}, capture_output=True, text=True,
                            check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_real_process_exit_code_and_stderr(cli_env: dict[str, str]) -> None:
    result = _cli(["enable", "nope"], cli_env, capture_output=True)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("Error: unknown feature 'nope'")


@contextmanager
def _tls_redis(redis_server: EmbeddedRedis, chain: Chain, folder: Path) -> Iterator[int]:
    """A redis-server serving TLS with ``chain`` (no client certificates) on a port it yields once
    it listens; on the way out, checks that its log shows TLS handshakes (each test has one fail)."""
    port = free_port()
    with subprocess.Popen(
        [redis_server.binary, "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(chain.cert),
         "--tls-key-file", str(chain.key), "--tls-ca-cert-file", str(chain.ca), "--tls-auth-clients", "no",
         "--save", ""],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as proc:  # fmt: skip
        try:
            deadline = time.monotonic() + 5
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    assert proc.poll() is None, proc.communicate()[0][-300:]
                    assert time.monotonic() < deadline, "redis-server did not listen within 5 s"
                    time.sleep(0.02)
            yield port
        finally:
            proc.terminate()
            output = proc.communicate(timeout=5)[0]
    assert "tls" in output.lower() or "ssl routines" in output.lower(), output[-300:]


def _words(text: str) -> str:
    """``text`` with every run of whitespace one space (a long message may be wrapped)."""
    return " ".join(text.split())


def test_rediss_url_connects_over_tls_and_explains_an_unknown_ca(
    run: Run, tmp_path: Path, redis_server: EmbeddedRedis
) -> None:
    chain = issue(tmp_path)  # as a CA issues them: strict X.509 verification accepts it
    with _tls_redis(redis_server, chain, tmp_path) as port:
        url = f"rediss://default:tls-pass@127.0.0.1:{port}/0"
        result = run("status", "--json", "--redis-url", f"{url}?ssl_ca_certs={chain.ca}")
        assert result.exit_code == 0, result.stderr
        unknown_ca = run("status", "--redis-url", url)
    assert unknown_ca.exit_code == 4
    stderr = _words(unknown_ca.stderr)
    assert "TLS handshake with Redis at rediss://default:***@127.0.0.1" in stderr
    assert "ssl_ca_certs" in stderr
    assert "strict X.509" not in stderr
    assert "tls-pass" not in stderr


def test_rediss_certificate_refused_by_strict_x509_verification_says_so(
    run: Run, tmp_path: Path, redis_server: EmbeddedRedis
) -> None:
    # A CA without keyUsage, as `openssl req -x509` makes one when not told otherwise: trusted
    # (named by ssl_ca_certs) and otherwise valid, so only strict verification refuses the chain.
    chain = issue(tmp_path, ca=CA_WITHOUT_KEY_USAGE)
    strict_by_default = sys.version_info >= (3, 13)  # ssl.create_default_context() sets VERIFY_X509_STRICT
    with _tls_redis(redis_server, chain, tmp_path) as port:
        url = f"rediss://default:tls-pass@127.0.0.1:{port}/0?ssl_ca_certs={chain.ca}"
        default = run("status", "--json", "--redis-url", url)
        # redis-py takes verify flags in the URL: strict on, or off, on any Python.
        strict = run("status", "--redis-url", f"{url}&ssl_include_verify_flags=VERIFY_X509_STRICT")
        lax = run("status", "--json", "--redis-url", f"{url}&ssl_exclude_verify_flags=VERIFY_X509_STRICT")
    refusals = [strict, default] if strict_by_default else [strict]
    for refused in refusals:
        assert refused.exit_code == 4, refused.stderr
        stderr = _words(refused.stderr)
        assert f"TLS handshake with Redis at rediss://default:***@127.0.0.1:{port}/0" in stderr
        assert (
            "the server's certificate was refused by strict X.509 verification (Python 3.13+ sets "
            "VERIFY_X509_STRICT): CA cert does not include key usage extension — reissue the certificates"
        ) in stderr
        assert "keyUsage critical keyCertSign,cRLSign" in stderr
        assert "ssl_exclude_verify_flags=VERIFY_X509_STRICT" in stderr  # the way out the message names…
        assert "name the CA" not in stderr  # …not the unknown-CA advice: the CA is named already
        assert "tls-pass" not in refused.stderr + refused.stdout
    if not strict_by_default:
        assert default.exit_code == 0, default.stderr
    assert lax.exit_code == 0, lax.stderr  # …and it works


class _VerifyFailed(OSError):
    """Stands for :class:`ssl.SSLCertVerificationError`: a verify code and OpenSSL's message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message} (_ssl.c:1020)")
        self.verify_code, self.verify_message = code, message


def _redis_error(cause: OSError | None, text: str) -> redis.ConnectionError:
    """redis-py's ConnectionError, with ``cause`` as its context (redis-py raises it while handling that)."""
    error = redis.ConnectionError(text)
    error.__context__ = cause
    return error


@pytest.mark.parametrize(
    ("code", "reason", "strict"),
    [
        (92, "CA cert does not include key usage extension", True),
        (85, "Missing Authority Key Identifier", True),
        (89, "Basic Constraints of CA cert not marked critical", True),
        (82, "Key usage keyCertSign invalid for non-CA cert", True),
        (80, "Path length invalid for non-CA cert", True),
        (20, "unable to get local issuer certificate", False),  # an unknown CA: strict or not
        (79, "invalid CA certificate", False),  # a CA:FALSE issuer too, strict or not
        (10, "certificate has expired", False),
    ],
)
@pytest.mark.parametrize("has_code", [True, False])
def test_tls_errors_name_strict_x509_verification_only_for_its_own_checks(
    code: int, reason: str, strict: bool, has_code: bool
) -> None:
    url = "rediss://default:tls-pass@127.0.0.1:6390/0"
    text = f"Error 1 connecting to 127.0.0.1:6390. [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {reason}"
    # With the code (redis-py keeps the ssl error as the context), or from the text alone.
    message = str(translate(_redis_error(_VerifyFailed(code, reason) if has_code else None, text), url))
    assert "tls-pass" not in message
    assert message.startswith("TLS handshake with Redis at rediss://default:***@127.0.0.1:6390/0 failed")
    if strict:
        assert f"refused by strict X.509 verification (Python 3.13+ sets VERIFY_X509_STRICT): {reason} — " in message
        assert "ssl_exclude_verify_flags=VERIFY_X509_STRICT" in message
    else:
        assert "strict" not in message
        assert "ssl_ca_certs" in message
