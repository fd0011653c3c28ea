"""Exception handlers: every failure becomes problem+json, never a stack trace or internals.

Unexpected exceptions are answered by RequestContextMiddleware (see there for why).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from wcp360.api.problems import problem
from wcp360.errors import WcpError

_HTTP_CODES = {
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Only where and what: the offending input is never echoed (it may be a password).
    return [
        {"loc": [str(p) for p in err.get("loc", ())], "msg": err.get("msg", "invalid"), "type": err.get("type")}
        for err in exc.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(WcpError)
    async def _domain(_: Request, exc: WcpError) -> Response:
        extra = {k: v for k, v in exc.extra.items() if k in {"violations"}}
        response = problem(exc.status, exc.code, exc.title, exc.detail, **extra)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        errors = _validation_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            return problem(400, "malformed-json", "Malformed JSON", "the request body is not valid JSON")
        return problem(422, "invalid-input", "Invalid input", "the request does not match the schema", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        code, title = _HTTP_CODES.get(exc.status_code, ("http-error", "HTTP error"))
        return problem(exc.status_code, code, title, exc.detail if isinstance(exc.detail, str) else None)
