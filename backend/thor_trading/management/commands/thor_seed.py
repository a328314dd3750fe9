"""``manage.py thor_seed [--force]``: run one tick of every job so REST has data right after ``migrate``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from thor_trading.exchanges import EXCHANGES
from thor_trading.jobs import build_jobs
from thor_trading.market import CONTRACTS
from thor_trading.models import Account, IntradayBar, MarketSession, PositionsSnapshot


def seeded() -> bool:
    """Whether every symbol, exchange and account already has state (then there is nothing to do)."""
    return (
        IntradayBar.objects.filter(symbol__in=CONTRACTS).count() == len(CONTRACTS)
        and MarketSession.objects.filter(market__in=EXCHANGES).count() == len(EXCHANGES)
        and not Account.objects.exclude(pk__in=PositionsSnapshot.objects.values("account")).exists()
        and not Account.objects.filter(balance__isnull=True).exists()
    )


class Command(BaseCommand):
    help = "Write the first state of every feature (one tick of every job); does nothing if it exists."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="run a tick even if every state row exists")

    def handle(self, *args: Any, **opts: Any) -> None:
        if seeded() and not opts["force"]:
            self.stdout.write("state already seeded; nothing to do")
            return
        count = 0
        for job in build_jobs(settings.THOR_SEED):
            count += len(job.run(0))
        self.stdout.write(f"seeded: one tick of every job ({count} messages' state)")
