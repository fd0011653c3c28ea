"""Who is acting: a user through a session or an API token, or the host administrator's CLI."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal

# `scheduler`: a task's run, acting as the task's owner with the owner's current roles.
Via = Literal["session", "api_token", "host", "scheduler"]


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID | None
    username: str
    roles: tuple[str, ...]
    via: Via
    # API tokens: the permission patterns the token was limited to; None means no extra limit.
    scopes: tuple[str, ...] | None = None
    # The account's role requires 2FA and this session has not completed it: only
    # enrolment and reading oneself are allowed until it has.
    mfa_pending: bool = False
    session_id: uuid.UUID | None = None
    token_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def actor_label(self) -> str:
        return str(self.user_id) if self.user_id else f"host:{self.username}"

    @classmethod
    def host_admin(cls, username: str = "root") -> Principal:
        """The CLI run by the host administrator: acts with the `admin` role's permissions."""
        return cls(user_id=None, username=username, roles=("admin",), via="host")
