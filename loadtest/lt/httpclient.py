"""A one-request HTTP/1.1 client for a Unix socket or loopback TCP (readiness probes,
/metrics, the demo app's /stats), a readiness wait on a Unix socket, and a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import time


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


def unix_status(path: str, target: str, timeout: float = 1.0) -> int:
    """The status code of one GET (Connection: close) on a Unix socket, from the answer's first bytes."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: normd\r\nConnection: close\r\n\r\n".encode())
        return int(s.recv(64).split(b" ", 2)[1])
    finally:
        s.close()


def wait_unix_ready(proc: subprocess.Popen, path: str, timeout: float, interval: float,
                    target: str = "/readyz", probe_timeout: float = 1.0) -> bool:
    """Polls GET `target` on the Unix socket every `interval` s until it answers 200 (True);
    False once `proc` has exited or `timeout` s have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if unix_status(path, target, probe_timeout) == 200:
                return True
        except (OSError, ValueError, IndexError):
            pass
        if proc.poll() is not None:
            break
        time.sleep(interval)
    return False
