"""Refuse a request body over online.max_body_bytes, or one of undeclared length, before a byte
of it is read: Starlette would otherwise read any body it is sent."""

import json

from starlette.types import ASGIApp, Receive, Scope, Send

WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class BodyLimit:
    """Pure ASGI middleware: Starlette's BaseHTTPMiddleware costs a task and a stream per
    request."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(scope) if scope["type"] == "http" else None
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, body = refusal
        content = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(content)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})

    def _refusal(self, scope: Scope) -> tuple[int, dict[str, str]] | None:
        if scope["method"] not in WITH_BODY:
            return None
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is None:
            return 411, {"error": "LengthRequired", "message": "send Content-Length"}
        if not declared.isdigit() or int(declared) > self.limit:
            return 413, {
                "error": "BodyTooLarge",
                "message": f"request body of {declared.decode(errors='replace')} bytes; at most "
                f"{self.limit} (online.max_body_bytes)",
            }
        return None
