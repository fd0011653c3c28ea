"""Ending an account's credentials when what proved them changes (password, second factor).

One place, so that every path that changes a credential ends the same set: the sessions (and with
them their refresh-token families, which refresh checks against the session) and the API tokens.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session as OrmSession

from wcp360.store.models import ApiToken, Session
from wcp360.store.types import utcnow


def end_sessions(s: OrmSession, user_id: uuid.UUID, reason: str, keep: uuid.UUID | None = None) -> int:
    """Revoke every live session of the account but `keep` (the one that made the change)."""
    query = update(Session).where(Session.user_id == user_id, Session.revoked_at.is_(None))
    if keep is not None:
        query = query.where(Session.id != keep)
    result = s.execute(query.values(revoked_at=utcnow(), revoked_reason=reason))
    return int(cast("CursorResult[Any]", result).rowcount or 0)


def revoke_api_tokens(s: OrmSession, user_id: uuid.UUID) -> int:
    """Revoke every live API token of the account: a token minted under the old password or
    second factor must not outlive them (an attacker who held the account would keep it)."""
    result = s.execute(
        update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None)).values(revoked_at=utcnow())
    )
    return int(cast("CursorResult[Any]", result).rowcount or 0)


def end_credentials(s: OrmSession, user_id: uuid.UUID, reason: str, keep: uuid.UUID | None = None) -> dict[str, int]:
    """Sessions and API tokens both: what a password change or reset and a 2FA reset end."""
    return {
        "sessions_revoked": end_sessions(s, user_id, reason, keep),
        # Not "…tokens…": detail keys naming tokens are redacted in the trail.
        "api_credentials_revoked": revoke_api_tokens(s, user_id),
    }
