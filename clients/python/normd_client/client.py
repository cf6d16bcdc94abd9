"""The app side of normd: decides per call whether the normalize → validate →
compress work goes to the sidecar or stays in-app, and turns every "normd
can't right now" into a call of the app's own function.

It must never make a call slower than its deadline plus a small slack, never
retry or fall back on a contract error (the caller's data is wrong), and
never let shadow traffic touch the caller's latency or the breaker.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import quote

from ._breaker import CircuitBreaker
from ._rollout import Key, bucket_of, clamp_percent
from ._transport import (Counters, Response, TCPHTTPConnection, Transport, UnixHTTPConnection,
                         exchange)
from .errors import NormdClosed, NormdError, NormdUnavailable, _as_problem

#: Fallback reasons: the keys of stats()["fallback_by_reason"].
REASONS = (
    "overloaded",    # 429
    "unavailable",   # 503 not_ready / draining / memory_pressure; flags never loaded
    "disabled",      # flag enabled=false, or 503 disabled
    "deadline",      # 504
    "server_error",  # 500, any status outside the contract, a 200 without its digest
    "connection",    # socket missing / refused / reset, a cut or oversized answer
    "timeout",       # no complete answer within deadline + slack
    "breaker_open",  # short-circuited, no I/O
    "rollout",       # key outside rollout_percent, no I/O
    "shadow",        # answered in-app, normd called in the background to compare
)

# normd's 4xx contract answers (429 aside): the caller's request or data is
# wrong, so the call raises. Any other 4xx is something in front of normd.
_CONTRACT_ERRORS = frozenset({400, 404, 405, 413, 415, 422})

# Headers the client owns; same-named ones passed through by the caller are dropped.
_OWN_HEADERS = frozenset({"content-type", "content-length", "transfer-encoding", "x-deadline-ms",
                          "host", "connection"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_DIGEST = re.compile(r"sha-256=:[A-Za-z0-9+/]+={0,2}:\Z")
_FLAGS_HEADERS = {"Accept": "application/json"}
_MISMATCH_SAMPLE = 16
_FIRST_FLAGS_RETRY_S = 0.1

Body = Union[bytes, bytearray, memoryview, str]


@dataclass
class Result:
    """What norm() returns. path "normd": `data` is the canonical JSON
    compressed with `encoding`; path "inapp": `data` is what the fallback
    returned and `reason` says why."""
    path: str
    data: Any
    reason: Optional[str] = None
    encoding: Optional[str] = None
    digest: Optional[str] = None
    canonical_bytes: Optional[int] = None
    input_bytes: Optional[int] = None
    output_bytes: Optional[int] = None
    schema: Optional[str] = None
    request_id: Optional[str] = None
    transport: Optional[str] = None


@dataclass
class FallbackContext:
    """The second argument of the fallback function."""
    reason: str
    key: Optional[Key]
    error: Optional[BaseException]


@dataclass(frozen=True)
class Flag:
    enabled: bool = True
    rollout_percent: int = 100
    shadow_percent: int = 0


def parse_flags(doc: Any, name: str) -> Flag:
    """The flag `name` of a GET /flags document. Missing flag or field: normd's
    own defaults (enabled, 100 %, no shadow). Raises ValueError on anything
    else, so a malformed document never moves the rollout."""
    if not isinstance(doc, dict) or not isinstance(doc.get("flags"), dict):
        raise ValueError("GET /flags: body is not a flags document")
    raw = doc["flags"].get(name)
    if raw is None:
        return Flag()
    if not isinstance(raw, dict):
        raise ValueError(f"flag {name!r} is not an object")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"flag {name!r}: enabled is not a boolean")
    percents = []
    for field, dflt in (("rollout_percent", 100), ("shadow_percent", 0)):
        v = raw.get(field, dflt)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"flag {name!r}: {field} is not a number")
        percents.append(clamp_percent(v))
    return Flag(enabled, percents[0], percents[1])


def sha256_digest(data: bytes) -> str:
    """`sha-256=:<base64>:`, the form of X-Normd-Digest."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode("ascii") + ":"


