"""The one exception handler: FlowLoom errors become JSON with the right status.

Every error response has the shape ``{"error": {"code", "message", "hint"}}``. A
FlowLoomError says what to do in its message and hint, so those go to the client as
they are; anything unexpected is a bug: the client gets a generic 500 and the trace
goes to the server log only.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from flowloom.auth.scim.schemas import ERROR_SCHEMA
from flowloom.auth.throttle import LoginThrottledError
from flowloom.errors import (
    AuthError,
    BodyTooLargeError,
    ConflictError,
    FlowLoomError,
    InputError,
    KeyMissingError,
    NotFoundError,
    PermissionDeniedError,
    RemoteError,
    StoreError,
    VerificationError,
)

__all__ = [
    "ERROR_RESPONSES",
    "ErrorBody",
    "ErrorDetail",
    "RequestTooLargeError",
    "error_response",
    "install_error_handlers",
    "retry_after_headers",
    "status_of",
]

_log = logging.getLogger("flowloom.server")
SCIM_PATH = "/scim/v2/"
SCIM_MEDIA_TYPE = "application/scim+json"


class ErrorDetail(BaseModel):
    code: str
    message: str
    hint: str | None = None


class ErrorBody(BaseModel):
    """Every error the API returns."""

    error: ErrorDetail


class RequestTooLargeError(InputError):
    """A request body over the server's limit; HTTP 413."""


# Most specific first: the first match wins.
_STATUS: tuple[tuple[type[FlowLoomError], int, str], ...] = (
    (ConflictError, 409, "conflict"),
    (RequestTooLargeError, 413, "too_large"),
    (BodyTooLargeError, 413, "too_large"),
    (InputError, 400, "bad_request"),
    (NotFoundError, 404, "not_found"),
    (LoginThrottledError, 429, "too_many_requests"),
    (AuthError, 401, "unauthorized"),
    (PermissionDeniedError, 403, "forbidden"),
    (StoreError, 503, "unavailable"),
    (KeyMissingError, 503, "key_missing"),
    (RemoteError, 502, "remote_error"),
    (VerificationError, 409, "verification_failed"),
)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    503: "unavailable",
}

_DESCRIPTIONS = {
    400: "The request is malformed or refers to something FlowLoom cannot accept.",
    401: "No valid credentials (API key or session).",
    403: "The credentials do not allow this action on this project.",
    404: "No such project, entry or record.",
    409: "The request clashes with the current state.",
    413: "The request body is over the server's limit.",
    422: "The request does not match the schema.",
    429: "Sign-in throttled after failed attempts; retry after Retry-After seconds.",
    503: "The database cannot be reached, the log's signing key is not in the server's home,"
    " or the same append is in progress; retry later.",
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text} for status, text in _DESCRIPTIONS.items()
}
"""The error responses every API route declares in the OpenAPI document."""


def status_of(exc: FlowLoomError) -> tuple[int, str]:
    for cls, status, code in _STATUS:
        if isinstance(exc, cls):
            return status, code
    return 500, "internal"


def retry_after_headers(exc: FlowLoomError) -> dict[str, str] | None:
    """The Retry-After header for an error that says when to come back, else None."""
    if isinstance(exc, LoginThrottledError):
        return {"Retry-After": str(exc.retry_after)}
    if status_of(exc)[0] == 503:
        return {"Retry-After": "5"}
    return None


def error_response(
    status: int,
    code: str,
    message: str,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "hint": hint}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _flowloom_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FlowLoomError)
    status, code = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else retry_after_headers(exc)
    if status == 503:
        _log.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc)
    return error_response(status, code, exc.message, exc.hint, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            detail = (error.get("ctx") or {}).get("error", "")
            return error_response(
                400,
                "bad_request",
                f"the request body is not valid JSON ({detail})".replace(" ()", ""),
                "send a JSON object with Content-Type: application/json",
            )
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    message = "the request does not match the API: " + "; ".join(problems)
    return error_response(422, "invalid", message, "see /openapi.json for the request schema")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODES.get(exc.status_code, "error")
    message = str(exc.detail) if exc.detail else code.replace("_", " ")
    headers = dict(exc.headers) if exc.headers else None
    if request.url.path.startswith(SCIM_PATH):
        # A SCIM client reads SCIM's error shape, also for a path or method that no
        # route serves (RFC 7644 §3.12).
        scim = {"schemas": [ERROR_SCHEMA], "status": str(exc.status_code), "detail": message}
        return JSONResponse(
            scim, status_code=exc.status_code, headers=headers, media_type=SCIM_MEDIA_TYPE
        )
    return error_response(exc.status_code, code, message, None, headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    _log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(
        500, "internal", "internal server error", "the server log has the details"
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(FlowLoomError, _flowloom_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
