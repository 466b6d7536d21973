"""Liveness (``/healthz``) and readiness (``/readyz``) over plain HTTP.

Live while the operator's event loop is alive (a heartbeat it refreshes); ready once kopf has
started its watches (the startup handlers ran and the first heartbeat arrived).
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Health:
    def __init__(self, stale_after: float = 60.0) -> None:
        self.ready = threading.Event()
        self.last_beat = time.monotonic()
        self.stale_after = stale_after
        self._server: ThreadingHTTPServer | None = None

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def live(self) -> bool:
        return time.monotonic() - self.last_beat < self.stale_after

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        if not port:
            return
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/healthz") or self.path.startswith("/livez"):
                    ok = health.live()
                elif self.path.startswith("/readyz"):
                    ok = health.ready.is_set() and health.live()
                else:
                    self.send_error(404)
                    return
                body = b"ok\n" if ok else b"not ok\n"
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((addr, port), Handler)
        threading.Thread(target=self._server.serve_forever, name="health", daemon=True).start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
