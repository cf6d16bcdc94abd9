package dev.normd.client;

import dev.normd.testing.Check;
import dev.normd.testing.Registry;
import dev.normd.testing.Suite;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/** Shadow mode's hooks and bounds (the kit's scenarios cover the routing and the counters). */
public final class ShadowTest implements Suite {
    private static final byte[] BODY = "{\"a\":1}".getBytes(StandardCharsets.UTF_8);


    /** Every call shadowed: rollout 0, shadow 100. */
    private static NormdClient.Builder shadowAll(FakeNormd fake) {
        return NormdClient.builder().socketPath(fake.socket).rolloutPercent(0).shadowPercent(100)
                .deadline(Duration.ofSeconds(2));
    }

    private static void waitDone(NormdClient c, long n) throws InterruptedException {
        Check.eventually(5000, n + " shadow calls done", () -> {
            Stats.Shadow s = c.stats().shadow();
            return s.compared() + s.normdFailures() + s.skipped() >= n && s.inFlight() == 0;
        });
    }

    @Override
    public void register(Registry t) {
        t.test("digestOf is X-Normd-Digest's form", () -> {
            // sha256("") is well known
            Check.eq("sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:", Shadow.digestOf(new byte[0]), "empty");
        });

        t.test("the in-app answer may be a byte[] or a String; both are compared", FakeNormd.onTempSocket(fake -> {
            List<Object> answers = new ArrayList<>(List.of("{\"a\":1}", "{\"a\":1}".getBytes(StandardCharsets.UTF_8), "{\"a\":2}"));
            try (NormdClient c = shadowAll(fake).fallback(b -> answers.remove(0)).build()) {
                for (int i = 0; i < 3; i++) {
                    Result r = c.norm(BODY, CallOptions.key("k" + i));
                    Check.eq(Reason.SHADOW, r.reason(), "reason");
                    waitDone(c, i + 1);
                }
                Stats.Shadow s = c.stats().shadow();
                Check.eq(2L, s.matches(), "matches");
                Check.eq(1L, s.mismatches(), "mismatches");
                Check.eq(List.of("k2"), s.mismatchKeys(), "mismatch keys");
            }
        }));

        t.test("shadowCanonical turns another in-app type into bytes; without it the call is skipped", FakeNormd.onTempSocket(fake -> {
            record Doc(String canonical) {}
            try (NormdClient c = shadowAll(fake).fallback(b -> new Doc("{\"a\":1}"))
                    .shadowCanonical(o -> ((Doc) o).canonical().getBytes(StandardCharsets.UTF_8)).build()) {
                c.norm(BODY, CallOptions.key("k"));
                waitDone(c, 1);
                Check.eq(1L, c.stats().shadow().matches(), "matched through the hook");
            }
            try (NormdClient c = shadowAll(fake).fallback(b -> new Doc("{\"a\":1}")).build()) {
                c.norm(BODY, CallOptions.key("k"));
                waitDone(c, 1);
                Check.eq(0L, c.stats().shadow().compared(), "not comparable");
                Check.eq(1L, c.stats().shadow().skipped(), "skipped");
            }
        }));

        t.test("shadowCompare replaces the digest check", FakeNormd.onTempSocket(fake -> {
            try (NormdClient c = shadowAll(fake).fallback(b -> "anything")
                    .shadowCompare((normd, inApp) -> normd.bytes().length == 7 && inApp.equals("anything")).build()) {
                c.norm(BODY, CallOptions.key("k"));
                waitDone(c, 1);
                Check.eq(1L, c.stats().shadow().matches(), "the hook's verdict");
            }
        }));

        t.test("the mismatch sample keeps the latest 16 keys, oldest first; a call without a key is named so", FakeNormd.onTempSocket(fake -> {
            try (NormdClient c = shadowAll(fake).fallback(b -> "different").build()) {
                for (int i = 0; i < 20; i++) {
                    c.norm(BODY, CallOptions.key("k" + i));
                    waitDone(c, i + 1);
                }
                c.norm(BODY);
                waitDone(c, 21);
                List<String> keys = c.stats().shadow().mismatchKeys();
                Check.eq(Shadow.MISMATCH_SAMPLE, keys.size(), "bounded");
                Check.eq("k5", keys.get(0), "oldest kept");
                Check.eq(Shadow.NO_KEY, keys.get(15), "newest");
                Check.eq(21L, c.stats().shadow().mismatches(), "all counted");
            }
        }));

        t.test("maxShadowInFlight 0 turns shadow calls off; the caller still gets reason shadow", FakeNormd.onTempSocket(fake -> {
            try (NormdClient c = shadowAll(fake).maxShadowInFlight(0).fallback(b -> "x").build()) {
                Check.eq(Reason.SHADOW, c.norm(BODY, CallOptions.key("k")).reason(), "reason");
                Check.eq(1L, c.stats().shadow().skipped(), "skipped");
                Check.eq(0L, c.stats().shadow().started(), "started");
                Check.eq(0, fake.requests("/norm").size(), "nothing sent");
            }
        }));

        t.test("close() stops the shadow threads: a stalled shadow call does not outlive the client", FakeNormd.onTempSocket(fake -> {
            fake.handler = (req, out) -> FakeNormd.hang(out);
            NormdClient c = shadowAll(fake).deadline(Duration.ofSeconds(30)).fallback(b -> "x").build();
            try {
                c.norm(BODY, CallOptions.key("k"));
                Check.eventually(5000, "the shadow call is out", () -> fake.requests("/norm").size() == 1);
            } finally {
                c.close();
            }
            Check.eventually(5000, "the shadow call ended", () -> c.stats().shadow().inFlight() == 0);
            Check.eq(1L, c.stats().shadow().normdFailures(), "counted as a normd failure");
        }));
    }
}
