"""/api/v1/users: account administration (admins, and resellers for the accounts they own)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from wcp360.api.deps import PrincipalDep, RuntimeDep, WindowDep
from wcp360.api.paths import API_PREFIX
from wcp360.api.schemas import PasswordResetBody, UserCreateBody, UserUpdateBody
from wcp360.identity.views import UserView
from wcp360.views import Page

router = APIRouter(prefix=f"{API_PREFIX}/users", tags=["users"])


@router.post("", status_code=201)
def create_user(body: UserCreateBody, actor: PrincipalDep, rt: RuntimeDep) -> UserView:
    return rt.users.create(actor, body.username, body.email, body.password, body.roles)


@router.get("")
def list_users(
    actor: PrincipalDep,
    rt: RuntimeDep,
    window: WindowDep,
    status: Literal["active", "disabled"] | None = None,
    role: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[UserView]:
    items, total = rt.users.list_users(actor, window.limit, window.offset, status, role)
    return Page[UserView](items=items, total=total, limit=window.limit, offset=window.offset)


@router.get("/{user_id}")
def get_user(user_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> UserView:
    return rt.users.get(actor, user_id)


@router.patch("/{user_id}")
def update_user(user_id: uuid.UUID, body: UserUpdateBody, actor: PrincipalDep, rt: RuntimeDep) -> UserView:
    return rt.users.update(actor, user_id, email=body.email)


@router.delete("/{user_id}", status_code=204)
def delete_user(user_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> Response:
    rt.users.delete(actor, user_id)
    return Response(status_code=204)


@router.put("/{user_id}/roles/{role}")
def add_role(user_id: uuid.UUID, role: str, actor: PrincipalDep, rt: RuntimeDep) -> UserView:
    return rt.users.change_roles(actor, user_id, add=[role])


@router.delete("/{user_id}/roles/{role}")
def remove_role(user_id: uuid.UUID, role: str, actor: PrincipalDep, rt: RuntimeDep) -> UserView:
    return rt.users.change_roles(actor, user_id, remove=[role])


@router.post("/{user_id}/disable")
def disable_user(user_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> UserView:
    return rt.users.set_status(actor, user_id, "disabled")


@router.post("/{user_id}/enable")
def enable_user(user_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> UserView:
    return rt.users.set_status(actor, user_id, "active")


@router.post("/{user_id}/reset-password")
def reset_password(user_id: uuid.UUID, body: PasswordResetBody, actor: PrincipalDep, rt: RuntimeDep) -> UserView:
    return rt.users.reset_password(actor, user_id, body.password)


@router.post("/{user_id}/reset-2fa")
def reset_2fa(user_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> UserView:
    return rt.users.reset_two_factor(actor, user_id)
