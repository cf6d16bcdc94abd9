package dev.normd.client;

import java.io.IOException;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.BiConsumer;
import java.util.function.BiPredicate;
import java.util.function.Function;
import java.util.function.LongSupplier;

/**
 * The app side of normd: decides per call whether the normalize → validate → compress
 * work goes to the sidecar or stays in-app, sends it over a keep-alive Unix socket (TCP
 * on 127.0.0.1 as the other transport), and turns every "normd can't right now" into a
 * call of the app's own in-app function, so a sick sidecar costs latency budget, never a
 * failed request. Contract errors (the caller's data is wrong) are thrown, never hidden.
 *
 * <p>Thread-safe: one client serves all of an app's threads. A call runs on the caller's
 * thread and never takes longer than its deadline plus the slack (plus the in-app
 * function's own time). Background threads (flags refresh, shadow calls) are daemons,
 * stopped by {@link #close()}.
 */
public final class NormdClient implements AutoCloseable {
    /** First retry of a failed first GET /flags, doubling up to the refresh period. */
    private static final long FIRST_FLAGS_RETRY_MS = 100;
    private static final Transport.Request FLAGS_REQUEST =
            new Transport.Request("GET", "/flags", new String[] {"Accept", "application/json"}, null);

    private final Transport[] transports;
    private final Counters counters = new Counters();
    private final CircuitBreaker breaker;
    private final Shadow shadow;
    private final InApp inApp;
    private final Duration deadline;
    private final long slackNanos;
    private final String profile;
    private final String schema;
    private final String encoding;
    private final Integer level;
    /** {@code /norm} with the default selection, built once: most calls select nothing of their own. */
    private final String defaultTarget;
    private final String flagName;
    private final long flagsTimeoutNanos;
    private final Integer rolloutOverride;
    private final int shadowOverride;

    /** Last good flags, or null before the first successful GET /flags. */
    private volatile LoadedFlags flags;
    private volatile String flagsError;
    private final Object refreshLock = new Object();
    private final CompletableFuture<Boolean> firstFlagsSettled = new CompletableFuture<>();
    private final ScheduledThreadPoolExecutor scheduler;
    private volatile boolean closed;

    private record LoadedFlags(FlagState state, long fetchedAtNanos) {}

    private NormdClient(Builder b) {
        List<Transport> ts = new ArrayList<>(2);
        if (b.socketPath != null) {
            ts.add(new UnixTransport(b.socketPath, b.maxConnections, b.idleTimeout.toNanos(), b.maxResponseBytes,
                    counters.get(Counters.Name.RETRIES)));
        }
        if (b.tcpPort != null) ts.add(new TcpTransport(b.tcpPort, b.maxResponseBytes));
        this.transports = ts.toArray(new Transport[0]);
        this.breaker = new CircuitBreaker(b.failureThreshold, b.cooldown.toNanos(), b.clock);
        this.shadow = new Shadow(b.maxShadowInFlight, b.shadowCanonical, b.shadowCompare, counters, this::send);
        this.inApp = b.inApp;
        this.deadline = b.deadline;
        this.slackNanos = b.timeoutSlack.toNanos();
        this.profile = b.profile;
        this.schema = b.schema;
        this.encoding = b.encoding;
        this.level = b.level;
        this.defaultTarget = target(null, null, null, null);
        this.flagName = b.flagName;
        this.flagsTimeoutNanos = b.flagsTimeout.toNanos();
        this.rolloutOverride = b.rolloutPercent;
        this.shadowOverride = b.shadowPercent == null ? 0 : b.shadowPercent;

        if (rolloutOverride != null) {
            scheduler = null;
            firstFlagsSettled.complete(true);
            return;
        }
        scheduler = new ScheduledThreadPoolExecutor(1, r -> {
            Thread t = new Thread(r, "normd-flags");
            t.setDaemon(true);
            return t;
        });
        scheduler.setKeepAliveTime(10, TimeUnit.SECONDS);
        scheduler.allowCoreThreadTimeOut(true); // with no refresh period the thread goes once the first fetch is done
        scheduler.setRemoveOnCancelPolicy(true);
        long periodMs = b.flagsRefresh.toMillis();
        scheduler.execute(() -> {
            boolean ok = refreshFlags();
            firstFlagsSettled.complete(ok);
            // Until flags are known every call goes in-app: try again sooner than a whole period.
            if (!ok && periodMs > 0) retryFirstFlags(FIRST_FLAGS_RETRY_MS, periodMs);
        });
        if (periodMs > 0) scheduler.scheduleWithFixedDelay(this::refreshFlags, periodMs, periodMs, TimeUnit.MILLISECONDS);
    }

