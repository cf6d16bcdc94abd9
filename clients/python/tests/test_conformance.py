"""Runner of the language-neutral conformance kit (clients/conformance/):
checks rollout.json, then runs every scenarios/*.json as its own test method,
named by the file, against the fault server or the real normd ($NORMD_BIN).
Nothing here special-cases a scenario; an unknown step or field fails it.
"""
from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path
from typing import Any, Dict, List, Optional

from normd_client import NormdClient, NormdError, bucket_of, fnv1a32
from support import FakeClock, wait_for

KIT = Path(__file__).resolve().parents[2] / "conformance"
REPO = Path(__file__).resolve().parents[3]
NORMD_BIN = os.environ.get("NORMD_BIN")
START_S = 10.0

CLIENT_FIELDS = {"transports", "deadline_ms", "timeout_slack_ms", "failure_threshold", "cooldown_ms",
                 "rollout_percent", "flags_refresh_ms", "socket_missing", "shadow_max_concurrent"}
CALL_FIELDS = {"key", "body", "body_text", "deadline_ms", "query", "inapp"}
EXPECT_FIELDS = {"path", "reason", "error", "encoding", "digest", "canonical"}
FLAG_FIELDS = {"enabled", "rollout_percent", "shadow_percent"}


def _unix_get(sock_path: str, path: str, timeout: float = 2.0):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(sock_path)
    conn = http.client.HTTPConnection("localhost", timeout=timeout)
    conn.sock = s
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


