"""Pure logic: the FNV-1a buckets and the breaker's state machine, driven by
an injected clock (no sleeping)."""
from __future__ import annotations

import unittest

from normd_client import bucket_of, fnv1a32
from normd_client._breaker import CircuitBreaker
from normd_client._rollout import clamp_percent
from support import FakeClock


class Rollout(unittest.TestCase):
    def test_fnv1a32_matches_the_published_vectors(self) -> None:
        self.assertEqual(fnv1a32(""), 0x811C9DC5)
        self.assertEqual(fnv1a32("a"), 0xE40C292C)
        self.assertEqual(fnv1a32("foobar"), 0xBF9CF968)
        self.assertEqual(fnv1a32("注文"), fnv1a32("注文".encode("utf-8")))

    def test_a_key_always_gets_the_same_bucket(self) -> None:
        for k in ("order-1", "order-2", 42, b"raw"):
            self.assertEqual(len({bucket_of(k) for _ in range(5)}), 1)
        self.assertEqual(bucket_of(42), bucket_of("42"))

    def test_1000_keys_at_25_percent_route_between_200_and_300(self) -> None:
        n = sum(bucket_of(f"order-{i}") < 25 for i in range(1000))
        self.assertTrue(200 <= n <= 300, n)

    def test_raising_the_percentage_only_adds_keys(self) -> None:
        keys = [f"user-{i}" for i in range(500)]
        at10 = {k for k in keys if bucket_of(k) < 10}
        at30 = {k for k in keys if bucket_of(k) < 30}
        self.assertLess(at10, at30)

    def test_flag_values_clamp_to_integer_percents(self) -> None:
        cases = [(-5, 0), (0, 0), (12.9, 12), (100, 100), (250, 100), (float("nan"), 0),
                 (float("inf"), 0), ("50", 0), (True, 0), (None, 0)]
        for raw, want in cases:
            self.assertEqual(clamp_percent(raw), want, raw)

    def test_without_a_key_the_bucket_is_random_but_in_range(self) -> None:
        buckets = {bucket_of(None) for _ in range(2000)}
        self.assertTrue(buckets <= set(range(100)))
        self.assertGreater(len(buckets), 50)


class Breaker(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = FakeClock()
        self.b = CircuitBreaker(3, 5.0, self.clock)

    def fail(self, n: int) -> None:
        for _ in range(n):
            self.b.failure(self.b.acquire())

    def test_opens_after_n_consecutive_failures_and_a_success_resets_the_count(self) -> None:
        self.fail(2)
        self.b.success(self.b.acquire())
        self.fail(2)
        self.assertEqual(self.b.snapshot()["state"], "closed")
        self.fail(1)
        self.assertEqual(self.b.snapshot(), {"state": "open", "consecutive_failures": 3, "opened_total": 1})
        self.assertIsNone(self.b.acquire())

    def test_half_open_after_the_cooldown_lets_exactly_one_probe_through(self) -> None:
        self.fail(3)
        self.clock.advance(4.999)
        self.assertIsNone(self.b.acquire())
        self.clock.advance(0.001)
        self.assertEqual(self.b.snapshot()["state"], "half_open")
        probe = self.b.acquire()
        self.assertTrue(probe.probe)
        self.assertIsNone(self.b.acquire())
        self.b.success(probe)
        self.assertEqual(self.b.snapshot()["state"], "closed")
        self.assertFalse(self.b.acquire().probe)

    def test_a_failed_probe_reopens_for_a_fresh_cooldown(self) -> None:
        self.fail(3)
        self.clock.advance(5)
        self.b.failure(self.b.acquire())
        self.assertEqual(self.b.snapshot()["opened_total"], 2)
        self.clock.advance(4.9)
        self.assertIsNone(self.b.acquire())
        self.clock.advance(0.1)
        self.assertIsNotNone(self.b.acquire())

    def test_a_call_that_was_out_when_the_breaker_changed_does_not_move_it(self) -> None:
        late = self.b.acquire()
        self.fail(3)
        self.b.success(late)  # a slow 200 must not close an open breaker
        self.assertEqual(self.b.snapshot()["state"], "open")
        self.clock.advance(5)
        probe = self.b.acquire()
        self.b.success(probe)
        late_failure = late
        self.b.failure(late_failure)  # nor a late failure count against the closed one
        self.assertEqual(self.b.snapshot()["consecutive_failures"], 0)
        self.assertFalse(self.b.is_closed() is False)

    def test_nonsense_settings_are_refused(self) -> None:
        for bad in ({"failure_threshold": 0}, {"failure_threshold": 1.5}, {"cooldown_s": -1}):
            with self.assertRaises(ValueError):
                CircuitBreaker(**bad)


if __name__ == "__main__":
    unittest.main()
