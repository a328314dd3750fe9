"""State the jobs write and REST reads. Every state row carries the ``seq`` it was written at.

``SeqCounter`` holds the per-(type, key) version (docs/contracts.md, "The message envelope"): a job bumps
it and writes the state row in one transaction, so a REST read of the row and the message built
from it after the commit carry the same ``seq``.
"""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models, transaction


class SeqCounter(models.Model):
    type = models.CharField(max_length=32)
    key = models.CharField(max_length=64)
    seq = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["type", "key"], name="seq_type_key")]

    @classmethod
    def bump(cls, type_: str, key: str) -> int:
        """Increment and return the (type, key) counter; call inside ``transaction.atomic``."""
        assert transaction.get_connection().in_atomic_block, "bump seq inside the state's transaction"
        counter, _ = cls.objects.select_for_update().get_or_create(type=type_, key=key)
        counter.seq += 1
        counter.save(update_fields=["seq"])
        return int(counter.seq)


class LeaderTerm(models.Model):
    """The job runner's fencing token: one row (``id=1``) whose ``term`` goes up by one per leader term.

    A runner that takes the Redis leader lock starts a term (``thor_trading.fence.start_term``),
    and every job transaction first checks that the row still holds its term
    (``thor_trading.fence.check``), so a runner that was replaced can no longer commit a write.
    """

    term = models.BigIntegerField(default=0)
    holder = models.CharField(max_length=255, blank=True, default="")  # the lock token of the term's runner
    since = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return f"term {self.term} ({self.holder or 'nobody'})"


class Account(models.Model):
    """A paper trading account; ``code`` is the envelope key (e.g. ``DU1234``)."""

    code = models.CharField(max_length=16, unique=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="accounts")
    currency = models.CharField(max_length=3, default="USD")

    def __str__(self) -> str:
        return str(self.code)


class Balance(models.Model):
    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="balance")
    cash = models.DecimalField(max_digits=20, decimal_places=2)
    equity = models.DecimalField(max_digits=20, decimal_places=2)
    unrealized_pnl = models.DecimalField(max_digits=20, decimal_places=2)
    realized_pnl = models.DecimalField(max_digits=20, decimal_places=2)
    margin_used = models.DecimalField(max_digits=20, decimal_places=2)
    buying_power = models.DecimalField(max_digits=20, decimal_places=2)
    as_of = models.DateTimeField()
    seq = models.BigIntegerField(default=0)
    written_at = models.DateTimeField(null=True)  # wall-clock time of the write: the envelope's ts


class Position(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="positions")
    symbol = models.CharField(max_length=8)
    quantity = models.IntegerField()
    avg_price = models.DecimalField(max_digits=20, decimal_places=4)
    last_price = models.DecimalField(max_digits=20, decimal_places=4)
    market_value = models.DecimalField(max_digits=20, decimal_places=2)
    unrealized_pnl = models.DecimalField(max_digits=20, decimal_places=2)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "symbol"], name="position_account_symbol")]
        ordering = ["symbol"]


class PositionsSnapshot(models.Model):
    """The seq and time of the account's positions as a whole (the list is one message)."""

    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="positions_snapshot")
    as_of = models.DateTimeField()
    seq = models.BigIntegerField(default=0)
    written_at = models.DateTimeField(null=True)  # wall-clock time of the write: the envelope's ts


class IntradayBar(models.Model):
    """The current (latest) one-minute bar of a symbol."""

    symbol = models.CharField(max_length=8, unique=True)
    start = models.DateTimeField()
    open = models.DecimalField(max_digits=20, decimal_places=4)
    high = models.DecimalField(max_digits=20, decimal_places=4)
    low = models.DecimalField(max_digits=20, decimal_places=4)
    close = models.DecimalField(max_digits=20, decimal_places=4)
    volume = models.BigIntegerField()
    seq = models.BigIntegerField(default=0)
    written_at = models.DateTimeField(null=True)  # wall-clock time of the write: the envelope's ts


class Vwap(models.Model):
    symbol = models.CharField(max_length=8, unique=True)
    vwap = models.DecimalField(max_digits=20, decimal_places=4)
    cum_volume = models.BigIntegerField()
    as_of = models.DateTimeField()
    seq = models.BigIntegerField(default=0)
    written_at = models.DateTimeField(null=True)  # wall-clock time of the write: the envelope's ts


class MarketSession(models.Model):
    """A market's open/closed state (real-looking session hours, simulated clock)."""

    market = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=64)
    timezone = models.CharField(max_length=32)
    is_open = models.BooleanField(default=False)
    session = models.CharField(max_length=16)  # pre, regular, post, closed
    next_change = models.DateTimeField()
    as_of = models.DateTimeField()
    seq = models.BigIntegerField(default=0)
    written_at = models.DateTimeField(null=True)  # wall-clock time of the write: the envelope's ts


class ApiToken(models.Model):
    """A bearer token for thorcut and services; only its SHA-256 is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=64)
    digest = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(auto_now_add=True)

    @staticmethod
    def hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def issue(cls, user: object, name: str) -> str:
        """Create a token for ``user`` and return it (shown once; only its hash is kept)."""
        token = "thor_" + secrets.token_urlsafe(24)
        cls.objects.create(user=user, name=name, digest=cls.hash(token))
        return token


class Cutover(models.Model):
    """No table: the holder of the operators' permission, ``thor_trading.operate_cutover``.

    A user with it may change a feature's stage from the page (``POST /api/ops/stage``,
    ``global_markets.ops``); everyone logged in may watch. ``thor_trading.users.ensure_user``
    grants it (``manage.py thor_user NAME … --operator``); the demo user ``demo`` has it, ``viewer``
    has not. Superusers have every permission, this one included.
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("operate_cutover", "Can change cutover stages from the page")]
