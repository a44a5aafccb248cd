"""BodyLimit: refuse request bodies over API_MAX_BODY_MB with 413, before they are read into memory.

Neither uvicorn nor Starlette bounds a body, and a request is parsed whole before any check of ours runs.
A declared Content-Length over the limit is refused at once; a chunked body is counted as it arrives
and refused as soon as it passes the limit.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException

from .errors import error_body


class BodyLimit:
    """Pure ASGI middleware (a BaseHTTPMiddleware would hide client disconnects from the routes)."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def message(self) -> str:
        return (f"the request body is larger than this server takes ({self.max_bytes // (1024 * 1024)} MB, "
                "API_MAX_BODY_MB); send smaller images or a shorter conversation")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0

        async def counted() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self.message())  # answered by the app's error handler
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps(error_body(413, self.message())).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
