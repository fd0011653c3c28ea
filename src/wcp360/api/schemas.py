"""Request bodies: strict JSON (seed 001): unknown fields rejected, no type coercion."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Password = Annotated[str, Field(min_length=1, max_length=1024)]
# No control characters (a NUL reached PostgreSQL, which refuses it, as a 500; a newline or escape
# has no place in a name that ends up in the trail and on the admin's terminal).
SignInName = Annotated[str, Field(min_length=1, max_length=254, pattern=r"^[^\x00-\x1f\x7f]+$")]
Name = Annotated[str, Field(min_length=1, max_length=64)]
RoleName = Annotated[str, Field(min_length=1, max_length=64)]


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LoginBody(StrictBody):
    username: SignInName
    password: Password
    totp: Annotated[str, Field(min_length=6, max_length=32)] | None = None
    # A password provider's name (`local`, `ldap`); absent: local when offered, else the directory.
    provider: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class RefreshBody(StrictBody):
    refresh_token: Annotated[str, Field(min_length=16, max_length=256)]


class PasswordChangeBody(StrictBody):
    current_password: Password
    new_password: Password


class TotpCodeBody(StrictBody):
    code: Annotated[str, Field(min_length=6, max_length=32)]


class TotpDisableBody(StrictBody):
    password: Password
    code: Annotated[str, Field(min_length=6, max_length=32)]


class ApiTokenCreateBody(StrictBody):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    scopes: Annotated[list[Annotated[str, Field(max_length=64)]], Field(min_length=1, max_length=64)]
    expires_in_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    allowed_cidrs: Annotated[list[Annotated[str, Field(max_length=43)]], Field(max_length=32)] = []


class UserCreateBody(StrictBody):
    username: Name
    email: Annotated[str, Field(min_length=3, max_length=254)]
    password: Password
    roles: Annotated[list[RoleName], Field(min_length=1, max_length=16)]


class UserUpdateBody(StrictBody):
    email: Annotated[str, Field(min_length=3, max_length=254)] | None = None


class PasswordResetBody(StrictBody):
    password: Password


class ShareBody(StrictBody):
    """Share a module or a snapshot: with one user (username or id) or one role; the service
    checks the action against what the resource type allows."""

    action: Annotated[str, Field(min_length=1, max_length=16)]
    user: Annotated[str | None, Field(max_length=64)] = None
    role: Annotated[str | None, Field(max_length=64)] = None
