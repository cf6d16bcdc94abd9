package dev.normd.client;

import dev.normd.testing.Check;
import dev.normd.testing.Registry;
import dev.normd.testing.Suite;
import java.io.BufferedReader;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;
import java.util.zip.GZIPInputStream;

/**
 * The runner of the language-neutral conformance kit ({@code clients/conformance}): one
 * test per scenario file, named by the file. It reads the kit's format and nothing else;
 * no scenario is special-cased. Unknown steps or fields fail the scenario.
 */
public final class ConformanceTest implements Suite {
    @Override
    public void register(Registry t) throws IOException {
        Path kit = TestPaths.conformance();
        Path rollout = kit.resolve("rollout.json");
        if (Files.exists(rollout)) {
            t.test("rollout.json", () -> checkRollout(rollout));
        } else {
            t.skip("rollout.json", rollout + " is missing");
        }
        Path dir = kit.resolve("scenarios");
        if (!Files.isDirectory(dir)) {
            t.skip("conformance kit", dir + " is missing");
            return;
        }
        List<Path> files;
        try (Stream<Path> s = Files.list(dir)) {
            files = s.filter(p -> p.toString().endsWith(".json")).sorted().toList();
        }
        if (files.isEmpty()) {
            t.skip("conformance kit", "no scenarios in " + dir);
            return;
        }
        for (Path f : files) {
            String name = f.getFileName().toString();
            Map<?, ?> doc;
            try {
                doc = (Map<?, ?>) Json.parse(Files.readAllBytes(f));
            } catch (RuntimeException e) {
                t.test(name, () -> {
                    throw new AssertionError("scenario does not parse: " + e.getMessage());
                });
                continue;
            }
            if ("normd".equals(doc.get("server")) && TestPaths.normdBin() == null) {
                t.skip(name, "needs the real binary: NORMD_BIN is unset");
                continue;
            }
            t.test(name, () -> new Scenario(kit, f, doc).run());
        }
    }

    /** Every case of the kit's rollout.json: this client's hash and bucket agree. */
    private static void checkRollout(Path file) throws IOException {
        Map<?, ?> doc = (Map<?, ?>) Json.parse(Files.readAllBytes(file));
        Check.eq("fnv1a32", doc.get("hash"), "hash");
        Check.eq(100L, doc.get("modulo"), "modulo");
        List<?> cases = (List<?>) doc.get("cases");
        Check.that(!cases.isEmpty(), "rollout.json has cases");
        for (Object o : cases) {
            Map<?, ?> c = (Map<?, ?>) o;
            String key = (String) c.get("key");
            Check.eq(((Number) c.get("fnv1a32")).longValue(), Rollout.fnv1a32(key), "fnv1a32(" + key + ")");
            Check.eq(((Number) c.get("bucket")).intValue(), Rollout.bucket(key), "bucket(" + key + ")");
        }
    }

    /** One scenario's run: its server, its client, its steps; everything started is stopped. */
    private static final class Scenario {
        private static final Set<String> TOP = Set.of("name", "description", "server", "fault", "normd", "client", "steps");
        private static final Set<String> CLIENT = Set.of("transports", "deadline_ms", "timeout_slack_ms", "failure_threshold",
                "cooldown_ms", "rollout_percent", "flags_refresh_ms", "socket_missing", "shadow_max_concurrent");
        private static final Set<String> CALL = Set.of("key", "body", "body_text", "deadline_ms", "query", "inapp");
        private static final Set<String> EXPECT = Set.of("path", "reason", "error", "encoding", "digest", "canonical");
        private static final Set<String> QUERY = Set.of("profile", "schema", "encoding", "level");

        private final Path kit;
        private final Path file;
        private final Map<?, ?> doc;
        private final boolean real;
        private final AtomicLong clock = new AtomicLong(1_000_000_000L);
        /** The in-app bytes of the call running on this thread. */
        private final ThreadLocal<byte[]> inApp = ThreadLocal.withInitial(() -> "{}".getBytes(StandardCharsets.UTF_8));
        private Path tmp;
        private Path socket;
        /** The fault server, or null. */
        private Process server;
        /** The real normd, or null. */
        private NormdProcess normd;
        private int tcpPort;
        private NormdClient client;

