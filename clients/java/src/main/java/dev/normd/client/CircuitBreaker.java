package dev.normd.client;

import java.util.function.LongSupplier;

/**
 * Consecutive-failure circuit breaker; owns only the state machine, reads time only
 * through the injected nanosecond clock (tests move it instead of sleeping).
 *
 * <pre>
 *   closed --N consecutive failures--> open --cooldown--> half_open
 *   half_open: exactly one probe passes; its success closes, its failure re-opens
 * </pre>
 *
 * A call takes a ticket and hands it back with its outcome. A ticket from before the
 * last open or close (a slow call that was out when the state changed) no longer moves
 * the breaker: a late 200 must not close an open breaker without the probe. Tickets are
 * {@code epoch * 2 + probe}, plain longs, so a call allocates nothing here.
 */
final class CircuitBreaker {
    static final long SHORT_CIRCUIT = -1;

    enum State {
        CLOSED("closed"), OPEN("open"), HALF_OPEN("half_open");

        final String wireName;

        State(String wireName) {
            this.wireName = wireName;
        }
    }

    /** A consistent view for stats. */
    record Snapshot(State state, int consecutiveFailures, long openedTotal) {}

    private final int failureThreshold;
    private final long cooldownNanos;
    private final LongSupplier clock;

    private State state = State.CLOSED;
    private int consecutiveFailures;
    private long openedTotal;
    private long openedAt;
    private boolean probeOut;
    private long epoch;

    CircuitBreaker(int failureThreshold, long cooldownNanos, LongSupplier clock) {
        if (failureThreshold < 1) throw new IllegalArgumentException("failureThreshold must be >= 1");
        if (cooldownNanos < 0) throw new IllegalArgumentException("cooldown must be >= 0");
        this.failureThreshold = failureThreshold;
        this.cooldownNanos = cooldownNanos;
        this.clock = clock;
    }

    /** A ticket for one call, or {@link #SHORT_CIRCUIT}. In half-open, only the probe gets one. */
    synchronized long tryAcquire() {
        if (state == State.CLOSED) return epoch * 2;
        if (state == State.OPEN) {
            if (clock.getAsLong() - openedAt < cooldownNanos) return SHORT_CIRCUIT;
            state = State.HALF_OPEN;
            probeOut = false;
        }
        if (probeOut) return SHORT_CIRCUIT;
        probeOut = true;
        return epoch * 2 + 1;
    }

    /** normd answered sanely: a 200, a contract error, a 503 disabled. */
    synchronized void onSuccess(long ticket) {
        if (ticket / 2 != epoch) return;
        if (state == State.CLOSED) {
            consecutiveFailures = 0;
        } else if (state == State.HALF_OPEN && ticket % 2 == 1) {
            consecutiveFailures = 0;
            probeOut = false;
            state = State.CLOSED;
            epoch++;
        }
    }

    /** normd failed the call: overload, unavailable, deadline, connection, timeout, 5xx. */
    synchronized void onFailure(long ticket) {
        if (ticket / 2 != epoch) return;
        if (state == State.CLOSED) {
            if (++consecutiveFailures >= failureThreshold) open();
        } else if (state == State.HALF_OPEN && ticket % 2 == 1) {
            consecutiveFailures++;
            open();
        }
    }

    /** Whether calls flow normally; shadow calls go out only then. */
    synchronized boolean isClosed() {
        return state == State.CLOSED;
    }

    /** The state as a caller would meet it: open past its cooldown reads half_open. */
    synchronized Snapshot snapshot() {
        State s = state;
        if (s == State.OPEN && clock.getAsLong() - openedAt >= cooldownNanos) s = State.HALF_OPEN;
        return new Snapshot(s, consecutiveFailures, openedTotal);
    }

    private void open() {
        state = State.OPEN;
        openedAt = clock.getAsLong();
        probeOut = false;
        openedTotal++;
        epoch++;
    }
}
