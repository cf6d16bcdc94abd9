"""The call path against a fake normd on a temp Unix socket: results,
request shape, the fallback table, deadlines, transports, response bodies,
keep-alive and its one retry, close()."""
from __future__ import annotations

import gzip
import os
import socket
import threading
import unittest

from normd_client import NormdClient, NormdClosed, NormdError, NormdUnavailable
from support import FakeNormd, answer_ok, canonical, digest_of, inapp, wait_for


class Base(unittest.TestCase):
    tcp = False

    def setUp(self) -> None:
        self.fake = FakeNormd(tcp=self.tcp)
        self.addCleanup(self.fake.close)

    def client(self, **kw) -> NormdClient:
        kw.setdefault("fallback", inapp)
        kw.setdefault("flags_refresh_s", 0)
        kw.setdefault("deadline_ms", 10_000)
        kw.setdefault("flags_timeout_s", 10)
        kw.setdefault("socket_path", self.fake.socket_path)
        c = NormdClient(**kw)
        self.addCleanup(c.close)
        if kw.get("rollout_percent") is None:
            self.assertTrue(c.ready(5))
        return c

    def assertCallsAddUp(self, s: dict) -> None:
        self.assertEqual(s["calls"], s["normd_ok"] + s["fallback_total"] + s["errors"])


class ResultAndRequest(Base):
    def test_200_returns_bytes_and_headers(self) -> None:
        c = self.client()
        r = c.norm(b'{"b": 2, "a": 1}', key="order-1", request_id="rid-1")
        self.assertEqual(r.path, "normd")
        self.assertIsNone(r.reason)
        self.assertEqual(gzip.decompress(r.data), b'{"a":1,"b":2}')
        self.assertEqual(r.encoding, "gzip")
        self.assertEqual(r.digest, digest_of(b'{"a":1,"b":2}'))
        self.assertEqual((r.input_bytes, r.canonical_bytes, r.output_bytes), (16, 13, len(r.data)))
        self.assertEqual((r.request_id, r.transport), ("rid-1", "unix"))
        s = c.stats()
        self.assertEqual((s["calls"], s["normd_ok"], s["by_transport"]["unix"]), (1, 1, 2))

    def test_sends_deadline_selection_and_passthrough_headers(self) -> None:
        c = self.client(profile="orders", encoding="br", deadline_ms=20)
        c.norm("{}", headers={"traceparent": "00-abc-def-01", "X-Deadline-Ms": "999",
                              "content-type": "text/plain"})
        c.norm("{}", schema="order.v1", level=5, encoding="zstd", deadline_ms=7.6)
        first, second = self.fake.norm_paths()
        self.assertEqual(first["query"], "profile=orders&encoding=br")
        self.assertEqual(first["headers"]["x-deadline-ms"], "20")
        self.assertEqual(first["headers"]["content-type"], "application/json")
        self.assertEqual(first["headers"]["traceparent"], "00-abc-def-01")
        self.assertEqual(second["query"], "profile=orders&schema=order.v1&encoding=zstd&level=5")
        self.assertEqual(second["headers"]["x-deadline-ms"], "8")

    def test_str_body_is_sent_as_utf8(self) -> None:
        c = self.client()
        r = c.norm('{"é": "注文"}')
        self.assertEqual(self.fake.norm_paths()[0]["body"], '{"é": "注文"}'.encode())
        self.assertEqual(gzip.decompress(r.data), canonical({"é": "注文"}))

    def test_bad_arguments_raise_before_anything_is_counted_or_sent(self) -> None:
        c = self.client()
        with self.assertRaises(TypeError):
            c.norm({"a": 1})  # type: ignore[arg-type]
        with self.assertRaises(ValueError):
            c.norm("{}", deadline_ms=-1)
        with self.assertRaises(ValueError):
            c.norm("{}", headers={"traceparent": "a\r\nX-Evil: 1"})
        with self.assertRaises(ValueError):
            c.norm("{}", headers={"bad name": "x"})
        with self.assertRaises(ValueError):
            c.norm("{}", headers={"x-note": "注文"})
        self.assertEqual(c.stats()["calls"], 0)
        self.assertEqual(self.fake.norm_paths(), [])

    def test_keep_alive_sequential_calls_share_one_connection(self) -> None:
        c = self.client()
        for _ in range(5):
            self.assertEqual(c.norm("{}").path, "normd")
        self.assertEqual(self.fake.connections, 1)  # the flags fetch and five calls

    def test_fallback_gets_the_body_as_given_and_a_context(self) -> None:
        seen = []
        c = self.client(rollout_percent=0, fallback=lambda body, ctx: seen.append((body, ctx)) or "done")
        body = bytearray(b'{"a":1}')
        r = c.norm(body, key="k1")
        self.assertEqual((r.path, r.reason, r.data), ("inapp", "rollout", "done"))
        self.assertIs(seen[0][0], body)
        self.assertEqual((seen[0][1].reason, seen[0][1].key, seen[0][1].error), ("rollout", "k1", None))

    def test_per_call_fallback_wins(self) -> None:
        c = self.client(rollout_percent=0)
        r = c.norm("{}", fallback=lambda body, ctx: "mine")
        self.assertEqual(r.data, "mine")

    def test_without_a_fallback_a_fallback_raises_unavailable(self) -> None:
        c = self.client(rollout_percent=0, fallback=None)
        with self.assertRaises(NormdUnavailable) as cm:
            c.norm("{}")
        self.assertEqual(cm.exception.reason, "rollout")
        self.assertEqual(c.stats()["fallback_by_reason"]["rollout"], 1)

    def test_reset_stats_zeroes_the_counters(self) -> None:
        c = self.client()
        c.norm("{}")
        c.reset_stats()
        s = c.stats()
        self.assertEqual((s["calls"], s["normd_ok"], s["by_transport"]["unix"]), (0, 0, 0))
        self.assertTrue(s["flags"]["loaded"])


