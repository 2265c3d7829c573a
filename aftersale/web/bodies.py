"""Reading a request body with a size limit, for endpoints that need the raw bytes."""

from __future__ import annotations

from fastapi import Request


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The raw body, or None once it passes ``limit``: refused on a declared Content-Length,
    and otherwise as soon as the stream passes it, not after buffering all of it."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
