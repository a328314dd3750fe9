"""Bad input and unreachable servers: clear errors, right exit codes, no secret, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from tests.runner import Run
from thorcut.dev.stack import EmbeddedRedis, free_port
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore


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


def test_rediss_url_connects_over_tls_and_explains_an_unknown_ca(
    run: Run, tmp_path: Path, redis_server: EmbeddedRedis
) -> None:
    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=thorcut test CA",
    )
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (tmp_path / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "srv.crt",
        "-days", "1", "-extfile", "ext")  # fmt: skip
    port = free_port()
    with subprocess.Popen(
        [redis_server.binary, "--port", "0", "--tls-port", str(port), "--tls-cert-file", "srv.crt",
         "--tls-key-file", "srv.key", "--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no", "--save", ""],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as proc:  # fmt: skip
        try:
            url = f"rediss://default:tls-pass@127.0.0.1:{port}/0"
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                result = run("status", "--json", "--redis-url", f"{url}?ssl_ca_certs={tmp_path / 'ca.crt'}")
                if result.exit_code == 0:
                    break
                time.sleep(0.05)
            assert result.exit_code == 0, result.stderr
            unknown_ca = run("status", "--redis-url", url)
            assert unknown_ca.exit_code == 4
            assert "TLS handshake with Redis at rediss://default:***@127.0.0.1" in unknown_ca.stderr
            assert "ssl_ca_certs" in unknown_ca.stderr
            assert "tls-pass" not in unknown_ca.stderr
        finally:
            proc.terminate()
            output = proc.communicate(timeout=5)[0]
    assert "TLS" in output or "tls" in output, output[-300:]