def _int_header(h: Dict[str, str], name: str) -> Optional[int]:
    v = h.get(name)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def _percent_arg(name: str, v: Optional[float]) -> Optional[int]:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 100:
        raise ValueError(f"{name} must be a number 0..100")
    return int(v)


def _positive(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
        raise ValueError(f"{name} must be a number >= 0")
    return float(v)


class NormdClient:
    """A thread-safe normd client; share one per process.

    `norm()` blocks the calling thread for at most the call's deadline plus
    `timeout_slack_ms` (plus the fallback's own time). Everything normd-side
    that goes wrong becomes a call of `fallback(body, ctx)`; only contract
    errors (400/404/405/413/415/422) raise, as `NormdError`.
    """

    def __init__(
        self,
        socket_path: Optional[str] = None,
        *,
        tcp_port: Optional[int] = None,
        tcp_host: str = "127.0.0.1",
        deadline_ms: float = 20,
        timeout_slack_ms: float = 5,
        fallback: Optional[Callable[[Any, FallbackContext], Any]] = None,
        profile: Optional[str] = None,
        schema: Optional[str] = None,
        encoding: Optional[str] = None,
        level: Optional[int] = None,
        flag_name: str = "norm",
        flags_refresh_s: float = 5.0,
        flags_timeout_s: float = 1.0,
        rollout_percent: Optional[float] = None,
        failure_threshold: int = 5,
        cooldown_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        max_response_bytes: int = 64 * 1024 * 1024,
        shadow_canonical: Optional[Callable[[Any], bytes]] = None,
        max_shadow_in_flight: int = 4,
        pool_size: int = 8,
    ) -> None:
        if not socket_path and not tcp_port:
            raise ValueError("NormdClient needs socket_path and/or tcp_port")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 0:
            raise ValueError("pool_size must be an integer >= 0")
        if isinstance(max_shadow_in_flight, bool) or not isinstance(max_shadow_in_flight, int) \
                or max_shadow_in_flight < 0:
            raise ValueError("max_shadow_in_flight must be an integer >= 0")
        self._transports: List[Transport] = []
        if socket_path:
            path = socket_path
            self._transports.append(Transport("unix", lambda: UnixHTTPConnection(path), pool_size))
        if tcp_port:
            host, port = tcp_host, tcp_port
            self._transports.append(Transport("tcp", lambda: TCPHTTPConnection(host, port), pool_size))

        self._deadline_ms = _positive("deadline_ms", deadline_ms)
        self._slack_s = _positive("timeout_slack_ms", timeout_slack_ms) / 1000
        self._fallback = fallback
        self._defaults = {"profile": profile, "schema": schema, "encoding": encoding, "level": level}
        self._default_path = self._norm_path({})
        self._flag_name = flag_name
        self._flags_timeout_s = _positive("flags_timeout_s", flags_timeout_s)
        self._max_response_bytes = int(_positive("max_response_bytes", max_response_bytes))
        self._breaker = CircuitBreaker(failure_threshold, cooldown_s, clock)
        self._rollout_override = _percent_arg("rollout_percent", rollout_percent)
        self._shadow_canonical = shadow_canonical
        self._shadow_slots = threading.BoundedSemaphore(max_shadow_in_flight) if max_shadow_in_flight else None
        self._shadow_max = max_shadow_in_flight
        self._shadow_pool: Optional[ThreadPoolExecutor] = None

        self._lock = threading.Lock()  # counters, flags state, shadow sample
        self._net = Counters()
        self._reset_counters()
        self._flag: Optional[Flag] = None
        self._flags_meta: Dict[str, Any] = {"version": None, "mtime": None, "fetched_at": None,
                                            "last_error": None}
        self._refresh_lock = threading.Lock()
        self._closed = False
        self._stop = threading.Event()
        self._first_flags = threading.Event()
        self._flags_thread: Optional[threading.Thread] = None

        if self._rollout_override is not None:
            self._first_flags.set()  # a fixed rollout: no flag requests at all
        else:
            period = _positive("flags_refresh_s", flags_refresh_s)
            self._flags_thread = threading.Thread(target=self._refresh_loop, args=(period,),
                                                  name="normd-flags", daemon=True)
            self._flags_thread.start()

    # ---- the call ---------------------------------------------------------

    def norm(
        self,
        body: Body,
        *,
        key: Optional[Key] = None,
        profile: Optional[str] = None,
        schema: Optional[str] = None,
        encoding: Optional[str] = None,
        level: Optional[int] = None,
        deadline_ms: Optional[float] = None,
        request_id: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        fallback: Optional[Callable[[Any, FallbackContext], Any]] = None,
    ) -> Result:
        """Normalize → validate → compress `body` (JSON text: bytes sent as is,
        str as UTF-8), in normd when the flag, the rollout and the breaker
        allow it, else with the fallback. Raises NormdError on a contract
        error; TypeError/ValueError on a bad argument (before anything is
        counted or sent)."""
        if self._closed:
            raise NormdClosed()
        # Everything that can raise on bad input happens before the breaker
        # hands out a (probe) ticket, so a caller's bug can never wedge it.
        if isinstance(body, str):
            payload = body.encode("utf-8")
        elif isinstance(body, (bytes, bytearray, memoryview)):
            payload = bytes(body)
        else:
            raise TypeError("body must be bytes or str (JSON text)")
        dl = self._deadline_ms if deadline_ms is None else _positive("deadline_ms", deadline_ms)
        dl_header = max(1, round(dl))
        if profile is None and schema is None and encoding is None and level is None:
            path = self._default_path  # most calls: no query string to build
        else:
            path = self._norm_path({"profile": profile, "schema": schema, "encoding": encoding, "level": level})
        hdrs = _request_headers(dl_header, request_id, headers)
        budget_s = dl_header / 1000 + self._slack_s
        fb = fallback or self._fallback
        with self._lock:
            self._c["calls"] += 1

        reason = self._route(key)
        if reason == "shadow":
            result = self._fall_back("shadow", body, key, None, fb)
            self._start_shadow(result.data, payload, path, hdrs, key, budget_s)
            return result
        if reason:
            return self._fall_back(reason, body, key, None, fb)
        ticket = self._breaker.acquire()
        if ticket is None:
            return self._fall_back("breaker_open", body, key, None, fb)

        kind, value, alive = self._send(path, hdrs, payload, budget_s)
        if alive:
            self._breaker.success(ticket)
        else:
            self._breaker.failure(ticket)
        if kind == "ok":
            with self._lock:
                self._c["normd_ok"] += 1
            return value
        if kind == "error":
            with self._lock:
                self._c["errors"] += 1
                codes = self._c["errors_by_code"]
                codes[value.code] = codes.get(value.code, 0) + 1
            raise value
        reason, error = value
        return self._fall_back(reason, body, key, error, fb)

    def _send(self, path: str, hdrs: Dict[str, str], payload: bytes,
              budget_s: float) -> Tuple[str, Any, bool]:
        """One POST /norm and what it means: ("ok", Result, True),
        ("error", NormdError, True) or ("fallback", (reason, error), alive),
        where `alive` is the breaker's success/failure verdict."""
        try:
            res = exchange(self._transports, self._net, "POST", path, hdrs, payload, budget_s,
                           self._max_response_bytes)
        except socket.timeout as e:
            return "fallback", ("timeout", e), False
        except Exception as e:  # reset, refused, cut, oversized, closed: normd's side
            return "fallback", ("connection", e), False
        return _interpret(res)

    def _route(self, key: Optional[Key]) -> Optional[str]:
        """None to send the call to normd, else the reason not to."""
        if self._rollout_override is not None:
            percent, shadow = self._rollout_override, 0
        else:
            flag = self._flag
            if flag is None:
                return "unavailable"
            if not flag.enabled:
                return "disabled"
            percent, shadow = flag.rollout_percent, flag.shadow_percent
        if percent >= 100:
            return None
        if percent <= 0 and shadow <= 0:
            return "rollout"
        bucket = bucket_of(key)
        if bucket < percent:
            return None
        return "shadow" if bucket < shadow else "rollout"

    def _fall_back(self, reason: str, body: Any, key: Optional[Key], error: Optional[BaseException],
                   fn: Optional[Callable[[Any, FallbackContext], Any]]) -> Result:
        with self._lock:
            self._c["fallback_total"] += 1
            self._c["fallback_by_reason"][reason] += 1
        if fn is None:
            raise NormdUnavailable(reason, error)
        return Result(path="inapp", reason=reason, data=fn(body, FallbackContext(reason, key, error)))

    def _norm_path(self, sel: Mapping[str, Any]) -> str:
        parts = []
        for k in ("profile", "schema", "encoding", "level"):
            v = sel.get(k)
            if v is None:
                v = self._defaults[k]
            if v is not None and v != "":
                parts.append(f"{k}={quote(str(v), safe='')}")
        return "/norm?" + "&".join(parts) if parts else "/norm"

    # ---- shadow -----------------------------------------------------------

    def _start_shadow(self, result: Any, payload: bytes, path: str, hdrs: Dict[str, str],
                      key: Optional[Key], budget_s: float) -> None:
        """Send the call to normd off the caller's path, or count it skipped."""
        slots = self._shadow_slots
        if slots is None or not self._breaker.is_closed() or not slots.acquire(blocking=False):
            with self._lock:
                self._shadow["skipped"] += 1
            return
        # Hashed here, a few microseconds for a few KB: the worker then holds
        # a 50-byte digest instead of the in-app result, whatever it is.
        try:
            canon = result if self._shadow_canonical is None else self._shadow_canonical(result)
            if isinstance(canon, str):
                canon = canon.encode("utf-8")
            if not isinstance(canon, (bytes, bytearray, memoryview)):
                raise TypeError("the in-app result is not bytes or str; set shadow_canonical")
            want = sha256_digest(canon)
        except Exception:
            slots.release()
            with self._lock:
                self._shadow["skipped"] += 1
                self._shadow["compare_errors"] += 1
            return
        try:
            with self._lock:
                if self._shadow_pool is None:
                    self._shadow_pool = ThreadPoolExecutor(self._shadow_max, thread_name_prefix="normd-shadow")
                pool = self._shadow_pool
                self._shadow["started"] += 1
                self._shadow["in_flight"] += 1
            pool.submit(self._shadow_call, want, payload, path, hdrs, key, budget_s)
        except RuntimeError:  # the pool was shut down by close()
            slots.release()
            with self._lock:
                self._shadow["started"] -= 1
                self._shadow["in_flight"] -= 1
                self._shadow["skipped"] += 1

    def _shadow_call(self, want: str, payload: bytes, path: str, hdrs: Dict[str, str],
                     key: Optional[Key], budget_s: float) -> None:
        outcome = "normd_failures"
        try:
            # Never the breaker: shadow traffic must not change what real calls do.
            kind, value, _ = self._send(path, hdrs, payload, budget_s)
            if kind == "ok":
                outcome = "matches" if value.digest == want else "mismatches"
            elif kind == "error":
                outcome = "mismatches"  # normd refuses what the in-app path accepted
        finally:
            with self._lock:
                s = self._shadow
                s["in_flight"] -= 1
                s[outcome] += 1
                if outcome != "normd_failures":
                    s["compared"] += 1
                if outcome == "mismatches":
                    s["mismatch_keys"].append(key if key is None or isinstance(key, (str, int)) else repr(key))
            assert self._shadow_slots is not None
            self._shadow_slots.release()

    # ---- flags ------------------------------------------------------------

    def _refresh_loop(self, period: float) -> None:
        # Until the flags are known every call goes in-app: retry a failed
        # first fetch sooner (100 ms, doubling) than the refresh period.
        ok = self.refresh_flags()
        self._first_flags.set()
        if period <= 0:
            return
        retry = _FIRST_FLAGS_RETRY_S
        while not self._stop.is_set():  # ends on close()
            if self._flag is None and not ok and retry < period:
                wait, retry = retry, retry * 2
            else:
                wait = period
            if self._stop.wait(wait):
                return
            ok = self.refresh_flags()

    def refresh_flags(self, timeout_s: Optional[float] = None) -> bool:
        """Fetch GET /flags once; on any failure the last good flags stay in
        use. Returns whether the refresh succeeded."""
        if self._closed:
            return False
        budget = self._flags_timeout_s if timeout_s is None else _positive("timeout_s", timeout_s)
        with self._refresh_lock:
            try:
                res = exchange(self._transports, self._net, "GET", "/flags", _FLAGS_HEADERS, None,
                               budget, self._max_response_bytes)
                if res.status != 200:
                    raise ValueError(f"GET /flags answered {res.status}")
                doc = json.loads(res.body.decode("utf-8"))
                flag = parse_flags(doc, self._flag_name)
            except Exception as e:
                with self._lock:
                    self._c["flags_refresh_failures"] += 1
                    self._flags_meta["last_error"] = str(e) or type(e).__name__
                return False
            with self._lock:
                self._flag = flag
                self._flags_meta = {"version": doc.get("version"), "mtime": doc.get("mtime"),
                                    "fetched_at": time.monotonic(), "last_error": None}
                self._c["flags_refresh_ok"] += 1
            return True

    def ready(self, timeout: Optional[float] = None) -> bool:
        """Wait (at most `timeout` seconds) for the first GET /flags to settle;
        True if flags are loaded (or a fixed rollout_percent is set). norm()
        never waits: until then calls fall back as `unavailable`."""
        self._first_flags.wait(timeout)
        return self._rollout_override is not None or self._flag is not None

    # ---- stats and lifecycle ---------------------------------------------

    def _reset_counters(self) -> None:
        self._c: Dict[str, Any] = {
            "calls": 0, "normd_ok": 0, "fallback_total": 0,
            "fallback_by_reason": dict.fromkeys(REASONS, 0),
            "errors": 0, "errors_by_code": {},
            "flags_refresh_ok": 0, "flags_refresh_failures": 0,
        }
        in_flight = getattr(self, "_shadow", {}).get("in_flight", 0)
        self._shadow: Dict[str, Any] = {
            "started": 0, "compared": 0, "matches": 0, "mismatches": 0, "normd_failures": 0,
            "skipped": 0, "compare_errors": 0, "in_flight": in_flight,
            "mismatch_keys": deque(maxlen=_MISMATCH_SAMPLE),
        }
        with self._net.lock:
            self._net.reset()

    def reset_stats(self) -> None:
        """Zero the counters (not the breaker, the flags or shadow in_flight)."""
        with self._lock:
            self._reset_counters()

    def stats(self) -> Dict[str, Any]:
        """Counters of every decision, plus breaker, flags and shadow state.
        calls == normd_ok + fallback_total + errors."""
        breaker = self._breaker.snapshot()
        with self._net.lock:
            net = {"retries": self._net.retries, "transport_failovers": self._net.transport_failovers,
                   "by_transport": dict(self._net.by_transport)}
        with self._lock:
            c, f, m = self._c, self._flag, self._flags_meta
            shadow = dict(self._shadow, mismatch_keys=list(self._shadow["mismatch_keys"]))
            return {
                "calls": c["calls"], "normd_ok": c["normd_ok"], "fallback_total": c["fallback_total"],
                "fallback_by_reason": dict(c["fallback_by_reason"]),
                "errors": c["errors"], "errors_by_code": dict(c["errors_by_code"]),
                **net,
                "breaker": breaker,
                "rollout_override": self._rollout_override,
                "flags": {
                    "loaded": f is not None,
                    "enabled": f.enabled if f else None,
                    "rollout_percent": f.rollout_percent if f else None,
                    "shadow_percent": f.shadow_percent if f else None,
                    "version": m["version"], "mtime": m["mtime"],
                    "age_s": None if m["fetched_at"] is None else time.monotonic() - m["fetched_at"],
                    "refresh_ok": c["flags_refresh_ok"],
                    "refresh_failures": c["flags_refresh_failures"],
                    "last_error": m["last_error"],
                },
                "shadow": shadow,
            }

    def close(self) -> None:
        """Stop the flags thread, cut every exchange still out (those calls
        fall back as `connection`), close the connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for t in self._transports:
            t.close()
        if self._flags_thread is not None:
            self._flags_thread.join(self._flags_timeout_s + 1)
        with self._lock:
            pool = self._shadow_pool
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> "NormdClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _request_headers(deadline_ms: int, request_id: Optional[str],
                     extra: Optional[Mapping[str, str]]) -> Dict[str, str]:
    """The headers of one POST /norm; a header HTTP does not allow raises
    ValueError here, as the caller's bug, not a normd failure for the breaker."""
    h: Dict[str, str] = {}
    if extra:
        for name, value in extra.items():
            if not isinstance(name, str) or not _TOKEN.match(name):
                raise ValueError(f"header name {name!r} is not an HTTP token")
            if not isinstance(value, str):
                raise TypeError(f"header {name!r}: value must be a str")
            if name.lower() not in _OWN_HEADERS:
                h[name] = value
    if request_id is not None:
        h = {k: v for k, v in h.items() if k.lower() != "x-request-id"}
        h["X-Request-Id"] = request_id
    for name, value in h.items():
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"header {name!r}: CR, LF or NUL in the value")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"header {name!r}: value is not Latin-1") from None
    h["Host"] = "localhost"
    h["Content-Type"] = "application/json"
    h["X-Deadline-Ms"] = str(deadline_ms)
    return h


