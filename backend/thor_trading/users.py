"""Create users with an account and an API token (used by the management command and dev up)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

from thor_trading.models import Account, ApiToken


@transaction.atomic
def ensure_user(username: str, password: str, account: str, *, token_name: str | None = None) -> dict[str, str]:
    """Create or update ``username`` with ``password`` owning ``account``; optionally issue a token.

    Returns ``{"username", "account", "token"}`` (token "" when none was issued).
    """
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username=username)
    user.set_password(password)
    user.save()
    acct, created = Account.objects.get_or_create(code=account, defaults={"owner": user})
    if not created and acct.owner_id != user.pk:
        raise ValueError(f"account {account} belongs to another user")
    token = ApiToken.issue(user, token_name) if token_name else ""
    return {"username": username, "account": account, "token": token}
