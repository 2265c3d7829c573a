"""Reading a request body with a size limit, for endpoints that need the raw bytes."""

from __future__ import annotations

from urllib.parse import parse_qsl

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


async def read_form(request: Request, limit: int) -> dict[str, str] | None:
    """A url-encoded form as a dict (None past ``limit``). Bytes that are not UTF-8 become
    replacement characters rather than an error: a form is what a person typed."""
    body = await read_limited(request, limit)
    if body is None:
        return None
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True,
                          encoding="utf-8", errors="replace"))