def _status(status, code, headers=None):
    return lambda h, body: h.problem(status, code, headers)


FALLBACKS = [
    ("429 overloaded", _status(429, "overloaded", {"Retry-After": "1"}), "overloaded", False),
    ("503 not_ready", _status(503, "not_ready", {"Retry-After": "1"}), "unavailable", False),
    ("503 draining", _status(503, "draining", {"Retry-After": "5"}), "unavailable", False),
    ("503 memory_pressure", _status(503, "memory_pressure"), "unavailable", False),
    ("503 disabled", _status(503, "disabled", {"Retry-After": "5"}), "disabled", True),
    ("504 deadline_exceeded", _status(504, "deadline_exceeded"), "deadline", False),
    ("500 internal", _status(500, "internal"), "server_error", False),
    ("401 from a proxy", _status(401, "unauthorized"), "server_error", False),
    ("403 from a proxy", _status(403, "forbidden"), "server_error", False),
    ("502 from a proxy", lambda h, b: h.send_json(502, b"<html>bad gateway</html>"), "server_error", False),
]


class FallbackTable(Base):
    def test_each_answer_falls_back_with_its_reason_and_breaker_verdict(self) -> None:
        for name, handler, reason, alive in FALLBACKS:
            with self.subTest(name):
                self.fake.norm_handler = handler
                c = self.client(failure_threshold=1)
                r = c.norm("{}", key="k")
                self.assertEqual((r.path, r.reason), ("inapp", reason))
                s = c.stats()
                self.assertEqual(s["fallback_by_reason"][reason], 1)
                self.assertEqual(s["breaker"]["state"], "closed" if alive else "open")
                self.assertCallsAddUp(s)

    def test_the_fallback_sees_normd_problem_as_its_error(self) -> None:
        self.fake.norm_handler = _status(429, "overloaded", {"Retry-After": "1"})
        seen = []
        c = self.client(fallback=lambda body, ctx: seen.append(ctx))
        c.norm("{}")
        self.assertIsInstance(seen[0].error, NormdError)
        self.assertEqual((seen[0].error.status, seen[0].error.code), (429, "overloaded"))

    def test_200_without_digest_is_server_error(self) -> None:
        def no_digest(h, body):
            h.send_response(200)
            h.send_header("Content-Length", "2")
            h.end_headers()
            h.wfile.write(b"{}")
        self.fake.norm_handler = no_digest
        c = self.client(failure_threshold=1)
        self.assertEqual(c.norm("{}").reason, "server_error")
        self.assertEqual(c.stats()["breaker"]["state"], "open")

    def test_contract_errors_raise_with_their_problem_and_count_as_breaker_success(self) -> None:
        violation = {"errors": [{"instance_path": "/a", "schema_path": "/properties/a/type",
                                 "message": "not a string"}]}
        cases = [(400, "invalid_json"), (400, "duplicate_key"), (404, "not_found"),
                 (405, "method_not_allowed"), (413, "payload_too_large"),
                 (415, "unsupported_media_type"), (422, "schema_violation"), (422, "number_precision")]
        c = self.client(failure_threshold=1)
        for status, code in cases:
            with self.subTest(code=code):
                self.fake.norm_handler = lambda h, b, s=status, k=code: h.problem(
                    s, k, {"X-Request-Id": "rid-9"}, violation if k == "schema_violation" else None)
                with self.assertRaises(NormdError) as cm:
                    c.norm("{}")
                e = cm.exception
                self.assertEqual((e.status, e.code, e.request_id), (status, code, "rid-9"))
                self.assertEqual(e.problem["code"], code)
                if code == "schema_violation":
                    self.assertEqual(e.errors, violation["errors"])
        s = c.stats()
        self.assertEqual(s["errors"], len(cases))
        self.assertEqual(s["errors_by_code"]["schema_violation"], 1)
        self.assertEqual(s["errors_by_code"]["invalid_json"], 1)
        self.assertEqual(s["breaker"]["state"], "closed")
        self.assertEqual(s["fallback_total"], 0)
        self.assertCallsAddUp(s)

    def test_contract_error_without_problem_body_gets_an_http_code(self) -> None:
        self.fake.norm_handler = lambda h, b: h.send_json(413, b"too big")
        c = self.client()
        with self.assertRaises(NormdError) as cm:
            c.norm("{}")
        self.assertEqual(cm.exception.code, "http_413")


