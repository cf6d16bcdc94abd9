package dev.normd.testing;

import java.util.Arrays;
import java.util.Objects;

/** Assertions: each throws AssertionError with what differed. */
public final class Check {
    private Check() {}

    public static void eq(Object expected, Object actual, String what) {
        boolean same = expected instanceof byte[] e && actual instanceof byte[] a ? Arrays.equals(e, a) : Objects.equals(expected, actual);
        if (!same) throw new AssertionError(what + ": expected <" + show(expected) + "> but was <" + show(actual) + ">");
    }

    public static void that(boolean condition, String what) {
        if (!condition) throw new AssertionError(what);
    }

    public static <T extends Throwable> T throwsA(Class<T> type, Registry.Body body) {
        try {
            body.run();
        } catch (Throwable t) {
            if (type.isInstance(t)) return type.cast(t);
            throw new AssertionError("expected " + type.getSimpleName() + " but got " + t, t);
        }
        throw new AssertionError("expected " + type.getSimpleName() + " but nothing was thrown");
    }

    /** Polls {@code condition} every 10 ms for at most {@code timeoutMs}; fails with {@code what} if it never holds. */
    public static void eventually(long timeoutMs, String what, java.util.function.BooleanSupplier condition) throws InterruptedException {
        eventually(timeoutMs, 10, what, condition);
    }

    /** Polls {@code condition} every {@code everyMs} for at most {@code timeoutMs}. */
    public static void eventually(long timeoutMs, long everyMs, String what, java.util.function.BooleanSupplier condition)
            throws InterruptedException {
        long until = System.nanoTime() + timeoutMs * 1_000_000L;
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > until) throw new AssertionError("not within " + timeoutMs + " ms: " + what);
            Thread.sleep(everyMs);
        }
    }

    private static String show(Object o) {
        if (o instanceof byte[] b) return b.length <= 64 ? Arrays.toString(b) : "byte[" + b.length + "]";
        return String.valueOf(o);
    }
}