    public static Builder builder() {
        return new Builder();
    }

    /** {@link #norm(byte[], CallOptions)} with no per-call settings (random rollout bucket). */
    public Result norm(byte[] body) {
        return norm(body, CallOptions.none());
    }

    /**
     * Normalize → validate → compress {@code body} (JSON text, sent as is) in normd when
     * the flag, the rollout and the breaker allow it; otherwise, or when normd says no,
     * with the in-app function.
     *
     * @throws NormdException             normd's contract error (400, 404, 405, 413, 415, 422)
     * @throws NormdUnavailableException  a fallback was due and the client has no in-app function
     * @throws IllegalStateException      the client is closed
     */
    public Result norm(byte[] body, CallOptions options) {
        Objects.requireNonNull(body, "body");
        Objects.requireNonNull(options, "options");
        if (closed) throw new IllegalStateException("normd client is closed");
        long start = System.nanoTime();
        Duration d = options.deadline != null ? options.deadline : deadline;
        long deadlineMs = Math.max(1, d.toMillis());
        long localDeadline = start + TimeUnit.MILLISECONDS.toNanos(deadlineMs) + slackNanos;
        counters.inc(Counters.Name.CALLS);

        Reason route = route(options.key);
        if (route == Reason.SHADOW) {
            Result answer = fallBack(Reason.SHADOW, body, options.key, null);
            shadow.submit(options.key, request(body, options, deadlineMs), localDeadline - start, answer.data(), breaker.isClosed());
            return answer;
        }
        if (route != null) return fallBack(route, body, options.key, null);
        long ticket = breaker.tryAcquire();
        if (ticket == CircuitBreaker.SHORT_CIRCUIT) return fallBack(Reason.BREAKER_OPEN, body, options.key, null);

        Transport.Reply reply;
        try {
            reply = send(request(body, options, deadlineMs), localDeadline);
        } catch (Transport.Failure.DeadlinePassed e) {
            breaker.onFailure(ticket);
            return fallBack(Reason.TIMEOUT, body, options.key, e);
        } catch (IOException e) {
            breaker.onFailure(ticket);
            return fallBack(Reason.CONNECTION, body, options.key, e);
        }

        String requestId = reply.header("x-request-id");
        Map<String, Object> problem = reply.status() == 200 ? null : problem(reply);
        String code = problem == null ? null : problem.get("code") instanceof String s ? s : null;
        Verdict v = Verdict.of(reply.status(), code, reply.header("x-normd-digest") != null);
        if (v.healthy) breaker.onSuccess(ticket); else breaker.onFailure(ticket);
        switch (v) {
            case OK:
                counters.inc(Counters.Name.NORMD_OK);
                return normdResult(reply);
            case CONTRACT_ERROR: {
                NormdException e = new NormdException(reply.status(), problem, requestId);
                counters.error(e.code());
                throw e;
            }
            default: {
                Throwable cause = problem == null
                        ? new IOException("normd answered 200 without X-Normd-Digest")
                        : new NormdException(reply.status(), problem, requestId);
                return fallBack(v.reason, body, options.key, cause);
            }
        }
    }

    /**
     * Null when the call goes to normd, else the reason it does not: flags, then the
     * sticky rollout, then the shadow band. (The breaker comes after, in norm().)
     */
    private Reason route(String key) {
        int rollout;
        int shadowPercent;
        if (rolloutOverride != null) {
            rollout = rolloutOverride;
            shadowPercent = shadowOverride;
        } else {
            LoadedFlags f = flags;
            if (f == null) return Reason.UNAVAILABLE;
            if (!f.state().enabled()) return Reason.DISABLED;
            rollout = f.state().rolloutPercent();
            shadowPercent = f.state().shadowPercent();
        }
        if (rollout >= 100) return null;
        if (rollout <= 0 && shadowPercent <= 0) return Reason.ROLLOUT;
        int bucket = key == null ? ThreadLocalRandom.current().nextInt(100) : Rollout.bucket(key);
        if (bucket < rollout) return null;
        return bucket < shadowPercent ? Reason.SHADOW : Reason.ROLLOUT;
    }

