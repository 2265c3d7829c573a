"""FastAPI app: ``POST /events`` (bearer token) and ``GET /healthz``.

The guard runs before the body is read into the inbox; a rejected request writes nothing. A
batch is validated whole, like ``aftersale ingest``: one bad event answers 422 with every reason
and stores nothing, so a client can fix and resend the same batch (ids make the resend
harmless); with ``?skip_invalid=true`` the valid events are stored and the bad ones listed.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from aftersale.config import Settings
from aftersale.core.errors import EventError
from aftersale.core.events import parse_event
from aftersale.intake import jsontext
from aftersale.intake.inbox import store_events
from aftersale.intake.notify import inbox_received
from aftersale.pipeline.runtime import Runtime, open_runtime
from aftersale.web.aftership_webhook import aftership_router
from aftersale.web.bodies import read_limited
from aftersale.web.feedback import feedback_router
from aftersale.web.shopify_webhook import shopify_router
from aftersale.web.surveys import surveys_router
from aftersale.web.tracking import tracking_router

MAX_BODY = 5 * 1024 * 1024


def create_app(settings: Settings, rt: Runtime | None = None) -> FastAPI:
    runtime = rt or open_runtime(settings)
    app = FastAPI(title="aftersale", version="0.1.0")

    def _authorized(request: Request) -> bool:
        token = settings.api_token
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if token is None or scheme.lower() != "bearer" or not given:
            return False
        return hmac.compare_digest(given.encode(), token.get_secret_value().encode())

    @app.post("/events", status_code=202)
    async def post_events(request: Request, skip_invalid: str | None = None) -> JSONResponse:
        # skip_invalid is a boolean, read here rather than by FastAPI: its validation would
        # answer 422 before the guard, telling a caller without a token about the endpoint.
        if not _authorized(request):
            return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        skip = _flag(skip_invalid)
        if skip is None:
            return JSONResponse({"error": "skip_invalid must be true or false"}, status_code=422)
        body = await read_limited(request, MAX_BODY)
        if body is None:
            raise HTTPException(413, "body too large; send at most 5 MB per request")
        try:
            data: Any = jsontext.loads(body)
        except jsontext.JSONTextError as exc:
            return JSONResponse({"error": f"body is not JSON we can store: {exc}"}, status_code=400)
        items = data if isinstance(data, list) else [data]
        events, errors = [], []
        for index, item in enumerate(items):
            try:
                events.append(parse_event(item))
            except EventError as exc:
                errors.append({"index": index, "id": item.get("id") if isinstance(item, dict)
                               else None, "error": str(exc)})
        if errors and not skip:
            return JSONResponse({"error": "invalid events; nothing stored", "events": errors},
                                status_code=422)
        with runtime.factory() as session, session.begin():
            result = store_events(session, events, "api", runtime.now())
        inbox_received(settings, result.stored, "api")
        reply: dict[str, Any] = {"received": result.received, "stored": result.stored,
                                 "duplicates": result.duplicates}
        if errors:
            reply["rejected"] = errors
        return JSONResponse(reply, status_code=202)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        try:
            with runtime.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"
            return JSONResponse({"status": "error", "database": type(exc).__name__},
                                status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    app.include_router(feedback_router(settings, runtime))
    app.include_router(shopify_router(settings, runtime))
    app.include_router(aftership_router(settings, runtime))
    app.include_router(surveys_router(settings, runtime))
    app.include_router(tracking_router(settings, runtime))
    return app


def _flag(value: str | None) -> bool | None:
    """A query flag as FastAPI reads a bool (true/false, 1/0, yes/no, on/off); None if neither."""
    if value is None:
        return False
    return {"true": True, "1": True, "yes": True, "on": True, "t": True, "y": True,
            "false": False, "0": False, "no": False, "off": False, "f": False,
            "n": False}.get(value.strip().lower())
