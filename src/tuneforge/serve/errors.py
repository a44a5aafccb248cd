"""OpenAI-style error answers: {"error": {"message", "type", "param", "code"}} with the right status.

A mistake in a request is a 4xx that says what to fix; only a bug in tuneforge gives a 500.
"""

from __future__ import annotations

from typing import Any

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
               422: "invalid_request_error", 500: "server_error"}


class APIError(Exception):
    """A request the API refuses, with its HTTP status."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def validation_message(errors: list[dict]) -> tuple[str, str | None]:
    """pydantic's errors -> one readable line (plus the first offending field as `param`)."""
    parts, first = [], None
    for error in errors[:5]:
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        first = first or location or None
        parts.append(f"{location or 'body'}: {error.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more, first


def json_error_message(body: str, error: dict) -> str:
    """FastAPI's json_invalid error (a character offset) -> where an editor shows it: line and column."""
    location = error.get("loc", ())
    offset = location[1] if len(location) > 1 and isinstance(location[1], int) else None
    reason = (error.get("ctx") or {}).get("error") or "invalid JSON"
    if offset is None:
        return f"the request body is not valid JSON ({reason}); send one JSON object"
    line = body.count("\n", 0, offset) + 1
    column = offset - (body.rfind("\n", 0, offset) + 1) + 1
    return f"the request body is not valid JSON: {reason} at line {line}, column {column}; send one JSON object"
