package dev.normd.demo;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.normd.client.CallOptions;
import dev.normd.client.NormdClient;
import dev.normd.client.NormdException;
import dev.normd.client.Result;
import java.io.IOException;
import java.io.InputStream;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryUsage;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;

/**
 * The JVM demo app of normd's before/after: {@code POST /orders} does the order job
 * in-app ({@link InAppNorm}) or through normd with the Java client, as the rollout says,
 * and keeps every answered order in an LRU working set ({@link OrderCache}).
 * Configuration: environment (see README.md); bad values exit 64 naming each.
 */
public final class App {
    /** normd codes that mean "the order is bad": answered with normd's status. */
    private static final Set<String> CALLER_CODES = Set.of("invalid_json", "invalid_utf8", "duplicate_key", "too_deep",
            "bad_content_encoding", "schema_violation", "number_precision", "payload_too_large", "decoded_too_large",
            "unsupported_media_type", "unsupported_content_encoding");

    record Config(int port, String socket, Integer rollout, boolean flagsFromSidecar, String profile, int deadlineMs,
            long cacheBytes, int workers, int maxBodyBytes) {}

    private final Config cfg;
    private final NormdClient client;
    private final OrderCache cache;
    private final Histogram latency = new Histogram();
    private final LongAdder viaNormd = new LongAdder();
    private final LongAdder viaInApp = new LongAdder();
    private final Map<Integer, LongAdder> byStatus = new ConcurrentHashMap<>();
    private final Map<String, LongAdder> inAppReasons = new ConcurrentHashMap<>();
    private final AtomicLong seq = new AtomicLong();
    private volatile long resetAtNanos = System.nanoTime();
    private volatile long resetCpuNanos;
    private volatile Map<String, long[]> resetGc = gcSnapshot();
    /** The handler pool, for the backlog in /stats (set once the server starts). */
    private volatile ThreadPoolExecutor pool;

    App(Config cfg) {
        this.cfg = cfg;
        this.cache = new OrderCache(cfg.cacheBytes());
        if (cfg.socket() == null) {
            client = null;
        } else {
            NormdClient.Builder b = NormdClient.builder()
                    .socketPath(cfg.socket())
                    .deadline(Duration.ofMillis(cfg.deadlineMs()))
                    .maxConnections(Math.max(8, cfg.workers()))
                    .fallback(body -> InAppNorm.apply(body));
            if (cfg.profile() != null) b.profile(cfg.profile());
            else b.schema("order.v1").encoding("gzip").level(1);
            if (!cfg.flagsFromSidecar()) b.rolloutPercent(cfg.rollout() == null ? 0 : cfg.rollout());
            client = b.build();
        }
    }

    // ------------------------------------------------------------------ POST /orders

    private void orders(HttpExchange ex) throws IOException {
        long t0 = System.nanoTime();
        int status;
        String ctype = ex.getRequestHeaders().getFirst("Content-Type");
        String declared = ex.getRequestHeaders().getFirst("Content-Length");
        byte[] body = null;
        if (ctype != null && !isJson(ctype)) {
            status = error(ex, 415, "unsupported_media_type", "Content-Type must be application/json", null, null);
        } else if (declared != null && parseLong(declared) > cfg.maxBodyBytes()) {
            status = error(ex, 413, "payload_too_large", "the body is larger than " + cfg.maxBodyBytes() + " bytes", null, null);
        } else if ((body = readBody(ex.getRequestBody(), cfg.maxBodyBytes())) == null) {
            status = error(ex, 413, "payload_too_large", "the body is larger than " + cfg.maxBodyBytes() + " bytes", null, null);
        } else {
            status = handle(ex, body);
        }
        latency.record((System.nanoTime() - t0) / 1000);
        byStatus.computeIfAbsent(status, s -> new LongAdder()).increment();
    }

