"""Reading a JSON document (an OpenAPI or AsyncAPI description) from a file or an http(s):// URL.

URLs are fetched with httpx, with the backend's headers (the bearer token) and thorcut's timeout;
redirects are not followed, so the token never goes to another host. Every failure is a
ThorcutError that says what to fix: bad input exits 2, a backend that cannot be reached (or
rejects the credentials, or fails) exits 4. URLs in messages are redacted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from thorcut.errors import BackendUnavailable, UsageError
from thorcut.values import check_url, redact_url

#: The largest document read: descriptions are kilobytes; this is far beyond any real one.
MAX_BYTES = 32 * 2**20


def is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def read_document(source: str, *, what: str, option: str, headers: dict[str, str] | None = None,
                  timeout: float = 2.0, missing_ok: bool = False) -> dict[str, Any] | None:  # fmt: skip
    """Return the JSON object in ``source``, a file or an http(s):// URL (``what`` names it in
    messages, ``option`` the option it came from).

    With ``missing_ok``, a URL that answers 404 returns None. Raises UsageError (exit 2) for a file
    that cannot be read, a body that is not a JSON object, a 404 (without ``missing_ok``) or another
    4xx; BackendUnavailable (exit 4) when the URL cannot be reached, answers 401/403 or 5xx.
    """
    if is_url(source):
        body = _fetch(source, what=what, option=option, headers=headers or {}, timeout=timeout, missing_ok=missing_ok)
        if body is None:
            return None
        shown = redact_url(source)
    else:
        shown = source
        try:
            path = Path(source)
            if path.stat().st_size > MAX_BYTES:
                raise UsageError(f"{what} {source} is larger than {MAX_BYTES // 2**20} MiB; is it the right file?")
            body = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {what} {source} ({option}): {exc.strerror or exc}") from None
    return _parse(body, f"{what} {shown}")


def _fetch(url: str, *, what: str, option: str, headers: dict[str, str], timeout: float,
           missing_ok: bool) -> bytes | None:  # fmt: skip
    import httpx

    check_url(url, option, ("http", "https"), "URL")
    shown = redact_url(url)
    try:
        with (
            httpx.Client(headers=headers, timeout=timeout, follow_redirects=False) as client,
            client.stream("GET", url) as resp,
        ):
            status = resp.status_code
            chunks: list[bytes] = []
            size = 0
            if status == 200:
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > MAX_BYTES:
                        raise UsageError(f"{what} at {shown} is larger than {MAX_BYTES // 2**20} MiB")
                    chunks.append(chunk)
    except httpx.TimeoutException:
        raise BackendUnavailable(f"{shown} did not answer within {timeout:g} s — is the backend running? "
                                 "(raise --timeout / THORCUT_TIMEOUT if it is slow)") from None  # fmt: skip
    except httpx.HTTPError as exc:
        raise BackendUnavailable(f"cannot reach {shown} ({type(exc).__name__}) — start the backend, or check "
                                 f"the URL ({option})") from None  # fmt: skip
    if status == 200:
        return b"".join(chunks)
    if status == 404 and missing_ok:
        return None
    if status in (401, 403):
        raise BackendUnavailable(f"{shown} rejected the credentials (HTTP {status}) — set THORCUT_TOKEN (sent as "
                                 "'Authorization: Bearer …') or pass --header 'Name: value'")  # fmt: skip
    if status >= 500:
        raise BackendUnavailable(f"{shown} failed (HTTP {status}) — see the backend's log")
    raise UsageError(f"{shown} answered HTTP {status}, not {what} — check the URL ({option})")


def _parse(body: bytes, shown: str) -> dict[str, Any]:
    try:
        doc = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{shown} is not UTF-8 text: a JSON document is") from None
    except RecursionError:
        raise UsageError(f"{shown} is nested too deeply to be a description") from None
    except ValueError as exc:
        raise UsageError(f"{shown} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{shown} is JSON, but not an object: a description is a JSON object")
    return doc