class Server:
    """The process a scenario runs against (fault_server.py or normd), killed
    at the end whatever happens."""

    def __init__(self, scenario: dict, scenario_path: Path, tmp: str) -> None:
        self.kind = scenario["server"]
        self.tmp = tmp
        self.socket_path = os.path.join(tmp, "normd.sock")
        self.flags_path = os.path.join(tmp, "flags.json")
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0
        if self.kind == "fault":
            self._start_fault(scenario_path)
        elif self.kind == "normd":
            self._start_normd(scenario.get("normd") or {})
        else:
            raise AssertionError(f"unknown server {self.kind!r}")

    def _start_fault(self, scenario_path: Path) -> None:
        port_file = os.path.join(self.tmp, "port")
        self.proc = subprocess.Popen(
            [sys.executable, str(KIT / "fault_server.py"), "--socket", self.socket_path,
             "--tcp-port-file", port_file, str(scenario_path)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line: List[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(START_S)
        if not line or line[0].strip() != "ready":
            raise AssertionError(f"fault server did not print ready within {START_S}s: {line!r}")
        with open(port_file) as f:
            self.port = int(f.read())

    def _start_normd(self, cfg: dict) -> None:
        unknown = set(cfg) - {"flags", "args"}
        if unknown:
            raise AssertionError(f"unknown normd fields {sorted(unknown)}")
        if "flags" in cfg:
            self.write_flags(cfg["flags"])
        schemas = os.environ.get("NORMD_SCHEMAS") or str(REPO / "schemas")
        log_path = os.path.join(self.tmp, "normd.log")
        self.log = open(log_path, "w+b")  # a file, not a pipe: a log line per request never fills it
        self.proc = subprocess.Popen(
            [NORMD_BIN, "serve", "--socket", self.socket_path, "--listen", "127.0.0.1:0",
             "--schemas", schemas, "--flags", self.flags_path, "--flags-poll-ms", "50",
             "--drain-delay-ms", "0", *cfg.get("args", [])],
            stdout=subprocess.DEVNULL, stderr=self.log)

        def serving_port() -> Optional[int]:
            if self.proc.poll() is not None:
                raise AssertionError(f"normd exited {self.proc.returncode}: {Path(log_path).read_text()[-2000:]}")
            for raw in Path(log_path).read_bytes().splitlines():
                try:
                    doc = json.loads(raw)
                except ValueError:
                    continue
                if doc.get("msg") == "normd serving" and doc.get("listen"):
                    return int(str(doc["listen"]).rsplit(":", 1)[1])
            return None

        self.port = wait_for(serving_port, "normd's `normd serving` log line", START_S, 0.05)

        def ready() -> bool:
            try:
                return _unix_get(self.socket_path, "/readyz")[0] == 200
            except OSError:
                return False
        wait_for(ready, "normd GET /readyz 200", START_S, 0.05)

    def write_flags(self, flags: dict) -> None:
        tmp = self.flags_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(flags, f)
        os.replace(tmp, self.flags_path)  # atomic, as a ConfigMap update

    def requests(self) -> List[dict]:
        status, body = _unix_get(self.socket_path, "/_fault/requests")
        if status != 200:
            raise AssertionError(f"GET /_fault/requests answered {status}")
        return json.loads(body)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        if getattr(self, "log", None):
            self.log.close()


def flat_stats(stats: Dict[str, Any]) -> Dict[str, Any]:
    """The client's stats() under the kit's dotted names."""
    out: Dict[str, Any] = {}

    def walk(prefix: str, d: Dict[str, Any]) -> None:
        for k, v in d.items():
            name = f"{prefix}{k}"
            if isinstance(v, dict):
                walk(name + ".", v)
            else:
                out[name] = v
    walk("", stats)
    return out


def stat(stats: Dict[str, Any], name: str) -> Any:
    flat = flat_stats(stats)
    if name in flat:
        return flat[name]
    if name.startswith("errors_by_code."):
        return 0  # a counter never incremented reads 0
    raise AssertionError(f"stat {name!r} is not in the client's vocabulary")


class Runner:
    def __init__(self, test: unittest.TestCase, path: Path) -> None:
        self.t = test
        self.path = path
        self.sc = json.loads(path.read_text(encoding="utf-8"))

    def run(self) -> None:
        sc = self.sc
        if sc["server"] == "normd" and not NORMD_BIN:
            print(f"\n*** SKIPPED {self.path.name}: NORMD_BIN is unset (real-normd scenario) ***",
                  file=sys.stderr)
            raise unittest.SkipTest("NORMD_BIN unset: real-normd scenario skipped")
        if sc["server"] == "fault" and "normd" in sc or sc["server"] == "normd" and "fault" in sc:
            raise AssertionError("`fault`/`normd` does not match `server`")
        tmp = tempfile.mkdtemp(prefix="normd-py-kit-")
        self.t.addCleanup(shutil.rmtree, tmp, True)
        self.server = Server(sc, self.path, tmp)
        self.t.addCleanup(self.server.stop)
        self.client = self._client(sc.get("client") or {}, tmp)
        self.t.addCleanup(self.client.close)
        for i, step in enumerate(sc["steps"]):
            try:
                self._step(step)
            except AssertionError as e:
                raise AssertionError(f"{self.path.name} step {i} {json.dumps(step, ensure_ascii=False)}: {e}") from None
        s = self.client.stats()
        self.t.assertEqual(s["calls"], s["normd_ok"] + s["fallback_total"] + s["errors"],
                           "calls != normd_ok + fallback_total + errors")

    def _client(self, cfg: dict, tmp: str) -> NormdClient:
        unknown = set(cfg) - CLIENT_FIELDS
        if unknown:
            raise AssertionError(f"unknown client fields {sorted(unknown)}")
        transports = cfg.get("transports", ["unix"])
        if set(transports) - {"unix", "tcp"} or not transports:
            raise AssertionError(f"bad transports {transports}")
        self.clock = FakeClock()
        sock = os.path.join(tmp, "missing.sock") if cfg.get("socket_missing") else self.server.socket_path
        kw: Dict[str, Any] = dict(
            socket_path=sock if "unix" in transports else None,
            tcp_port=self.server.port if "tcp" in transports else None,
            deadline_ms=cfg.get("deadline_ms", 1000),
            failure_threshold=cfg.get("failure_threshold", 5),
            cooldown_s=cfg.get("cooldown_ms", 5000) / 1000,
            rollout_percent=cfg.get("rollout_percent"),
            flags_refresh_s=cfg.get("flags_refresh_ms", 0) / 1000,
            clock=self.clock,
            flags_timeout_s=START_S,  # a loaded machine must not turn a flags fetch into a failure
        )
        if "timeout_slack_ms" in cfg:
            kw["timeout_slack_ms"] = cfg["timeout_slack_ms"]
        if "shadow_max_concurrent" in cfg:
            kw["max_shadow_in_flight"] = cfg["shadow_max_concurrent"]
        client = NormdClient(**kw)
        if kw["rollout_percent"] is None:
            client.ready(START_S)  # the first fetch; whether it loaded is the scenario's to check
        return client

    # ---- steps --------------------------------------------------------------

    def _step(self, step: dict) -> None:
        step = {k: v for k, v in step.items() if k != "note"}
        if "call" in step:
            self._only(step, {"call", "expect"})
            outcome, value = self._call(step["call"])
            self._expect(step.get("expect") or {}, outcome, value)
        elif "concurrent" in step:
            self._only(step, {"concurrent", "expect_outcomes"})
            self._concurrent(step["concurrent"], step.get("expect_outcomes") or {})
        elif "advance_clock" in step:
            self._only(step, {"advance_clock"})
            self.clock.advance(step["advance_clock"] / 1000)
        elif "refresh_flags" in step:
            self._only(step, {"refresh_flags", "expect_ok"})
            ok = self.client.refresh_flags()
            if "expect_ok" in step:
                self.t.assertEqual(ok, step["expect_ok"], "refresh_flags result")
        elif "wait_flags" in step:
            self._only(step, {"wait_flags"})
            want = step["wait_flags"]
            if set(want) - FLAG_FIELDS:
                raise AssertionError(f"unknown wait_flags fields {sorted(set(want) - FLAG_FIELDS)}")

            def flags_are() -> bool:
                self.client.refresh_flags()
                f = self.client.stats()["flags"]
                return all(f.get(k) == v for k, v in want.items())
            wait_for(flags_are, f"flags {want}", 5.0, 0.05)
        elif "write_flags" in step:
            self._only(step, {"write_flags"})
            if self.server.kind != "normd":
                raise AssertionError("write_flags is for normd scenarios")
            self.server.write_flags(step["write_flags"])
        elif "kill_server" in step:
            self._only(step, {"kill_server"})
            self.server.kill()
        elif "remove_socket" in step:
            self._only(step, {"remove_socket"})
            os.unlink(self.server.socket_path)
        elif "wait_shadow" in step:
            self._only(step, {"wait_shadow"})
            n = step["wait_shadow"]

            def shadows_done() -> bool:
                sh = self.client.stats()["shadow"]
                return sh["compared"] + sh["normd_failures"] >= n
            wait_for(shadows_done, f"{n} shadow calls to finish", 5.0, 0.01)
        elif "expect_stats" in step:
            self._only(step, {"expect_stats"})
            s = self.client.stats()
            for name, want in step["expect_stats"].items():
                self.t.assertEqual(stat(s, name), want, f"stats {name}")
        elif "expect_requests" in step:
            self._only(step, {"expect_requests"})
            self._expect_requests(step["expect_requests"])
        else:
            raise AssertionError(f"unknown step {sorted(step)}")

    @staticmethod
    def _only(step: dict, allowed: set) -> None:
        extra = set(step) - allowed
        if extra:
            raise AssertionError(f"unknown step fields {sorted(extra)}")

    def _call(self, call: dict):
        if set(call) - CALL_FIELDS:
            raise AssertionError(f"unknown call fields {sorted(set(call) - CALL_FIELDS)}")
        if "body_text" in call:
            body = call["body_text"]
        else:
            body = json.dumps(call.get("body"), separators=(",", ":"), ensure_ascii=False)
        inapp = call.get("inapp", "{}").encode("utf-8")
        query = call.get("query") or {}
        if set(query) - {"profile", "schema", "encoding", "level"}:
            raise AssertionError(f"unknown query fields {sorted(query)}")
        try:
            r = self.client.norm(body, key=call.get("key"), deadline_ms=call.get("deadline_ms"),
                                 fallback=lambda b, ctx: inapp, **query)
        except NormdError as e:
            return f"error:{e.code}", e
        return ("normd" if r.path == "normd" else r.reason), r

    def _expect(self, exp: dict, outcome: str, value: Any) -> None:
        if set(exp) - EXPECT_FIELDS:
            raise AssertionError(f"unknown expect fields {sorted(set(exp) - EXPECT_FIELDS)}")
        if "error" in exp:
            self.t.assertIsInstance(value, NormdError, f"expected an error, got {outcome}")
            self.t.assertEqual({"status": value.status, "code": value.code}, exp["error"])
            return
        self.t.assertNotIsInstance(value, NormdError, f"unexpected error {value}")
        if "path" in exp:
            self.t.assertEqual(value.path, exp["path"], f"path (reason {value.reason})")
        if "reason" in exp:
            self.t.assertEqual(value.reason, exp["reason"], "reason")
        if "encoding" in exp:
            self.t.assertEqual(value.encoding, exp["encoding"], "encoding")
        if "digest" in exp:
            self.t.assertEqual(value.digest, exp["digest"], "digest")
        if "canonical" in exp:
            self.t.assertEqual(value.path, "normd", "canonical of a non-normd answer")
            self.t.assertEqual(gzip.decompress(value.data).decode("utf-8"), exp["canonical"], "canonical")

    def _concurrent(self, calls: List[dict], want: Dict[str, int]) -> None:
        barrier = threading.Barrier(len(calls))
        outcomes: List[str] = []
        lock = threading.Lock()

        def one(call: dict) -> None:
            barrier.wait(5)
            outcome, _ = self._call(call)
            with lock:
                outcomes.append(outcome)
        threads = [threading.Thread(target=one, args=(c,), daemon=True) for c in calls]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.t.assertEqual(len(outcomes), len(calls), "not every concurrent call finished")
        counts: Dict[str, int] = {}
        for o in outcomes:
            counts[o] = counts.get(o, 0) + 1
        self.t.assertEqual(counts, want, "outcomes")

    def _expect_requests(self, exp: dict) -> None:
        if set(exp) - {"count", "path", "last_headers"}:
            raise AssertionError(f"unknown expect_requests fields {sorted(exp)}")
        if self.server.kind != "fault":
            raise AssertionError("expect_requests is for fault scenarios")
        path = exp.get("path", "/norm")

        def seen_now() -> List[dict]:
            return [r for r in self.server.requests() if r["path"] == path]
        seen = seen_now()
        if "count" in exp:
            # The server records a request when its handler thread gets to it; a call
            # that timed out may come back before that: poll (bounded) for the count.
            end = time.monotonic() + 2.0
            while len(seen) != exp["count"] and time.monotonic() < end:
                time.sleep(0.02)
                seen = seen_now()
            self.t.assertEqual(len(seen), exp["count"], f"requests to {path}")
        if "last_headers" in exp:
            self.t.assertTrue(seen, f"no request to {path}")
            last = seen[-1]["headers"]
            for name, value in exp["last_headers"].items():
                self.t.assertEqual(last.get(name), value, f"header {name} of the last {path}")


class Rollout(unittest.TestCase):
    def test_rollout_json(self) -> None:
        doc = json.loads((KIT / "rollout.json").read_text(encoding="utf-8"))
        self.assertEqual((doc["hash"], doc["modulo"]), ("fnv1a32", 100))
        self.assertTrue(doc["cases"])
        for case in doc["cases"]:
            with self.subTest(key=case["key"]):
                self.assertEqual(fnv1a32(case["key"]), case["fnv1a32"])
                self.assertEqual(bucket_of(case["key"]), case["bucket"])


class Scenarios(unittest.TestCase):
    """One generated test per scenario file (below)."""


def _add(path: Path) -> None:
    def test(self: unittest.TestCase) -> None:
        Runner(self, path).run()
    name = "test_" + re.sub(r"\W", "_", path.stem)
    test.__name__ = name
    test.__doc__ = path.name
    setattr(Scenarios, name, test)


for _p in sorted((KIT / "scenarios").glob("*.json")):
    _add(_p)

if not list((KIT / "scenarios").glob("*.json")):
    def test_kit_has_scenarios(self: unittest.TestCase) -> None:
        self.fail(f"no scenarios in {KIT / 'scenarios'}")
    Scenarios.test_kit_has_scenarios = test_kit_has_scenarios  # type: ignore[attr-defined]


if __name__ == "__main__":
    unittest.main()
