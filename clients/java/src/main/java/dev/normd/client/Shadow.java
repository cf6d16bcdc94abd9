package dev.normd.client;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BiPredicate;
import java.util.function.Function;

/**
 * Shadow mode: a call in the shadow band was answered in-app; here normd does the same
 * work off the caller's thread and its X-Normd-Digest is compared with the SHA-256 of
 * the in-app canonical bytes. Owns the bounded executor, the comparison and the sample
 * of mismatching keys. Never touches the breaker, never keeps a payload past its call.
 */
final class Shadow {
    /** Mismatching keys kept for a human to look at. */
    static final int MISMATCH_SAMPLE = 16;
    /** Recorded for a mismatch of a call without a key. */
    static final String NO_KEY = "(no key)";

    /** Sends one exchange over the client's transports (failover included, breaker not). */
    interface Sender {
        Transport.Reply send(Transport.Request request, long deadlineNanos) throws IOException;
    }

    /** The default: an in-app byte[] is the canonical bytes, a String is their UTF-8 text. */
    static final Function<Object, byte[]> DEFAULT_CANONICAL = inApp -> {
        if (inApp instanceof byte[] b) return b;
        if (inApp instanceof String s) return s.getBytes(StandardCharsets.UTF_8);
        return null;
    };

    private final int maxInFlight;
    private final Function<Object, byte[]> canonical;
    private final BiPredicate<Result, Object> compare;
    private final Counters counters;
    private final Sender sender;
    private final ThreadPoolExecutor executor;
    private final AtomicInteger inFlight = new AtomicInteger();
    private final ArrayDeque<String> mismatchKeys = new ArrayDeque<>();

    Shadow(int maxInFlight, Function<Object, byte[]> canonical, BiPredicate<Result, Object> compare,
           Counters counters, Sender sender) {
        this.maxInFlight = maxInFlight;
        this.canonical = canonical == null ? DEFAULT_CANONICAL : canonical;
        this.compare = compare;
        this.counters = counters;
        this.sender = sender;
        AtomicInteger n = new AtomicInteger();
        // At most maxInFlight tasks ever exist (the counter below), so the queue never grows past that.
        this.executor = new ThreadPoolExecutor(Math.max(1, maxInFlight), Math.max(1, maxInFlight), 30, TimeUnit.SECONDS,
                new LinkedBlockingQueue<>(), r -> {
                    Thread t = new Thread(r, "normd-shadow-" + n.incrementAndGet());
                    t.setDaemon(true);
                    return t;
                });
        this.executor.allowCoreThreadTimeOut(true);
    }

    /**
     * Sends the shadow call in the background, or counts it skipped. The body must not be
     * changed by the caller afterwards (it is sent as is, later).
     */
    void submit(String key, Transport.Request request, long budgetNanos, Object inApp, boolean breakerClosed) {
        if (!breakerClosed || inFlight.incrementAndGet() > maxInFlight) {
            if (breakerClosed) inFlight.decrementAndGet();
            counters.inc(Counters.Name.SHADOW_SKIPPED);
            return;
        }
        counters.inc(Counters.Name.SHADOW_STARTED);
        try {
            executor.execute(() -> run(key, request, budgetNanos, inApp));
        } catch (RejectedExecutionException closed) {
            inFlight.decrementAndGet();
            counters.inc(Counters.Name.SHADOW_SKIPPED);
        }
    }

    private void run(String key, Transport.Request request, long budgetNanos, Object inApp) {
        try {
            Transport.Reply reply;
            try {
                reply = sender.send(request, System.nanoTime() + budgetNanos);
            } catch (IOException e) {
                counters.inc(Counters.Name.SHADOW_NORMD_FAILURES);
                return;
            }
            String digest = reply.header("x-normd-digest");
            Verdict v = Verdict.of(reply.status(), null, digest != null);
            Boolean match;
            if (v == Verdict.OK) {
                match = matches(NormdClient.normdResult(reply), inApp);
            } else if (v == Verdict.CONTRACT_ERROR) {
                match = false; // normd refuses what the in-app path accepted: the two disagree
            } else {
                counters.inc(Counters.Name.SHADOW_NORMD_FAILURES);
                return;
            }
            if (match == null) {
                counters.inc(Counters.Name.SHADOW_SKIPPED);
                return;
            }
            counters.inc(Counters.Name.SHADOW_COMPARED);
            if (match) {
                counters.inc(Counters.Name.SHADOW_MATCHES);
            } else {
                counters.inc(Counters.Name.SHADOW_MISMATCHES);
                synchronized (mismatchKeys) {
                    if (mismatchKeys.size() == MISMATCH_SAMPLE) mismatchKeys.removeFirst();
                    mismatchKeys.addLast(key == null ? NO_KEY : key);
                }
            }
        } finally {
            inFlight.decrementAndGet();
        }
    }

    /** Whether normd's answer matches the in-app result; null when the app's hooks cannot tell. */
    private Boolean matches(Result normd, Object inApp) {
        try {
            if (compare != null) return compare.test(normd, inApp);
            byte[] bytes = canonical.apply(inApp);
            if (bytes == null) return null;
            return digestOf(bytes).equals(normd.digest());
        } catch (RuntimeException hookFailed) {
            return null;
        }
    }

    /** {@code sha-256=:<base64>:}, the form of X-Normd-Digest. */
    static String digestOf(byte[] canonicalBytes) {
        try {
            byte[] d = MessageDigest.getInstance("SHA-256").digest(canonicalBytes);
            return "sha-256=:" + Base64.getEncoder().encodeToString(d) + ":";
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("every JDK has SHA-256", e);
        }
    }

    int inFlight() {
        return inFlight.get();
    }

    List<String> mismatchKeys() {
        synchronized (mismatchKeys) {
            return List.copyOf(new ArrayList<>(mismatchKeys));
        }
    }

    void close() {
        executor.shutdownNow();
    }
}