        Scenario(Path kit, Path file, Map<?, ?> doc) {
            this.kit = kit;
            this.file = file;
            this.doc = doc;
            this.real = "normd".equals(doc.get("server"));
        }

        void run() throws Exception {
            only(doc, TOP, "scenario");
            Check.that(real || "fault".equals(doc.get("server")), "server must be normd or fault: " + doc.get("server"));
            tmp = TestPaths.tempDir();
            socket = tmp.resolve("normd.sock");
            try {
                if (real) startNormd(); else startFault();
                client = buildClient(map(doc.get("client"), "client"));
                List<?> steps = (List<?>) doc.get("steps");
                for (int i = 0; i < steps.size(); i++) {
                    try {
                        step(map(steps.get(i), "step"));
                    } catch (AssertionError | Exception e) {
                        throw new AssertionError("step " + i + ": " + steps.get(i) + "\n  " + e.getMessage(), e);
                    }
                }
                Stats s = client.stats();
                Check.eq(s.calls(), s.normdOk() + s.fallbackTotal() + s.errors(), "calls = normd_ok + fallback_total + errors");
            } finally {
                if (client != null) client.close();
                stopServer();
                TestPaths.deleteTree(tmp);
            }
        }

        // ---- servers ----

        private void startFault() throws Exception {
            Path portFile = tmp.resolve("port");
            ProcessBuilder pb = new ProcessBuilder("python3", kit.resolve("fault_server.py").toString(), "--socket",
                    socket.toString(), "--tcp-port-file", portFile.toString(), file.toString())
                    .redirectError(tmp.resolve("fault.log").toFile());
            server = pb.start();
            LinkedBlockingQueue<String> lines = new LinkedBlockingQueue<>();
            Thread reader = new Thread(() -> {
                try (BufferedReader r = new BufferedReader(new InputStreamReader(server.getInputStream(), StandardCharsets.UTF_8))) {
                    for (String l; (l = r.readLine()) != null; ) lines.add(l);
                } catch (IOException ignored) {
                    // the process ended
                }
            }, "fault-stdout");
            reader.setDaemon(true);
            reader.start();
            String line = lines.poll(10, TimeUnit.SECONDS);
            Check.eq("ready", line, "fault server's first line (log: " + readLog("fault.log") + ")");
            tcpPort = Integer.parseInt(Files.readString(portFile).trim());
        }

        private void startNormd() throws Exception {
            Map<?, ?> n = map(doc.get("normd"), "normd");
            only(n, Set.of("flags", "args"), "normd");
            List<String> args = new ArrayList<>();
            if (n.get("args") != null) for (Object a : (List<?>) n.get("args")) args.add((String) a);
            normd = NormdProcess.start(TestPaths.normdBin(), tmp, n.get("flags") == null ? null : write(n.get("flags")), args);
            tcpPort = normd.tcpPort;
        }

        private void stopServer() throws InterruptedException {
            if (normd != null) normd.close(); // SIGTERM: normd drains and exits
            if (server == null) return;
            server.destroy(); // the fault server exits at once
            if (!server.waitFor(10, TimeUnit.SECONDS)) {
                server.destroyForcibly();
                server.waitFor(10, TimeUnit.SECONDS);
            }
        }

        private String readLog(String name) {
            try {
                return Files.readString(tmp.resolve(name)).strip();
            } catch (IOException e) {
                return "(none)";
            }
        }

        // ---- the client ----