    private int handle(HttpExchange ex, byte[] body) throws IOException {
        String key = ex.getRequestHeaders().getFirst("X-Request-Key");
        if (key == null || key.isEmpty()) key = "req-" + seq.incrementAndGet();
        byte[] stored;
        String digest;
        long canonicalBytes;
        boolean normd;
        try {
            if (client != null) {
                Result r = client.norm(body, CallOptions.key(key));
                normd = r.fromNormd();
                if (normd) {
                    stored = r.bytes();
                    digest = r.digest();
                    canonicalBytes = r.canonicalBytes();
                } else {
                    InAppNorm.Output o = (InAppNorm.Output) r.data();
                    stored = o.gzip();
                    digest = o.digest();
                    canonicalBytes = o.canonicalBytes();
                    inAppReasons.computeIfAbsent(r.reason().toString(), k -> new LongAdder()).increment();
                }
            } else {
                InAppNorm.Output o = InAppNorm.apply(body);
                normd = false;
                stored = o.gzip();
                digest = o.digest();
                canonicalBytes = o.canonicalBytes();
                inAppReasons.computeIfAbsent("no_normd", k -> new LongAdder()).increment();
            }
        } catch (Refusal r) {
            return error(ex, r.status, r.code, r.getMessage(), r.errors, "inapp");
        } catch (NormdException e) {
            if (!CALLER_CODES.contains(e.code())) {
                return error(ex, 500, "normd_refused", "normd refused the app's request: " + e.getMessage(), null, "normd");
            }
            List<Refusal.Finding> findings = new ArrayList<>();
            for (Map<String, Object> f : e.errors()) {
                findings.add(new Refusal.Finding(String.valueOf(f.get("instance_path")), String.valueOf(f.get("message"))));
            }
            Object detail = e.problem().get("detail");
            return error(ex, e.status(), e.code(), detail == null ? e.getMessage() : detail.toString(), findings, "normd");
        }
        (normd ? viaNormd : viaInApp).increment();
        cache.put(new OrderCache.Entry(key, digest, canonicalBytes, stored, System.currentTimeMillis(), normd));
        // The answer is the same bytes on both paths; who did the work is in the headers.
        StringBuilder a = new StringBuilder(160);
        a.append("{\"ok\":true,\"key\":");
        Json.string(key, a);
        a.append(",\"digest\":\"").append(digest).append("\",\"canonical_bytes\":").append(canonicalBytes).append('}');
        ex.getResponseHeaders().set("X-Path", normd ? "normd" : "inapp");
        ex.getResponseHeaders().set("X-Stored-Bytes", Integer.toString(stored.length));
        send(ex, 200, "application/json", a.toString().getBytes(StandardCharsets.UTF_8));
        return 200;
    }

    private static boolean isJson(String ctype) {
        String t = ctype.split(";", 2)[0].trim().toLowerCase(java.util.Locale.ROOT);
        return t.equals("application/json") || (t.startsWith("application/") && t.endsWith("+json"));
    }

