"""Against the real normd binary ($NORMD_BIN; skipped, loudly, without it):
canonical gzip'd answers with matching headers, contract errors surfaced, a
flags-file change reaching the client, TCP, SIGTERM."""
from __future__ import annotations

import gzip
import hashlib
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from normd_client import NormdClient, NormdError
from support import inapp, wait_for

REPO = Path(__file__).resolve().parents[3]
NORMD_BIN = os.environ.get("NORMD_BIN")
ORDERS = sorted((Path(__file__).resolve().parent / "fixtures").glob("order-*.json"))


@unittest.skipUnless(NORMD_BIN, "NORMD_BIN unset: integration test against the real normd skipped")
class RealNormd(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="normd-py-it-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.sock = os.path.join(self.tmp, "normd.sock")
        self.flags = os.path.join(self.tmp, "flags.json")
        self.write_flags({"norm": {"enabled": True, "rollout_percent": 100}})
        self.log = os.path.join(self.tmp, "normd.log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [NORMD_BIN, "serve", "--socket", self.sock, "--listen", "127.0.0.1:0",
                 "--schemas", os.environ.get("NORMD_SCHEMAS") or str(REPO / "schemas"),
                 "--flags", self.flags, "--flags-poll-ms", "50", "--drain-delay-ms", "0"],
                stdout=subprocess.DEVNULL, stderr=log)
        self.addCleanup(self.kill)
        self.port = wait_for(self.serving_port, "normd serving", 10, 0.05)
        self.client = NormdClient(self.sock, tcp_port=self.port, fallback=inapp, flags_refresh_s=0,
                                 deadline_ms=10_000)
        self.addCleanup(self.client.close)
        wait_for(lambda: self.client.ready(0) or self.client.refresh_flags(), "normd's GET /flags", 10, 0.05)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def serving_port(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"normd exited: {Path(self.log).read_text()[-2000:]}")
        for line in Path(self.log).read_bytes().splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("msg") == "normd serving":
                return int(doc["listen"].rsplit(":", 1)[1])
        return None

    def write_flags(self, flags: dict) -> None:
        with open(self.flags + ".tmp", "w") as f:
            json.dump(flags, f)
        os.replace(self.flags + ".tmp", self.flags)

    def test_orders_come_back_canonical_gzipped_with_matching_headers(self) -> None:
        self.assertTrue(ORDERS)
        for path in ORDERS:
            with self.subTest(path.name):
                raw = path.read_bytes()
                r = self.client.norm(raw, key=path.stem, schema="order.v1", request_id=f"py-{path.stem}")
                self.assertEqual((r.path, r.encoding, r.schema, r.request_id), ("normd", "gzip", "order.v1",
                                                                                  f"py-{path.stem}"))
                canon = gzip.decompress(r.data)
                self.assertEqual(json.loads(canon), json.loads(raw))
                self.assertEqual(r.digest, "sha-256=:" + base64.b64encode(hashlib.sha256(canon).digest()).decode() + ":")
                self.assertEqual((r.input_bytes, r.canonical_bytes, r.output_bytes),
                                 (len(raw), len(canon), len(r.data)))

    def test_contract_errors_are_surfaced(self) -> None:
        cases = [(b'{"a":', 400, "invalid_json"), (b'{"a":1,"a":2}', 400, "duplicate_key"),
                 (b'{"a":9007199254740993}', 422, "number_precision")]
        for body, status, code in cases:
            with self.subTest(code), self.assertRaises(NormdError) as cm:
                self.client.norm(body)
            self.assertEqual((cm.exception.status, cm.exception.code), (status, code))
        with self.assertRaises(NormdError) as cm:
            self.client.norm(b'{"order": 1}', schema="order.v1")
        self.assertEqual(cm.exception.code, "schema_violation")
        self.assertTrue(cm.exception.errors and "instance_path" in cm.exception.errors[0])
        # Over --max-body-bytes: normd reads and drops the rest, so the client that
        # wrote the whole body gets the 413, not a broken pipe (a `connection` fallback).
        with self.assertRaises(NormdError) as cm:
            self.client.norm(json.dumps({"x": "a" * (3 << 20)}))
        self.assertEqual((cm.exception.status, cm.exception.code), (413, "payload_too_large"))
        with self.assertRaises(NormdError) as cm:
            self.client.norm(b"{}", encoding="lz4")
        self.assertEqual(cm.exception.code, "unknown_encoding")
        self.assertEqual(self.client.stats()["breaker"]["state"], "closed")

    def test_identity_encoding_and_tcp(self) -> None:
        tcp = NormdClient(tcp_port=self.port, rollout_percent=100, fallback=inapp, deadline_ms=10_000)
        self.addCleanup(tcp.close)
        r = tcp.norm('{"b": 2, "a": [1.50, "x"]}', encoding="identity")
        self.assertEqual((r.transport, r.data), ("tcp", b'{"a":[1.5,"x"],"b":2}'))

    def test_flag_turned_off_in_the_file_reaches_the_client(self) -> None:
        self.assertEqual(self.client.norm("{}").path, "normd")
        self.write_flags({"norm": {"enabled": False, "rollout_percent": 100}})

        def disabled():
            self.client.refresh_flags()
            return self.client.stats()["flags"]["enabled"] is False
        wait_for(disabled, "the client to see enabled=false", 10, 0.05)
        self.assertEqual(self.client.norm("{}").reason, "disabled")

    def test_sigterm_exits_0_and_removes_the_socket(self) -> None:
        self.assertEqual(self.client.norm("{}").path, "normd")
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(30), 0)
        self.assertFalse(os.path.exists(self.sock))
        self.assertEqual(self.client.norm("{}", deadline_ms=200).reason, "connection")


if not NORMD_BIN:
    print("\n*** test_integration: NORMD_BIN unset, real-normd tests SKIPPED ***", file=sys.stderr)

if __name__ == "__main__":
    unittest.main()