        private NormdClient buildClient(Map<?, ?> c) {
            only(c, CLIENT, "client");
            NormdClient.Builder b = NormdClient.builder()
                    .deadline(Duration.ofMillis(num(c, "deadline_ms", 1000)))
                    .failureThreshold((int) num(c, "failure_threshold", 5))
                    .cooldown(Duration.ofMillis(num(c, "cooldown_ms", 5000)))
                    .flagsRefresh(Duration.ofMillis(num(c, "flags_refresh_ms", 0)))
                    .clock(clock::get)
                    .fallback(body -> inApp.get());
            if (c.containsKey("timeout_slack_ms")) b.timeoutSlack(Duration.ofMillis(num(c, "timeout_slack_ms", 0)));
            if (c.containsKey("rollout_percent")) b.rolloutPercent((int) num(c, "rollout_percent", 0));
            if (c.containsKey("shadow_max_concurrent")) b.maxShadowInFlight((int) num(c, "shadow_max_concurrent", 0));
            List<?> transports = c.containsKey("transports") ? (List<?>) c.get("transports") : List.of("unix");
            for (Object tr : transports) {
                if ("unix".equals(tr)) {
                    b.socketPath(Boolean.TRUE.equals(c.get("socket_missing")) ? tmp.resolve("missing.sock") : socket);
                } else if ("tcp".equals(tr)) {
                    b.tcpPort(tcpPort);
                } else {
                    throw new AssertionError("unknown transport " + tr);
                }
            }
            NormdClient built = b.build();
            if (!c.containsKey("rollout_percent")) built.awaitFlags(Duration.ofSeconds(10));
            return built;
        }

        // ---- steps ----

        private void step(Map<?, ?> s) throws Exception {
            Set<String> keys = new HashSet<>();
            for (Object k : s.keySet()) keys.add((String) k);
            keys.remove("note");
            if (keys.contains("call")) {
                only(keys, Set.of("call", "expect"), "call step");
                Outcome o = call(map(s.get("call"), "call"));
                expect(o, map(s.get("expect"), "expect"));
            } else if (keys.contains("concurrent")) {
                only(keys, Set.of("concurrent", "expect_outcomes"), "concurrent step");
                concurrent((List<?>) s.get("concurrent"), map(s.get("expect_outcomes"), "expect_outcomes"));
            } else if (keys.equals(Set.of("advance_clock"))) {
                clock.addAndGet(TimeUnit.MILLISECONDS.toNanos(((Number) s.get("advance_clock")).longValue()));
            } else if (keys.contains("refresh_flags")) {
                only(keys, Set.of("refresh_flags", "expect_ok"), "refresh_flags step");
                boolean ok = client.refreshFlags();
                if (keys.contains("expect_ok")) Check.eq(s.get("expect_ok"), ok, "refresh succeeded");
            } else if (keys.equals(Set.of("wait_flags"))) {
                Map<?, ?> want = map(s.get("wait_flags"), "wait_flags");
                only(want, Set.of("enabled", "rollout_percent", "shadow_percent"), "wait_flags");
                Check.eventually(5000, 50, "flags " + want, () -> {
                    client.refreshFlags();
                    for (Map.Entry<?, ?> e : want.entrySet()) {
                        if (!same(e.getValue(), stat(client.stats(), "flags." + e.getKey()))) return false;
                    }
                    return true;
                });
            } else if (keys.equals(Set.of("write_flags"))) {
                Check.that(real, "write_flags is for normd scenarios");
                normd.writeFlags(write(s.get("write_flags")));
            } else if (keys.equals(Set.of("kill_server"))) {
                if (normd != null) {
                    normd.kill();
                    Check.that(!normd.alive(), "normd killed");
                } else {
                    server.destroyForcibly();
                    Check.that(server.waitFor(10, TimeUnit.SECONDS), "server killed");
                }
            } else if (keys.equals(Set.of("remove_socket"))) {
                Files.delete(socket);
            } else if (keys.equals(Set.of("wait_shadow"))) {
                long n = ((Number) s.get("wait_shadow")).longValue();
                Check.eventually(5000, "shadow.compared + shadow.normd_failures >= " + n, () -> {
                    Stats.Shadow sh = client.stats().shadow();
                    return sh.compared() + sh.normdFailures() >= n;
                });
            } else if (keys.equals(Set.of("expect_stats"))) {
                Stats st = client.stats();
                for (Map.Entry<?, ?> e : map(s.get("expect_stats"), "expect_stats").entrySet()) {
                    Object actual = stat(st, (String) e.getKey());
                    Check.that(same(e.getValue(), actual), "stats " + e.getKey() + ": expected <" + e.getValue() + "> but was <" + actual + ">");
                }
            } else if (keys.equals(Set.of("expect_requests"))) {
                expectRequests(map(s.get("expect_requests"), "expect_requests"));
            } else {
                throw new AssertionError("unknown step " + keys);
            }
        }

