"""Shadow mode: the caller gets the in-app answer, normd is called in the
background and its digest compared; bounded, breaker-neutral, keys only."""
from __future__ import annotations

import json
import unittest

from normd_client import NormdClient
from support import FakeClock, FakeNormd, answer_ok, canonical, inapp, keys_in, wait_for


class Shadow(unittest.TestCase):
    def setUp(self) -> None:
        self.fake = FakeNormd()
        self.addCleanup(self.fake.close)
        self.fake.set_flag({"enabled": True, "rollout_percent": 0, "shadow_percent": 100})

    def client(self, **kw) -> NormdClient:
        kw.setdefault("fallback", inapp)
        kw.setdefault("flags_refresh_s", 0)
        kw.setdefault("deadline_ms", 10_000)
        kw.setdefault("flags_timeout_s", 10)
        c = NormdClient(self.fake.socket_path, **kw)
        self.addCleanup(c.close)
        self.assertTrue(c.ready(5))
        return c

    def done(self, c: NormdClient, n: int) -> dict:
        def finished():
            sh = c.stats()["shadow"]
            return sh if sh["compared"] + sh["normd_failures"] >= n else None
        return wait_for(finished, f"{n} shadow calls to finish")

    def test_a_shadowed_call_answers_in_app_and_compares_in_the_background(self) -> None:
        c = self.client()
        r = c.norm('{"b":1,"a":2}', key="order-1")
        self.assertEqual((r.path, r.reason, r.data), ("inapp", "shadow", b'{"a":2,"b":1}'))
        sh = self.done(c, 1)
        self.assertEqual((sh["started"], sh["matches"], sh["mismatches"], sh["in_flight"]), (1, 1, 0, 0))
        s = c.stats()
        self.assertEqual((s["calls"], s["fallback_total"], s["fallback_by_reason"]["shadow"], s["normd_ok"]),
                         (1, 1, 1, 0))
        self.assertEqual(self.fake.norm_paths()[0]["body"], b'{"b":1,"a":2}')

    def test_only_buckets_between_rollout_and_shadow_are_shadowed(self) -> None:
        self.fake.set_flag({"enabled": True, "rollout_percent": 20, "shadow_percent": 60})
        c = self.client()
        self.assertEqual(c.norm("{}", key=keys_in(0, 20)[0]).path, "normd")
        self.assertEqual(c.norm("{}", key=keys_in(20, 60)[0]).reason, "shadow")
        self.assertEqual(c.norm("{}", key=keys_in(60, 100)[0]).reason, "rollout")
        self.done(c, 1)
        self.assertEqual(self.fake.norm_requests, 2)

    def test_mismatches_keep_a_bounded_sample_of_keys_never_payloads(self) -> None:
        c = self.client(fallback=lambda body, ctx: b'{"not":"canonical" }')
        for i in range(20):
            c.norm('{"secret":"s3cr3t"}', key=f"order-{i}")
            self.done(c, i + 1)
        sh = c.stats()["shadow"]
        self.assertEqual((sh["mismatches"], sh["compared"]), (20, 20))
        self.assertEqual(sh["mismatch_keys"], [f"order-{i}" for i in range(4, 20)])
        self.assertNotIn("s3cr3t", json.dumps(c.stats()))

    def test_a_contract_error_on_a_shadow_call_is_a_mismatch_not_an_error(self) -> None:
        self.fake.norm_handler = lambda h, b: h.problem(422, "schema_violation")
        c = self.client()
        self.assertEqual(c.norm("{}", key="k1").reason, "shadow")
        sh = self.done(c, 1)
        self.assertEqual((sh["mismatches"], sh["normd_failures"], sh["mismatch_keys"]), (1, 0, ["k1"]))
        self.assertEqual(c.stats()["errors"], 0)

    def test_normd_failures_are_counted_and_never_move_the_breaker(self) -> None:
        self.fake.norm_handler = lambda h, b: h.problem(503, "not_ready")
        c = self.client(failure_threshold=1)
        for i in range(3):
            self.assertEqual(c.norm("{}", key=f"k{i}").reason, "shadow")
            self.done(c, i + 1)
        s = c.stats()
        self.assertEqual((s["shadow"]["normd_failures"], s["breaker"]["state"], s["breaker"]["opened_total"]),
                         (3, "closed", 0))

    def test_skipped_while_the_breaker_is_open_or_half_open(self) -> None:
        self.fake.set_flag({"enabled": True, "rollout_percent": 50, "shadow_percent": 100})
        clock = FakeClock()
        c = self.client(failure_threshold=1, cooldown_s=5, clock=clock)
        real, shadowed = keys_in(0, 50)[0], keys_in(50, 100)[0]
        self.fake.norm_handler = lambda h, b: h.problem(500, "internal")
        self.assertEqual(c.norm("{}", key=real).reason, "server_error")
        self.assertEqual(c.norm("{}", key=shadowed).reason, "shadow")
        clock.advance(5)
        self.assertEqual(c.norm("{}", key=shadowed).reason, "shadow")
        s = c.stats()
        self.assertEqual((s["breaker"]["state"], s["shadow"]["skipped"], s["shadow"]["started"]),
                         ("half_open", 2, 0))
        self.assertEqual(self.fake.norm_requests, 1)

    def test_past_the_concurrency_bound_shadow_calls_are_skipped(self) -> None:
        self.fake.norm_handler = lambda h, b: (h.hold(), answer_ok(h, b))
        c = self.client(max_shadow_in_flight=2)
        for i in range(5):
            self.assertEqual(c.norm("{}", key=f"k{i}").reason, "shadow")
        sh = c.stats()["shadow"]
        self.assertEqual((sh["started"], sh["skipped"]), (2, 3))
        wait_for(lambda: self.fake.norm_requests == 2, "both shadow calls to reach the fake")
        self.fake.release.set()
        sh = self.done(c, 2)
        self.assertEqual((sh["matches"], self.fake.norm_requests), (2, 2))

    def test_zero_in_flight_turns_shadow_calls_off(self) -> None:
        c = self.client(max_shadow_in_flight=0)
        self.assertEqual(c.norm("{}").reason, "shadow")
        self.assertEqual(c.stats()["shadow"]["skipped"], 1)

    def test_a_hook_turns_a_non_bytes_result_into_canonical_bytes(self) -> None:
        c = self.client(fallback=lambda body, ctx: json.loads(body), shadow_canonical=canonical)
        r = c.norm('{"b":[1,2],"a":"x"}', key="k")
        self.assertEqual(r.data, {"a": "x", "b": [1, 2]})
        sh = self.done(c, 1)
        self.assertEqual(sh["matches"], 1)

    def test_without_a_hook_a_non_bytes_result_is_skipped(self) -> None:
        c = self.client(fallback=lambda body, ctx: {"a": 1})
        c.norm("{}")
        sh = c.stats()["shadow"]
        self.assertEqual((sh["skipped"], sh["compare_errors"]), (1, 1))
        self.assertEqual(self.fake.norm_requests, 0)

    def test_a_failing_hook_is_counted_and_sends_nothing(self) -> None:
        def broken(result):
            raise RuntimeError("boom")
        c = self.client(shadow_canonical=broken)
        self.assertEqual(c.norm("{}").reason, "shadow")
        sh = c.stats()["shadow"]
        self.assertEqual((sh["skipped"], sh["compare_errors"], sh["started"]), (1, 1, 0))
        self.assertEqual((self.fake.norm_requests, sh["in_flight"]), (0, 0))

    def test_a_keyless_mismatch_is_recorded_as_none(self) -> None:
        c = self.client(fallback=lambda body, ctx: b"not normd's")
        c.norm("{}")
        self.assertEqual(self.done(c, 1)["mismatch_keys"], [None])

    def test_the_caller_does_not_wait_for_normd(self) -> None:
        self.fake.norm_handler = lambda h, b: h.hold()
        c = self.client()
        self.assertEqual(c.norm("{}").reason, "shadow")
        # Returned while normd still holds the shadow call.
        wait_for(lambda: self.fake.norm_requests == 1, "the shadow call to reach the fake")
        self.assertFalse(self.fake.release.is_set())
        self.assertEqual(c.stats()["shadow"]["in_flight"], 1)


if __name__ == "__main__":
    unittest.main()