class Connections(Base):
    def test_reset_before_an_answer_is_connection(self) -> None:
        def reset(h, body):
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
        self.fake.norm_handler = reset
        c = self.client(rollout_percent=100)  # fresh connection: nothing to retry
        self.assertEqual(c.norm("{}").reason, "connection")
        self.assertEqual(c.stats()["retries"], 0)

    def test_missing_socket_file_is_connection(self) -> None:
        c = self.client(socket_path=os.path.join(self.fake.dir, "nope.sock"), rollout_percent=100)
        self.assertEqual(c.norm("{}").reason, "connection")

    def test_socket_nobody_listens_on_is_connection(self) -> None:
        path = os.path.join(self.fake.dir, "dead.sock")
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.close()  # the file stays, nobody accepts: ECONNREFUSED
        c = self.client(socket_path=path, rollout_percent=100)
        r = c.norm("{}")
        self.assertEqual(r.reason, "connection")
        self.assertIsInstance(r.data, bytes)

    def test_a_keep_alive_connection_normd_closed_is_retried_once(self) -> None:
        def answer_then_close(h, body):
            answer_ok(h, body)
            h.close_connection = True  # closed after answering, without saying so
        self.fake.norm_handler = answer_then_close
        c = self.client(rollout_percent=100)
        self.assertEqual(c.norm('{"a":1}').path, "normd")
        wait_for(lambda: _peer_closed(c), "the fake to close the kept-alive connection")
        r = c.norm('{"a":2}')
        self.assertEqual(r.path, "normd")
        s = c.stats()
        self.assertEqual((s["retries"], self.fake.connections, s["normd_ok"]), (1, 2, 2))

    def test_the_retry_happens_once_only(self) -> None:
        calls = []

        def first_ok_then_drop(h, body):
            calls.append(1)
            if len(calls) == 1:
                answer_ok(h, body)
                h.close_connection = True
            else:
                h.close_connection = True  # every later request: closed unanswered
        self.fake.norm_handler = first_ok_then_drop
        c = self.client(rollout_percent=100)
        c.norm("{}")
        wait_for(lambda: _peer_closed(c), "the fake to close the kept-alive connection")
        self.assertEqual(c.norm("{}").reason, "connection")
        self.assertEqual(c.stats()["retries"], 1)
        self.assertEqual(len(calls), 2)  # the retried request reached the fake and was dropped too


