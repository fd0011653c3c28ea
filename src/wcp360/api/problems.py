"""RFC 9457 problem details: the only error body the API ever sends."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"


def problem(status: int, code: str, title: str, detail: str | None = None, **extra: Any) -> JSONResponse:
    from wcp360.request_context import current_request

    body: dict[str, Any] = {"type": f"urn:wcp360:problem:{code}", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    request_id = current_request().request_id
    if request_id:
        body["request_id"] = request_id
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {"WWW-Authenticate": 'Bearer realm="wcp360"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)