    private static long parseLong(String s) {
        try {
            return Long.parseLong(s.trim());
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    /** The whole body, or null when it is longer than {@code max}. */
    private static byte[] readBody(InputStream in, int max) throws IOException {
        byte[] b = in.readNBytes(max + 1);
        return b.length > max ? null : b;
    }

    private int error(HttpExchange ex, int status, String code, String detail, List<Refusal.Finding> errors, String path)
            throws IOException {
        StringBuilder a = new StringBuilder(200);
        a.append("{\"ok\":false,\"error\":");
        Json.string(code, a);
        a.append(",\"detail\":");
        Json.string(detail == null ? "" : detail, a);
        if (errors != null && !errors.isEmpty()) {
            a.append(",\"errors\":[");
            for (int i = 0; i < errors.size(); i++) {
                if (i > 0) a.append(',');
                a.append("{\"instance_path\":");
                Json.string(errors.get(i).instancePath(), a);
                a.append(",\"message\":");
                Json.string(errors.get(i).message(), a);
                a.append('}');
            }
            a.append(']');
        }
        a.append('}');
        if (path != null) ex.getResponseHeaders().set("X-Path", path);
        send(ex, status, "application/json", a.toString().getBytes(StandardCharsets.UTF_8));
        return status;
    }

    private static void send(HttpExchange ex, int status, String ctype, byte[] body) throws IOException {
        ex.getResponseHeaders().set("Content-Type", ctype);
        ex.sendResponseHeaders(status, body.length == 0 ? -1 : body.length);
        if (body.length > 0) ex.getResponseBody().write(body);
        ex.close();
    }

    // ------------------------------------------------------------------ other routes

    private void route(HttpExchange ex) throws IOException {
        try {
            String p = ex.getRequestURI().getPath();
            String m = ex.getRequestMethod();
            if (p.equals("/orders")) {
                if (m.equals("POST")) orders(ex);
                else error(ex, 405, "method_not_allowed", "POST only", null, null);
            } else if (p.startsWith("/orders/")) {
                if (!m.equals("GET")) {
                    error(ex, 405, "method_not_allowed", "GET only", null, null);
                    return;
                }
                OrderCache.Entry e = cache.get(p.substring("/orders/".length()));
                if (e == null) {
                    error(ex, 404, "not_found", "no such order in the cache", null, null);
                } else {
                    ex.getResponseHeaders().set("X-Digest", e.digest());
                    ex.getResponseHeaders().set("X-Path", e.viaNormd() ? "normd" : "inapp");
                    send(ex, 200, "application/gzip", e.stored());
                }
            } else if (p.equals("/stats") && m.equals("GET")) {
                send(ex, 200, "application/json", stats().getBytes(StandardCharsets.UTF_8));
            } else if (p.equals("/stats/reset") && m.equals("POST")) {
                ex.getRequestBody().readAllBytes();
                reset();
                send(ex, 200, "application/json", "{\"ok\":true}".getBytes(StandardCharsets.UTF_8));
            } else if (p.equals("/healthz") && m.equals("GET")) {
                send(ex, 200, "application/json", "{\"ok\":true}".getBytes(StandardCharsets.UTF_8));
            } else {
                error(ex, 404, "not_found", "no route " + p, null, null);
            }
        } catch (RuntimeException | Error e) {
            byStatus.computeIfAbsent(500, s -> new LongAdder()).increment();
            System.err.println("app: internal error: " + e);
            e.printStackTrace();
            try {
                error(ex, 500, "internal", String.valueOf(e), null, null);
            } catch (IOException | RuntimeException ignored) {
                ex.close();
            }
        }
    }

    // ------------------------------------------------------------------ stats

    private static Map<String, long[]> gcSnapshot() {
        Map<String, long[]> m = new TreeMap<>();
        for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) {
            m.put(gc.getName(), new long[] {gc.getCollectionCount(), gc.getCollectionTime()});
        }
        return m;
    }

    private static long processCpuNanos() {
        var os = ManagementFactory.getOperatingSystemMXBean();
        return os instanceof com.sun.management.OperatingSystemMXBean s ? s.getProcessCpuTime() : -1;
    }

    private static long rssBytes() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith("VmRSS:")) return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
            }
        } catch (IOException | NumberFormatException ignored) {
            // not Linux
        }
        return -1;
    }

    private void reset() {
        latency.reset();
        viaNormd.reset();
        viaInApp.reset();
        byStatus.clear();
        inAppReasons.clear();
        resetGc = gcSnapshot();
        resetCpuNanos = processCpuNanos();
        resetAtNanos = System.nanoTime();
    }

    private String stats() {
        Map<String, Object> s = new LinkedHashMap<>();
        s.put("time_unit", "ms");
        s.put("uptime_ms", ManagementFactory.getRuntimeMXBean().getUptime());
        s.put("since_reset_s", (System.nanoTime() - resetAtNanos) / 1e9);
        Map<String, Object> lat = new LinkedHashMap<>();
        lat.put("count", latency.count());
        lat.put("p50", latency.percentile(50) / 1000.0);
        lat.put("p95", latency.percentile(95) / 1000.0);
        lat.put("p99", latency.percentile(99) / 1000.0);
        lat.put("max", latency.max() / 1000.0);
        lat.put("mean", latency.meanMicros() / 1000.0);
        s.put("latency", lat);
        Map<String, Object> req = new LinkedHashMap<>();
        req.put("normd", viaNormd.sum());
        req.put("inapp", viaInApp.sum());
        Map<String, Object> st = new TreeMap<>();
        byStatus.forEach((k, v) -> st.put(k.toString(), v.sum()));
        req.put("by_status", st);
        Map<String, Object> rs = new TreeMap<>();
        inAppReasons.forEach((k, v) -> rs.put(k, v.sum()));
        req.put("inapp_reasons", rs);
        s.put("requests", req);
        ThreadPoolExecutor p = pool;
        if (p != null) {
            // exchanges waiting for a handler thread, and handlers running (this one included)
            s.put("backlog", Map.of("queued", p.getQueue().size(), "active", p.getActiveCount()));
        }
        var mem = ManagementFactory.getMemoryMXBean();
        MemoryUsage heap = mem.getHeapMemoryUsage();
        MemoryUsage nonHeap = mem.getNonHeapMemoryUsage();
        Map<String, Object> pr = new LinkedHashMap<>();
        pr.put("rss_bytes", rssBytes());
        pr.put("heap_used_bytes", heap.getUsed());
        pr.put("heap_committed_bytes", heap.getCommitted());
        pr.put("heap_max_bytes", heap.getMax());
        pr.put("nonheap_committed_bytes", nonHeap.getCommitted());
        pr.put("cpu_ms", (processCpuNanos() - resetCpuNanos) / 1e6);
        pr.put("available_processors", Runtime.getRuntime().availableProcessors());
        s.put("process", pr);
        Map<String, Object> gc = new LinkedHashMap<>();
        Map<String, long[]> now = gcSnapshot();
        Map<String, long[]> base = resetGc;
        now.forEach((name, v) -> {
            long[] b0 = base.getOrDefault(name, new long[2]);
            gc.put(name, Map.of("count", v[0] - b0[0], "time_ms", v[1] - b0[1]));
        });
        s.put("gc_mxbeans", gc);
        long[] c = cache.stats();
        s.put("cache", Map.of("entries", c[0], "bytes_estimate", c[1], "evictions", c[2], "budget_bytes", c[3]));
        Map<String, Object> routing = new LinkedHashMap<>();
        routing.put("mode", client == null ? "inapp_only" : cfg.flagsFromSidecar() ? "sidecar_flags" : "rollout_env");
        if (client != null && !cfg.flagsFromSidecar()) routing.put("rollout_percent", cfg.rollout() == null ? 0 : cfg.rollout());
        s.put("routing", routing);
        if (client != null) {
            Map<String, Object> cl = new TreeMap<>();
            client.forEachCounter((name, v) -> {
                if (v != 0) cl.put(name, v);
            });
            s.put("client", cl);
        }
        StringBuilder b = new StringBuilder(1024);
        Json.value(s, b);
        return b.toString();
    }

    // ------------------------------------------------------------------ main

    static Config config(Map<String, String> env, List<String> problems) {
        int port = intVar(env, "PORT", 8091, 0, 65535, problems);
        String socket = env.get("NORMD_SOCKET");
        if (socket != null && socket.isEmpty()) socket = null;
        Integer rollout = env.containsKey("ROLLOUT") ? intVar(env, "ROLLOUT", 0, 0, 100, problems) : null;
        boolean flags = "1".equals(env.get("NORMD_FLAGS_FROM_SIDECAR"));
        if (rollout != null && rollout > 0 && socket == null) problems.add("ROLLOUT=" + rollout + " needs NORMD_SOCKET");
        String profile = env.get("NORMD_PROFILE");
        if (profile != null && profile.isEmpty()) profile = null;
        int deadline = intVar(env, "NORMD_DEADLINE_MS", 20, 1, 60_000, problems);
        long cacheMb = intVar(env, "CACHE_MB", 64, 0, 1 << 20, problems);
        int workers = intVar(env, "WORKERS", 16, 1, 1024, problems);
        int maxBody = intVar(env, "MAX_BODY_BYTES", 1 << 20, 1, 64 << 20, problems);
        return new Config(port, socket, rollout, flags && rollout == null, profile, deadline, cacheMb << 20, workers, maxBody);
    }

    private static int intVar(Map<String, String> env, String name, int def, int min, int max, List<String> problems) {
        String v = env.get(name);
        if (v == null || v.isEmpty()) return def;
        try {
            int n = Integer.parseInt(v.trim());
            if (n >= min && n <= max) return n;
        } catch (NumberFormatException ignored) {
            // reported below
        }
        problems.add(name + "=" + v + ": expected an integer in " + min + ".." + max);
        return def;
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> env = new TreeMap<>(System.getenv());
        for (String a : args) { // --NAME=value overrides the environment
            if (a.startsWith("--") && a.contains("=")) env.put(a.substring(2, a.indexOf('=')).toUpperCase(java.util.Locale.ROOT).replace('-', '_'), a.substring(a.indexOf('=') + 1));
            else {
                System.err.println("app: unknown argument " + a + " (use --NAME=value or the environment; see README.md)");
                System.exit(64);
            }
        }
        List<String> problems = new ArrayList<>();
        Config cfg = config(env, problems);
        if (!problems.isEmpty()) {
            problems.forEach(p -> System.err.println("app: " + p));
            System.exit(64);
        }
        App app = new App(cfg);
        HttpServer server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), cfg.port()), 256);
        ThreadPoolExecutor pool = new ThreadPoolExecutor(cfg.workers(), cfg.workers(), 60, TimeUnit.SECONDS,
                new LinkedBlockingQueue<>(), r -> {
                    Thread t = new Thread(r, "app-worker");
                    t.setDaemon(true);
                    return t;
                });
        server.setExecutor(pool);
        app.pool = pool;
        server.createContext("/", app::route);
        server.start();
        System.out.println("{\"msg\":\"listening\",\"port\":" + server.getAddress().getPort() + ",\"routing\":\""
                + (app.client == null ? "inapp_only" : cfg.flagsFromSidecar() ? "sidecar_flags" : "rollout " + (cfg.rollout() == null ? 0 : cfg.rollout()))
                + "\",\"pid\":" + ProcessHandle.current().pid() + "}");
        System.out.flush();
        CountDownLatch stop = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            server.stop(2);
            shutdown(pool);
            if (app.client != null) app.client.close();
            stop.countDown();
        }, "app-shutdown"));
        stop.await();
    }

    private static void shutdown(ExecutorService pool) {
        pool.shutdown();
        try {
            pool.awaitTermination(3, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
