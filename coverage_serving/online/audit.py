"""One audit line per request: who called, which model and version scored how many rows, the
status and the latency. Never feature values, keys or credentials: the line is built only from
the fields below, which the routes fill in as they learn them."""

import json
import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("coverage_serving.audit")

# Probes answer many times a minute and score nothing.
PROBES = frozenset(
    {"/healthz", "/readyz", "/ping", "/health", "/v2/health/live", "/v2/health/ready"}
)


def record(request: Request, **fields: Any) -> None:
    """Add `fields` (client, model, version, rows, request_id) to the request's audit line."""
    request.scope.setdefault("state", {}).setdefault("audit", {}).update(fields)


class AuditLog:
    """ASGI middleware writing the audit line once the response status is known."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBES:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            fields = scope.get("state", {}).get("audit", {})
            line = {
                "client": fields.get("client"),
                "method": scope["method"],
                "path": scope["path"],
                "model": fields.get("model"),
                "version": fields.get("version"),
                "rows": fields.get("rows"),
                "status": status,
                "latency_ms": round(1000 * (time.perf_counter() - started), 3),
                "request_id": fields.get("request_id"),
            }
            log.info(json.dumps(line))
