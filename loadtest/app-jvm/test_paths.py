#!/usr/bin/env python3
"""Same input, same answer: the JVM demo app's in-app path against its normd path.

Starts one normd (NORMD_BIN, `loadtest/normd-bench.toml`, Unix socket only) and two
instances of the app on 127.0.0.1: ROLLOUT=0 (every order in-app) and ROLLOUT=100 (every
order through normd with the Java client). Sends every shared payload (1k, 4k, 64k,
invalid, bad) and hand-made edge cases (numbers, whitespace, key order, escapes, bad
bodies) to both, and checks:

- the same status; for a 200 the same answer bytes, `X-Path` inapp / normd (no fallback),
  and the stored orders (`GET /orders/<key>`) decompress to the same canonical bytes,
  whose SHA-256 is the answer's digest;
- for a 4xx the same `error` code, and for a schema violation the same set of
  `instance_path`s.

Stdlib only; traffic only to 127.0.0.1 and a Unix socket. Ends with
`N passed, N failed`; exit 1 on any failure.
"""
import argparse
import base64
import gzip
import hashlib
import http.client
import json
import os
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))  # loadtest/lt/, from any working directory

from lt.httpclient import wait_unix_ready  # noqa: E402

REPO = HERE.parent.parent
SHARED = pathlib.Path(os.environ.get("NORMD_SHARED", REPO.parent / "shared"))
if not (SHARED / "bench").is_dir() and pathlib.Path("/work/shared/bench").is_dir():
    SHARED = pathlib.Path("/work/shared")
PAYLOADS = SHARED / "bench" / "payloads"


