package dev.normd.client;

import dev.normd.testing.Check;
import dev.normd.testing.Registry;
import dev.normd.testing.Suite;
import java.nio.charset.StandardCharsets;
import java.time.Duration;

/** GET /flags: first fetch, refresh, last good kept, defaults; and the sticky rollout it drives. */
public final class FlagsTest implements Suite {
    private static final byte[] BODY = "{}".getBytes(StandardCharsets.UTF_8);


    /** A client that fetches flags once at build and then only on refreshFlags(). */
    private static NormdClient manual(FakeNormd fake) {
        return NormdClient.builder().socketPath(fake.socket).flagsRefresh(Duration.ZERO).deadline(Duration.ofSeconds(2))
                .fallback(b -> "in-app").build();
    }

    @Override
    public void register(Registry t) {
        t.test("the first GET /flags is fetched at build; awaitFlags reports it", FakeNormd.onTempSocket(fake -> {
            fake.flagsJson = FakeNormd.flagsDoc(true, 42, 0);
            try (NormdClient c = manual(fake)) {
                Check.eq(true, c.awaitFlags(Duration.ofSeconds(5)), "loaded");
                Stats.Flags f = c.stats().flags();
                Check.eq(true, f.loaded(), "loaded");
                Check.eq(42, f.rolloutPercent(), "rollout_percent");
                Check.eq(0, f.shadowPercent(), "shadow_percent");
                Check.eq("v1", f.version(), "version");
                Check.eq(1L, f.refreshOk(), "refresh_ok");
                Check.eq("application/json", fake.requests("/flags").get(0).header("accept"), "Accept");
            }
        }));

        t.test("until flags are known, calls go in-app as unavailable without touching normd", FakeNormd.onTempSocket(fake -> {
            fake.flagsStatus = 500;
            try (NormdClient c = manual(fake)) {
                Check.eq(false, c.awaitFlags(Duration.ofSeconds(5)), "not loaded");
                Result r = c.norm(BODY, CallOptions.key("k"));
                Check.eq(Reason.UNAVAILABLE, r.reason(), "reason");
                Check.eq(0, fake.requests("/norm").size(), "no POST");
                Check.that(c.stats().flags().lastError().contains("500"), "last_error: " + c.stats().flags().lastError());
                fake.flagsStatus = 200;
                Check.eq(true, c.refreshFlags(), "manual refresh");
                Check.that(c.norm(BODY, CallOptions.key("k")).fromNormd(), "routed once loaded");
                Check.eq(null, c.stats().flags().lastError(), "last_error cleared");
            }
        }));

        t.test("a failed first fetch is retried sooner than the refresh period", FakeNormd.onTempSocket(fake -> {
            fake.flagsStatus = 503;
            try (NormdClient c = NormdClient.builder().socketPath(fake.socket).flagsRefresh(Duration.ofMinutes(10))
                    .fallback(b -> "in-app").build()) {
                Check.eq(false, c.awaitFlags(Duration.ofSeconds(5)), "first fetch failed");
                fake.flagsStatus = 200;
                Check.eventually(5000, "retried and loaded", () -> c.stats().flags().loaded());
            }
        }));

        t.test("the background refresh picks up changes", FakeNormd.onTempSocket(fake -> {
            try (NormdClient c = NormdClient.builder().socketPath(fake.socket).flagsRefresh(Duration.ofMillis(20))
                    .fallback(b -> "in-app").build()) {
                Check.eq(true, c.awaitFlags(Duration.ofSeconds(5)), "loaded");
                fake.flagsJson = FakeNormd.flagsDoc(false, 100, 0);
                Check.eventually(5000, "disabled seen", () -> Boolean.FALSE.equals(c.stats().flags().enabled()));
                Check.eq(Reason.DISABLED, c.norm(BODY).reason(), "disabled: in-app, no I/O");
                Check.eq(0, fake.requests("/norm").size(), "no POST");
            }
        }));

        String[][] bad = {
            {"not JSON", "{\"flags\":"},
            {"an array", "[]"},
            {"an empty object", "{}"},
            {"flags not an object", "{\"flags\":[]}"},
            {"the flag not an object", "{\"flags\":{\"norm\":true}}"},
            {"enabled not a boolean", "{\"flags\":{\"norm\":{\"enabled\":\"yes\"}}}"},
            {"rollout_percent not a number", "{\"flags\":{\"norm\":{\"rollout_percent\":\"50\"}}}"},
            {"shadow_percent null", "{\"flags\":{\"norm\":{\"shadow_percent\":null}}}"},
        };
        for (String[] b : bad) {
            t.test("a refresh that reads " + b[0] + " fails and keeps the last good flags", FakeNormd.onTempSocket(fake -> {
                fake.flagsJson = FakeNormd.flagsDoc(true, 30, 60);
                try (NormdClient c = manual(fake)) {
                    Check.eq(true, c.awaitFlags(Duration.ofSeconds(5)), "first load");
                    fake.flagsJson = b[1];
                    Check.eq(false, c.refreshFlags(), "refresh fails");
                    Stats.Flags f = c.stats().flags();
                    Check.eq(30, f.rolloutPercent(), "rollout kept");
                    Check.eq(60, f.shadowPercent(), "shadow kept");
                    Check.eq(1L, f.refreshFailures(), "refresh_failures");
                    Check.that(f.lastError() != null, "last_error set");
                }
            }));
        }

        t.test("a missing flag or field means enabled, 100 %, shadow 0; fractions round down, outside 0..100 clamps", FakeNormd.onTempSocket(fake -> {
            fake.flagsJson = "{\"flags\":{\"validate\":{\"enabled\":false}}}";
            try (NormdClient c = manual(fake)) {
                Check.eq(true, c.awaitFlags(Duration.ofSeconds(5)), "loaded");
                Stats.Flags f = c.stats().flags();
                Check.eq(true, f.enabled(), "enabled");
                Check.eq(100, f.rolloutPercent(), "rollout");
                Check.eq(0, f.shadowPercent(), "shadow");
                fake.flagsJson = "{\"flags\":{\"norm\":{\"rollout_percent\":12.9,\"shadow_percent\":250}}}";
                Check.eq(true, c.refreshFlags(), "refresh");
                Check.eq(12, c.stats().flags().rolloutPercent(), "floor");
                Check.eq(100, c.stats().flags().shadowPercent(), "clamped");
                Check.eq(null, c.stats().flags().version(), "no version in the document");
            }
        }));

        t.test("flagName picks another flag", FakeNormd.onTempSocket(fake -> {
            fake.flagsJson = "{\"flags\":{\"norm\":{\"enabled\":false},\"orders\":{\"rollout_percent\":7}}}";
            try (NormdClient c = NormdClient.builder().socketPath(fake.socket).flagName("orders").flagsRefresh(Duration.ZERO).build()) {
                Check.eq(true, c.awaitFlags(Duration.ofSeconds(5)), "loaded");
                Check.eq(true, c.stats().flags().enabled(), "enabled");
                Check.eq(7, c.stats().flags().rolloutPercent(), "its rollout");
            }
        }));

        t.test("a fixed rolloutPercent sends no GET /flags at all", FakeNormd.onTempSocket(fake -> {
            try (NormdClient c = NormdClient.builder().socketPath(fake.socket).rolloutPercent(100).build()) {
                Check.eq(true, c.awaitFlags(Duration.ofMillis(1)), "nothing to wait for");
                Check.that(c.norm(BODY).fromNormd(), "routed");
                Check.eq(100, c.stats().rolloutOverride(), "rollout_override");
            }
            Check.eq(0, fake.requests("/flags").size(), "no GET /flags");
        }));

        t.test("sticky rollout: each key routes by its own bucket, the same way every time", FakeNormd.onTempSocket(fake -> {
            fake.flagsJson = FakeNormd.flagsDoc(true, 25, 0);
            try (NormdClient c = manual(fake)) {
                Check.eq(true, c.awaitFlags(Duration.ofSeconds(5)), "loaded");
                int expectedNormd = 0;
                for (int i = 0; i < 400; i++) {
                    String key = "user-" + i;
                    boolean in = Rollout.bucket(key) < 25;
                    if (in) expectedNormd++;
                    for (int round = 0; round < 2; round++) {
                        Result r = c.norm(BODY, CallOptions.key(key));
                        Check.eq(in, r.fromNormd(), key + " round " + round);
                        if (!in) Check.eq(Reason.ROLLOUT, r.reason(), "reason");
                    }
                }
                Check.that(expectedNormd > 60 && expectedNormd < 140, "the keys spread over the buckets: " + expectedNormd);
                Check.eq(2L * expectedNormd, c.stats().normdOk(), "normd_ok");
            }
        }));

        t.test("without a key the split is random per call: 0 % and 100 % are absolute", FakeNormd.onTempSocket(fake -> {
            fake.flagsJson = FakeNormd.flagsDoc(true, 0, 0);
            try (NormdClient c = manual(fake)) {
                Check.eq(true, c.awaitFlags(Duration.ofSeconds(5)), "loaded");
                for (int i = 0; i < 50; i++) Check.eq(Reason.ROLLOUT, c.norm(BODY).reason(), "0 %");
                fake.flagsJson = FakeNormd.flagsDoc(true, 100, 0);
                Check.eq(true, c.refreshFlags(), "refresh");
                for (int i = 0; i < 50; i++) Check.that(c.norm(BODY).fromNormd(), "100 %");
                fake.flagsJson = FakeNormd.flagsDoc(true, 50, 0);
                Check.eq(true, c.refreshFlags(), "refresh");
                int normd = 0;
                for (int i = 0; i < 200; i++) if (c.norm(BODY).fromNormd()) normd++;
                // P(all 200 on one side) is 2^-199: both sides are seen.
                Check.that(normd > 0 && normd < 200, "a random split: " + normd);
            }
        }));

        t.test("stats() flags section before any load", FakeNormd.onTempSocket(fake -> {
            fake.flagsStatus = 404;
            try (NormdClient c = manual(fake)) {
                c.awaitFlags(Duration.ofSeconds(5));
                Stats.Flags f = c.stats().flags();
                Check.eq(false, f.loaded(), "loaded");
                Check.eq(null, f.enabled(), "enabled");
                Check.eq(null, f.ageMillis(), "age");
                Check.eq(1L, f.refreshFailures(), "refresh_failures");
            }
        }));
    }
}