    private Result fallBack(Reason reason, byte[] body, String key, Throwable cause) {
        counters.fallback(reason);
        if (inApp == null) throw new NormdUnavailableException(reason, cause);
        return Result.inApp(reason, inApp.apply(body, new FallbackContext(reason, key, cause)));
    }

    /** One exchange over the transports in order: the next is tried only when one cannot be connected. */
    private Transport.Reply send(Transport.Request request, long deadlineNanos) throws IOException {
        for (int i = 0; ; i++) {
            Transport t = transports[i];
            try {
                Transport.Reply r = t.exchange(request, deadlineNanos);
                counters.inc(t.name().equals("unix") ? Counters.Name.EXCHANGES_UNIX : Counters.Name.EXCHANGES_TCP);
                return r;
            } catch (Transport.Failure.ConnectFailed e) {
                if (i + 1 >= transports.length || System.nanoTime() >= deadlineNanos) throw e;
                counters.inc(Counters.Name.TRANSPORT_FAILOVERS);
            }
        }
    }

    private Transport.Request request(byte[] body, CallOptions o, long deadlineMs) {
        boolean own = o.profile != null || o.schema != null || o.encoding != null || o.level != null;
        String target = own ? target(o.profile, o.schema, o.encoding, o.level) : defaultTarget;
        int n = 4 + (o.requestId != null ? 2 : 0) + o.headers.length;
        String[] h = new String[n];
        h[0] = "Content-Type";
        h[1] = "application/json";
        h[2] = "X-Deadline-Ms";
        h[3] = Long.toString(deadlineMs);
        int at = 4;
        if (o.requestId != null) {
            h[at++] = "X-Request-Id";
            h[at++] = o.requestId;
        }
        System.arraycopy(o.headers, 0, h, at, o.headers.length);
        return new Transport.Request("POST", target, h, body);
    }

    /** {@code /norm} with the selection query: each key from the call, else the client's default. */
    private String target(String p, String s, String e, Integer l) {
        StringBuilder q = new StringBuilder("/norm");
        appendParam(q, "profile", p != null ? p : profile);
        appendParam(q, "schema", s != null ? s : schema);
        appendParam(q, "encoding", e != null ? e : encoding);
        Integer lv = l != null ? l : level;
        appendParam(q, "level", lv == null ? null : lv.toString());
        return q.toString();
    }

    private static void appendParam(StringBuilder q, String name, String value) {
        if (value == null || value.isEmpty()) return;
        q.append(q.indexOf("?") < 0 ? '?' : '&').append(name).append('=').append(URLEncoder.encode(value, StandardCharsets.UTF_8));
    }

    static Result normdResult(Transport.Reply r) {
        return new Result(Result.Path.NORMD, null, r.body(), r.header("x-normd-encoding"), r.header("x-normd-digest"),
                headerLong(r, "x-normd-canonical-bytes"), headerLong(r, "x-normd-input-bytes"),
                headerLong(r, "x-normd-output-bytes"), r.header("x-normd-schema"), r.header("x-request-id"), r.transport());
    }

