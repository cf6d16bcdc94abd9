"""GET /flags: the first fetch, stale-but-usable refreshes, defaults, the
background thread, and how the flag routes calls."""
from __future__ import annotations

import unittest

from normd_client import Flag, NormdClient, parse_flags
from support import FakeNormd, inapp, keys_in, wait_for


class ParseFlags(unittest.TestCase):
    def test_missing_flag_or_fields_mean_normd_defaults(self) -> None:
        self.assertEqual(parse_flags({"flags": {}}, "norm"), Flag(True, 100, 0))
        self.assertEqual(parse_flags({"flags": {"norm": {}}}, "norm"), Flag(True, 100, 0))
        self.assertEqual(parse_flags({"flags": {"norm": {"enabled": False}}}, "norm"), Flag(False, 100, 0))
        self.assertEqual(parse_flags({"flags": {"norm": {"rollout_percent": 12.7, "shadow_percent": 40}}}, "norm"),
                         Flag(True, 12, 40))
        self.assertEqual(parse_flags({"flags": {"norm": {"rollout_percent": 400}}}, "norm").rollout_percent, 100)

    def test_anything_else_is_refused(self) -> None:
        bad = [[], {}, {"flags": []}, {"flags": {"norm": []}}, {"flags": {"norm": {"enabled": "yes"}}},
               {"flags": {"norm": {"rollout_percent": "5"}}}, {"flags": {"norm": {"rollout_percent": True}}},
               {"flags": {"norm": {"shadow_percent": None}}}]
        for doc in bad:
            with self.subTest(doc=doc), self.assertRaises(ValueError):
                parse_flags(doc, "norm")


