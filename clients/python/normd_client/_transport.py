"""HTTP/1.1 exchanges with normd over a Unix socket or 127.0.0.1, on
keep-alive connections, each exchange bounded by one absolute deadline.

It owns the sockets: connecting, failing over from the Unix socket to TCP,
the one retry on a dead keep-alive connection, and the cap on response size.
It never decides what an answer means (the client does) and never blocks
past an exchange's deadline: every connect, send and read is given only the
time that is left.
"""
from __future__ import annotations

import errno
import http.client
import io
import socket
import threading
import time
from collections import deque
from typing import Deque, Dict, List, Mapping, NamedTuple, Optional, Set, Tuple

# The socket is not there, so another transport may be.
_CONNECT_ERRNOS = frozenset({errno.ENOENT, errno.ECONNREFUSED, errno.EACCES, errno.ENOTSOCK,
                             errno.EADDRNOTAVAIL, errno.EPERM})

# Idle keep-alive connections are dropped after this, before normd's
# --header-read-timeout-ms (10 s) closes them from its side, so a request is
# rarely written onto a connection the server is closing.
IDLE_TIMEOUT_S = 5.0


class ResponseTooLarge(Exception):
    """The answer is bigger than max_response_bytes: cut, never buffered."""


class ClientClosed(Exception):
    """close() ended the exchange."""


class Response(NamedTuple):
    status: int
    headers: Dict[str, str]  # lowercased names: HTTPMessage.get() scans every header per lookup
    body: bytes
    transport: str


class _DeadlineRaw(io.RawIOBase):
    """The read side of a connection's socket, given before each recv only the
    time left until the exchange's deadline. http.client reads status line,
    headers and body through this, so a server that stalls, or drips bytes,
    cannot hold the caller past the deadline."""

    def __init__(self, sock: socket.socket, conn: "_DeadlineMixin") -> None:
        super().__init__()
        self._sock = sock
        # The socket's own reader holds a reference that keeps the socket open
        # when http.client closes the connection under a `Connection: close`
        # answer whose body is still to be read.
        self._io = sock.makefile("rb", buffering=0)
        self._conn = conn

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        self._sock.settimeout(self._conn.time_left())
        n = self._io.readinto(b) or 0
        self._conn.bytes_in += n
        return n

    def close(self) -> None:
        self._io.close()
        super().close()


class _SocketView:
    """What http.client.HTTPResponse needs of a socket: makefile('rb')."""

    def __init__(self, sock: socket.socket, conn: "_DeadlineMixin") -> None:
        self._sock = sock
        self._conn = conn

    def makefile(self, mode: str = "rb", *args, **kwargs):
        return io.BufferedReader(_DeadlineRaw(self._sock, self._conn))


class _DeadlineMixin(http.client.HTTPConnection):
    """An HTTPConnection whose every blocking step gets the time left until
    `deadline` (time.monotonic()), raising socket.timeout once it is spent."""

    deadline = 0.0
    bytes_in = 0  # response bytes read in the current exchange (retry decision)
    idle_since = 0.0

    def time_left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("normd exchange deadline passed")
        return left

    def send(self, data) -> None:
        if self.sock is not None:
            self.sock.settimeout(self.time_left())
        super().send(data)

    def _send_output(self, message_body=None, encode_chunked=False):
        # Headers and a bytes body in one write: http.client writes them apart,
        # and each write wakes normd's reader (and, on a busy node, the two
        # processes swap the CPU twice). Any other body goes the stock way.
        if isinstance(message_body, bytes) and not encode_chunked:
            self._buffer.extend((b"", message_body))
            msg = b"\r\n".join(self._buffer)
            del self._buffer[:]
            self.send(msg)
            return
        super()._send_output(message_body, encode_chunked)

    def response_class(self, sock, *args, **kwargs):  # type: ignore[override]
        # http.client calls self.response_class(self.sock, method=...); as a
        # method here it sees the connection, and so the deadline.
        return http.client.HTTPResponse(_SocketView(sock, self), *args, **kwargs)  # type: ignore[arg-type]