def _peer_closed(c: NormdClient) -> bool:
    """The pooled connection's peer has closed it (EOF is readable)."""
    idle = c._transports[0]._idle
    if not idle:
        return False
    sock = idle[-1].sock
    try:
        sock.setblocking(False)
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    finally:
        sock.setblocking(True)


class TCP(Base):
    tcp = True

    def test_tcp_is_used_when_the_socket_is_missing(self) -> None:
        c = self.client(socket_path=os.path.join(self.fake.dir, "nope.sock"), tcp_port=self.fake.port)
        r = c.norm("{}")
        self.assertEqual((r.path, r.transport), ("normd", "tcp"))
        s = c.stats()
        self.assertEqual(s["by_transport"], {"unix": 0, "tcp": 2})
        self.assertEqual(s["transport_failovers"], 2)  # the flags fetch and the call

    def test_tcp_only(self) -> None:
        c = self.client(socket_path=None, tcp_port=self.fake.port)
        self.assertEqual(c.norm("{}").transport, "tcp")

    def test_unix_preferred_when_both_work(self) -> None:
        c = self.client(tcp_port=self.fake.port)
        self.assertEqual(c.norm("{}").transport, "unix")


class Deadlines(Base):
    def test_a_stalled_normd_falls_back_as_timeout_by_itself(self) -> None:
        self.fake.norm_handler = lambda h, b: h.hold()
        c = self.client(rollout_percent=100, deadline_ms=30, failure_threshold=1)
        r = c.norm("{}")
        # The fake holds until released (or 10 s): the call can only have come
        # back through its own deadline.
        self.assertFalse(self.fake.release.is_set())
        self.assertEqual(r.reason, "timeout")
        self.assertEqual(c.stats()["breaker"]["state"], "open")
        self.assertEqual(self.fake.norm_paths()[0]["headers"]["x-deadline-ms"], "30")

    def test_a_normd_that_drips_its_answer_still_times_out(self) -> None:
        stop = threading.Event()
        self.addCleanup(stop.set)

        def drip(h, body):
            h.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for _ in range(1000):  # one header byte every 5 ms: each recv succeeds
                if stop.wait(0.005):
                    return
                h.wfile.write(b"X")
                h.wfile.flush()
        self.fake.norm_handler = drip
        c = self.client(rollout_percent=100, deadline_ms=40)
        r = c.norm("{}")
        self.assertFalse(stop.is_set())
        self.assertEqual(r.reason, "timeout")

    def test_a_body_that_stalls_halfway_times_out(self) -> None:
        def half(h, body):
            h.send_response(200)
            h.send_header("Content-Length", "100")
            h.end_headers()
            h.wfile.write(b"x" * 50)
            h.wfile.flush()
            h.hold()
        self.fake.norm_handler = half
        c = self.client(rollout_percent=100, deadline_ms=30)
        self.assertEqual(c.norm("{}").reason, "timeout")


