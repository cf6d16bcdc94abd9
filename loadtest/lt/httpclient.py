"""A one-request HTTP/1.1 client for a Unix socket or loopback TCP (readiness probes,
/metrics, the demo app's /stats), and a free loopback port."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(target, method: str, path: str, body: bytes = b"", timeout: float = 2.0):
    """One HTTP/1.1 request (Connection: close) to ('unix', path) or ('tcp', port).
    Returns (status, body) or raises OSError."""
    kind, where = target
    if kind == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        addr = where
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        addr = ("127.0.0.1", where)
    s.settimeout(timeout)
    try:
        s.connect(addr)
        head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        if body or method == "POST":
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        s.sendall(head.encode() + b"\r\n" + body)
        chunks = []
        while True:
            c = s.recv(65536)
            if not c:
                break
            chunks.append(c)
    finally:
        s.close()
    raw = b"".join(chunks)
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        out, buf = b"", rest
        while buf:
            line, _, buf = buf.partition(b"\r\n")
            n = int(line.split(b";")[0], 16)
            if n == 0:
                break
            out, buf = out + buf[:n], buf[n + 2:]
        rest = out
    return status, rest
