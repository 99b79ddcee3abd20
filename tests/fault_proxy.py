"""A small fault-injecting HTTP proxy in front of an S3 server, for retry tests.

Every request is forwarded to the upstream server unless the plan names a
fault for it. ``plan(method, key, n)`` sees the HTTP method, the object path
and how many requests of that method that path has had (from 1), and
returns None or one of: ``"500"``, ``"503"`` (SlowDown), ``"reset"`` (the
connection is dropped with no response) and ``"truncate"`` (the response
promises the whole body and sends half of it).
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

Plan = Callable[[str, str, int], str | None]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}
ERROR_BODY = b"<?xml version='1.0'?><Error><Code>{code}</Code><Message>injected</Message></Error>"


class FaultProxy:
    def __init__(self, upstream: str, plan: Plan) -> None:
        self.upstream = urlsplit(upstream)
        self.plan = plan
        self.requests: Counter[tuple[str, str]] = Counter()
        self.bytes_sent: Counter[str] = Counter()
        self.faults: list[tuple[str, str, int, str]] = []
        self.lock = threading.Lock()

    def count(self, method: str, key: str) -> tuple[int, str | None]:
        with self.lock:
            self.requests[(method, key)] += 1
            n = self.requests[(method, key)]
            fault = self.plan(method, key, n)
            if fault:
                self.faults.append((method, key, n, fault))
        return n, fault


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _any(self) -> None:
            key = urlsplit(self.path).path
            _, fault = proxy.count(self.command, key)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if fault == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
                return
            if fault in ("500", "503"):
                self._error(int(fault))
                return
            status, headers, data = self._forward(body)
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            sent = data[: len(data) // 2] if fault == "truncate" else data
            if self.command != "HEAD":
                self.wfile.write(sent)
                with proxy.lock:
                    proxy.bytes_sent[key] += len(sent)
            if fault == "truncate":
                self.close_connection = True

        def _error(self, status: int) -> None:
            code = "SlowDown" if status == 503 else "InternalError"
            data = ERROR_BODY.replace(b"{code}", code.encode())
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _forward(self, body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
            conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                return response.status, response.getheaders(), response.read()
            finally:
                conn.close()

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any  # noqa: N815 (http.server names)

    return Handler


@contextmanager
def fault_proxy(upstream: str, plan: Plan) -> Iterator[tuple[str, FaultProxy]]:
    """Run a proxy on a free 127.0.0.1 port; yields (endpoint URL, proxy with its counters)."""
    proxy = FaultProxy(upstream, plan)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="fault-proxy", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
