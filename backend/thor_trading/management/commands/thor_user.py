"""``manage.py thor_user NAME --password P --account DU1234 [--token NAME] [--operator | --no-operator] [--quiet]``:
create a user and token.

The token is shown once, on its own line ``token <value>`` (the one line ``thorcut dev up`` reads
and redacts to ``token ***`` in its setup.log). ``--quiet`` prints nothing else, for scripts that
capture the token. The password is never printed (issue 10: logs never hold a credential).
``--operator`` grants the permission to change stages from the page (``--no-operator`` takes it away;
neither leaves it as it is).
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from thor_trading.users import ensure_user


class Command(BaseCommand):
    help = "Create (or update) a user with a paper account, and optionally issue an API token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        parser.add_argument("--account", required=True, help="account code, e.g. DU1234")
        parser.add_argument("--token", metavar="NAME", help="issue an API token with this name and print it once")
        parser.add_argument("--operator", action=argparse.BooleanOptionalAction, default=None,
                            help="grant (or with --no-operator take away) the permission to change stages from "
                            "the page")  # fmt: skip
        parser.add_argument("--quiet", action="store_true", help="print only the `token <value>` line")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            made = ensure_user(opts["username"], opts["password"], opts["account"], token_name=opts["token"],
                               operator=opts["operator"])  # fmt: skip
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if not opts["quiet"]:
            role = {True: " (operator)", False: " (not an operator)", None: ""}[opts["operator"]]
            self.stdout.write(f"user {made['username']} owns account {made['account']}{role}")
        if made["token"]:
            self.stdout.write(f"token {made['token']}")  # its own line: `dev up` redacts it in setup.log
