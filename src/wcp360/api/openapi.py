"""The OpenAPI document at /api/v1/openapi.json: every operation's 2xx body comes from its
response model; every operation also lists the problem+json errors any route can answer (the
defense answers 403/429 before a route runs, the body guard 413/415, the policy 401/403)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict

from wcp360.api.problems import PROBLEM_JSON


class Problem(BaseModel):
    """RFC 9457 problem details, the only error body the API sends."""

    model_config = ConfigDict(extra="allow")  # e.g. `errors` for invalid fields, `limit`

    type: str  # urn:wcp360:problem:<code>
    title: str
    status: int
    detail: str | None = None
    request_id: str | None = None


ERRORS = {
    "400": "Bad request",
    "401": "Authentication required (or a second factor)",
    "403": "Forbidden: by the policy, or the address is blocked",
    "404": "Not found (or not yours to see)",
    "409": "Conflict with the resource's state",
    "413": "Body too large (the limit is named)",
    "415": "Unsupported media type",
    "422": "Invalid input (each invalid field is named)",
    "429": "Too many requests (Retry-After; the limit is named)",
    "503": "Busy (Retry-After)",
}


def install_openapi(app: FastAPI) -> None:
    def document() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema()
        # FastAPI's own 422 body is not what the API sends: its error handler answers problem+json.
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        error = {"content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.setdefault("responses", {})
                for code, description in ERRORS.items():
                    responses[code] = {"description": description, **error}
        app.openapi_schema = schema
        return schema

    app.openapi = document  # type: ignore[method-assign]