def _interpret(res: Response) -> Tuple[str, Any, bool]:
    """What normd's answer means, as in the README's fallback table."""
    h = res.headers
    request_id = h.get("x-request-id")
    status = res.status
    if status == 200:
        digest = h.get("x-normd-digest")
        if digest is None or not _DIGEST.match(digest):
            # A 200 without its digest is not normd's contract: trust nothing in it.
            err = RuntimeError(f"normd 200 without a valid X-Normd-Digest ({digest!r})")
            return "fallback", ("server_error", err), False
        return "ok", Result(
            path="normd", data=res.body, encoding=h.get("x-normd-encoding"), digest=digest,
            canonical_bytes=_int_header(h, "x-normd-canonical-bytes"),
            input_bytes=_int_header(h, "x-normd-input-bytes"),
            output_bytes=_int_header(h, "x-normd-output-bytes"),
            schema=h.get("x-normd-schema"), request_id=request_id, transport=res.transport,
        ), True
    error = NormdError.from_problem(status, _as_problem(res.body, status), request_id)
    if status in _CONTRACT_ERRORS:
        return "error", error, True
    if status == 429:
        return "fallback", ("overloaded", error), False
    if status == 503:
        if error.code == "disabled":
            return "fallback", ("disabled", error), True  # alive and answering; the flag said no
        return "fallback", ("unavailable", error), False
    if status == 504:
        return "fallback", ("deadline", error), False
    return "fallback", ("server_error", error), False
