"""How an account is shown by the API and the CLI (never a hash or a secret)."""

from __future__ import annotations

from typing import Any

from wcp360.store.models import User


def user_view(user: User) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "username": user.username,
        "email": user.email,
        "roles": user.role_names,
        "status": user.status,
        "totp_enabled": user.totp_enabled,
        "created_by": str(user.created_by) if user.created_by else None,
        "created_at": user.created_at.isoformat(),
        "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
        "password_changed_at": user.password_changed_at.isoformat(),
    }
