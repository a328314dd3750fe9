"""Connecting to Redis with a bounded timeout, and the key names of docs/contracts.md ("Redis keys")."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import redis

from thorcut.errors import ConfigError, RedisUnavailable
from thorcut.values import redact_url


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix, wrapped as a hash tag so they share a Cluster slot."""

    prefix: str = "thorcut"

    @property
    def base(self) -> str:
        return "{" + self.prefix + "}"

    def flag(self, feature: str) -> str:
        return f"{self.base}:flag:{feature}"

    @property
    def audit(self) -> str:
        return f"{self.base}:audit"

    @property
    def meta(self) -> str:
        """Hash: the store's ``epoch`` and ``created_at``, written with its first change."""
        return f"{self.base}:meta"

    @property
    def changes(self) -> str:
        return f"{self.base}:changes"

    def parity(self, feature: str) -> str:
        return f"{self.base}:parity:{feature}"

    def mismatches(self, feature: str) -> str:
        return f"{self.base}:mismatches:{feature}"

    def ramp(self, feature: str) -> str:
        """Hash: the ramp of ``feature`` (thorcut/flags/ramp.py): its steps, the current one, its owner."""
        return f"{self.base}:ramp:{feature}"

    def guard(self, feature: str) -> str:
        """Hash: the ``thorcut guard`` guarding ``feature`` now (``host``, ``pid``, ``since``,
        ``heartbeat``; thorcut/parity/guard.py), expiring a few seconds after its last heartbeat."""
        return f"{self.base}:guard:{feature}"

    def ack(self, feature: str, version: int) -> str:
        return f"{self.base}:ack:{feature}:{version}"

    @property
    def epochs(self) -> str:
        """Hash: worker id -> the store epoch whose stages that worker holds (re-written on each
        registration), so a store Redis lost entirely is still told from a brand-new one."""
        return f"{self.base}:epochs"

    @property
    def overrides(self) -> str:
        """Hash: worker id -> JSON ``{feature: stage}`` of the env overrides in force there."""
        return f"{self.base}:overrides"

    @property
    def workers(self) -> str:
        """Sorted set: worker id -> the Unix time its registration lapses (a TTL per member)."""
        return f"{self.base}:workers"

    def rest(self, feature: str, minute: int) -> str:
        """Hash: client label -> REST reads of ``feature``'s endpoints in that Unix minute
        (``floor(unix seconds / 60)``), written by a backend; expires a day after the minute ends."""
        return f"{self.base}:rest:{feature}:{minute}"

    def rest_last(self, feature: str) -> str:
        """Hash: client label -> the Unix time (seconds, decimal text) of its latest REST read of
        ``feature``. Optional for a backend: without it readers are known to the minute."""
        return f"{self.base}:rest:{feature}:last"

    @property
    def page_build(self) -> str:
        """String: the build id of the page the backend serves now (optional), so old page builds
        still reading REST are told from the current one."""
        return f"{self.base}:page:build"


def persistence(client: redis.Redis) -> tuple[bool | None, str]:
    """Return whether the server persists its data (AOF or RDB snapshots) and a one-line why.

    ``None`` when it cannot tell: ``CONFIG`` is denied by an ACL, renamed or disabled (managed
    Redis services often do that), which the server answers with an error.
    """
    try:
        aof: Any = client.config_get("appendonly")
        rdb: Any = client.config_get("save")
    except redis.ResponseError as exc:
        return None, (
            f"cannot tell whether the flag Redis persists its data: CONFIG GET is not allowed ({exc}); "
            "make sure it has appendonly or save configured, and keep backups (`thorcut backup FILE`)"
        )
    appendonly = str(aof.get("appendonly", "")).lower()
    save = str(rdb.get("save", "")).strip()
    if appendonly == "yes" or save:
        return True, f"the flag Redis persists its data (appendonly {appendonly or '?'}, save {save!r})"
    return False, (
        'the flag Redis has no persistence configured (appendonly no, save ""): a restart loses every stage '
        "and the audit log — turn on appendonly, and keep backups (`thorcut backup FILE`)"
    )


def _hint(url: str) -> str:
    return f"start it, or point THORCUT_REDIS_URL / --redis-url at a running Redis (tried {redact_url(url)})"


#: OpenSSL's certificate verify errors that only strict X.509 verification (``VERIFY_X509_STRICT``,
#: X509_V_FLAG_X509_STRICT) raises, by code, with OpenSSL 3's text for each: x509_vfy.h's block
#: "Errors in case a check in X509_V_FLAG_X509_STRICT mode fails", less 79 ("invalid CA
#: certificate"), which an issuer marked CA:FALSE raises without strict too. The text is matched
#: when no code is at hand.
_STRICT_ONLY: Final[Mapping[int, str]] = {
    78: "cert info signature and signature algorithm mismatch",
    80: "Path length invalid for non-CA cert",
    81: "Path length given without key usage keyCertSign",
    82: "Key usage keyCertSign invalid for non-CA cert",
    83: "Issuer name empty",
    84: "Subject name empty",
    85: "Missing Authority Key Identifier",
    86: "Missing Subject Key Identifier",
    87: "Empty Subject Alternative Name extension",
    88: "Subject empty and Subject Alt Name extension not critical",
    89: "Basic Constraints of CA cert not marked critical",
    90: "Authority Key Identifier marked critical",
    91: "Subject Key Identifier marked critical",
    92: "CA cert does not include key usage extension",
    93: "Using cert extension requires at least X509v3",
}


