"""A typed view sent as it is: pydantic's serializer writes the JSON in one call. The hot routes
(GET /auth/me, execute) return it so their answer is not validated again on the way out (that
cost 0.07 ms of a 0.65 ms /auth/me, benchmarks/README.md); the route still declares the view as
its response model, so the OpenAPI document and the fuzz test's conformance check see it."""

from __future__ import annotations

from starlette.background import BackgroundTask
from starlette.responses import Response

from wcp360.views import View


class ViewResponse(Response):
    media_type = "application/json"

    def __init__(self, view: View, status_code: int = 200, background: BackgroundTask | None = None) -> None:
        super().__init__(view.__pydantic_serializer__.to_json(view), status_code, background=background)
