"""/api/v1/ids/blocks: bans, for administrators (`system:*`, or `bans:read|create|delete`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import Field

from wcp360.api.deps import PrincipalDep, RuntimeDep
from wcp360.api.paths import API_PREFIX
from wcp360.api.schemas import StrictBody
from wcp360.config.units import parse_duration
from wcp360.defense.views import BanView
from wcp360.errors import InvalidInput
from wcp360.views import Items

router = APIRouter(prefix=f"{API_PREFIX}/ids", tags=["ids"])


class BlockBody(StrictBody):
    address: Annotated[str, Field(min_length=2, max_length=43)]
    duration: Annotated[str, Field(max_length=16)] | None = None
    reason: Annotated[str, Field(max_length=256)] = "blocked by an administrator"


@router.get("/blocks")
def list_blocks(actor: PrincipalDep, rt: RuntimeDep) -> Items[BanView]:
    return Items[BanView](items=rt.defense.bans.list(actor))


@router.post("/blocks", status_code=201)
def create_block(body: BlockBody, actor: PrincipalDep, rt: RuntimeDep) -> BanView:
    try:
        duration = parse_duration(body.duration) if body.duration else None
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    return rt.defense.bans.block(actor, body.address, duration, body.reason)


@router.delete("/blocks/{address:path}", status_code=204)
def delete_block(address: str, actor: PrincipalDep, rt: RuntimeDep) -> Response:
    rt.defense.bans.unblock(actor, address)
    return Response(status_code=204)