def _strict_refusal(exc: BaseException) -> str | None:
    """Return OpenSSL's reason when strict X.509 verification alone refused the server's
    certificate, else None. redis-py raises its own ConnectionError while handling the
    :class:`ssl.SSLCertVerificationError`, whose code is looked for along the chain."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        code = getattr(cause, "verify_code", None)
        if isinstance(code, int) and code in _STRICT_ONLY:
            return str(getattr(cause, "verify_message", None) or _STRICT_ONLY[code])
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    return next((reason for reason in _STRICT_ONLY.values() if reason in text), None)


def _strict_opt_out() -> str:
    """How to keep such certificates: a redis-py that lets the URL drop the flag."""
    from redis.connection import URL_QUERY_ARGUMENT_PARSERS

    if "ssl_exclude_verify_flags" in URL_QUERY_ARGUMENT_PARSERS:
        return (
            "keep them and add ssl_exclude_verify_flags=VERIFY_X509_STRICT to the URL's query (the strict "
            "checks are then off; the CA and the host name are still verified)"
        )
    return (
        "keep them: upgrade redis-py to a version that takes ssl_exclude_verify_flags=VERIFY_X509_STRICT in "
        "the URL's query (the strict checks are then off; the CA and the host name are still verified)"
    )


def translate(exc: Exception, url: str) -> RedisUnavailable:
    """Return the user-facing error for a redis-py exception; never includes a password."""
    safe = redact_url(url)
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.AuthorizationError):
        return RedisUnavailable(f"Redis at {safe} rejected the credentials — check the user and password in the URL")
    if isinstance(exc, redis.TimeoutError):
        return RedisUnavailable(f"Redis at {safe} did not answer in time — {_hint(url)}")
    if isinstance(exc, redis.ResponseError) and "NOAUTH" in str(exc):
        return RedisUnavailable(f"Redis at {safe} needs a password — put it in the URL (redis://user:pass@host)")
    strict = _strict_refusal(exc)
    if strict is not None:
        return RedisUnavailable(
            f"TLS handshake with Redis at {safe} failed: the server's certificate was refused by strict X.509 "
            f"verification (Python 3.13+ sets VERIFY_X509_STRICT): {strict} — reissue the certificates as a CA "
            "issues them (the CA's with basicConstraints critical CA:TRUE, keyUsage critical keyCertSign,cRLSign "
            "and a subjectKeyIdentifier; the server's with an authorityKeyIdentifier and a subjectAltName naming "
            f"the host), or {_strict_opt_out()}"
        )
    if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "SSL" in str(exc):
        return RedisUnavailable(
            f"TLS handshake with Redis at {safe} failed ({exc}) — name the CA that signed the server's "
            "certificate with ?ssl_ca_certs=/path/ca.pem in the URL"
        )
    reason = str(exc).replace(url, safe)
    return RedisUnavailable(f"Redis at {safe} is unreachable ({reason}) — {_hint(url)}")


def connect(url: str, timeout: float, *, check: bool = True) -> redis.Redis:
    """Return a client for ``url`` (redis://, rediss://, unix://, or through Sentinel:
    :mod:`thorcut.redisurl`) with every call bounded by ``timeout``.

    With ``check`` the connection is tried at once. Raises :class:`ConfigError` for a malformed
    URL or a database the server does not have, and :class:`RedisUnavailable` when Redis cannot
    be reached or rejects the credentials.
    """
    from thorcut.redisurl import parse_redis_url

    target = parse_redis_url(url)
    try:
        client: redis.Redis = target.client(timeout)
    except (ValueError, TypeError) as exc:  # an option value redis-py cannot use
        raise ConfigError(f"bad Redis URL {redact_url(url)}: {exc}") from None
    if check:
        with translated(url):
            client.ping()
    return client


@contextmanager
def translated(url: str) -> Iterator[None]:
    """Turn redis-py connection failures raised inside the block into :class:`RedisUnavailable`."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError, redis.AuthenticationError) as exc:
        raise translate(exc, url) from None
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise translate(exc, url) from None
        if "DB index is out of range" in str(exc):
            # The URL's syntax was checked (config.check_redis_url); how many databases there are
            # is the server's `databases` setting, so only the server can say (issue 9).
            raise ConfigError(
                f"Redis at {redact_url(url)} has no such database (the server said: {exc}) — use a database "
                "index below the server's `databases` setting (16 unless configured), e.g. /0"
            ) from None
        raise
