"""What the local Google and Microsoft stand-ins share: a threaded HTTP(S) server on 127.0.0.1 answering JSON."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs

HOST = "127.0.0.1"


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler that knows its stand-in (`owner`), reads forms and answers JSON, quietly."""

    owner: Any
    disable_nagle_algorithm = True  # headers and body go in two writes: without this, each answer waits ~40 ms

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body().decode()).items()}

    def reply(self, status: int, answer: dict[str, Any]) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class LocalServer:
    """Serves `handler` (a JsonHandler subclass) in a thread; use as a context manager; `url` once started."""

    handler: type[JsonHandler] = JsonHandler
    _server: ThreadingHTTPServer | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server TLS context to speak HTTPS, or None for plain HTTP."""
        return None

    def __enter__(self) -> Self:
        self._server = ThreadingHTTPServer((HOST, 0), type("Handler", (self.handler,), {"owner": self}))
        context = self.ssl_context()
        if context is not None:
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._https = context is not None
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first (use it as a context manager)"
        return f"{'https' if self._https else 'http'}://{HOST}:{self._server.server_address[1]}"
