#!/usr/bin/env python3
"""A fault-injecting stand-in for normd, for the client conformance kit.

    python3 fault_server.py --socket PATH [--tcp-port-file FILE] SCENARIO.json

Serves the scenario's `fault` object (see README.md): a queue of GET /flags
bodies and a queue of POST /norm answers, each entry used once, the last one
repeating. Prints `ready` once it listens. Python 3.9+ standard library only.
"""

import argparse
import base64
import gzip
import hashlib
import json
import os
import signal
import socketserver
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

WORK_PATHS = ("/norm", "/normalize", "/validate")
DEFAULT_FLAGS = {"norm": {"enabled": True, "rollout_percent": 100, "shadow_percent": 0}}
REASON_PHRASES = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 413: "Content Too Large",
    415: "Unsupported Media Type", 422: "Unprocessable Content", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}


class Queue:
    """Answers handed out one per request; the last one repeats."""

    def __init__(self, entries):
        self.entries = list(entries)
        self.taken = 0
        self.lock = threading.Lock()

    def take(self):
        with self.lock:
            i = min(self.taken, len(self.entries) - 1)
            self.taken += 1
            return i, self.entries[i]


class State:
    def __init__(self, fault):
        self.flags = Queue(fault.get("flags") or [DEFAULT_FLAGS])
        self.norm = Queue(fault.get("norm") or [{"status": 200}])
        self.requests = []
        self.lock = threading.Lock()


def canonical(value):
    # Sorted keys, compact: RFC 8785 for the kit's bodies (integers, strings,
    # booleans, null, arrays, objects; keys within the Basic Multilingual Plane).
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def problem_body(status, code):
    return json.dumps({
        "type": "urn:normd:problem:" + code,
        "title": code.replace("_", " "),
        "status": status,
        "detail": "fault server: " + code,
        "code": code,
    }).encode("utf-8")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer has a Content-Length
    server_version = "normd-fault"
    sys_version = ""

    def log_message(self, *args):
        pass  # quiet: the runner reads only the `ready` line

    def do_GET(self):
        self.handle_request(b"")

    def do_POST(self):
        self.handle_request(self.read_body())

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def handle_request(self, body):
        url = urlsplit(self.path)
        state = self.server.state
        if url.path == "/_fault/requests":
            with state.lock:
                self.send(200, json.dumps(state.requests).encode("utf-8"), {"Content-Type": "application/json"})
            return
        with state.lock:
            state.requests.append({
                "method": self.command,
                "path": url.path,
                "query": url.query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            })
        if self.command == "GET" and url.path == "/flags":
            self.answer_flags(*state.flags.take())
        elif self.command == "GET" and url.path in ("/livez", "/readyz"):
            self.send(200, b'{"status":"ok"}', {"Content-Type": "application/json"})
        elif self.command == "POST" and url.path in WORK_PATHS:
            self.answer_norm(state.norm.take()[1], body)
        else:
            self.send(404, problem_body(404, "not_found"), {"Content-Type": "application/problem+json"})

    def answer_flags(self, index, entry):
        if "raw" in entry:
            self.send(entry.get("status", 200), entry["raw"].encode("utf-8"), {"Content-Type": "application/json"})
            return
        doc = {"version": "v%d" % (index + 1), "mtime": None, "source": "fault", "flags": entry, "last_error": None}
        self.send(200, json.dumps(doc).encode("utf-8"), {"Content-Type": "application/json"})

    def answer_norm(self, a, body):
        if a.get("delay_ms"):
            time.sleep(a["delay_ms"] / 1000.0)
        action = a.get("action")
        if action == "reset":
            self.close_connection = True  # no answer at all: the client sees EOF
            return
        status = a.get("status", 200)
        headers = {}
        if status == 200 and a.get("ok", True):
            try:
                canon = canonical(json.loads(body.decode("utf-8")))
            except ValueError:
                status, payload = 400, problem_body(400, "invalid_json")
                headers["Content-Type"] = "application/problem+json"
            else:
                payload = gzip.compress(canon, compresslevel=1)
                headers.update({
                    "Content-Type": "application/octet-stream",
                    "X-Normd-Encoding": "gzip",
                    "X-Normd-Input-Bytes": str(len(body)),
                    "X-Normd-Canonical-Bytes": str(len(canon)),
                    "X-Normd-Output-Bytes": str(len(payload)),
                    "X-Normd-Digest": "sha-256=:%s:" % base64.b64encode(hashlib.sha256(canon).digest()).decode("ascii"),
                })
        elif status != 200 and a.get("code"):
            payload = problem_body(status, a["code"])
            headers["Content-Type"] = "application/problem+json"
        else:
            # A status outside the contract, as a proxy in front of normd would send it.
            payload = (REASON_PHRASES.get(status, "status %d" % status) + "\n").encode("utf-8")
            headers["Content-Type"] = "text/plain"
        if "digest" in a:
            headers.pop("X-Normd-Digest", None)
            if a["digest"] != "omit":
                headers["X-Normd-Digest"] = a["digest"]
        headers["X-Request-Id"] = self.headers.get("X-Request-Id") or str(uuid.uuid4())
        headers.update(a.get("headers") or {})
        if action in ("cut", "exit"):
            self.send(status, payload, headers, cut=True)
            if action == "exit":
                os._exit(0)  # the sidecar dies mid-answer; its socket file stays behind
            self.close_connection = True
            return
        self.send(status, payload, headers)

    def send(self, status, payload, headers, cut=False):
        """Write one answer; `cut` stops after half the body (Content-Length stays whole)."""
        try:
            self.send_response_only(status, REASON_PHRASES.get(status, "Status"))
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2] if cut else payload)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its deadline passed): nobody to answer.
            self.close_connection = True


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True  # a stalled answer never holds the process at exit
    block_on_close = False


class TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--socket", required=True)
    p.add_argument("--tcp-port-file")
    p.add_argument("scenario")
    args = p.parse_args()
    with open(args.scenario, encoding="utf-8") as f:
        state = State(json.load(f).get("fault") or {})

    if os.path.exists(args.socket):
        os.unlink(args.socket)
    servers = [UnixServer(args.socket, Handler)]
    if args.tcp_port_file:
        servers.append(TCPServer(("127.0.0.1", 0), Handler))
        tmp = args.tcp_port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(servers[1].server_address[1]))
        os.replace(tmp, args.tcp_port_file)

    def stop(signum, frame):
        try:
            os.unlink(args.socket)
        except OSError:
            pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for s in servers:
        s.state = state
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("ready", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
