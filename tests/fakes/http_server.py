"""A loopback HTTP server that plays one provider: it records each request, checks it, and answers.

Each fake subclasses `FakeProvider` and implements `answer(request) -> Reply`, returning the
provider's documented error when the request breaks the documented rules, so an adapter that builds
a wrong request fails its test instead of passing against a lenient mock. Tests can queue replies
(`queue_reply`) to play outages (401, 429 with Retry-After, 500) for the next N requests.

HTTP/1.1 with keep-alive, so clients with a connection pool (httpx) are exercised as in production.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    client: tuple[str, int] = ("", 0)  # the client's address: tells kept-alive connections apart

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, **headers: str) -> Reply:
        data = json.dumps(payload).encode()
        return cls(status, data, {"Content-Type": "application/json", **headers})


class FakeProvider:
    """Base class: start()/stop() or `with`, `url`, `requests`, `queue_reply()`."""

    record_requests = True  # the benchmark turns this off to keep memory flat

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.rejections: list[tuple[Recorded, Reply]] = []  # requests our checks refused
        self._queued: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- to implement ------------------------------------------------------------------------------

    def answer(self, request: Recorded) -> Reply:
        raise NotImplementedError

    # -- control -----------------------------------------------------------------------------------

    def queue_reply(self, reply: Reply, times: int = 1) -> None:
        """Answer the next `times` requests with `reply` (after recording them, before checks)."""
        with self._lock:
            self._queued.extend([reply] * times)

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeProvider:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in two writes; with Nagle on, a keep-alive client waits for
            # the delayed ACK (~40 ms) before the body arrives. Real servers do not behave so.
            disable_nagle_algorithm = True

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Recorded(
                    self.command,
                    self.path,
                    {name.lower(): value for name, value in self.headers.items()},
                    body,
                    tuple(self.client_address[:2]),
                )
                reply = fake._dispatch(request)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if reply.body:
                    self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------------

    def _dispatch(self, request: Recorded) -> Reply:
        with self._lock:
            if self.record_requests:
                self.requests.append(request)
            queued = self._queued.popleft() if self._queued else None
        if queued is not None:
            return queued
        try:
            reply = self.answer(request)
        except Exception as exc:  # a bug in the fake must show up as a 500, not a hung client
            reply = Reply.json(500, {"fake_error": repr(exc)})
        if reply.status >= 400:
            with self._lock:
                self.rejections.append((request, reply))
        return reply


def bearer(request: Recorded) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token if scheme == "Bearer" and token else None


def json_body(request: Recorded) -> tuple[Any, str | None]:
    """(parsed JSON, None) or (None, reason) when the body is not a JSON request."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        return None, f"Content-Type must be application/json, got {media or 'none'}"
    try:
        return json.loads(request.body), None
    except ValueError as exc:
        return None, f"body is not JSON: {exc}"
