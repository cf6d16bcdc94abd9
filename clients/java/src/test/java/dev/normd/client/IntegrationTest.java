package dev.normd.client;

import dev.normd.testing.Check;
import dev.normd.testing.Registry;
import dev.normd.testing.Suite;
import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.zip.GZIPInputStream;

/**
 * The client against the real binary (NORMD_BIN): the hand-written framing over the Unix
 * socket, TCP, contract errors, flags, concurrency, and a SIGTERM. Skipped, loudly,
 * without NORMD_BIN.
 */
public final class IntegrationTest implements Suite {
    private static final String MESSY = "{\"b\": 2, \"a\": [1.50, 1E3, \"x\"], \"c\": {\"é\": \"注文\", \"z\": {}}}";
    private static final String MESSY_CANONICAL = "{\"a\":[1.5,1000,\"x\"],\"b\":2,\"c\":{\"z\":{},\"é\":\"注文\"}}";

    @FunctionalInterface
    interface WithNormd {
        void run(NormdProcess normd, NormdClient client) throws Exception;
    }

    /** A fresh normd and a client on its socket (deadline 5 s: a debug build checks behaviour, not latency). */
    private static Registry.Body withNormd(String flags, WithNormd body) {
        return () -> {
            Path dir = TestPaths.tempDir();
            try (NormdProcess normd = NormdProcess.start(TestPaths.normdBin(), dir, flags, List.of());
                 NormdClient client = NormdClient.builder().socketPath(normd.socket).deadline(Duration.ofSeconds(5))
                         .flagsRefresh(Duration.ZERO).fallback((b, ctx) -> {
                             throw new AssertionError("fell back: " + ctx.reason() + " " + ctx.cause());
                         }).build()) {
                Check.eq(true, client.awaitFlags(Duration.ofSeconds(10)), "flags loaded: " + client.stats().flags().lastError());
                body.run(normd, client);
            } finally {
                TestPaths.deleteTree(dir);
            }
        };
    }

    private static byte[] gunzip(byte[] b) throws Exception {
        return new GZIPInputStream(new ByteArrayInputStream(b)).readAllBytes();
    }

    /** Every header of a 200 agrees with the body and the input. */
    private static String checkAnswer(Result r, byte[] input) throws Exception {
        Check.eq(Result.Path.NORMD, r.path(), "path");
        byte[] canonical = "identity".equals(r.encoding()) ? r.bytes() : gunzip(r.bytes());
        Check.eq((long) input.length, r.inputBytes(), "X-Normd-Input-Bytes");
        Check.eq((long) canonical.length, r.canonicalBytes(), "X-Normd-Canonical-Bytes");
        Check.eq((long) r.bytes().length, r.outputBytes(), "X-Normd-Output-Bytes");
        Check.eq(Shadow.digestOf(canonical), r.digest(), "X-Normd-Digest");
        Check.that(r.requestId() != null && !r.requestId().isEmpty(), "X-Request-Id");
        return new String(canonical, StandardCharsets.UTF_8);
    }

    /** Members sorted by UTF-16 code units at every level (String.compareTo's order), as RFC 8785 has them. */
    private static void checkSorted(Object v, String at) {
        if (v instanceof Map<?, ?> m) {
            String prev = null;
            for (Map.Entry<?, ?> e : m.entrySet()) {
                String k = (String) e.getKey();
                Check.that(prev == null || prev.compareTo(k) < 0, "members sorted at " + at + ": " + prev + " then " + k);
                prev = k;
                checkSorted(e.getValue(), at + "/" + k);
            }
        } else if (v instanceof List<?> l) {
            for (int i = 0; i < l.size(); i++) checkSorted(l.get(i), at + "/" + i);
        }
    }

