"""Test support: a programmable fake normd on a temp Unix socket (and
optionally 127.0.0.1:0), a fake clock, bounded polling, and key finders.

The fake is http.server's ThreadingHTTPServer bound to AF_UNIX; each test sets
`norm_handler` to shape the answer of POST /norm. Nothing here sleeps to hope:
stalls wait on `release` (set by close()) with a bound.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import shutil
import socket
import socketserver
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Optional

from normd_client import bucket_of

HOLD_MAX_S = 10.0  # the longest any fake stall lasts, whatever the test forgets


def canonical(value) -> bytes:
    """Sorted keys, compact: RFC 8785 for the integers/strings the tests use."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def digest_of(data: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


def answer_ok(h: "Handler", body: bytes) -> None:
    """normd's happy path: canonicalize, gzip, every X-Normd-* header."""
    try:
        canon = canonical(json.loads(body))
    except ValueError:
        h.problem(400, "invalid_json")
        return
    out = gzip.compress(canon, 1)
    h.send_response(200)
    h.send_header("Content-Type", "application/octet-stream")
    h.send_header("Content-Length", str(len(out)))
    h.send_header("X-Normd-Encoding", "gzip")
    h.send_header("X-Normd-Input-Bytes", str(len(body)))
    h.send_header("X-Normd-Canonical-Bytes", str(len(canon)))
    h.send_header("X-Normd-Output-Bytes", str(len(out)))
    h.send_header("X-Normd-Digest", digest_of(canon))
    h.send_header("X-Request-Id", h.headers.get("X-Request-Id") or "fake-rid")
    h.end_headers()
    h.wfile.write(out)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as normd
    server: "_Server"

    def log_message(self, *args) -> None:  # AF_UNIX has no client address to log
        pass

    def problem(self, status: int, code: str, headers: Optional[Dict[str, str]] = None,
                extra: Optional[dict] = None) -> None:
        doc = {"type": f"urn:normd:problem:{code}", "title": code, "status": status,
               "detail": f"fake {code}", "code": code, **(extra or {})}
        raw = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def send_json(self, status: int, doc) -> None:
        raw = json.dumps(doc).encode() if not isinstance(doc, bytes) else doc
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def hold(self) -> None:
        """Stall until the test (or close()) releases the fake."""
        self.server.fake.release.wait(HOLD_MAX_S)

    def _dispatch(self) -> None:
        fake = self.server.fake
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        path, _, query = self.path.partition("?")
        with fake.lock:
            fake.requests.append({"method": self.command, "path": path, "query": query,
                                  "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
        if self.command == "GET" and path == "/flags":
            with fake.lock:
                fake.flags_requests += 1
            if fake.flags_handler:
                fake.flags_handler(self)
            else:
                self.send_json(200, {"version": fake.flags_version, "mtime": None, "source": "fake",
                                     "flags": fake.flags, "last_error": None})
            return
        if self.command == "POST" and path == "/norm":
            with fake.lock:
                fake.norm_requests += 1
            fake.norm_handler(self, body)
            return
        self.problem(404, "not_found")

    do_GET = _dispatch
    do_POST = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: "FakeNormd"

    def get_request(self):
        conn, addr = self.socket.accept()
        with self.fake.lock:
            self.fake.connections += 1
            self.fake.open_socks.append(conn)
        return conn, addr or ("unix", 0)


class _UnixServer(_Server):
    address_family = socket.AF_UNIX

    def server_bind(self) -> None:
        # HTTPServer.server_bind wants (host, port); a Unix path has neither.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "localhost", 0


class FakeNormd:
    def __init__(self, tcp: bool = False) -> None:
        self.dir = tempfile.mkdtemp(prefix="normd-py-fake-")
        self.socket_path = os.path.join(self.dir, "normd.sock")
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.requests: List[dict] = []
        self.connections = 0
        self.open_socks: List[socket.socket] = []
        self.norm_requests = 0
        self.flags_requests = 0
        self.flags: dict = {"norm": {"enabled": True, "rollout_percent": 100}}
        self.flags_version = "v1"
        self.flags_handler: Optional[Callable[[Handler], None]] = None
        self.norm_handler: Callable[[Handler, bytes], None] = answer_ok
        self.servers: List[_Server] = []
        self.threads: List[threading.Thread] = []
        self.port = 0
        self._start(_UnixServer(self.socket_path, Handler))
        if tcp:
            srv = _Server(("127.0.0.1", 0), Handler)
            self.port = srv.server_address[1]
            self._start(srv)

    def _start(self, srv: _Server) -> None:
        srv.fake = self
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        t.start()
        self.servers.append(srv)
        self.threads.append(t)

    def set_flag(self, norm: Optional[dict], version: str = "v2") -> None:
        self.flags = {} if norm is None else {"norm": norm}
        self.flags_version = version

    def norm_paths(self) -> List[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == "/norm"]

    def close(self) -> None:
        self.release.set()
        for s in self.servers:
            s.shutdown()
            s.server_close()
        with self.lock:
            socks = list(self.open_socks)
        for c in socks:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        for t in self.threads:
            t.join(5)
        shutil.rmtree(self.dir, ignore_errors=True)


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_for(fn: Callable[[], object], what: str, max_s: float = 5.0, every_s: float = 0.01):
    """Poll `fn` until truthy, at most `max_s`; fail with `what` otherwise."""
    end = time.monotonic() + max_s
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {max_s}s waiting for {what}")
        time.sleep(every_s)


def keys_in(lo: int, hi: int, n: int = 1, prefix: str = "k") -> List[str]:
    """`n` keys whose bucket is in [lo, hi)."""
    out = []
    for i in range(100000):
        k = f"{prefix}{i}"
        if lo <= bucket_of(k) < hi:
            out.append(k)
            if len(out) == n:
                return out
    raise AssertionError("no such keys")


def inapp(body, ctx) -> bytes:
    """The tests' in-app path: the same canonical form normd would produce."""
    return canonical(json.loads(body))
