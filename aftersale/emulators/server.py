"""Provider emulators: small HTTP servers on 127.0.0.1 that the official clients talk to.

Each emulator records every request and answers like the provider, unless a test has queued
scripted replies (an error, a rate limit, a delay longer than the client's timeout), which
are used first, one per request, whatever the request is::

    with SendGridEmulator(api_key="SG.key") as sendgrid:
        sendgrid.enqueue(Reply(429, headers={"Retry-After": "2"}))
        ...  # send with base URL sendgrid.base_url
        assert sendgrid.requests[0].json["subject"] == "Hello"

A test can also hold answers back: after ``hold()``, each request is handled as usual (an
accepted message is recorded) but its answer waits until ``release()`` or ``stop()``, so a
test can stop a sender while the provider has accepted a message that the sender has not
heard of. ``wait_for(...)`` waits on a condition of the emulator's state. ``latency`` makes
a slow provider: every answer comes that many seconds after the request was handled.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Recorded:
    """One request as it arrived. Header names are lower-cased."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def form(self) -> dict[str, list[str]]:
        """The form fields, each with every value sent (``MediaUrl`` may repeat)."""
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)

    def field(self, name: str) -> str | None:
        values = self.form.get(name)
        return values[0] if values else None


@dataclass(frozen=True)
class Reply:
    """An answer: a dict/list body is sent as JSON, bytes as they are, None as an empty body.
    ``delay`` holds the answer back (longer than the client's timeout makes it time out)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class Emulator:
    """A threaded HTTP server that records requests and answers through ``respond``."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._open = threading.Event()  # answers go out while set
        self._open.set()
        self._hold_after = 0
        self.held = 0  # answers held back so far
        self.latency = 0.0  # seconds before each answer (a slow provider)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- what a provider emulator implements -------------------------------------------------
    def respond(self, request: Recorded) -> Reply:
        raise NotImplementedError

    # -- scripting ---------------------------------------------------------------------------
    def enqueue(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, before normal behaviour."""
        with self._lock:
            self._script.extend(replies)

    def hold(self, after: int = 0) -> None:
        """Hold back the answers to requests after the next ``after`` (they are still handled)."""
        with self._lock:
            self._hold_after = len(self.requests) + after
            self._open.clear()

    def release(self) -> None:
        """Send the held answers (to whoever still listens) and answer at once again."""
        self._open.set()

    def wait_for(self, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait until ``condition()`` (called under the emulator's lock) holds; fail after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{type(self).__name__}: condition not met in {timeout} s")
                self._changed.wait(min(left, 0.5))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        emulator = self

        class Handler(_Handler):
            pass

        Handler.emulator = emulator
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{type(self).__name__}:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering; the port then refuses connections. ``start()`` reopens the same port."""
        self._stopping.set()  # wakes delayed replies
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.drop_connections()  # kept-alive ones would otherwise still answer
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- called by the handler ---------------------------------------------------------------
    def _answer(self, request: Recorded) -> tuple[Reply, bool]:
        """The reply, and whether to hold it back."""
        with self._lock:
            self.requests.append(request)
            held = not self._open.is_set() and len(self.requests) > self._hold_after
            scripted = self._script.pop(0) if self._script else None
            reply = scripted or self.respond(request)
            self.held += held
            self._changed.notify_all()
        return reply, held

    def _wait_open(self) -> bool:
        """Wait until answers may go out; False if the emulator stops first."""
        while not self._open.wait(0.05):
            if self._stopping.is_set():
                return False
        return not self._stopping.is_set()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 resets connections when many senders connect at
    # once (several dispatcher processes, each sending concurrently).
    request_queue_size = 256

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self._connections_lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout) leaves a broken pipe: expected here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle's algorithm the body waited ~40 ms
    # for the client's delayed ACK, on every reply that has one.
    disable_nagle_algorithm = True
    timeout = 10  # an idle kept-alive connection ends its thread after this
    emulator: Emulator

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = Recorded(self.command, parts.path, parse_qs(parts.query),
                           {k.lower(): v for k, v in self.headers.items()}, body)
        reply, held = self.emulator._answer(request)
        if held and not self.emulator._wait_open():
            return
        delay = reply.delay or self.emulator.latency
        if delay and self.emulator._stopping.wait(delay):
            return
        if isinstance(reply.body, bytes):
            payload, content_type = reply.body, "application/octet-stream"
        elif reply.body is None:
            payload, content_type = b"", None
        else:
            payload, content_type = json.dumps(reply.body).encode(), "application/json"
        self.send_response(reply.status)
        headers = {k.lower(): v for k, v in reply.headers.items()}
        if content_type and "content-type" not in headers:
            self.send_header("Content-Type", content_type)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle
