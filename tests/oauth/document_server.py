"""A tiny HTTP server on 127.0.0.1 in a thread that serves client metadata documents (and bad
answers: slow, oversized, redirects) to the fetcher under test, counting each request."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    """What the server sends for one path. `chunks` are written in turn, `pause` seconds apart
    (a slow server); without `content_length` the body ends when the connection closes."""

    chunks: tuple[bytes, ...]
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    content_length: bool = True
    pause: float = 0.0


class DocumentServer:
    """Serves `Answer`s by path on `origin` (http://127.0.0.1:PORT); `hits[path]` counts the
    requests and `hosts` records each request's Host header."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.hits: Counter[str] = Counter()
        self.hosts: list[str] = []
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.origin = f"http://127.0.0.1:{self.port}"

    def url(self, path: str, *, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def serve(self, path: str, answer: Answer) -> str:
        self.answers[path] = answer
        return self.url(path)

    def serve_json(self, path: str, document: Any, **options: Any) -> None:
        self.answers[path] = Answer(chunks=(json.dumps(document).encode(),), **options)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] += 1
                server.hosts.append(self.headers.get("Host", ""))
                answer = server.answers.get(self.path)
                if answer is None:
                    self.send_error(404)
                    return
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if answer.content_length:
                    self.send_header("Content-Length", str(sum(map(len, answer.chunks))))
                self.end_headers()
                try:
                    for chunk in answer.chunks:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        if answer.pause and server._stop.wait(answer.pause):
                            return
                except ConnectionError:
                    return  # the fetcher hung up (over its size or time limit)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler

    @contextmanager
    def running(self) -> Iterator[DocumentServer]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._server.shutdown()
            self._server.server_close()
            thread.join()