def start_normd(normd: str, tmp: pathlib.Path) -> tuple[subprocess.Popen, str]:
    """Starts normd on a Unix socket in tmp (bench config); returns it once /readyz says 200, else exits."""
    sock = str(tmp / "normd.sock")
    log = open(tmp / "normd.log", "wb")
    p = subprocess.Popen([normd, "serve", "--config", str(REPO / "loadtest" / "normd-bench.toml"),
                          "--schemas", str(REPO / "schemas"), "--socket", sock, "--listen", "",
                          "--workers", "1", "--drain-delay-ms", "0", "--probe-interval-ms", "3600000"],
                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if wait_unix_ready(p, sock, 20, 0.05, probe_timeout=2.0):
        return p, sock
    p.kill()
    sys.exit(f"normd did not get ready; see {tmp / 'normd.log'}")


def start_app(env_extra: dict, tmp: pathlib.Path, name: str) -> tuple[subprocess.Popen, int]:
    cp = (HERE / "build" / "classpath").read_text().strip()
    env = dict(os.environ, PORT="0", CACHE_MB="64", WORKERS="4", **env_extra)
    err = open(tmp / f"{name}.stderr.log", "wb")
    p = subprocess.Popen(["java", "-Xms64m", "-Xmx256m", "-XX:+UseG1GC", "-cp", cp, "dev.normd.demo.App"],
                         env=env, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    line = p.stdout.readline()
    try:
        port = json.loads(line)["port"]
    except (ValueError, KeyError):
        p.kill()
        sys.exit(f"app {name} did not start: {line!r}; see {tmp / (name + '.stderr.log')}")
    return p, port


class Conn:
    def __init__(self, port: int):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def req(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        h = {"Content-Type": "application/json"} if body is not None else {}
        h.update(headers or {})
        for attempt in range(2):
            try:
                self.c.request(method, path, body=body, headers=h)
                r = self.c.getresponse()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
            except (http.client.HTTPException, ConnectionError):
                self.c.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")


def doc(name: str) -> dict:
    return json.loads((PAYLOADS / "4k" / name).read_text())


def edge_cases() -> list[tuple[str, bytes, dict]]:
    """(name, body, extra headers) — hand-made inputs at the edges of the contract."""
    cases = []
    base = (PAYLOADS / "4k" / "0001.json").read_text()
    assert base.rstrip().endswith("}")

    def with_extra(raw_json_value: str) -> bytes:
        # `order` takes additional properties: splice a raw value in as /order/x_extra
        i = base.index('"order": {') + len('"order": {')
        return (base[:i] + '"x_extra": ' + raw_json_value + ", " + base[i:]).encode()

    numbers = ["1E30", "1e21", "1e20", "1e-7", "0.000001", "123e-2", "1e+2", "100", "1.0", "2.50", "-0", "-0.0",
               "0e-400", "0.1", "0.30000000000000004", "4.35", "1.5e300", "5e-324", "1.7976931348623157e308",
               "12345.678901234567891", "9007199254740992", "-9007199254740992", "9007199254740993",
               "123456789012345678", "1e400", "-1e400", "1e-400", "18014398509481984", "1.8014398509481984E16",
               "0.000001234", "1234567.125", "-12.5e-10"]
    for n in numbers:
        cases.append((f"number {n}", with_extra(n), {}))
    strings = [r'"\u00a0nbsp\u2003"', r'"\u0085nel\u3000"', r'"\u001cfs\u001f"', r'"\u200bzwsp\u200b"',
               r'"  \u2028ls\u2029  "', r'"\ud83d\ude00 astral \t"', r'"\u0007bell\u007f"', r'"q\"b\\s\/"',
               r'"\u000b\u000c vt ff"', '"\\ud800 lone"', '"ok\\udc00"']
    for s in strings:
        cases.append((f"string {s}", with_extra(s), {}))
    cases.append(("key order", with_extra('{"z": 1, "\\u00e9": 2, "\\ud83d\\ude00": 3, "\\uffff": 4, "Z": 5, "a b": 6, "": 7}'), {}))
    cases.append(("duplicate key", with_extra('{"a": 1, "a": 2}'), {}))
    cases.append(("too deep", with_extra("[" * 200 + "]" * 200), {}))
    cases.append(("deep but allowed", with_extra("[" * 120 + "]" * 120), {}))
    cases.append(("invalid utf-8", with_extra('"x"').replace(b'"x"', b'"\xff\xfe"'), {}))
    cases.append(("empty body", b"", {}))
    cases.append(("trailing garbage", base.encode() + b" x", {}))
    cases.append(("two documents", base.encode() + b" {}", {}))
    cases.append(("a JSON array", b"[1, 2]", {}))
    cases.append(("wrong content type", base.encode(), {"Content-Type": "text/csv"}))
    cases.append(("too large", b'{"x": "' + b"a" * (1 << 20) + b'"}', {}))
    d = doc("0002.json")
    d["order"]["items"][0]["qty"] = 1.0
    cases.append(("qty 1.0", json.dumps(d).encode(), {}))
    d = doc("0002.json")
    d["order"]["items"][0]["qty"] = 1.5
    cases.append(("qty 1.5", json.dumps(d).encode(), {}))
    d = doc("0002.json")
    d["order"]["items"][0]["price"] = "1"
    d["order"]["customer"]["vip"] = "yes"
    cases.append(("wrong types", json.dumps(d).encode(), {}))
    d = doc("0002.json")
    d["metadata"]["labels"] = {"a": 1, "b": None, "c": "x"}
    d["order"]["shipping_address"]["geo"] = {"lat": 91, "lon": -181}
    d["order"]["items"][0]["tags"] = ["a", "a", "B"]
    cases.append(("labels, geo, tags", json.dumps(d).encode(), {}))
    d = doc("0002.json")
    d["order"]["customer"]["name"] = "   \t "
    d["order"]["payment"]["card_last4"] = None
    d["extra_root"] = 1
    cases.append(("blank name, extra root member", json.dumps(d).encode(), {}))
    d = doc("0002.json")
    del d["order"]["totals"]
    d["order"]["items"] = []
    cases.append(("missing totals, no items", json.dumps(d).encode(), {}))
    return cases


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--normd", default=os.environ.get("NORMD_BIN"), required=os.environ.get("NORMD_BIN") is None)
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--quick", action="store_true",
                    help="every 8th valid shared payload (all invalid, bad and edge cases): the CI smoke's time budget")
    args = ap.parse_args()

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="app-jvm-test-"))
    procs = []
    passed = failed = 0
    try:
        normd, sock = start_normd(args.normd, tmp)
        procs.append(normd)
        common = {"NORMD_SOCKET": sock, "NORMD_PROFILE": "bench", "NORMD_DEADLINE_MS": "5000"}
        a0, port0 = start_app(dict(common, ROLLOUT="0"), tmp, "app0")
        procs.append(a0)
        a100, port100 = start_app(dict(common, ROLLOUT="100"), tmp, "app100")
        procs.append(a100)
        c0, c100 = Conn(port0), Conn(port100)

        inputs = []
        for d in ("1k", "4k", "64k", "invalid", "bad"):
            files = sorted((PAYLOADS / d).glob("*.json"))
            if args.quick and d in ("1k", "4k", "64k"):
                files = files[::8]
            for f in files:
                inputs.append((f"{d}/{f.name}", f.read_bytes(), {}))
        inputs += edge_cases()

        for i, (name, body, headers) in enumerate(inputs):
            key = f"t{i}"
            h = {"X-Request-Key": key, **headers}
            s0, h0, b0 = c0.req("POST", "/orders", body, h)
            s1, h1, b1 = c100.req("POST", "/orders", body, h)
            problems = []
            if s0 != s1:
                problems.append(f"status in-app {s0} vs normd {s1}")
            if s0 == 200 and s1 == 200:
                if b0 != b1:
                    problems.append(f"answers differ: {b0!r} vs {b1!r}")
                if h0.get("x-path") != "inapp" or h1.get("x-path") != "normd":
                    problems.append(f"paths {h0.get('x-path')} / {h1.get('x-path')} (a fallback?)")
                g0 = c0.req("GET", f"/orders/{key}")
                g1 = c100.req("GET", f"/orders/{key}")
                if g0[0] != 200 or g1[0] != 200:
                    problems.append(f"GET /orders/{key}: {g0[0]} / {g1[0]}")
                else:
                    can0, can1 = gzip.decompress(g0[2]), gzip.decompress(g1[2])
                    if can0 != can1:
                        at = next((j for j in range(min(len(can0), len(can1))) if can0[j] != can1[j]), min(len(can0), len(can1)))
                        problems.append(f"canonical bytes differ at {at}: in-app …{can0[max(0, at - 40):at + 40]!r}… "
                                        f"normd …{can1[max(0, at - 40):at + 40]!r}…")
                    digest = "sha-256=:" + base64.b64encode(hashlib.sha256(can0).digest()).decode() + ":"
                    if json.loads(b0)["digest"] != digest:
                        problems.append("digest is not the SHA-256 of the stored canonical bytes")
            elif s0 == s1:
                e0, e1 = json.loads(b0), json.loads(b1)
                if e0.get("error") != e1.get("error"):
                    problems.append(f"error code in-app {e0.get('error')} vs normd {e1.get('error')}")
                p0 = sorted({e["instance_path"] for e in e0.get("errors", [])})
                p1 = sorted({e["instance_path"] for e in e1.get("errors", [])})
                if p0 != p1:
                    problems.append(f"instance paths in-app {p0} vs normd {p1}")
            if s0 >= 500 or s1 >= 500:
                problems.append(f"a 5xx: {b0[:200]!r} / {b1[:200]!r}")
            if problems:
                failed += 1
                print(f"FAIL {name}: " + "; ".join(problems))
                if args.verbose:
                    print(f"     in-app {s0} {b0[:400]!r}\n     normd  {s1} {b1[:400]!r}")
            else:
                passed += 1
                if args.verbose:
                    print(f"ok   {name}: {s0} {b0[:120]!r}")

        # every 4xx must name its problem clearly: an error code and a detail
        s, _, b = c0.req("GET", "/nope")
        ok = s == 404 and json.loads(b)["error"] == "not_found"
        s, _, b = c0.req("PUT", "/orders", b"{}")
        ok &= s == 405
        passed, failed = passed + ok, failed + (not ok)
        if not ok:
            print("FAIL 404/405 routes")

        st = json.loads(c100.req("GET", "/stats")[2])
        fallbacks = {k: v for k, v in st.get("client", {}).items() if k.startswith("fallback_by_reason.")}
        if fallbacks:
            failed += 1
            print(f"FAIL the ROLLOUT=100 app fell back: {fallbacks}")
        else:
            passed += 1
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