        /** A call's outcome: a result, or the contract error it raised. */
        private record Outcome(Result result, NormdException error) {
            String label() {
                if (error != null) return "error:" + error.code();
                return result.fromNormd() ? "normd" : result.reason().wireName();
            }
        }

        private Outcome call(Map<?, ?> c) {
            only(c, CALL, "call");
            byte[] body = c.containsKey("body_text")
                    ? ((String) c.get("body_text")).getBytes(StandardCharsets.UTF_8)
                    : write(c.get("body")).getBytes(StandardCharsets.UTF_8);
            CallOptions o = CallOptions.none();
            if (c.containsKey("key")) o = o.withKey((String) c.get("key"));
            if (c.containsKey("deadline_ms")) o = o.withDeadline(Duration.ofMillis(((Number) c.get("deadline_ms")).longValue()));
            if (c.containsKey("query")) {
                Map<?, ?> q = map(c.get("query"), "query");
                only(q, QUERY, "query");
                if (q.get("profile") != null) o = o.withProfile((String) q.get("profile"));
                if (q.get("schema") != null) o = o.withSchema((String) q.get("schema"));
                if (q.get("encoding") != null) o = o.withEncoding((String) q.get("encoding"));
                if (q.get("level") != null) o = o.withLevel(((Number) q.get("level")).intValue());
            }
            inApp.set(((String) (c.containsKey("inapp") ? c.get("inapp") : "{}")).getBytes(StandardCharsets.UTF_8));
            try {
                return new Outcome(client.norm(body, o), null);
            } catch (NormdException e) {
                return new Outcome(null, e);
            } finally {
                inApp.remove();
            }
        }

        private void expect(Outcome o, Map<?, ?> e) throws IOException {
            only(e, EXPECT, "expect");
            if (e.containsKey("error")) {
                Map<?, ?> err = map(e.get("error"), "error");
                Check.that(o.error() != null, "expected error " + err + " but got " + o.result());
                Check.eq(((Number) err.get("status")).intValue(), o.error().status(), "error status");
                Check.eq(err.get("code"), o.error().code(), "error code");
                return;
            }
            Check.that(o.error() == null, "unexpected error " + (o.error() == null ? "" : o.error().getMessage()));
            Result r = o.result();
            if (e.containsKey("path")) Check.eq(e.get("path"), r.fromNormd() ? "normd" : "inapp", "path (reason " + r.reason() + ")");
            if (e.containsKey("reason")) Check.eq(e.get("reason"), r.reason() == null ? null : r.reason().wireName(), "reason");
            if (e.containsKey("encoding")) Check.eq(e.get("encoding"), r.encoding(), "encoding");
            if (e.containsKey("digest")) Check.eq(e.get("digest"), r.digest(), "digest");
            if (e.containsKey("canonical")) {
                byte[] data = r.bytes();
                byte[] plain = "identity".equals(r.encoding()) ? data : new GZIPInputStream(new ByteArrayInputStream(data)).readAllBytes();
                Check.eq(e.get("canonical"), new String(plain, StandardCharsets.UTF_8), "canonical");
            }
        }

        private void concurrent(List<?> calls, Map<?, ?> expected) throws Exception {
            ExecutorService pool = Executors.newFixedThreadPool(calls.size());
            try {
                List<Future<Outcome>> fs = new ArrayList<>();
                for (Object c : calls) fs.add(pool.submit(() -> call(map(c, "call"))));
                Map<String, Long> seen = new TreeMap<>();
                for (Future<Outcome> f : fs) seen.merge(f.get(30, TimeUnit.SECONDS).label(), 1L, Long::sum);
                Map<String, Long> want = new TreeMap<>();
                expected.forEach((k, v) -> want.put((String) k, ((Number) v).longValue()));
                Check.eq(want, seen, "outcomes");
            } finally {
                pool.shutdownNow();
            }
        }

