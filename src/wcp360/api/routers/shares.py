"""/api/v1/<resources>/{id}/shares: one set of sharing routes for every shareable resource type."""

# No `from __future__ import annotations`: the routes' parameter types are made per call (the path
# parameter's alias), so FastAPI must receive them evaluated, not as names it cannot resolve.
import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from wcp360.api.deps import PrincipalDep, RuntimeDep
from wcp360.api.schemas import ShareBody
from wcp360.authz.owned import Owned
from wcp360.authz.views import ShareView
from wcp360.runtime import Runtime
from wcp360.views import Items


def add_share_routes(router: APIRouter, id_name: str, owned: Callable[[Runtime], Owned[Any]]) -> None:
    """Share, list the shares of, and unshare the resource named by the path parameter `id_name`."""
    RowId = Annotated[uuid.UUID, Path(alias=id_name)]

    @router.post(f"/{{{id_name}}}/shares", status_code=201)
    def share(row_id: RowId, body: ShareBody, actor: PrincipalDep, rt: RuntimeDep) -> ShareView:
        return owned(rt).share(actor, row_id, body.action, body.user, body.role)

    @router.get(f"/{{{id_name}}}/shares")
    def list_shares(row_id: RowId, actor: PrincipalDep, rt: RuntimeDep) -> Items[ShareView]:
        return Items[ShareView](items=owned(rt).shares(actor, row_id))

    @router.delete(f"/{{{id_name}}}/shares/{{share_id}}", status_code=204)
    def unshare(row_id: RowId, share_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> Response:
        owned(rt).unshare(actor, row_id, share_id)
        return Response(status_code=204)
