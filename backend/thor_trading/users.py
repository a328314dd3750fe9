"""Create users with an account and an API token (used by the management command and dev up)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction

from thor_trading.models import Account, ApiToken

#: The operators' permission (``thor_trading.models.Cutover``): may change stages from the page.
OPERATE = "thor_trading.operate_cutover"


def is_operator(user: Any) -> bool:
    """Whether ``user`` may change cutover stages (``POST /api/ops/stage``)."""
    return bool(user is not None and user.is_active and user.has_perm(OPERATE))


@transaction.atomic
def ensure_user(
    username: str, password: str, account: str, *, token_name: str | None = None, operator: bool | None = None
) -> dict[str, str]:
    """Create or update ``username`` with ``password`` owning ``account``; optionally issue a token.

    ``operator`` True grants the operators' permission (:data:`OPERATE`), False takes it away, None
    leaves it as it is. Returns ``{"username", "account", "token"}`` (token "" when none was issued).
    Raises ValueError when ``account`` belongs to another user.
    """
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username=username)
    user.set_password(password)
    user.save()
    acct, created = Account.objects.get_or_create(code=account, defaults={"owner": user})
    if not created and acct.owner_id != user.pk:
        raise ValueError(f"account {account} belongs to another user")
    if operator is not None:
        app_label, codename = OPERATE.split(".")
        permission = Permission.objects.get(content_type__app_label=app_label, codename=codename)
        (user.user_permissions.add if operator else user.user_permissions.remove)(permission)
    token = ApiToken.issue(user, token_name) if token_name else ""
    return {"username": username, "account": account, "token": token}