        private void expectRequests(Map<?, ?> want) throws Exception {
            only(want, Set.of("count", "path", "last_headers"), "expect_requests");
            Check.that(!real, "expect_requests is for fault scenarios");
            String path = want.containsKey("path") ? (String) want.get("path") : "/norm";
            List<?> all = (List<?>) Json.parse(NormdProcess.get(socket, "/_fault/requests"));
            List<Map<?, ?>> matching = new ArrayList<>();
            for (Object r : all) if (path.equals(((Map<?, ?>) r).get("path"))) matching.add((Map<?, ?>) r);
            if (want.containsKey("count")) Check.eq(((Number) want.get("count")).intValue(), matching.size(), "requests to " + path);
            if (want.containsKey("last_headers")) {
                Check.that(!matching.isEmpty(), "a request to " + path);
                Map<?, ?> headers = (Map<?, ?>) matching.get(matching.size() - 1).get("headers");
                for (Map.Entry<?, ?> h : map(want.get("last_headers"), "last_headers").entrySet()) {
                    Check.eq(h.getValue(), headers.get(h.getKey()), "header " + h.getKey());
                }
            }
        }

        // ---- the stats vocabulary ----

        /** The kit's dotted name → this client's value. An unknown name fails (never reads as 0 by accident). */
        private Object stat(Stats s, String name) {
            switch (name) {
                case "breaker.state": return s.breaker().state();
                case "flags.loaded": return s.flags().loaded();
                case "flags.enabled": return s.flags().enabled();
                case "flags.rollout_percent": return s.flags().rolloutPercent();
                case "flags.shadow_percent": return s.flags().shadowPercent();
                case "shadow.mismatch_keys": return s.shadow().mismatchKeys();
                default:
                    Set<String> names = new HashSet<>();
                    client.forEachCounter((n, v) -> names.add(n));
                    if (!names.contains(name) && !name.startsWith("errors_by_code.")) throw new AssertionError("unknown stats name " + name);
                    return client.counter(name);
            }
        }

        // ---- JSON helpers ----

        private static boolean same(Object expected, Object actual) {
            if (expected instanceof Number e && actual instanceof Number a) return e.doubleValue() == a.doubleValue();
            return java.util.Objects.equals(expected, actual);
        }

        private static Map<?, ?> map(Object o, String what) {
            if (o == null) return Map.of();
            if (!(o instanceof Map<?, ?> m)) throw new AssertionError(what + " is not an object: " + o);
            return m;
        }

        private static long num(Map<?, ?> m, String k, long dflt) {
            Object v = m.get(k);
            return v == null ? dflt : ((Number) v).longValue();
        }

        private static void only(Map<?, ?> m, Set<String> allowed, String what) {
            Set<String> keys = new HashSet<>();
            for (Object k : m.keySet()) keys.add((String) k);
            only(keys, allowed, what);
        }

        private static void only(Set<String> keys, Set<String> allowed, String what) {
            for (String k : keys) if (!allowed.contains(k)) throw new AssertionError("unknown field " + what + "." + k);
        }

        /** Compact JSON text of a value read by {@link Json}: member order kept. */
        static String write(Object v) {
            StringBuilder b = new StringBuilder();
            write(b, v);
            return b.toString();
        }

        private static void write(StringBuilder b, Object v) {
            if (v == null) {
                b.append("null");
            } else if (v instanceof String s) {
                b.append('"');
                for (int i = 0; i < s.length(); i++) {
                    char c = s.charAt(i);
                    if (c == '"' || c == '\\') b.append('\\').append(c);
                    else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
                    else b.append(c);
                }
                b.append('"');
            } else if (v instanceof Map<?, ?> m) {
                b.append('{');
                boolean first = true;
                for (Map.Entry<?, ?> e : m.entrySet()) {
                    if (!first) b.append(',');
                    first = false;
                    write(b, e.getKey());
                    b.append(':');
                    write(b, e.getValue());
                }
                b.append('}');
            } else if (v instanceof List<?> l) {
                b.append('[');
                for (int i = 0; i < l.size(); i++) {
                    if (i > 0) b.append(',');
                    write(b, l.get(i));
                }
                b.append(']');
            } else {
                b.append(v); // Long, Double, Boolean
            }
        }
    }
}