class UnixHTTPConnection(_DeadlineMixin):
    """http.client over AF_UNIX: no dependency to install, and http.client
    already does the HTTP/1.1 framing; only connect() differs from TCP."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.time_left())
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class TCPHTTPConnection(_DeadlineMixin):
    def connect(self) -> None:
        self.timeout = self.time_left()
        super().connect()  # sets TCP_NODELAY: headers and body are two writes


class Transport:
    """One way to reach normd, with its pool of idle keep-alive connections.

    The pool keeps at most `pool_size` idle connections (most recently used
    first). It never makes a caller wait: past the bound a connection is
    opened for the call and closed after it, as urllib3 does with block=False.
    """

    def __init__(self, name: str, make, pool_size: int) -> None:
        self.name = name
        self._make = make
        self._size = pool_size
        self._idle: Deque[_DeadlineMixin] = deque()
        self._busy: Set[_DeadlineMixin] = set()
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self) -> Tuple[_DeadlineMixin, bool]:
        """A connection and whether it was used before (i.e. may be stale)."""
        now = time.monotonic()
        stale: List[_DeadlineMixin] = []
        with self._lock:
            if self._closed:
                raise ClientClosed("the normd client was closed")
            conn = None
            while self._idle:
                c = self._idle.pop()
                if now - c.idle_since < IDLE_TIMEOUT_S:
                    conn = c
                    break
                stale.append(c)
            reused = conn is not None
            if conn is None:
                conn = self._make()
            self._busy.add(conn)
        for c in stale:
            c.close()
        return conn, reused

    def release(self, conn: _DeadlineMixin, reusable: bool) -> None:
        with self._lock:
            self._busy.discard(conn)
            if reusable and not self._closed and conn.sock is not None and len(self._idle) < self._size:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close idle connections and cut the ones in use, so blocked calls
        wake up now (they fall back as `connection`)."""
        with self._lock:
            self._closed = True
            idle, busy = list(self._idle), list(self._busy)
            self._idle.clear()
        for c in idle:
            c.close()
        for c in busy:
            sock = c.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class Counters:
    """What the exchanges report to the client's stats; guarded by its lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.retries = 0
        self.transport_failovers = 0
        self.by_transport = {"unix": 0, "tcp": 0}


def exchange(transports: List[Transport], counters: Counters, method: str, path: str,
             headers: Mapping[str, str], body: Optional[bytes], budget_s: float,
             max_response_bytes: int) -> Response:
    """One HTTP exchange, body read whole, within `budget_s` seconds overall.

    Fails over to the next transport when a socket cannot be connected at all,
    and resends once when a reused keep-alive connection turns out dead before
    any response byte (the work is a pure function of the body, so this is
    safe). Raises socket.timeout when the budget is spent, OSError /
    http.client.HTTPException / ResponseTooLarge / ClientClosed otherwise.
    """
    deadline = time.monotonic() + budget_s
    i = 0
    retried = False
    # Bounded: at most one failover per transport and one retry.
    for _ in range(len(transports) + 2):
        t = transports[i]
        conn, reused = t.acquire()
        conn.deadline = deadline
        conn.bytes_in = 0
        ok = False
        try:
            if conn.sock is None:
                try:
                    conn.connect()
                except OSError as e:
                    if (e.errno in _CONNECT_ERRNOS and i + 1 < len(transports)
                            and time.monotonic() < deadline):
                        with counters.lock:
                            counters.transport_failovers += 1
                        i += 1
                        continue
                    raise
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            if resp.length is not None and resp.length > max_response_bytes:
                raise ResponseTooLarge(f"normd response of {resp.length} bytes > {max_response_bytes}")
            if resp.length is None:
                data = resp.read(max_response_bytes + 1)
                if len(data) > max_response_bytes:
                    raise ResponseTooLarge(f"normd response larger than {max_response_bytes} bytes")
                # read(n) stops at n; make sure the body really ended there.
                if resp.read(1):
                    raise ResponseTooLarge(f"normd response larger than {max_response_bytes} bytes")
            else:
                data = resp.read()  # IncompleteRead when cut short of Content-Length
            ok = True
            with counters.lock:
                counters.by_transport[t.name] = counters.by_transport.get(t.name, 0) + 1
            return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()}, data, t.name)
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            # RemoteDisconnected is a ConnectionResetError: the server closed
            # an idle connection we had just reused, before answering anything.
            if reused and not retried and conn.bytes_in == 0 and time.monotonic() < deadline:
                retried = True
                with counters.lock:
                    counters.retries += 1
                continue
            raise
        finally:
            # A connection is reusable only after a complete answer; anything
            # else (timeout, cut, error) closes it, so normd sees the close.
            t.release(conn, ok)
    raise ConnectionError("normd: no transport left")  # not reached: the loop returns or raises