    @Override
    public void register(Registry t) {
        if (TestPaths.normdBin() == null) {
            t.skip("real normd", "NORMD_BIN is unset");
            return;
        }
        String on = "{\"norm\":{\"enabled\":true,\"rollout_percent\":100}}";

        t.test("200 over the Unix socket: RFC 8785, gzip, headers that agree", withNormd(on, (normd, c) -> {
            byte[] body = MESSY.getBytes(StandardCharsets.UTF_8);
            Result r = c.norm(body, CallOptions.key("it-1").withRequestId("java-it-1"));
            Check.eq("gzip", r.encoding(), "encoding");
            Check.eq(MESSY_CANONICAL, checkAnswer(r, body), "canonical");
            Check.eq("java-it-1", r.requestId(), "our X-Request-Id echoed");
            Check.eq("unix", r.transport(), "transport");
        }));

        t.test("an order validated against order.v1, in each encoding", withNormd(on, (normd, c) -> {
            byte[] order = Files.readAllBytes(TestPaths.repo().resolve("clients/java/src/test/resources/order-0000.json"));
            Object input = Json.parse(order);
            for (String enc : List.of("gzip", "identity", "br", "zstd")) {
                Result r = c.norm(order, CallOptions.key("o").withSchema("order.v1").withEncoding(enc));
                Check.eq(enc, r.encoding(), "encoding");
                Check.eq("order.v1", r.schema(), "X-Normd-Schema");
                Check.eq((long) r.bytes().length, r.outputBytes(), "output bytes " + enc);
                if (enc.equals("gzip") || enc.equals("identity")) {
                    Object out = Json.parse(checkAnswer(r, order));
                    Check.eq(input, out, "same value as the input");
                    checkSorted(out, "");
                }
            }
        }));

        t.test("keep-alive: 300 sequential calls, no retry, no fallback", withNormd(on, (normd, c) -> {
            byte[] body = MESSY.getBytes(StandardCharsets.UTF_8);
            for (int i = 0; i < 300; i++) Check.eq(Result.Path.NORMD, c.norm(body).path(), "call " + i);
            Check.eq(300L, c.stats().normdOk(), "normd_ok");
            Check.eq(0L, c.stats().retries(), "retries");
        }));

        t.test("contract errors are thrown with normd's codes", withNormd(on, (normd, c) -> {
            Object[][] cases = {
                {"{\"a\":", null, 400, "invalid_json"},
                {"{\"a\":1,\"a\":2}", null, 400, "duplicate_key"},
                {"{}", "no.such.schema", 400, "unknown_schema"},
                {"{\"schema_version\":\"order.v1\"}", "order.v1", 422, "schema_violation"},
                {"{\"id\":9007199254740993}", null, 422, "number_precision"},
            };
            for (Object[] k : cases) {
                CallOptions o = k[1] == null ? CallOptions.none() : CallOptions.none().withSchema((String) k[1]);
                NormdException e = Check.throwsA(NormdException.class, () -> c.norm(((String) k[0]).getBytes(StandardCharsets.UTF_8), o));
                Check.eq(k[2], e.status(), "status of " + k[0]);
                Check.eq(k[3], e.code(), "code of " + k[0]);
                Check.that(e.requestId() != null, "request id of " + k[3]);
                if (e.code().equals("schema_violation")) {
                    Check.that(!e.errors().isEmpty(), "errors listed");
                    Check.that(e.errors().get(0).containsKey("instance_path"), "errors[0].instance_path");
                }
            }
            Check.eq(5L, c.stats().errors(), "errors");
            Check.eq("closed", c.stats().breaker().state(), "breaker");
        }));

        t.test("a 1.1 MiB body: written whole, refused 413 (normd drains it first)", withNormd(on, (normd, c) -> {
            byte[] big = ("[\"" + "x".repeat(1_150_000) + "\"]").getBytes(StandardCharsets.UTF_8);
            NormdException e = Check.throwsA(NormdException.class, () -> c.norm(big));
            Check.eq(413, e.status(), "status");
            Check.eq("payload_too_large", e.code(), "code");
            Check.eq(Result.Path.NORMD, c.norm(MESSY.getBytes(StandardCharsets.UTF_8)).path(), "the next call is fine");
        }));

        t.test("a body just under the cap comes back whole (large request and answer framing)", withNormd(on, (normd, c) -> {
            StringBuilder b = new StringBuilder("[");
            for (int i = 0; i < 60_000; i++) b.append(i == 0 ? "" : ",").append('"').append(Integer.toHexString(i * 7919)).append('"');
            byte[] body = b.append(']').toString().getBytes(StandardCharsets.UTF_8);
            Result r = c.norm(body, CallOptions.none().withEncoding("identity"));
            Check.eq(new String(body, StandardCharsets.UTF_8), checkAnswer(r, body), "identity answer of " + body.length + " bytes");
        }));

        t.test("TCP alone against the same normd", withNormd(on, (normd, unused) -> {
            try (NormdClient c = NormdClient.builder().tcpPort(normd.tcpPort).rolloutPercent(100).deadline(Duration.ofSeconds(5)).build()) {
                byte[] body = MESSY.getBytes(StandardCharsets.UTF_8);
                Result r = c.norm(body);
                Check.eq("tcp", r.transport(), "transport");
                Check.eq(MESSY_CANONICAL, checkAnswer(r, body), "canonical over TCP");
                Check.eq("invalid_json", Check.throwsA(NormdException.class, () -> c.norm("{".getBytes(StandardCharsets.UTF_8))).code(), "error over TCP");
            }
        }));

        t.test("GET /flags of the real binary: fields read, a flags-file change picked up", withNormd(
                "{\"norm\":{\"enabled\":true,\"rollout_percent\":37}}", (normd, c) -> {
            Stats.Flags f = c.stats().flags();
            Check.eq(37, f.rolloutPercent(), "rollout_percent");
            Check.eq(0, f.shadowPercent(), "shadow_percent (default 0)");
            normd.writeFlags("{\"norm\":{\"enabled\":false,\"rollout_percent\":100}}");
            Check.eventually(5000, "disabled seen", () -> c.refreshFlags() && Boolean.FALSE.equals(c.stats().flags().enabled()));
        }));

        t.test("concurrent callers against the real normd", withNormd(on, (normd, c) -> {
            byte[] body = MESSY.getBytes(StandardCharsets.UTF_8);
            ExecutorService pool = Executors.newFixedThreadPool(8);
            try {
                List<Future<Integer>> fs = new ArrayList<>();
                for (int th = 0; th < 8; th++) {
                    fs.add(pool.submit(() -> {
                        int n = 0;
                        for (int i = 0; i < 40; i++) if (c.norm(body).fromNormd()) n++;
                        return n;
                    }));
                }
                int n = 0;
                for (Future<Integer> f : fs) n += f.get(120, TimeUnit.SECONDS);
                Check.eq(320, n, "answered by normd");
            } finally {
                pool.shutdownNow();
            }
        }));

        t.test("SIGTERM: normd exits 0 and removes its socket; the next call falls back as connection", () -> {
            Path dir = TestPaths.tempDir();
            try (NormdProcess normd = NormdProcess.start(TestPaths.normdBin(), dir, on, List.of());
                 NormdClient c = NormdClient.builder().socketPath(normd.socket).rolloutPercent(100)
                         .deadline(Duration.ofSeconds(5)).fallback(b -> "in-app").build()) {
                Check.that(c.norm(MESSY.getBytes(StandardCharsets.UTF_8)).fromNormd(), "served");
                Check.eq(0, normd.terminate(30), "exit code");
                Check.that(!Files.exists(normd.socket), "socket file removed");
                Check.eq(Reason.CONNECTION, c.norm(MESSY.getBytes(StandardCharsets.UTF_8)).reason(), "reason");
            } finally {
                TestPaths.deleteTree(dir);
            }
        });
    }
}
