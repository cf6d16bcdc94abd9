"""Consecutive-failure circuit breaker. Owns only the state machine: no I/O,
and time only through the injected clock, so tests drive the cooldown
without sleeping. Thread-safe.

    closed --N consecutive failures--> open --cooldown--> half_open
    half_open: exactly one probe passes; its success closes, its failure re-opens

A call gets a ticket from `acquire()` and hands it back with its outcome. A
ticket from before the last open or close (a slow call that was already out
when the breaker changed) no longer moves it: a late 200 must not close an
open breaker without its probe, nor a late failure re-open a closed one.
"""
from __future__ import annotations

import threading
from typing import Callable, NamedTuple, Optional


class Ticket(NamedTuple):
    epoch: int
    probe: bool


class CircuitBreaker:
    def __init__(self, failure_threshold: int = 5, cooldown_s: float = 5.0,
                 clock: Optional[Callable[[], float]] = None) -> None:
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int) or failure_threshold < 1:
            raise ValueError("failure_threshold must be an integer >= 1")
        if not isinstance(cooldown_s, (int, float)) or cooldown_s < 0:
            raise ValueError("cooldown_s must be a number >= 0")
        import time
        self.failure_threshold = failure_threshold
        self.cooldown_s = float(cooldown_s)
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._state = "closed"
        self._failures = 0
        self._opened_total = 0
        self._opened_at = 0.0
        self._probe_out = False
        self._epoch = 0  # bumped on every open and close: older tickets are stale

    def acquire(self) -> Optional[Ticket]:
        """A ticket to send one call, or None when the call must short-circuit."""
        with self._lock:
            if self._state == "closed":
                return Ticket(self._epoch, False)
            if self._state == "open":
                if self._clock() - self._opened_at < self.cooldown_s:
                    return None
                self._state = "half_open"
                self._probe_out = False
            if self._probe_out:
                return None
            self._probe_out = True
            return Ticket(self._epoch, True)

    def success(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket.epoch != self._epoch:
                return
            if self._state == "closed":
                self._failures = 0
            elif self._state == "half_open" and ticket.probe:
                self._failures = 0
                self._probe_out = False
                self._state = "closed"
                self._epoch += 1

    def failure(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket.epoch != self._epoch:
                return
            if self._state == "closed":
                self._failures += 1
                if self._failures >= self.failure_threshold:
                    self._open()
            elif self._state == "half_open" and ticket.probe:
                self._failures += 1
                self._open()

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self._clock()
        self._probe_out = False
        self._opened_total += 1
        self._epoch += 1

    def is_closed(self) -> bool:
        """Whether calls flow freely (shadow calls go out only then)."""
        with self._lock:
            return self._state == "closed"

    def snapshot(self) -> dict:
        """State for stats(); an open breaker past its cooldown reads half_open."""
        with self._lock:
            state = self._state
            if state == "open" and self._clock() - self._opened_at >= self.cooldown_s:
                state = "half_open"
            return {"state": state, "consecutive_failures": self._failures,
                    "opened_total": self._opened_total}