    private static long headerLong(Transport.Reply r, String name) {
        String v = r.header(name);
        if (v == null) return -1;
        try {
            return Long.parseLong(v);
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    /** The problem+json body; anything unparsable becomes a minimal problem. */
    @SuppressWarnings("unchecked")
    private static Map<String, Object> problem(Transport.Reply r) {
        try {
            if (Json.parse(r.body()) instanceof Map<?, ?> m) return (Map<String, Object>) m;
        } catch (IllegalArgumentException notJson) {
            // falls through
        }
        Map<String, Object> p = new LinkedHashMap<>();
        p.put("status", (long) r.status());
        p.put("title", "HTTP " + r.status());
        String text = new String(r.body(), 0, Math.min(200, r.body().length), StandardCharsets.UTF_8);
        p.put("detail", text);
        return p;
    }

    /**
     * Fetches GET /flags once (over the same transports). On any failure — a non-200, a
     * body that is not {@code {"flags": {...}}}, a bad field — the last good flags stay
     * in force and {@code stats().flags().lastError()} says why.
     *
     * @return whether the refresh succeeded
     */
    public boolean refreshFlags() {
        if (closed) return false;
        synchronized (refreshLock) {
            try {
                Transport.Reply r = send(FLAGS_REQUEST, System.nanoTime() + flagsTimeoutNanos);
                if (r.status() != 200) throw new IOException("GET /flags answered " + r.status());
                FlagState f = FlagState.fromDocument(Json.parse(r.body()), flagName);
                flags = new LoadedFlags(f, System.nanoTime());
                flagsError = null;
                counters.inc(Counters.Name.FLAGS_REFRESH_OK);
                return true;
            } catch (IOException | RuntimeException e) {
                flagsError = e.getClass().getSimpleName() + ": " + e.getMessage();
                counters.inc(Counters.Name.FLAGS_REFRESH_FAILURES);
                return false;
            }
        }
    }

    private void retryFirstFlags(long delayMs, long periodMs) {
        if (closed || flags != null || delayMs >= periodMs) return;
        scheduler.schedule(() -> {
            if (!refreshFlags()) retryFirstFlags(delayMs * 2, periodMs);
        }, delayMs, TimeUnit.MILLISECONDS);
    }

    /**
     * Waits (at most {@code timeout}) for the first GET /flags to settle. Calls made before
     * flags are known go in-app as {@code unavailable}; wait here at startup to route from
     * the first call.
     *
     * @return whether flags are loaded (always true with a fixed rolloutPercent)
     */
    public boolean awaitFlags(Duration timeout) {
        try {
            firstFlagsSettled.get(timeout.toNanos(), TimeUnit.NANOSECONDS);
        } catch (TimeoutException | ExecutionException e) {
            // not settled in time: report what is known
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return rolloutOverride != null || flags != null;
    }

    /** A snapshot of the counters and of the breaker, flags and shadow state. */
    public Stats stats() {
        CircuitBreaker.Snapshot b = breaker.snapshot();
        LoadedFlags lf = flags;
        FlagState f = lf == null ? null : lf.state();
        Stats.Flags fs = new Stats.Flags(f != null,
                f == null ? null : f.enabled(),
                f == null ? null : f.rolloutPercent(),
                f == null ? null : f.shadowPercent(),
                f == null ? null : f.version(),
                f == null ? null : f.mtime(),
                lf == null ? null : TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - lf.fetchedAtNanos()),
                c(Counters.Name.FLAGS_REFRESH_OK), c(Counters.Name.FLAGS_REFRESH_FAILURES), flagsError);
        Stats.Shadow sh = new Stats.Shadow(c(Counters.Name.SHADOW_STARTED), c(Counters.Name.SHADOW_COMPARED),
                c(Counters.Name.SHADOW_MATCHES), c(Counters.Name.SHADOW_MISMATCHES),
                c(Counters.Name.SHADOW_NORMD_FAILURES), c(Counters.Name.SHADOW_SKIPPED),
                shadow.inFlight(), shadow.mismatchKeys());
        return new Stats(c(Counters.Name.CALLS), c(Counters.Name.NORMD_OK), c(Counters.Name.FALLBACK_TOTAL),
                counters.byReason(), c(Counters.Name.ERRORS), counters.byCode(), c(Counters.Name.RETRIES),
                c(Counters.Name.TRANSPORT_FAILOVERS), c(Counters.Name.EXCHANGES_UNIX), c(Counters.Name.EXCHANGES_TCP),
                new Stats.Breaker(b.state().wireName, b.consecutiveFailures(), b.openedTotal()),
                rolloutOverride, fs, sh);
    }

    private long c(Counters.Name n) {
        return counters.get(n).sum();
    }

    /**
     * Every monotonic counter by its dotted name ({@code calls}, {@code normd_ok},
     * {@code fallback_by_reason.timeout}, {@code errors_by_code.schema_violation},
     * {@code shadow.mismatches}, {@code breaker.opened_total}, ...), for binding to a
     * metrics library at startup; read a value later with {@link #counter(String)}.
     */
    public void forEachCounter(BiConsumer<String, Long> sink) {
        counters.forEach(sink);
        sink.accept("breaker.opened_total", breaker.snapshot().openedTotal());
    }

    /** The current value of one counter named as in {@link #forEachCounter}; 0 for a name never counted. */
    public long counter(String name) {
        if (name.equals("breaker.opened_total")) return breaker.snapshot().openedTotal();
        Counters.Name fixed = COUNTER_NAMES.get(name);
        if (fixed != null) return c(fixed);
        if (name.startsWith("fallback_by_reason.")) {
            String wire = name.substring("fallback_by_reason.".length());
            for (Reason r : Reason.values()) if (r.wireName().equals(wire)) return counters.byReason(r);
            return 0;
        }
        if (name.startsWith("errors_by_code.")) {
            Long v = counters.byCode().get(name.substring("errors_by_code.".length()));
            return v == null ? 0 : v;
        }
        return 0;
    }

    private static final Map<String, Counters.Name> COUNTER_NAMES = new HashMap<>();

    static {
        for (Counters.Name n : Counters.Name.values()) COUNTER_NAMES.put(n.dotted, n);
    }

    /**
     * Stops the flags refresh and the shadow threads and closes every connection: calls
     * still out end as {@code connection} fallbacks, later calls throw IllegalStateException.
     */
    @Override
    public void close() {
        if (closed) return;
        closed = true;
        if (scheduler != null) scheduler.shutdownNow();
        shadow.close();
        for (Transport t : transports) t.close();
        firstFlagsSettled.complete(false);
    }

    /** Settings of a client; every one has a default but the transport and, in practice, the fallback. */
    public static final class Builder {
        private Path socketPath;
        private Integer tcpPort;
        private Duration deadline = Duration.ofMillis(20);
        private Duration timeoutSlack = Duration.ofMillis(5);
        private InApp inApp;
        private String profile;
        private String schema;
        private String encoding;
        private Integer level;
        private String flagName = "norm";
        private Duration flagsRefresh = Duration.ofSeconds(5);
        private Duration flagsTimeout = Duration.ofSeconds(1);
        private Integer rolloutPercent;
        private Integer shadowPercent;
        private int failureThreshold = 5;
        private Duration cooldown = Duration.ofSeconds(5);
        private LongSupplier clock = System::nanoTime;
        private long maxResponseBytes = 64L * 1024 * 1024;
        private int maxConnections = 32;
        private Duration idleTimeout = Duration.ofSeconds(5);
        private Function<Object, byte[]> shadowCanonical;
        private BiPredicate<Result, Object> shadowCompare;
        private int maxShadowInFlight = 4;

        private Builder() {}

        /** normd's Unix socket: the preferred transport. */
        public Builder socketPath(Path socketPath) {
            this.socketPath = socketPath;
            return this;
        }

        public Builder socketPath(String socketPath) {
            return socketPath(Path.of(socketPath));
        }

        /** normd's TCP port on 127.0.0.1: used alone, or when the socket cannot be connected. */
        public Builder tcpPort(int port) {
            if (port < 1 || port > 65535) throw new IllegalArgumentException("tcpPort must be 1..65535");
            this.tcpPort = port;
            return this;
        }

        /** Default budget per call (20 ms), sent as X-Deadline-Ms in whole ms (at least 1). */
        public Builder deadline(Duration deadline) {
            if (deadline.isNegative() || deadline.isZero()) throw new IllegalArgumentException("deadline must be > 0");
            this.deadline = deadline;
            return this;
        }

        /** Extra local wait past the deadline (5 ms) for normd's own 504 to arrive before the client gives up. */
        public Builder timeoutSlack(Duration slack) {
            if (slack.isNegative()) throw new IllegalArgumentException("timeoutSlack must be >= 0");
            this.timeoutSlack = slack;
            return this;
        }

        /** The in-app implementation of the same job, given the body (and why it is called). */
        public Builder fallback(InApp inApp) {
            this.inApp = inApp;
            return this;
        }

        /** The in-app implementation of the same job, given the body. */
        public Builder fallback(Function<byte[], ?> inApp) {
            Objects.requireNonNull(inApp, "fallback");
            this.inApp = (body, ctx) -> inApp.apply(body);
            return this;
        }

        public Builder profile(String profile) {
            this.profile = profile;
            return this;
        }

        public Builder schema(String schema) {
            this.schema = schema;
            return this;
        }

        public Builder encoding(String encoding) {
            this.encoding = encoding;
            return this;
        }

        public Builder level(int level) {
            this.level = level;
            return this;
        }

        /** The flag of GET /flags that routes the calls ("norm"). */
        public Builder flagName(String flagName) {
            this.flagName = Objects.requireNonNull(flagName);
            return this;
        }

        /** Background refresh period of GET /flags (5 s); zero: only the first fetch and {@link #refreshFlags()}. */
        public Builder flagsRefresh(Duration period) {
            if (period.isNegative()) throw new IllegalArgumentException("flagsRefresh must be >= 0");
            this.flagsRefresh = period;
            return this;
        }

        /** Time limit of one GET /flags (1 s). */
        public Builder flagsTimeout(Duration timeout) {
            if (timeout.isNegative() || timeout.isZero()) throw new IllegalArgumentException("flagsTimeout must be > 0");
            this.flagsTimeout = timeout;
            return this;
        }

        /** A fixed rollout 0..100 instead of GET /flags (no flag requests at all; normd's 503 disabled still counts). */
        public Builder rolloutPercent(Integer percent) {
            if (percent != null && (percent < 0 || percent > 100)) throw new IllegalArgumentException("rolloutPercent must be 0..100");
            this.rolloutPercent = percent;
            return this;
        }

        /** With a fixed rolloutPercent, the shadow band's upper edge 0..100 (default 0: no shadow). */
        public Builder shadowPercent(Integer percent) {
            if (percent != null && (percent < 0 || percent > 100)) throw new IllegalArgumentException("shadowPercent must be 0..100");
            this.shadowPercent = percent;
            return this;
        }

        /** Consecutive failures that open the breaker (5). */
        public Builder failureThreshold(int n) {
            if (n < 1) throw new IllegalArgumentException("failureThreshold must be >= 1");
            this.failureThreshold = n;
            return this;
        }

        /** How long the breaker stays open before its one half-open probe (5 s). */
        public Builder cooldown(Duration cooldown) {
            if (cooldown.isNegative()) throw new IllegalArgumentException("cooldown must be >= 0");
            this.cooldown = cooldown;
            return this;
        }

        /** Monotonic nanosecond clock of the breaker (System::nanoTime; tests inject one). */
        public Builder clock(LongSupplier nanos) {
            this.clock = Objects.requireNonNull(nanos);
            return this;
        }

        /** A larger answer is refused as a {@code connection} fallback (64 MiB). */
        public Builder maxResponseBytes(long max) {
            if (max < 1 || max > Integer.MAX_VALUE - 8) throw new IllegalArgumentException("maxResponseBytes must be 1..2^31-9");
            this.maxResponseBytes = max;
            return this;
        }

        /** Unix-socket connections open at once (32); a caller past that waits inside its deadline. */
        public Builder maxConnections(int n) {
            if (n < 1) throw new IllegalArgumentException("maxConnections must be >= 1");
            this.maxConnections = n;
            return this;
        }

        /** Idle keep-alive connections are dropped after this (5 s), before normd's 10 s header-read timeout. */
        public Builder idleTimeout(Duration idle) {
            if (idle.isNegative()) throw new IllegalArgumentException("idleTimeout must be >= 0");
            this.idleTimeout = idle;
            return this;
        }

        /** Shadow mode: turns the in-app result into its canonical bytes (default: a byte[] as is, a String's UTF-8). */
        public Builder shadowCanonical(Function<Object, byte[]> canonical) {
            this.shadowCanonical = canonical;
            return this;
        }

        /** Shadow mode: a comparison of its own instead of the digest check (normd's result, the in-app result). */
        public Builder shadowCompare(BiPredicate<Result, Object> compare) {
            this.shadowCompare = compare;
            return this;
        }

        /** Shadow calls out at once (4); past that a shadowed call is skipped. 0 turns shadow calls off. */
        public Builder maxShadowInFlight(int n) {
            if (n < 0) throw new IllegalArgumentException("maxShadowInFlight must be >= 0");
            this.maxShadowInFlight = n;
            return this;
        }

        public NormdClient build() {
            if (socketPath == null && tcpPort == null) throw new IllegalStateException("a normd client needs socketPath and/or tcpPort");
            return new NormdClient(this);
        }
    }
}
