"""Keep credentials out of the server's logs: uvicorn writes the whole request line (issue 10).

uvicorn's access log (``uvicorn.access``) and its WebSocket lines (``uvicorn.error``:
``"WebSocket /ws/stream/?token=…" [accepted]``) carry the query string. :class:`RedactSecrets`
replaces the value of any credential-looking query parameter, and the password of any URL, with
``***`` in the record's message and arguments, before any handler formats it. ``asgi.py`` installs
it (with :class:`NoTracebackForClientFaults`) on those loggers, so it applies however uvicorn was
started (tests, ``thorcut dev up``, by hand) and whatever log config it was given.
"""

from __future__ import annotations

import logging
import re

#: Query parameters whose values are credentials.
SECRET_PARAMS = ("token", "access_token", "api_key", "apikey", "key", "password", "passwd", "secret", "auth",
                 "sessionid", "signature")  # fmt: skip
_QUERY_SECRET = re.compile(r"(?i)([?&;](?:%s)=)[^&;\s\"']*" % "|".join(SECRET_PARAMS))  # noqa: UP031
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+(@)")
#: The loggers that write request lines.
LOGGERS = ("uvicorn.access", "uvicorn.error", "django.channels.server", "daphne.server")


def redact(text: str) -> str:
    """Return ``text`` with credential query values and URL passwords replaced by ``***``."""
    if "=" not in text and "@" not in text:
        return text
    return _URL_PASSWORD.sub(r"\1***\2", _QUERY_SECRET.sub(r"\1***", text))


def _redact_arg(arg: object) -> object:
    return redact(arg) if isinstance(arg, str) else arg


class RedactSecrets(logging.Filter):
    """Redact the message and every string argument of a record (its shape stays as it was:
    uvicorn's access formatter unpacks the arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        return True


class NoTracebackForClientFaults(logging.Filter):
    """A client's fault is one INFO line, not an ERROR with a traceback: uvicorn's websockets-sansio
    logs ``Invalid UTF-8 sequence received from client.`` with the traceback of the decode, so any
    client could write ten lines to the log per connection (issue 10)."""

    MESSAGES = ("Invalid UTF-8 sequence received from client.",)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in self.MESSAGES:
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def install() -> None:
    """Put :class:`RedactSecrets` on the request-line loggers, and :class:`NoTracebackForClientFaults`
    on uvicorn's (once per process)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, NoTracebackForClientFaults) for f in logger.filters):
        logger.addFilter(NoTracebackForClientFaults())