class ResponseBodies(Base):
    def test_bodies_written_in_pieces_come_back_exactly(self) -> None:
        payload = os.urandom(300_000)

        def pieces(h, body):
            h.send_response(200)
            h.send_header("Content-Length", str(len(payload)))
            h.send_header("X-Normd-Digest", digest_of(b"x"))
            h.end_headers()
            for i in range(0, len(payload), 7001):
                h.wfile.write(payload[i:i + 7001])
                h.wfile.flush()
        self.fake.norm_handler = pieces
        c = self.client(rollout_percent=100)
        self.assertEqual(c.norm("{}").data, payload)

    def test_chunked_body_is_read_whole(self) -> None:
        def chunked(h, body):
            h.send_response(200)
            h.send_header("Transfer-Encoding", "chunked")
            h.send_header("X-Normd-Digest", digest_of(b"x"))
            h.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                h.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            h.wfile.write(b"0\r\n\r\n")
        self.fake.norm_handler = chunked
        c = self.client(rollout_percent=100)
        self.assertEqual(c.norm("{}").data, b"hello chunked world")

    def test_a_body_cut_short_of_its_content_length_is_connection(self) -> None:
        def cut(h, body):
            h.send_response(200)
            h.send_header("Content-Length", "100")
            h.send_header("X-Normd-Digest", digest_of(b"x"))
            h.end_headers()
            h.wfile.write(b"x" * 50)
            h.close_connection = True
        self.fake.norm_handler = cut
        c = self.client(rollout_percent=100)
        self.assertEqual(c.norm("{}").reason, "connection")

    def test_a_content_length_over_the_cap_is_refused_at_the_headers(self) -> None:
        def big(h, body):
            h.send_response(200)
            h.send_header("Content-Length", "1000000")
            h.send_header("X-Normd-Digest", digest_of(b"x"))
            h.end_headers()
            h.hold()  # never sends the body: the client must not wait for it
        self.fake.norm_handler = big
        c = self.client(rollout_percent=100, max_response_bytes=1000)
        self.assertEqual(c.norm("{}").reason, "connection")
        self.assertFalse(self.fake.release.is_set())

    def test_a_chunked_body_growing_past_the_cap_is_connection(self) -> None:
        def chunked(h, body):
            h.send_response(200)
            h.send_header("Transfer-Encoding", "chunked")
            h.send_header("X-Normd-Digest", digest_of(b"x"))
            h.end_headers()
            for _ in range(20):
                h.wfile.write(b"64\r\n" + b"y" * 100 + b"\r\n")
            h.wfile.write(b"0\r\n\r\n")
        self.fake.norm_handler = chunked
        c = self.client(rollout_percent=100, max_response_bytes=1000)
        self.assertEqual(c.norm("{}").reason, "connection")


class Close(Base):
    def test_close_cuts_calls_in_flight_and_later_calls_raise(self) -> None:
        self.fake.norm_handler = lambda h, b: h.hold()
        c = self.client(deadline_ms=10_000)
        out = []
        t = threading.Thread(target=lambda: out.append(c.norm("{}")))
        t.start()
        wait_for(lambda: self.fake.norm_requests == 1, "the call to reach the fake")
        c.close()
        t.join(5)
        self.assertFalse(t.is_alive())
        self.assertEqual(out[0].reason, "connection")
        self.assertFalse(self.fake.release.is_set())  # cut by close(), not by its deadline
        with self.assertRaises(NormdClosed):
            c.norm("{}")
        self.assertFalse(c._flags_thread.is_alive())
        self.assertFalse(c.refresh_flags())

    def test_context_manager_closes(self) -> None:
        with NormdClient(self.fake.socket_path, fallback=inapp, flags_refresh_s=60) as c:
            self.assertTrue(c.ready(5))
            self.assertEqual(c.norm("{}").path, "normd")
        self.assertFalse(c._flags_thread.is_alive())
        with self.assertRaises(NormdClosed):
            c.norm("{}")

    def test_needs_a_transport(self) -> None:
        with self.assertRaises(ValueError):
            NormdClient()


if __name__ == "__main__":
    unittest.main()