class FlagsFromNormd(unittest.TestCase):
    def setUp(self) -> None:
        self.fake = FakeNormd()
        self.addCleanup(self.fake.close)

    def client(self, **kw) -> NormdClient:
        kw.setdefault("fallback", inapp)
        kw.setdefault("flags_refresh_s", 0)
        kw.setdefault("deadline_ms", 10_000)  # generous: only the routing is under test
        kw.setdefault("flags_timeout_s", 10)
        c = NormdClient(self.fake.socket_path, **kw)
        self.addCleanup(c.close)
        return c

    def test_first_fetch_at_construction_and_ready_reports_it(self) -> None:
        c = self.client()
        self.assertTrue(c.ready(5))
        f = c.stats()["flags"]
        self.assertEqual((f["loaded"], f["enabled"], f["rollout_percent"], f["shadow_percent"], f["version"]),
                         (True, True, 100, 0, "v1"))
        self.assertEqual(self.fake.requests[0]["headers"]["accept"], "application/json")

    def test_until_flags_are_known_calls_fall_back_as_unavailable(self) -> None:
        self.fake.flags_handler = lambda h: h.problem(503, "not_ready")
        c = self.client()
        self.assertFalse(c.ready(5))
        r = c.norm("{}")
        self.assertEqual((r.path, r.reason), ("inapp", "unavailable"))
        self.assertEqual(self.fake.norm_requests, 0)
        s = c.stats()
        self.assertEqual((s["flags"]["loaded"], s["flags"]["refresh_failures"]), (False, 1))
        self.assertIn("503", s["flags"]["last_error"])

    def test_a_failed_first_fetch_is_retried_sooner_than_the_period(self) -> None:
        self.fake.flags_handler = lambda h: h.problem(503, "not_ready")
        c = self.client(flags_refresh_s=3600)
        self.assertFalse(c.ready(5))
        self.fake.flags_handler = None
        wait_for(lambda: c.stats()["flags"]["loaded"], "the retried first fetch", 5)
        self.assertEqual(c.norm("{}").path, "normd")

    def test_refresh_flags_picks_up_rollout_enabled_and_shadow(self) -> None:
        c = self.client()
        self.assertTrue(c.ready(5))
        self.fake.set_flag({"enabled": False})
        self.assertTrue(c.refresh_flags())
        self.assertEqual(c.norm("{}").reason, "disabled")
        self.assertEqual(self.fake.norm_requests, 0)
        self.fake.set_flag({"enabled": True, "rollout_percent": 30, "shadow_percent": 50})
        self.assertTrue(c.refresh_flags())
        f = c.stats()["flags"]
        self.assertEqual((f["enabled"], f["rollout_percent"], f["shadow_percent"], f["version"]),
                         (True, 30, 50, "v2"))

    def test_the_background_thread_refreshes(self) -> None:
        c = self.client(flags_refresh_s=0.05)
        self.assertTrue(c.ready(5))
        self.fake.set_flag({"enabled": True, "rollout_percent": 7})
        wait_for(lambda: c.stats()["flags"]["rollout_percent"] == 7, "the background refresh", 5)

    def test_failed_or_malformed_refreshes_keep_the_last_good_flags(self) -> None:
        self.fake.set_flag({"enabled": True, "rollout_percent": 42})
        c = self.client()
        self.assertTrue(c.ready(5))
        bad = [
            ("500", lambda h: h.problem(500, "internal")),
            ("not JSON", lambda h: h.send_json(200, b"<html>")),
            ("an array", lambda h: h.send_json(200, [])),
            ("{}", lambda h: h.send_json(200, {})),
            ("a health document", lambda h: h.send_json(200, {"status": "ok"})),
            ("a bad flag", lambda h: h.send_json(200, {"flags": {"norm": {"enabled": "no"}}})),
        ]
        for name, handler in bad:
            with self.subTest(name):
                self.fake.flags_handler = handler
                self.assertFalse(c.refresh_flags())
                f = c.stats()["flags"]
                self.assertEqual((f["loaded"], f["rollout_percent"]), (True, 42))
                self.assertTrue(f["last_error"])
        self.assertEqual(c.stats()["flags"]["refresh_failures"], len(bad))
        self.fake.flags_handler = None
        self.assertTrue(c.refresh_flags())
        self.assertIsNone(c.stats()["flags"]["last_error"])

    def test_a_document_without_our_flag_routes_everything(self) -> None:
        self.fake.set_flag(None)
        c = self.client()
        self.assertTrue(c.ready(5))
        self.assertEqual(c.norm("{}", key=keys_in(99, 100)[0]).path, "normd")

    def test_flag_name_picks_another_flag(self) -> None:
        self.fake.flags = {"norm": {"enabled": False}, "norm_eu": {"enabled": True}}
        c = self.client(flag_name="norm_eu")
        self.assertTrue(c.ready(5))
        self.assertEqual(c.norm("{}").path, "normd")

    def test_rollout_from_flags_is_sticky_and_splits_near_the_percentage(self) -> None:
        self.fake.set_flag({"enabled": True, "rollout_percent": 25})
        c = self.client(rollout_percent=None)
        self.assertTrue(c.ready(5))
        inside, outside = keys_in(0, 25)[0], keys_in(25, 100)[0]
        for _ in range(3):
            self.assertEqual(c.norm("{}", key=inside).path, "normd")
            self.assertEqual(c.norm("{}", key=outside).reason, "rollout")

    def test_a_fixed_rollout_sends_no_flag_requests(self) -> None:
        c = self.client(rollout_percent=0, flags_refresh_s=0.01)
        self.assertTrue(c.ready(0))
        self.assertEqual(c.norm("{}").reason, "rollout")
        c2 = self.client(rollout_percent=100)
        self.assertEqual(c2.norm("{}").path, "normd")
        self.assertEqual(self.fake.flags_requests, 0)
        self.assertEqual(c2.stats()["rollout_override"], 100)

    def test_normd_503_disabled_is_honoured_under_a_fixed_rollout(self) -> None:
        self.fake.norm_handler = lambda h, b: h.problem(503, "disabled")
        c = self.client(rollout_percent=100, failure_threshold=1)
        self.assertEqual(c.norm("{}").reason, "disabled")
        self.assertEqual(c.stats()["breaker"]["state"], "closed")

    def test_nonsense_settings_are_refused(self) -> None:
        for bad in ({"rollout_percent": 101}, {"rollout_percent": -1}, {"deadline_ms": -5},
                    {"pool_size": -1}, {"max_shadow_in_flight": 1.5}, {"flags_refresh_s": -1}):
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                NormdClient(self.fake.socket_path, **bad).close()


if __name__ == "__main__":
    unittest.main()
